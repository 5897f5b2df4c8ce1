// Verifies a Tessera access token with panva/jose, knowing only the published JWKS.
// Usage: node verify.mjs <token> <jwks-url> <issuer> <audience> <alg>
// Exit 0 and print {"protectedHeader", "payload"} as JSON when the token is valid;
// exit 1 and print the jose error code when it is not; exit 2 on bad usage.
import { createRemoteJWKSet, jwtVerify } from 'jose';

const [token, jwksUrl, issuer, audience, alg] = process.argv.slice(2);
if (!alg) {
  console.error('usage: node verify.mjs <token> <jwks-url> <issuer> <audience> <alg>');
  process.exit(2);
}

try {
  const jwks = createRemoteJWKSet(new URL(jwksUrl));
  const { payload, protectedHeader } = await jwtVerify(token, jwks, {
    issuer,
    audience,
    typ: 'at+jwt',
    algorithms: [alg],
  });
  console.log(JSON.stringify({ protectedHeader, payload }));
} catch (error) {
  console.error(`${error.code ?? 'ERR_UNEXPECTED'}: ${error.message}`);
  process.exit(1);
}

//! Integration tests of tessera-auth against real local HTTP servers: the JWKS endpoint,
//! an attacker's key server, services using the extractor, and a token endpoint.

mod attacks;
mod client_credentials;
mod extractor;
mod support;
mod verification;

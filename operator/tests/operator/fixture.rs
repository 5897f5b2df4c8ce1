//! A fixed `Platform` and fixed materials, so desired children are reproducible.

use std::collections::BTreeMap;

use serde_json::json;
use tessera_operator::Platform;
use tessera_operator::children::Materials;

/// A platform using most of the spec: Ingress with TLS, Postgres for identity, SQLite
/// elsewhere, notification channels, a managed NATS, an extra route and two onboarded
/// services.
pub(crate) fn platform() -> Platform {
    serde_json::from_value(json!({
        "apiVersion": "tessera.dev/v1alpha1",
        "kind": "Platform",
        "metadata": {
            "name": "demo", "namespace": "tessera", "uid": "0b6a3c1e-0000-4000-8000-000000000001",
            "generation": 3
        },
        "spec": {
            "images": { "repository": "registry.example.com/tessera", "tag": "1.2.3",
                        "pullPolicy": "IfNotPresent", "pullSecrets": ["registry"] },
            "gateway": {
                "host": "api.example.com", "ingressClassName": "nginx", "tlsSecretName": "api-tls",
                "globalRateLimit": { "requests": 1000, "periodSeconds": 1, "burst": 2000 },
                "routes": [{ "name": "legacy", "prefix": "/legacy/", "upstream": "http://legacy.apps:8080",
                             "auth": "Public", "rateLimit": { "requests": 5, "periodSeconds": 1, "burst": 10 } }]
            },
            "identity": {
                "issuer": "https://api.example.com",
                "audiences": ["tessera", "mobile"],
                "accessTokenTtlSeconds": 600,
                "replicas": 2,
                "storage": { "postgres": { "urlSecretRef": { "name": "identity-db", "key": "url" } } },
                "resources": { "requests": { "cpu": "100m", "memory": "64Mi" }, "limits": { "memory": "256Mi" } },
                "keyPolicy": { "algorithm": "EdDSA", "rotationIntervalSeconds": 86400 }
            },
            "logging": { "retentionSeconds": 1_209_600, "storage": { "sqlite": { "size": "5Gi", "storageClassName": "fast" } } },
            "notification": {
                "sender": "Tessera <no-reply@example.com>",
                "smtp": { "name": "smtp", "key": "url" }
            },
            "services": [
                { "name": "orders", "image": "registry.example.com/orders:4.0", "port": 3000,
                  "routePrefix": "/orders/", "roles": ["orders"], "replicas": 2 },
                { "name": "catalogue", "image": "registry.example.com/catalogue:1.0",
                  "routePrefix": "/catalogue", "auth": "Public" }
            ]
        }
    }))
    .expect("the fixture is a Platform")
}

/// Fixed materials (test values only).
pub(crate) fn materials() -> Materials {
    Materials {
        jwks_json: r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"test-kid","alg":"EdDSA","use":"sig"}]}"#.into(),
        client_secrets: [
            "gateway",
            "logging",
            "notification",
            "profile",
            "orders",
            "catalogue",
        ]
            .into_iter()
            .map(|id| (id.to_owned(), format!("tsc_test-secret-of-{id}")))
            .collect::<BTreeMap<_, _>>(),
        pepper: vec![7; 32],
    }
}

//! Platform-wide configuration children: the gateway's routes file, the public JWKS, the
//! client registry for identity, and the gateway's Ingress.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use serde::Serialize;

use super::{Child, Component, Context, Kind, Materials};
use crate::crd::{Platform, RateLimit, RouteAuth};

/// Identity's endpoints served through the gateway at the issuer's root, so discovery
/// (`<issuer>/.well-known/openid-configuration`) works. Identity authenticates them itself.
const IDENTITY_ROUTES: [(&str, &str); 7] = [
    ("discovery", "/.well-known/"),
    ("oauth", "/oauth2/"),
    ("signup", "/v1/signup"),
    ("login", "/v1/login"),
    ("logout", "/v1/logout"),
    ("me", "/v1/me"),
    ("identity-admin", "/v1/admin/"),
];

/// The routes file, in the gateway's format (services/gateway/README.md).
#[derive(Serialize)]
struct RoutesFile {
    version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    global_rate_limit: Option<Policy>,
    routes: Vec<Route>,
}

#[derive(Serialize)]
struct Route {
    name: String,
    #[serde(rename = "match")]
    matcher: Match,
    #[serde(skip_serializing_if = "Option::is_none")]
    rewrite_prefix: Option<String>,
    upstreams: Vec<String>,
    auth: Auth,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limit: Option<Policy>,
}

#[derive(Serialize)]
struct Match {
    prefix: String,
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum Auth {
    Public,
    Authenticated,
    Roles(Vec<String>),
}

#[derive(Serialize)]
struct Policy {
    name: String,
    requests: u32,
    period_secs: u32,
    burst: u32,
}

fn policy(name: &str, limit: &RateLimit) -> Policy {
    Policy {
        name: name.to_owned(),
        requests: limit.requests,
        period_secs: limit.period_seconds,
        burst: limit.burst,
    }
}

fn auth(auth: RouteAuth, roles: &[String]) -> Auth {
    match auth {
        RouteAuth::Public => Auth::Public,
        RouteAuth::Authenticated if roles.is_empty() => Auth::Authenticated,
        RouteAuth::Authenticated => Auth::Roles(roles.to_vec()),
    }
}

/// The default login limit: 10 attempts a minute per client address.
fn default_login_limit() -> RateLimit {
    RateLimit {
        requests: 10,
        period_seconds: 60,
        burst: 10,
    }
}

fn route(name: String, prefix: &str, rewrite: bool, upstream: String, auth: Auth) -> Route {
    Route {
        name,
        matcher: Match {
            prefix: prefix.to_owned(),
        },
        rewrite_prefix: rewrite.then(|| "/".to_owned()),
        upstreams: vec![upstream],
        auth,
        rate_limit: None,
    }
}

/// The gateway's routes file: identity's endpoints, `/logging/` (role `admin`),
/// `/notification/` and `/profile/` (authenticated; prefix replaced by `/`), one route per
/// `spec.gateway.routes` entry (`route-<name>`) and per onboarded service
/// (`service-<name>`), whose paths are forwarded unchanged.
pub fn routes_yaml(platform: &Platform) -> String {
    let cx = Context::new(platform);
    let gateway = &platform.spec.gateway;
    let identity = cx.url(&Component::Identity);
    let mut routes: Vec<Route> = IDENTITY_ROUTES
        .iter()
        .map(|(name, prefix)| {
            let mut route = route(
                (*name).to_owned(),
                prefix,
                false,
                identity.clone(),
                Auth::Public,
            );
            if *name == "login" {
                let limit = gateway
                    .login_rate_limit
                    .clone()
                    .unwrap_or_else(default_login_limit);
                route.rate_limit = Some(policy("login", &limit));
            }
            route
        })
        .collect();
    routes.push(route(
        "logging".into(),
        "/logging/",
        true,
        cx.url(&Component::Logging),
        Auth::Roles(vec!["admin".into()]),
    ));
    for component in [Component::Notification, Component::Profile] {
        routes.push(route(
            component.name(),
            &format!("/{}/", component.name()),
            true,
            cx.url(&component),
            Auth::Authenticated,
        ));
    }
    for extra in &gateway.routes {
        let name = format!("route-{}", extra.name);
        let mut route = route(
            name.clone(),
            &extra.prefix,
            false,
            extra.upstream.clone(),
            auth(extra.auth, &extra.roles),
        );
        route.rate_limit = extra.rate_limit.as_ref().map(|limit| policy(&name, limit));
        routes.push(route);
    }
    for service in &platform.spec.services {
        routes.push(route(
            format!("service-{}", service.name),
            &service.route_prefix,
            false,
            cx.url(&Component::Onboarded(service.name.clone())),
            auth(service.auth, &service.roles),
        ));
    }
    let file = RoutesFile {
        version: 1,
        global_rate_limit: gateway
            .global_rate_limit
            .as_ref()
            .map(|limit| policy("global", limit)),
        routes,
    };
    let body = serde_saphyr::to_string(&file).expect("the routes file serializes");
    format!(
        "# Written by tessera-operator from Platform {}; edits are replaced.\n{body}",
        cx.name
    )
}

/// Identity's client registry (services/identity/src/clients.rs): each service client
/// with the base64url HMAC-SHA-256 of its secret under the pepper.
pub fn client_registry_json(platform: &Platform, materials: &Materials) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &materials.pepper);
    let clients: Vec<serde_json::Value> = Component::all(platform)
        .iter()
        .filter(|component| component.has_client())
        .filter_map(|component| {
            let client_id = component.name();
            let secret = materials.client_secrets.get(&client_id)?;
            let hash = aws_lc_rs::hmac::sign(&key, secret.as_bytes());
            let mut roles = vec!["service".to_owned()];
            if let Some(service) = component.onboarded(platform) {
                roles.extend(service.roles.iter().filter(|r| *r != "service").cloned());
            }
            Some(serde_json::json!({
                "client_id": client_id,
                "secret_hash": URL_SAFE_NO_PAD.encode(hash.as_ref()),
                "roles": roles,
            }))
        })
        .collect();
    let mut json = serde_json::to_string_pretty(&serde_json::json!({ "clients": clients }))
        .expect("JSON serializes");
    json.push('\n');
    json
}

/// Where clients reach the platform: the Ingress host, or the gateway Service in-cluster.
pub fn gateway_url(platform: &Platform) -> String {
    let cx = Context::new(platform);
    let gateway = &platform.spec.gateway;
    match &gateway.host {
        Some(host) if gateway.tls_secret_name.is_some() => format!("https://{host}"),
        Some(host) => format!("http://{host}"),
        None => format!(
            "http://{}.{}.svc:8080",
            cx.object_name(&Component::Gateway, ""),
            cx.namespace
        ),
    }
}

/// The routes ConfigMap, the JWKS ConfigMap, the client registry and the Ingress.
pub(crate) fn shared_children(cx: &Context<'_>, materials: &Materials) -> Vec<Child> {
    let platform = cx.platform;
    let mut children = Vec::new();
    let gateway = Component::Gateway;
    children.push(Child::new(
        &gateway,
        Kind::ConfigMap,
        &ConfigMap {
            metadata: cx.meta(&gateway, cx.object_name(&gateway, "routes")),
            data: Some(BTreeMap::from([(
                "routes.yaml".into(),
                routes_yaml(platform),
            )])),
            ..ConfigMap::default()
        },
    ));
    let identity = Component::Identity;
    children.push(Child::new(
        &identity,
        Kind::ConfigMap,
        &ConfigMap {
            metadata: cx.meta(&identity, super::jwks_config_map_name(platform)),
            data: Some(BTreeMap::from([(
                "jwks.json".into(),
                materials.jwks_json.clone(),
            )])),
            ..ConfigMap::default()
        },
    ));
    children.push(Child::new(
        &identity,
        Kind::Secret,
        &Secret {
            metadata: cx.meta(&identity, cx.object_name(&identity, "clients")),
            data: Some(BTreeMap::from([(
                "clients.json".into(),
                ByteString(client_registry_json(platform, materials).into_bytes()),
            )])),
            ..Secret::default()
        },
    ));
    if let Some(host) = &platform.spec.gateway.host {
        children.push(Child::new(&gateway, Kind::Ingress, &ingress(cx, host)));
    }
    children
}

fn ingress(cx: &Context<'_>, host: &str) -> Ingress {
    let gateway = Component::Gateway;
    let spec = &cx.platform.spec.gateway;
    Ingress {
        metadata: cx.meta(&gateway, cx.object_name(&gateway, "")),
        spec: Some(IngressSpec {
            ingress_class_name: spec.ingress_class_name.clone(),
            tls: spec.tls_secret_name.as_ref().map(|secret| {
                vec![IngressTLS {
                    hosts: Some(vec![host.to_owned()]),
                    secret_name: Some(secret.clone()),
                }]
            }),
            rules: Some(vec![IngressRule {
                host: Some(host.to_owned()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".into()),
                        path_type: "Prefix".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: cx.object_name(&gateway, ""),
                                port: Some(ServiceBackendPort {
                                    name: Some("http".into()),
                                    number: None,
                                }),
                            }),
                            resource: None,
                        },
                    }],
                }),
            }]),
            ..IngressSpec::default()
        }),
        status: None,
    }
}

//! Desired children: golden files per component, plus the properties every child must
//! have whatever the golden content (hardening, owner, labels, no `subPath`).
//!
//! `TESSERA_UPDATE_GOLDEN=1 cargo test -p tessera-operator --test operator children`
//! rewrites `operator/tests/operator/golden/` after a deliberate change.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tessera_operator::children::{self, Child, Kind};

use crate::fixture;

const GOLDEN_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/operator/golden");

fn check_golden(file: &str, generated: &str) {
    let path = format!("{GOLDEN_DIR}/{file}");
    if std::env::var_os("TESSERA_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(GOLDEN_DIR).expect("create golden dir");
        std::fs::write(&path, generated).expect("write golden file");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let line = committed
        .lines()
        .zip(generated.lines())
        .position(|(c, g)| c != g)
        .map_or(0, |i| i + 1);
    assert!(
        committed == generated,
        "{file} differs from the desired objects (first difference at line {line}); if the change \
         is deliberate run `TESSERA_UPDATE_GOLDEN=1 cargo test -p tessera-operator --test operator children`"
    );
}

fn desired() -> Vec<Child> {
    children::desired(&fixture::platform(), &fixture::materials())
}

#[test]
fn desired_children_match_the_golden_files_per_component() {
    let mut by_component: BTreeMap<String, String> = BTreeMap::new();
    for child in desired() {
        let yaml = serde_saphyr::to_string(&child.object).expect("yaml");
        let text = by_component.entry(child.component.name()).or_default();
        text.push_str("---\n");
        text.push_str(&yaml);
    }
    assert_eq!(
        by_component.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "catalogue",
            "gateway",
            "identity",
            "logging",
            "nats",
            "notification",
            "orders",
            "profile"
        ]
    );
    for (component, yaml) in &by_component {
        check_golden(&format!("{component}.yaml"), yaml);
    }
}

#[test]
fn the_routes_file_is_accepted_by_the_gateway_and_routes_every_onboarded_service() {
    let yaml = children::routes_yaml(&fixture::platform());
    check_golden("routes.yaml", &yaml);
    let dir = std::env::temp_dir().join(format!("tessera-operator-routes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("routes.yaml");
    std::fs::write(&path, &yaml).unwrap();
    // The gateway's own loader: the same parsing and validation as at its start.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let routes = runtime.block_on(async {
        tessera_gateway::routes::Routes::load(
            path.clone(),
            tessera_gateway::proxy::UpstreamClient::new(),
            1024 * 1024,
        )
    });
    let routes = routes.unwrap_or_else(|e| panic!("the gateway refused the routes file: {e}"));
    let table = routes.snapshot();
    assert_eq!(table.len(), 7 + 3 + 1 + 2);
    for prefix in [
        "/orders/",
        "/catalogue",
        "/legacy/",
        "/.well-known/",
        "/profile/",
    ] {
        assert!(
            yaml.contains(&format!("prefix: {prefix}\n")),
            "{prefix} missing:\n{yaml}"
        );
    }
    assert!(yaml.contains("http://demo-orders:8080"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn the_client_registry_holds_a_hash_per_service_client_and_never_a_secret() {
    let registry = children::client_registry_json(&fixture::platform(), &fixture::materials());
    check_golden("clients.json", &registry);
    let parsed: Value = serde_json::from_str(&registry).unwrap();
    let ids: Vec<&str> = parsed["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "gateway",
            "logging",
            "notification",
            "profile",
            "orders",
            "catalogue"
        ]
    );
    // The gateway ships its logs with its own client's token: role `service`.
    assert_eq!(parsed["clients"][0]["roles"], json!(["service"]));
    assert!(
        !registry.contains("tsc_"),
        "a plaintext secret leaked into the registry"
    );
    // HMAC-SHA-256 under the pepper, base64url: 43 characters.
    assert_eq!(
        parsed["clients"][0]["secret_hash"].as_str().unwrap().len(),
        43
    );
    assert_eq!(parsed["clients"][4]["roles"], json!(["service", "orders"]));
}

#[test]
fn every_pod_is_hardened_and_probed_on_the_admin_port() {
    let workloads: Vec<Child> = desired()
        .into_iter()
        .filter(|c| matches!(c.kind, Kind::Deployment | Kind::StatefulSet))
        .collect();
    assert_eq!(workloads.len(), 8);
    for child in workloads {
        let pod = &child.object["spec"]["template"]["spec"];
        let who = &child.name;
        assert_eq!(pod["securityContext"]["runAsNonRoot"], json!(true), "{who}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            json!("RuntimeDefault"),
            "{who}"
        );
        for container in pod["containers"].as_array().unwrap() {
            let security = &container["securityContext"];
            assert_eq!(security["readOnlyRootFilesystem"], json!(true), "{who}");
            assert_eq!(security["allowPrivilegeEscalation"], json!(false), "{who}");
            assert_eq!(security["capabilities"]["drop"], json!(["ALL"]), "{who}");
            if child.kind == Kind::Deployment {
                assert_eq!(
                    container["readinessProbe"]["httpGet"]["port"],
                    json!("admin"),
                    "{who}"
                );
                assert_eq!(
                    container["livenessProbe"]["httpGet"]["path"],
                    json!("/healthz"),
                    "{who}"
                );
                let annotations = &child.object["spec"]["template"]["metadata"]["annotations"];
                assert!(annotations[children::CONFIG_CHECKSUM].is_string(), "{who}");
            }
        }
    }
}

#[test]
fn secrets_are_mounted_as_directories_never_with_sub_path() {
    for child in desired() {
        assert!(
            !child.object.to_string().contains("subPath"),
            "{} uses subPath",
            child.name
        );
    }
}

#[test]
fn every_child_is_owned_by_the_platform_and_labelled() {
    for child in desired() {
        let meta = &child.object["metadata"];
        assert_eq!(
            meta["ownerReferences"][0]["kind"],
            json!("Platform"),
            "{}",
            child.name
        );
        assert_eq!(
            meta["ownerReferences"][0]["controller"],
            json!(true),
            "{}",
            child.name
        );
        assert_eq!(
            meta["labels"]["app.kubernetes.io/managed-by"],
            json!("tessera-operator")
        );
        assert_eq!(meta["labels"]["app.kubernetes.io/instance"], json!("demo"));
        assert_eq!(meta["namespace"], json!("tessera"));
        assert!(child.object["apiVersion"].is_string() && child.object["kind"].is_string());
    }
}

#[test]
fn a_config_change_changes_the_checksum_but_a_route_change_does_not() {
    let checksum = |platform: &tessera_operator::Platform, name: &str| {
        children::desired(platform, &fixture::materials())
            .into_iter()
            .find(|c| c.kind == Kind::Deployment && c.name == name)
            .map(|c| {
                c.object["spec"]["template"]["metadata"]["annotations"][children::CONFIG_CHECKSUM]
                    .clone()
            })
            .unwrap()
    };
    let base = fixture::platform();
    let mut changed = base.clone();
    changed.spec.identity.access_token_ttl_seconds = Some(300);
    assert_ne!(
        checksum(&base, "demo-identity"),
        checksum(&changed, "demo-identity")
    );
    // Routes are hot-reloaded by the gateway: no restart.
    let mut rerouted = base.clone();
    rerouted.spec.services.pop();
    assert_eq!(
        checksum(&base, "demo-gateway"),
        checksum(&rerouted, "demo-gateway")
    );
}

#[test]
fn network_policies_admit_only_the_architecture_flows() {
    let policies: BTreeMap<String, Value> = desired()
        .into_iter()
        .filter(|c| c.kind == Kind::NetworkPolicy)
        .map(|c| (c.name, c.object))
        .collect();
    let callers = |name: &str| -> Option<Vec<String>> {
        let from = &policies[name]["spec"]["ingress"][0]["from"];
        from.as_array().map(|peers| {
            peers
                .iter()
                .map(|p| {
                    p["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect()
        })
    };
    assert_eq!(
        callers("demo-gateway"),
        None,
        "the gateway takes traffic from the Ingress"
    );
    assert_eq!(callers("demo-orders"), Some(vec!["gateway".to_owned()]));
    assert_eq!(
        callers("demo-profile"),
        Some(vec!["gateway".to_owned(), "notification".to_owned()]),
        "notification reads channel preferences from profile"
    );
    assert_eq!(
        callers("demo-notification"),
        Some(vec!["gateway".to_owned()])
    );
    // Every component ships its logs to logging, the gateway and identity included.
    let logging = callers("demo-logging").unwrap();
    for shipper in ["gateway", "identity", "notification", "profile", "orders"] {
        assert!(
            logging.contains(&shipper.to_owned()),
            "{shipper} cannot reach logging: {logging:?}"
        );
    }
    let identity = callers("demo-identity").unwrap();
    assert!(identity.contains(&"gateway".to_owned()) && identity.contains(&"orders".to_owned()));
    assert!(!identity.contains(&"nats".to_owned()));
    assert!(
        !callers("demo-nats")
            .unwrap()
            .contains(&"gateway".to_owned())
    );
}

#[test]
fn an_external_nats_replaces_the_managed_one() {
    let mut platform = fixture::platform();
    platform.spec.events.nats_url = Some("nats://nats.infra:4222".into());
    let children = children::desired(&platform, &fixture::materials());
    assert!(children.iter().all(|c| c.kind != Kind::StatefulSet));
    let env = children
        .iter()
        .find(|c| c.name == "demo-profile-env")
        .unwrap();
    assert_eq!(
        env.object["data"]["TESSERA_NATS_URL"],
        json!("nats://nats.infra:4222")
    );
}

/// The plain settings (env ConfigMap) and the Secret-backed env vars of a component.
fn env_of(component: &str) -> (Value, Vec<Value>) {
    let children = desired();
    let config = children
        .iter()
        .find(|c| c.name == format!("demo-{component}-env"))
        .unwrap();
    let deployment = children
        .iter()
        .find(|c| c.kind == Kind::Deployment && c.name == format!("demo-{component}"))
        .unwrap();
    let secret_env = deployment.object["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    (config.object["data"].clone(), secret_env)
}

fn secret_env_source(env: &[Value], name: &str) -> Option<(String, String)> {
    env.iter().find(|e| e["name"] == name).map(|e| {
        let source = &e["valueFrom"]["secretKeyRef"];
        (
            source["name"].as_str().unwrap().to_owned(),
            source["key"].as_str().unwrap().to_owned(),
        )
    })
}

#[test]
fn the_gateway_ships_its_logs_with_its_own_service_client() {
    let (env, secret_env) = env_of("gateway");
    assert_eq!(
        env["TESSERA_LOG_ENDPOINT"],
        json!("http://demo-logging:8080/v1/logs")
    );
    assert_eq!(
        env["TESSERA_TOKEN_URL"],
        json!("http://demo-identity:8080/oauth2/token")
    );
    assert_eq!(env["TESSERA_CLIENT_ID"], json!("gateway"));
    assert_eq!(
        secret_env_source(&secret_env, "TESSERA_CLIENT_SECRET"),
        Some(("demo-gateway-client".into(), "client_secret".into()))
    );
    assert!(
        !env.to_string().contains("tsc_"),
        "a secret leaked into a ConfigMap"
    );
    assert!(children::generated_secret_names(&fixture::platform()).contains("demo-gateway-client"));
}

#[test]
fn identity_ships_its_logs_with_a_token_it_signs_itself() {
    let (env, secret_env) = env_of("identity");
    assert_eq!(
        env["TESSERA_LOG_ENDPOINT"],
        json!("http://demo-logging:8080/v1/logs")
    );
    // Identity is the issuer: no client of its own, no token URL, no client secret.
    assert!(env["TESSERA_TOKEN_URL"].is_null() && env["TESSERA_CLIENT_ID"].is_null());
    assert_eq!(
        secret_env_source(&secret_env, "TESSERA_CLIENT_SECRET"),
        None
    );
    assert!(
        !children::generated_secret_names(&fixture::platform()).contains("demo-identity-client")
    );
    // Logging does not ship to itself.
    let (logging, _) = env_of("logging");
    assert!(logging["TESSERA_LOG_ENDPOINT"].is_null());
}

//! The operator's CRD (`crds/platform.yaml`) and the Helm chart (`charts/tessera`)
//! against a real API server: what needs no running operator. The CRD is accepted and
//! refuses invalid `Platform`s with its messages; the chart installs, gives its
//! ServiceAccount what the operator needs and nothing more, upgrades and uninstalls
//! cleanly. (The operator's reconcile tests belong in `operator/tests/control_plane`.)

mod crd;
mod install;
mod rbac;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const CRD_NAME: &str = "platforms.tessera.dev";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn platform_resource() -> ApiResource {
    ApiResource {
        group: "tessera.dev".into(),
        version: "v1alpha1".into(),
        api_version: "tessera.dev/v1alpha1".into(),
        kind: "Platform".into(),
        plural: "platforms".into(),
    }
}

fn platforms(client: Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client, namespace, &platform_resource())
}

fn yaml_file<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn run(command: &mut Command) -> String {
    let output = command.output().expect("the command starts");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?} failed: {text}");
    text
}

async fn wait_established(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let established = crds.get_opt(CRD_NAME).await.unwrap().is_some_and(|crd| {
            crd.status
                .and_then(|status| status.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        });
        if established {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{CRD_NAME} not Established"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn platform(name: &str, spec: &Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "tessera.dev/v1alpha1",
        "kind": "Platform",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .unwrap()
}

/// Creates `spec` and returns the API server's refusal message.
async fn refusal(api: &Api<DynamicObject>, name: &str, spec: Value) -> String {
    match api
        .create(&PostParams::default(), &platform(name, &spec))
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{name}: {status:?}");
            status.message
        }
        Ok(_) => panic!("{name}: the API server accepted an invalid Platform"),
        Err(other) => panic!("{name}: {other}"),
    }
}

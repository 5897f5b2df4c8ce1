//! What tests use of a running control plane: admin, ServiceAccount and impersonating
//! clients, `helm` and `kubectl` commands, fresh namespaces, component logs.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::PostParams;
use kube::{Api, Client, Config};
use secrecy::SecretString;
use serde_json::json;

use crate::boot::log_tail;
use crate::{Error, TestEnv};

impl TestEnv {
    /// A client with cluster-admin rights (group `system:masters`). A new client per
    /// call: a client's connections belong to the Tokio runtime that made them, and
    /// every `#[tokio::test]` has its own.
    pub fn client(&self) -> Result<Client, Error> {
        Ok(Client::try_from(self.config.clone())?)
    }

    /// The admin client configuration (server URL, CA, token).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A kubeconfig file for the admin user, for `helm`, `kubectl` or an operator
    /// process (`KUBECONFIG=...`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The folder with the control-plane binaries (and `helm`).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// `helm` from the bin dir, talking to this API server as admin.
    pub fn helm(&self) -> Command {
        let mut command = Command::new(self.bin_dir.join("helm"));
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", self.dir.path().join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.path().join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.path().join("helm/data"));
        command
    }

    /// `kubectl` from the bin dir, talking to this API server as admin.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(self.bin_dir.join("kubectl"));
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path());
        command
    }

    /// Whether kube-controller-manager runs (garbage collection, Deployment status).
    pub fn has_controller_manager(&self) -> bool {
        self.controller_manager
    }

    /// A client authenticated as the ServiceAccount `namespace/name` with a real token
    /// (`TokenRequest`, one hour): what a pod running as that account would have. The
    /// account must exist.
    pub async fn service_account_client(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Client, Error> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client()?, namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let token = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await?
            .status
            .map(|status| status.token)
            .unwrap_or_default();
        let mut config = self.config.clone();
        config.auth_info = kube::config::AuthInfo {
            token: Some(SecretString::from(token)),
            ..kube::config::AuthInfo::default()
        };
        namespace.clone_into(&mut config.default_namespace);
        Ok(Client::try_from(config)?)
    }

    /// A client that impersonates the ServiceAccount `namespace/name` (admin credentials
    /// plus `Impersonate-User`/`Impersonate-Group`): no token needed, the account need
    /// not exist; RBAC decides exactly as for the account.
    pub fn impersonating_service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Client, Error> {
        self.impersonating(
            &format!("system:serviceaccount:{namespace}:{name}"),
            &[
                "system:serviceaccounts",
                &format!("system:serviceaccounts:{namespace}"),
                "system:authenticated",
            ],
        )
    }

    /// A client that impersonates `user` in `groups`.
    pub fn impersonating(&self, user: &str, groups: &[&str]) -> Result<Client, Error> {
        let mut config = self.config.clone();
        config.auth_info.impersonate = Some(user.to_owned());
        config.auth_info.impersonate_groups =
            Some(groups.iter().map(|group| (*group).to_owned()).collect());
        Ok(Client::try_from(config)?)
    }

    /// Creates a namespace with a unique name starting with `prefix` and returns it.
    pub async fn fresh_namespace(&self, prefix: &str) -> Result<String, Error> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let namespaces: Api<Namespace> = Api::all(self.client()?);
        let namespace: Namespace = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": name },
        }))
        .expect("static namespace");
        namespaces
            .create(&PostParams::default(), &namespace)
            .await?;
        Ok(name)
    }

    /// The end of a component's log (`etcd`, `kube-apiserver`,
    /// `kube-controller-manager`), for failure messages.
    pub fn log_tail(&self, component: &str) -> String {
        self.components
            .iter()
            .find(|c| c.name == component)
            .map(|c| log_tail(&c.log))
            .unwrap_or_default()
    }
}

//! Starting the control plane: certificates, keys, etcd, kube-apiserver and
//! kube-controller-manager as child processes, and waiting until they serve.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Write as _;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::json;

use crate::{Component, Error, Options, TestEnv, io};

/// The bearer token of the `admin` user (group `system:masters`) in the static token
/// file: tests only, the API server listens on loopback and lives for one test binary.
const ADMIN_TOKEN: &str = "kube-testenv-admin";

impl TestEnv {
    pub(crate) async fn boot(&mut self, options: &Options, deadline: Instant) -> Result<(), Error> {
        let root = self.dir.path().to_path_buf();
        let [etcd_port, etcd_peer_port, api_port] = free_ports()?;

        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        self.spawn(
            "etcd",
            &[
                "--name=testenv".into(),
                format!("--data-dir={}", root.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=testenv={peer_url}"),
                // Test data is thrown away: no fsync, no metrics listener.
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ],
        )?;

        // The service-account token signer (TokenRequest) and verifier.
        let (private_pem, public_pem) = service_account_key()?;
        let sa_key = root.join("sa.key");
        let sa_pub = root.join("sa.pub");
        write(&sa_key, &private_pem)?;
        write(&sa_pub, &public_pem)?;
        let tokens = root.join("tokens.csv");
        write(
            &tokens,
            &format!("{ADMIN_TOKEN},admin,kube-testenv-admin,system:masters\n"),
        )?;
        let cert_dir = root.join("certs");
        self.spawn(
            "kube-apiserver",
            &[
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={api_port}"),
                // No serving cert given: the API server signs its own (a CA plus a cert
                // for 127.0.0.1 and localhost) into --cert-dir; clients trust that file.
                format!("--cert-dir={}", cert_dir.display()),
                format!("--token-auth-file={}", tokens.display()),
                "--authorization-mode=RBAC".into(),
                // The default admission plugins stay on (NamespaceLifecycle,
                // ServiceAccount, ValidatingAdmissionPolicy, ResourceQuota, ...): the
                // controller-manager creates the ServiceAccounts they expect.
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-account-key-file={}", sa_pub.display()),
                format!("--service-account-signing-key-file={}", sa_key.display()),
                // Endpoints may not hold a loopback address; nothing reaches the
                // `kubernetes` Service here anyway.
                "--endpoint-reconciler-type=none".into(),
                "--allow-privileged=true".into(),
                "--profiling=false".into(),
            ],
        )?;

        let ca = cert_dir.join("apiserver.crt");
        self.wait_for_file(&ca, deadline).await?;
        write(
            &self.kubeconfig,
            &kubeconfig_yaml(&format!("https://127.0.0.1:{api_port}"), &ca),
        )?;
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        self.config =
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;

        self.wait_until_ready(deadline).await?;

        if options.controller_manager {
            let kcm_port = free_port()?;
            let kubeconfig = self.kubeconfig.display().to_string();
            self.spawn(
                "kube-controller-manager",
                &[
                    format!("--kubeconfig={kubeconfig}"),
                    format!("--authentication-kubeconfig={kubeconfig}"),
                    format!("--authorization-kubeconfig={kubeconfig}"),
                    "--bind-address=127.0.0.1".into(),
                    format!("--secure-port={kcm_port}"),
                    format!("--cert-dir={}", root.join("kcm-certs").display()),
                    "--leader-elect=false".into(),
                    "--controllers=*".into(),
                    format!("--service-account-private-key-file={}", sa_key.display()),
                    format!("--root-ca-file={}", ca.display()),
                    "--profiling=false".into(),
                ],
            )?;
            self.wait_for_default_service_account(deadline).await?;
        }
        Ok(())
    }

    fn spawn(&mut self, name: &'static str, args: &[String]) -> Result<(), Error> {
        let log = self.dir.path().join(format!("{name}.log"));
        let out = File::create(&log).map_err(io(format!("creating {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(io(format!("opening {}", log.display())))?;
        let child = Command::new(self.bin_dir.join(name))
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io(format!("starting {name}")))?;
        if let Some((_, stdin)) = &mut self.janitor {
            // Best effort: if the janitor is gone, Drop still kills the process.
            let _ = writeln!(stdin, "{}", child.id());
        }
        self.components.push(Component { name, child, log });
        Ok(())
    }

    /// Fails with the component's log tail if one of the processes has exited.
    fn check_alive(&mut self) -> Result<(), Error> {
        for component in &mut self.components {
            if let Ok(Some(status)) = component.child.try_wait() {
                return Err(Error::Start(format!(
                    "{} exited ({status}) while the control plane was starting; end of its log:\n{}",
                    component.name,
                    log_tail(&component.log)
                )));
            }
        }
        Ok(())
    }

    fn timed_out(&self, what: &str) -> Error {
        let mut logs = String::new();
        for component in &self.components {
            let _ = write!(
                logs,
                "\n--- end of {} log ---\n{}",
                component.name,
                log_tail(&component.log)
            );
        }
        Error::Start(format!("timed out waiting for {what}{logs}"))
    }

    async fn wait_for_file(&mut self, path: &Path, deadline: Instant) -> Result<(), Error> {
        while !path.is_file() {
            self.check_alive()?;
            if Instant::now() > deadline {
                return Err(self.timed_out(&format!("{} to be written", path.display())));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    async fn wait_until_ready(&mut self, deadline: Instant) -> Result<(), Error> {
        let client = Client::try_from(self.config.clone())?;
        loop {
            let request = http::Request::get("/readyz")
                .body(Vec::new())
                .expect("static request");
            if client.request_text(request).await.is_ok() {
                return Ok(());
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                return Err(self.timed_out("kube-apiserver /readyz"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_for_default_service_account(&mut self, deadline: Instant) -> Result<(), Error> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client()?, "default");
        loop {
            if api.get_opt("default").await?.is_some() {
                return Ok(());
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                return Err(self
                    .timed_out("kube-controller-manager to create the `default` ServiceAccount"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A shell that, once its stdin reaches end of file without a `done` line (the test
/// process died), kills every pid it was told and removes `dir`. Ignores SIGINT so a
/// Ctrl-C of `cargo test` still cleans up.
pub(crate) fn spawn_janitor(dir: &Path) -> Result<(Child, ChildStdin), Error> {
    let script = r#"trap '' INT TERM HUP
pids=""
while read -r line; do
  [ "$line" = done ] && exit 0
  pids="$pids $line"
done
[ -n "$pids" ] && kill -KILL $pids 2>/dev/null
sleep 1
rm -rf -- "$1""#;
    let mut child = Command::new("bash")
        .args(["-c", script, "kube-testenv-janitor"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(io("starting the cleanup shell (bash)"))?;
    let stdin = child.stdin.take().expect("stdin is piped");
    Ok((child, stdin))
}

/// `N` distinct loopback ports free at the time of asking: all are held while choosing,
/// so the kernel cannot hand the same one out twice (etcd would then fail to start).
fn free_ports<const N: usize>() -> Result<[u16; N], Error> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io("finding a free port")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener
            .local_addr()
            .map_err(io("finding a free port"))?
            .port();
    }
    Ok(ports)
}

/// A loopback port free at the time of asking.
fn free_port() -> Result<u16, Error> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io("finding a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(io("finding a free port"))?
        .port())
}

fn write(path: &Path, contents: &str) -> Result<(), Error> {
    fs::write(path, contents).map_err(io(format!("writing {}", path.display())))
}

/// The last 40 lines of a log file.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A P-256 key pair for service-account tokens: PKCS#8 private key and SPKI public
/// key, both PEM.
fn service_account_key() -> Result<(String, String), Error> {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .map_err(|_| Error::KeyGeneration)?;
    let private = pair.to_pkcs8v1().map_err(|_| Error::KeyGeneration)?;
    let public = pair
        .public_key()
        .as_der()
        .map_err(|_| Error::KeyGeneration)?;
    Ok((
        pem::encode(&pem::Pem::new("PRIVATE KEY", private.as_ref().to_vec())),
        pem::encode(&pem::Pem::new("PUBLIC KEY", public.as_ref().to_vec())),
    ))
}

fn kubeconfig_yaml(server: &str, ca: &Path) -> String {
    // JSON is YAML: no YAML writer needed.
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "testenv", "cluster": {
            "server": server,
            "certificate-authority": ca,
        }}],
        "users": [{ "name": "admin", "user": { "token": ADMIN_TOKEN } }],
        "contexts": [{ "name": "testenv", "context": {
            "cluster": "testenv", "user": "admin", "namespace": "default",
        }}],
        "current-context": "testenv",
    })
    .to_string()
}

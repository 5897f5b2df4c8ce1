//! The command-line settings every service that uses the bus shares.

use secrecy::{ExposeSecret, SecretString};

use crate::jetstream::NatsConfig;

/// `--nats-url` / `TESSERA_NATS_URL`: flatten into a service's clap config.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server with JetStream, e.g. `nats://user:password@nats:4222`. Events are
    /// published to (and consumed from) its `TESSERA` stream; without it, published
    /// events wait in the service's outbox table.
    #[arg(long, env = "TESSERA_NATS_URL", value_name = "URL", hide_env_values = true,
          value_parser = parse_nats_url)]
    pub nats_url: Option<SecretString>,

    /// The JetStream stream holding the platform's events.
    #[arg(long, env = "TESSERA_NATS_STREAM", default_value = "TESSERA")]
    pub nats_stream: String,

    /// First subject token of the platform's events (`<root>.events.…`); change it, with
    /// the stream, only to run several platforms (or tests) on one NATS server.
    #[arg(long, env = "TESSERA_NATS_SUBJECT_ROOT", default_value = "tessera")]
    pub nats_subject_root: String,
}

impl NatsArgs {
    /// The bus configuration for `service`, when a URL is set.
    pub fn config(&self, service: &str) -> Option<NatsConfig> {
        self.nats_url
            .as_ref()
            .map(|url| nats_config(url, &self.nats_stream, &self.nats_subject_root, service))
    }
}

/// `--nats-url` / `TESSERA_NATS_URL` for a service that cannot run without the bus
/// (profile, notification): flatten into its clap config.
#[derive(Debug, Clone, clap::Args)]
pub struct JetStreamArgs {
    /// NATS server with JetStream, e.g. `nats://user:password@nats:4222`. Published
    /// events wait in the service's outbox while it is unreachable.
    #[arg(long, env = "TESSERA_NATS_URL", value_name = "URL", hide_env_values = true,
          value_parser = parse_nats_url)]
    pub nats_url: SecretString,

    /// The JetStream stream holding the platform's events.
    #[arg(long, env = "TESSERA_NATS_STREAM", default_value = "TESSERA")]
    pub nats_stream: String,

    /// First subject token of the platform's events (`<root>.events.…`); change it, with
    /// the stream, only to run several platforms (or tests) on one NATS server.
    #[arg(long, env = "TESSERA_NATS_SUBJECT_ROOT", default_value = "tessera")]
    pub nats_subject_root: String,
}

impl JetStreamArgs {
    /// The bus configuration for `service`.
    pub fn config(&self, service: &str) -> NatsConfig {
        nats_config(
            &self.nats_url,
            &self.nats_stream,
            &self.nats_subject_root,
            service,
        )
    }
}

fn nats_config(url: &SecretString, stream: &str, subject_root: &str, service: &str) -> NatsConfig {
    let mut config = NatsConfig::new(url.expose_secret(), service);
    stream.clone_into(&mut config.stream);
    subject_root.clone_into(&mut config.subject_root);
    config
}

/// Accepts what the NATS client accepts (`nats://`, `tls://`, `host:port`, several
/// comma-separated), refusing the rest at start.
fn parse_nats_url(value: &str) -> Result<SecretString, String> {
    let all_valid = value
        .split(',')
        .all(|server| server.trim().parse::<async_nats::ServerAddr>().is_ok());
    if value.trim().is_empty() || !all_valid {
        return Err("expected nats://host:4222 (or tls://, several comma-separated)".to_owned());
    }
    Ok(SecretString::from(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_urls_are_checked_at_start() {
        assert!(parse_nats_url("nats://127.0.0.1:4222").is_ok());
        assert!(parse_nats_url("nats://u:p@a:4222,nats://b:4222").is_ok());
        assert!(parse_nats_url("").is_err());
        assert!(parse_nats_url("http://x y").is_err());
    }
}

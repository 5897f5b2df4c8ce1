//! The env the operator gives the gateway and identity, read by their own flag parsers:
//! every variable names a flag that exists (a typo fails here, not in a cluster), and
//! the configuration it yields is the one intended.

use std::collections::BTreeMap;

use clap::{ArgAction, CommandFactory, Parser};
use tessera_operator::children::{self, Kind};

use crate::fixture;

/// Plain settings and Secret-backed env vars (with stand-in values) of a component's
/// Deployment, as its container sees them.
fn container_env(component: &str) -> BTreeMap<String, String> {
    let children = children::desired(&fixture::platform(), &fixture::materials());
    let config = children
        .iter()
        .find(|c| c.name == format!("demo-{component}-env"))
        .unwrap();
    let mut env: BTreeMap<String, String> =
        serde_json::from_value(config.object["data"].clone()).unwrap();
    let deployment = children
        .iter()
        .find(|c| c.kind == Kind::Deployment && c.name == format!("demo-{component}"))
        .unwrap();
    let from_secrets = deployment.object["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for var in from_secrets {
        let name = var["name"].as_str().unwrap().to_owned();
        let value = match name.as_str() {
            // 32 bytes, base64, as the generated pepper Secret holds.
            "TESSERA_CLIENT_SECRET_PEPPER" => "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=".into(),
            "TESSERA_DATABASE_URL" => "postgres://identity@db/identity".into(),
            _ => "tsc_stand-in".into(),
        };
        env.insert(name, value);
    }
    env
}

/// The command line equivalent to `env` for `command`: each variable becomes the flag
/// that falls back to it. Panics naming a variable no flag reads, unless it is listed in
/// `unread`.
fn args_for(
    mut command: clap::Command,
    env: &BTreeMap<String, String>,
    unread: &[&str],
) -> Vec<String> {
    command.build();
    let mut args = vec![command.get_name().to_owned()];
    for (name, value) in env {
        if unread.contains(&name.as_str()) {
            continue;
        }
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_env().is_some_and(|e| e == name.as_str()))
            .unwrap_or_else(|| panic!("{}: no flag reads {name}", command.get_name()));
        let long = arg.get_long().expect("env flags are long flags");
        match arg.get_action() {
            ArgAction::SetTrue if value == "true" => args.push(format!("--{long}")),
            ArgAction::SetTrue => assert_eq!(value, "false", "{name}"),
            _ => args.push(format!("--{long}={value}")),
        }
    }
    args
}

#[test]
fn the_gateway_reads_every_setting_and_ships_its_logs_with_its_client() {
    use secrecy::ExposeSecret as _;
    let env = container_env("gateway");
    let args = args_for(tessera_gateway::config::Config::command(), &env, &[]);
    let config = tessera_gateway::config::Config::try_parse_from(&args)
        .unwrap_or_else(|error| panic!("the gateway refuses {args:?}: {error}"));
    assert_eq!(
        config.log_shipping.log_endpoint.as_deref(),
        Some("http://demo-logging:8080/v1/logs")
    );
    assert_eq!(
        config.token_url.as_deref(),
        Some("http://demo-identity:8080/oauth2/token")
    );
    assert_eq!(config.client_id, "gateway");
    assert_eq!(
        config
            .client_secret
            .as_ref()
            .map(|s| s.expose_secret().to_owned()),
        Some("tsc_stand-in".to_owned())
    );
    // The token source the gateway builds from them (a missing half is a start error).
    assert!(
        tessera_gateway::log_token_source(&config)
            .expect("a complete client")
            .is_some()
    );
}

#[test]
fn identity_reads_every_setting_and_ships_its_logs() {
    let env = container_env("identity");
    let args = args_for(tessera_identity::config::Cli::command(), &env, &[]);
    let cli = tessera_identity::config::Cli::try_parse_from(&args)
        .unwrap_or_else(|error| panic!("identity refuses {args:?}: {error}"));
    assert_eq!(
        cli.config.log_shipping.log_endpoint.as_deref(),
        Some("http://demo-logging:8080/v1/logs")
    );
    assert!(cli.command.is_none(), "the service runs");
}

/// Parses `component`'s env with `C`, the service's own command line; `unread` are
/// variables the operator sets that this service does not read (yet).
fn parse<C: Parser + CommandFactory>(component: &str, unread: &[&str]) -> C {
    let args = args_for(C::command(), &container_env(component), unread);
    C::try_parse_from(&args).unwrap_or_else(|error| panic!("{component} refuses {args:?}: {error}"))
}

#[test]
fn logging_notification_and_profile_read_every_setting() {
    // Logging calls no other service today: it has a client (generated once, in the
    // registry, so a logging that calls out later needs no migration) and is given its
    // credentials like every service, but does not read them. Nothing else is unread.
    let logging: tessera_logging::config::Config = parse(
        "logging",
        &[
            "TESSERA_CLIENT_ID",
            "TESSERA_CLIENT_SECRET",
            "TESSERA_TOKEN_URL",
        ],
    );
    let notification: tessera_notification::config::Config = parse("notification", &[]);
    let profile: tessera_profile::config::Config = parse("profile", &[]);
    // Logging has no shipping flags at all (it writes to stdout); the others ship to it.
    drop(logging);
    for endpoint in [
        &notification.log_shipping.log_endpoint,
        &profile.log_shipping.log_endpoint,
    ] {
        assert_eq!(
            endpoint.as_deref(),
            Some("http://demo-logging:8080/v1/logs")
        );
    }
}

//! An OpenTelemetry SDK's own OTLP/HTTP exporter (the official Rust one, protobuf over
//! HTTP with a bearer header) ships records that are then found through the query API.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry_otlp::{LogExporter, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;

use crate::support::{Backend, TestLogging};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_from_the_official_otlp_http_exporter_are_found_by_the_query_api() {
    let app = TestLogging::on(Backend::Sqlite).await;
    let endpoint = app.url("/v1/logs");
    let token = app.service_token.clone();
    // The blocking exporter runs on the SDK's own batch thread, as applications use it.
    tokio::task::spawn_blocking(move || {
        let exporter = LogExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .with_headers(HashMap::from([(
                "Authorization".to_owned(),
                format!("Bearer {token}"),
            )]))
            .build()
            .expect("exporter");
        let provider = SdkLoggerProvider::builder()
            .with_resource(Resource::builder().with_service_name("sdk-app").build())
            .with_batch_exporter(exporter)
            .build();
        let logger = provider.logger("checkout");
        for (body, severity) in [
            ("order 17 placed", Severity::Info),
            ("payment retried", Severity::Warn),
        ] {
            let mut record = logger.create_log_record();
            record.set_body(AnyValue::from(body.to_owned()));
            record.set_severity_number(severity);
            record.set_severity_text(if severity == Severity::Warn {
                "WARN"
            } else {
                "INFO"
            });
            record.add_attribute("order_id", 17);
            logger.emit(record);
        }
        provider.force_flush().expect("flush");
        provider.shutdown().expect("shutdown");
    })
    .await
    .expect("exporter thread");

    let page = testkit::eventually(Duration::from_secs(10), "the SDK's records", || async {
        let page = app.records("service=sdk-app").await;
        (page["records"].as_array().map(Vec::len) == Some(2)).then_some(page)
    })
    .await;
    let records = page["records"].as_array().expect("records");
    let warn = records
        .iter()
        .find(|r| r["body"] == "payment retried")
        .expect("found");
    assert_eq!(warn["severity_number"], 13);
    assert_eq!(warn["severity_text"], "WARN");
    assert_eq!(warn["attributes"]["order_id"], 17);
    assert_eq!(
        app.bodies("service=sdk-app&min_severity=warn").await,
        ["payment retried"]
    );
}

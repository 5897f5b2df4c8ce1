//! Waiting for the asynchronous part of the platform to be quiet, so that "exactly one"
//! can be asserted without guessing how long a redelivery could take.

use std::time::Duration;

use tessera_events::async_nats;

use crate::platform::Platform;
use crate::service::Service;

/// Whether notification's durable consumer has nothing left to deliver or to be
/// acknowledged: every `user.created` has been handled (and no redelivery is due).
async fn notification_consumer_idle(nats: &async_nats::Client) -> bool {
    let js = async_nats::jetstream::new(nats.clone());
    let Ok(stream) = js.get_stream("TESSERA").await else {
        return false;
    };
    let Ok(mut consumer) = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>("notification")
        .await
    else {
        return false;
    };
    consumer
        .info()
        .await
        .is_ok_and(|info| info.num_pending == 0 && info.num_ack_pending == 0)
}

impl Platform {
    /// Waits until notification is quiet: its consumer has nothing pending or
    /// unacknowledged, and the emails it counts as delivered equal the mails the SMTP
    /// server received.
    ///
    /// # Panics
    /// When that does not happen `within`, or without `Options::notification`.
    pub async fn wait_notification_settled(&self, within: Duration) {
        let nats = async_nats::connect(self.nats_url())
            .await
            .expect("connect to the platform's NATS");
        let smtp = self.smtp();
        testkit::eventually(within, "notification to settle", || async {
            let delivered = self
                .metric(
                    Service::Notification,
                    "tessera_notification_attempts_total",
                    &[("channel", "email"), ("outcome", "delivered")],
                )
                .await?;
            #[allow(clippy::cast_precision_loss)] // a few dozen mails
            let mails = smtp.messages().len() as f64;
            (notification_consumer_idle(&nats).await && (delivered - mails).abs() < 0.5)
                .then_some(())
        })
        .await;
    }
}

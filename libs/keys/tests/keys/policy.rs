//! Policy validation.

use std::time::Duration;

use tessera_keys::{KeyPolicy, PolicyError};

use crate::{MINUTE, hourly_policy};

#[test]
fn every_zero_duration_is_refused_naming_its_field() {
    for (field, policy) in [
        (
            "rotation_interval",
            KeyPolicy {
                rotation_interval: Duration::ZERO,
                ..hourly_policy()
            },
        ),
        (
            "pre_publication",
            KeyPolicy {
                pre_publication: Duration::ZERO,
                ..hourly_policy()
            },
        ),
        (
            "retirement",
            KeyPolicy {
                retirement: Duration::ZERO,
                ..hourly_policy()
            },
        ),
    ] {
        let err = policy.validate().unwrap_err();
        assert_eq!(err, PolicyError::Zero { field });
        assert_eq!(
            err.to_string(),
            format!("key policy: {field} must be greater than zero")
        );
    }
}

#[test]
fn pre_publication_must_be_shorter_than_the_interval() {
    let equal = KeyPolicy {
        pre_publication: 60 * MINUTE,
        ..hourly_policy()
    };
    let err = equal.validate().unwrap_err();
    assert_eq!(
        err.to_string(),
        "key policy: pre_publication (3600s) must be shorter than rotation_interval (3600s)"
    );
    let longer = KeyPolicy {
        pre_publication: 61 * MINUTE,
        ..hourly_policy()
    };
    assert!(matches!(
        longer.validate(),
        Err(PolicyError::PrePublicationTooLong { .. })
    ));
    let shorter = KeyPolicy {
        pre_publication: 59 * MINUTE,
        ..hourly_policy()
    };
    assert_eq!(shorter.validate(), Ok(()));
}

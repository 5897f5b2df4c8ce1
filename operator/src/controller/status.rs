//! Conditions and the status patch.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::crd::PlatformStatus;

/// A condition to set: type, whether it holds, reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cond {
    pub(crate) type_: String,
    pub(crate) status: bool,
    pub(crate) reason: String,
    pub(crate) message: String,
}

impl Cond {
    pub(crate) fn new(type_: &str, status: bool, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_: type_.to_owned(),
            status,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

/// Full conditions from `wanted`, keeping the transition time of those whose status did not
/// change, and keeping previous conditions not mentioned in `wanted`.
pub(crate) fn merge(
    previous: Option<&PlatformStatus>,
    wanted: &[Cond],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let old: Vec<Condition> = previous.map(|s| s.conditions.clone()).unwrap_or_default();
    let mut out: Vec<Condition> = Vec::new();
    for cond in wanted {
        let status = if cond.status { "True" } else { "False" };
        let last_transition_time = old
            .iter()
            .find(|c| c.type_ == cond.type_ && c.status == status)
            .map_or(Time(now), |c| c.last_transition_time.clone());
        out.push(Condition {
            type_: cond.type_.clone(),
            status: status.to_owned(),
            reason: cond.reason.clone(),
            message: cond.message.clone(),
            observed_generation: generation,
            last_transition_time,
        });
    }
    for c in old {
        if !out.iter().any(|o| o.type_ == c.type_) {
            out.push(c);
        }
    }
    out
}

//! The rotate function's Lambda handler: an EventBridge schedule or an operator's command in,
//! a rotation report out (and an EMF metrics line). The binary (`main.rs`) only wires it up.
//!
//! The transport lives here, not in the domain: recognizing the invocation event, the
//! CloudWatch metrics record, and how errors become Lambda's `errorType`/`errorMessage`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kms_jwt::ports::{KeyringStore, RotateKms};
use kms_jwt::rotate::{Command, RotateError, RotationReport, Rotator, DEFAULT_RUN_BUDGET};
use lambda_runtime::Diagnostic;
use serde_json::Value;

/// Kept back from the Lambda deadline to log the report and answer.
const ANSWER_MARGIN: Duration = Duration::from_secs(1);

/// Deadlines before this (2001-09-09 in Unix milliseconds) are not timestamps: `cargo lambda
/// watch` sends the function timeout itself (600000) where AWS sends the instant it ends.
const PLAUSIBLE_DEADLINE_MS: u64 = 1_000_000_000_000;

/// An operator's command, as sent in the invocation payload.
#[derive(serde::Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
enum Action {
    Reconcile,
    Rotate {
        #[serde(default)]
        force: bool,
    },
    Revoke {
        kid: String,
    },
    Status,
    /// Multi-region fail-over: this region becomes the keyring's home.
    #[serde(rename = "take-over")]
    TakeOver,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unrecognized rotate event: {0}. Send an EventBridge scheduled event, {{}}, or {{\"action\": \"reconcile\" | \"rotate\" | \"revoke\" | \"status\" | \"take-over\"}}")]
pub struct UnrecognizedEvent(pub String);

impl From<UnrecognizedEvent> for Diagnostic {
    fn from(e: UnrecognizedEvent) -> Self {
        Diagnostic { error_type: "UnrecognizedEvent".into(), error_message: e.to_string() }
    }
}

/// A run that failed, as Lambda reports it: `errorType` is [`RotateError::code`]. A newtype
/// because neither `RotateError` nor `Diagnostic` belongs to this crate (orphan rule).
#[derive(Debug)]
pub struct RunFailed(pub RotateError);

impl From<RunFailed> for Diagnostic {
    fn from(RunFailed(e): RunFailed) -> Self {
        Diagnostic { error_type: e.code().into(), error_message: e.to_string() }
    }
}

/// Read an invocation payload: an EventBridge rule or Scheduler event (or `{}`) means
/// "reconcile"; an object with `action` is an explicit command.
pub fn command_from_event(event: &Value) -> Result<Command, UnrecognizedEvent> {
    let Some(object) = event.as_object() else {
        return Err(UnrecognizedEvent("the payload is not a JSON object".into()));
    };
    if object.contains_key("action") {
        return match serde_json::from_value::<Action>(event.clone()) {
            Ok(Action::Reconcile) => Ok(Command::Reconcile),
            Ok(Action::Rotate { force }) => Ok(Command::Rotate { force }),
            Ok(Action::Revoke { kid }) => Ok(Command::Revoke { kid }),
            Ok(Action::Status) => Ok(Command::Status),
            Ok(Action::TakeOver) => Ok(Command::TakeOver),
            Err(e) => Err(UnrecognizedEvent(e.to_string())),
        };
    }
    let scheduled = object.is_empty()
        || object.get("detail-type").and_then(|v| v.as_str()) == Some("Scheduled Event")
        || matches!(object.get("source").and_then(|v| v.as_str()), Some("aws.events" | "aws.scheduler"));
    if scheduled {
        Ok(Command::Reconcile)
    } else {
        Err(UnrecognizedEvent("neither a scheduled event nor an action".into()))
    }
}

/// One CloudWatch Embedded Metric Format record, so an alarm can watch for a stalled
/// rotation (current key older than the rotation period plus a margin), a stuck
/// retirement queue, lifecycle events lost, or a CDN invalidation still owed after a revocation.
pub fn emf(report: &RotationReport, keyring: &str, timestamp_ms: i64) -> String {
    serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": "kms-jwt",
                "Dimensions": [["Keyring"]],
                "Metrics": [
                    {"Name": "CurrentKeyAgeSeconds", "Unit": "Seconds"},
                    {"Name": "PublishedKeys", "Unit": "Count"},
                    {"Name": "RetiringKeys", "Unit": "Count"},
                    {"Name": "KeysCreated", "Unit": "Count"},
                    {"Name": "KeysRetired", "Unit": "Count"},
                    {"Name": "RotationHeld", "Unit": "Count"},
                    {"Name": "EventsUnpublished", "Unit": "Count"},
                    {"Name": "EdgeInvalidationsOwed", "Unit": "Count"},
                ],
            }],
        },
        "Keyring": keyring,
        "CurrentKeyAgeSeconds": report.current_key_age_seconds.unwrap_or(0),
        "PublishedKeys": report.keys.len(),
        "RetiringKeys": report.retiring.len(),
        "KeysCreated": report.created.len(),
        "KeysRetired": report.retired.len() + report.orphans_deleted.len(),
        "RotationHeld": usize::from(report.rotation_held.is_some()),
        "EventsUnpublished": report.events_unpublished,
        "EdgeInvalidationsOwed": report.edge_invalidations_owed.len(),
    })
    .to_string()
}

/// The run's deadline on tokio's clock, from the invocation's deadline (Unix milliseconds).
/// A deadline that is no timestamp gets the default budget, which fits the deployed timeout.
pub fn run_deadline(lambda_deadline_ms: u64, now: SystemTime) -> tokio::time::Instant {
    if lambda_deadline_ms < PLAUSIBLE_DEADLINE_MS {
        return tokio::time::Instant::now() + DEFAULT_RUN_BUDGET;
    }
    let now_ms = now.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let remaining = u128::from(lambda_deadline_ms).saturating_sub(now_ms);
    let remaining = Duration::from_millis(u64::try_from(remaining).unwrap_or(u64::MAX));
    tokio::time::Instant::now() + remaining.saturating_sub(ANSWER_MARGIN)
}

pub async fn handle<K: RotateKms, S: KeyringStore>(
    rotator: &Rotator<K, S>,
    payload: Value,
    lambda_deadline_ms: u64,
) -> Result<RotationReport, Diagnostic> {
    let command = command_from_event(&payload)?;
    let now = kms_jwt::unix_now();
    let deadline = run_deadline(lambda_deadline_ms, SystemTime::now());
    let budget_ms = deadline.saturating_duration_since(tokio::time::Instant::now()).as_millis();
    tracing::info!(command = ?command, lambda_deadline_ms, budget_ms, "rotate starting");
    match rotator.run_until(command.clone(), now, deadline).await {
        Ok(report) => {
            // CloudWatch Embedded Metric Format: a raw JSON line on stdout becomes metrics.
            println!("{}", emf(&report, rotator.keyring_name(), now.saturating_mul(1_000)));
            let summary = serde_json::to_string(&report).unwrap_or_default();
            tracing::info!(command = ?command, changed = report.changed, summary = %summary, "rotate finished");
            Ok(report)
        }
        Err(e) => {
            tracing::error!(command = ?command, error = %e, code = e.code(), "rotate failed");
            Err(RunFailed(e).into())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_run_ends_a_second_before_lambda_stops_it() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let lambda_deadline_ms = 1_800_000_000_000 + 30_000;
        let start = tokio::time::Instant::now();
        assert_eq!(run_deadline(lambda_deadline_ms, now) - start, Duration::from_secs(29));
        // A deadline already past (or a clock ahead of it) leaves no time, never a panic.
        assert_eq!(run_deadline(1_800_000_000_000 - 5_000, now), start);
        // `cargo lambda watch` sends the timeout (600 s) instead of an instant.
        assert_eq!(run_deadline(600_000, now) - start, DEFAULT_RUN_BUDGET);
    }

    #[test]
    fn events_map_to_commands() {
        use serde_json::json;
        let scheduled =
            json!({"version":"0","id":"x","detail-type":"Scheduled Event","source":"aws.events","detail":{}});
        assert_eq!(command_from_event(&scheduled), Ok(Command::Reconcile));
        assert_eq!(command_from_event(&json!({})), Ok(Command::Reconcile));
        assert_eq!(command_from_event(&json!({"action":"rotate"})), Ok(Command::Rotate { force: false }));
        assert_eq!(
            command_from_event(&json!({"action":"rotate","force":true})),
            Ok(Command::Rotate { force: true })
        );
        assert_eq!(command_from_event(&json!({"action":"status"})), Ok(Command::Status));
        assert_eq!(command_from_event(&json!({"action":"take-over"})), Ok(Command::TakeOver));
        assert_eq!(
            command_from_event(&json!({"action":"revoke","kid":"abc"})),
            Ok(Command::Revoke { kid: "abc".into() })
        );
        for bad in [
            json!({"action":"explode"}),
            json!({"action":"rotate","force":"yes"}),
            json!({"action":"revoke"}),
            json!([1]),
            json!({"hello":1}),
            json!(null),
        ] {
            assert!(command_from_event(&bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn emf_record_names_its_metrics() {
        let report = RotationReport::default();
        let emf: serde_json::Value = serde_json::from_str(&emf(&report, "kr", 1_000)).unwrap();
        assert_eq!(emf["_aws"]["CloudWatchMetrics"][0]["Namespace"], "kms-jwt");
        assert_eq!(emf["Keyring"], "kr");
        let names: Vec<&str> = emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        for name in names {
            assert!(emf.get(name).is_some(), "metric {name} has a value");
        }
    }

    #[test]
    fn errors_become_diagnostics_named_by_their_code() {
        let refused = Diagnostic::from(UnrecognizedEvent("the payload is not a JSON object".into()));
        assert_eq!(refused.error_type, "UnrecognizedEvent");
        assert!(
            refused.error_message.contains("the payload is not a JSON object"),
            "{}",
            refused.error_message
        );
        for e in [
            RotateError::UnknownKid("abc".into()),
            RotateError::TooManyConflicts,
            RotateError::OutOfTime("creating a key"),
        ] {
            let (code, message) = (e.code(), e.to_string());
            let diagnostic = Diagnostic::from(RunFailed(e));
            assert_eq!(diagnostic.error_type, code);
            assert_eq!(diagnostic.error_message, message);
        }
    }

    #[tokio::test]
    async fn the_handler_answers_failures_with_their_code() {
        use kms_jwt::memory::{MemoryKms, MemoryStore};
        use kms_jwt::rotate::RotationPolicy;
        use kms_jwt::SigningAlg;
        let rotator = Rotator::new(
            MemoryKms::new(),
            MemoryStore::new(),
            RotationPolicy::for_tests(SigningAlg::ES256),
            kms_jwt::test_stacks::single_region_keyring(),
        );
        let refused = handle(&rotator, serde_json::json!({"action": "explode"}), 0).await.unwrap_err();
        assert_eq!(refused.error_type, "UnrecognizedEvent");
        let unknown =
            handle(&rotator, serde_json::json!({"action": "revoke", "kid": "abc"}), 0).await.unwrap_err();
        assert_eq!(unknown.error_type, "UnknownKid");
        assert_eq!(unknown.error_message, RotateError::UnknownKid("abc".into()).to_string());
        let report = handle(&rotator, serde_json::json!({}), 0).await.unwrap();
        assert!(report.changed, "a scheduled event reconciles: {report:?}");
    }
}

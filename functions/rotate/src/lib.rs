//! The rotate function's Lambda handler: an EventBridge schedule or an operator's command in,
//! a rotation report out (and an EMF metrics line). The binary (`main.rs`) only wires it up.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kms_jwt::ports::{KeyAdmin, KeyringStore};
use kms_jwt::rotate::{Command, RotationReport, Rotator, DEFAULT_RUN_BUDGET};
use lambda_runtime::Diagnostic;
use serde_json::Value;

/// Kept back from the Lambda deadline to log the report and answer.
const ANSWER_MARGIN: Duration = Duration::from_secs(1);

/// Deadlines before this (2001-09-09 in Unix milliseconds) are not timestamps: `cargo lambda
/// watch` sends the function timeout itself (600000) where AWS sends the instant it ends.
const PLAUSIBLE_DEADLINE_MS: u64 = 1_000_000_000_000;

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

pub async fn handle<K: KeyAdmin, S: KeyringStore>(
    rotator: &Rotator<K, S>,
    payload: Value,
    lambda_deadline_ms: u64,
) -> Result<RotationReport, Diagnostic> {
    let command = Command::from_event(&payload)
        .map_err(|e| Diagnostic { error_type: "UnrecognizedEvent".into(), error_message: e.to_string() })?;
    let now = kms_jwt::unix_now();
    let deadline = run_deadline(lambda_deadline_ms, SystemTime::now());
    let budget_ms = deadline.saturating_duration_since(tokio::time::Instant::now()).as_millis();
    tracing::info!(command = ?command, lambda_deadline_ms, budget_ms, "rotate starting");
    match rotator.run_until(command.clone(), now, deadline).await {
        Ok(report) => {
            // CloudWatch Embedded Metric Format: a raw JSON line on stdout becomes metrics.
            println!("{}", report.emf(rotator.keyring_name(), now.saturating_mul(1_000)));
            let summary = serde_json::to_string(&report).unwrap_or_default();
            tracing::info!(command = ?command, changed = report.changed, summary = %summary, "rotate finished");
            Ok(report)
        }
        Err(e) => {
            tracing::error!(command = ?command, error = %e, kind = e.kind(), "rotate failed");
            Err(Diagnostic { error_type: e.kind().into(), error_message: e.to_string() })
        }
    }
}

#[cfg(test)]
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
}

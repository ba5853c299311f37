//! The rotate function's Lambda handler: an EventBridge schedule or an operator's command in,
//! a rotation report out (and an EMF metrics line). The binary (`main.rs`) only wires it up.

use kms_jwt::ports::{KeyAdmin, KeyringStore};
use kms_jwt::rotate::{Command, RotationReport, Rotator};
use lambda_runtime::Diagnostic;
use serde_json::Value;

pub async fn handle<K: KeyAdmin, S: KeyringStore>(
    rotator: &Rotator<K, S>,
    payload: Value,
) -> Result<RotationReport, Diagnostic> {
    let command = Command::from_event(&payload)
        .map_err(|e| Diagnostic { error_type: "UnrecognizedEvent".into(), error_message: e.to_string() })?;
    let now = kms_jwt::unix_now();
    match rotator.run(command.clone(), now).await {
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

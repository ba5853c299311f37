//! rotate: runs on an EventBridge schedule (or on demand) and reconciles the keyring.

use kms_jwt::aws::{load_sdk_config, KmsAdapter, SecretsManagerStore};
use kms_jwt::config::RotateConfig;
use kms_jwt::rotate::{Command, RotationPolicy, RotationReport, Rotator};
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;

type Service = Rotator<KmsAdapter, SecretsManagerStore>;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = RotateConfig::from_env()?;
    let sdk = load_sdk_config().await;
    let rotator: &'static Service = Box::leak(Box::new(Rotator::new(
        KmsAdapter::new(&sdk),
        SecretsManagerStore::new(&sdk, config.keyring_secret_id.clone(), config.keyring_kms_key_id.clone()),
        RotationPolicy::from(&config),
        config.keyring_secret_id.clone(),
    )));
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| handle(rotator, event.payload))).await
}

async fn handle(rotator: &Service, payload: Value) -> Result<RotationReport, Diagnostic> {
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

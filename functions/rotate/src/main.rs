//! rotate: runs on an EventBridge schedule (or on demand) and reconciles the keyring.

use kms_jwt::aws::wiring;
use kms_jwt::config::RotateConfig;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = RotateConfig::from_env()?;
    let rotator = wiring::rotator(&config).await?;
    // A plain borrow: `lambda_runtime::run` handles one invocation at a time inside this
    // future and asks no 'static of the handler (`run_concurrent` would: Clone + Send + 'static).
    let rotator = &rotator;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        kms_jwt_rotate::handle(rotator, event.payload, event.context.deadline)
    }))
    .await
}

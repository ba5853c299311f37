//! rotate: runs on an EventBridge schedule (or on demand) and reconciles the keyring.

use kms_jwt::aws::{load_sdk_config, KmsAdapter, SecretsManagerStore};
use kms_jwt::config::RotateConfig;
use kms_jwt::rotate::{RotationPolicy, Rotator};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = RotateConfig::from_env()?;
    let sdk = load_sdk_config().await;
    let rotator: &'static Rotator<KmsAdapter, SecretsManagerStore> = Box::leak(Box::new(Rotator::new(
        KmsAdapter::new(&sdk),
        SecretsManagerStore::new(&sdk, config.keyring_secret_id.clone(), config.keyring_kms_key_id.clone()),
        RotationPolicy::from(&config),
        config.keyring_secret_id.clone(),
    )));
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        kms_jwt_rotate::handle(rotator, event.payload)
    }))
    .await
}

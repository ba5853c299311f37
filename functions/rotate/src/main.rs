//! rotate: runs on an EventBridge schedule (or on demand) and reconciles the keyring.

use aws_sdk_resourcegroupstagging as tagging;
use kms_jwt::aws::{load_sdk_config, KeyDiscovery, KmsAdapter, SecretsManagerStore};
use kms_jwt::config::{KeyDiscoveryMode, RotateConfig};
use kms_jwt::rotate::Rotator;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = RotateConfig::from_env()?;
    let key_access =
        config.key_access.clone().ok_or("KEY_ADMIN_ROLE_ARN and KEY_USER_ROLE_ARNS are required")?;
    let sdk = load_sdk_config(config.aws_timeouts).await;
    let discovery = match config.key_discovery {
        KeyDiscoveryMode::TaggingApi => KeyDiscovery::TaggingApi(tagging::Client::new(&sdk)),
        KeyDiscoveryMode::ListKeys => KeyDiscovery::ListKeys,
    };
    let kms = KmsAdapter::new(&sdk).with_key_access(key_access).with_discovery(discovery);
    let store =
        SecretsManagerStore::new(&sdk, config.keyring_secret_id.clone(), config.keyring_kms_key_id.clone());
    let rotator = Rotator::new(kms, store, config.rotation_policy(), config.keyring_secret_id.clone())
        .with_step_reserve(config.aws_timeouts.total);
    // A plain borrow: `lambda_runtime::run` handles one invocation at a time inside this
    // future and asks no 'static of the handler (`run_concurrent` would: Clone + Send + 'static).
    let rotator = &rotator;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        kms_jwt_rotate::handle(rotator, event.payload, event.context.deadline)
    }))
    .await
}

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
    // Lives as long as the process: the runtime's handler closure must be 'static.
    let rotator: &'static Rotator<KmsAdapter, SecretsManagerStore> = Box::leak(Box::new(
        Rotator::new(kms, store, config.rotation_policy(), config.keyring_secret_id.clone())
            .with_step_reserve(config.aws_timeouts.total),
    ));
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        kms_jwt_rotate::handle(rotator, event.payload, event.context.deadline)
    }))
    .await
}

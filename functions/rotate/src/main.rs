//! rotate: runs on an EventBridge schedule (or on demand) and reconciles the keyring.

use std::sync::Arc;

use aws_sdk_resourcegroupstagging as tagging;
use kms_jwt::aws::{
    load_sdk_config, regional_sdk_config, regional_secret_id, KeyDiscovery, KmsAdapter, SecretsManagerStore,
};
use kms_jwt::config::{KeyDiscoveryMode, RotateConfig};
use kms_jwt::regions::{MultiRegionKms, ReplicaRegion};
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
    let kms = KmsAdapter::new(&sdk).with_key_access(key_access.clone()).with_discovery(discovery);
    let store =
        SecretsManagerStore::new(&sdk, config.keyring_secret_id.clone(), config.keyring_kms_key_id.clone());
    // Single-region keeps the plain adapter; multi-region wraps it (one type for both).
    let own_region = config.region.clone().unwrap_or_default();
    let replicas: Vec<Arc<ReplicaRegion>> = config
        .replica_regions
        .iter()
        .map(|region| {
            let regional = regional_sdk_config(&sdk, region);
            Arc::new(ReplicaRegion {
                name: region.clone(),
                kms: Arc::new(KmsAdapter::new(&regional).with_key_access(key_access.clone())),
                keyring: Arc::new(SecretsManagerStore::new(
                    &regional,
                    regional_secret_id(&config.keyring_secret_id, region),
                    None,
                )),
            })
        })
        .collect();
    let kms = if config.is_multi_region() { kms.with_multi_region_keys() } else { kms };
    let kms = MultiRegionKms::new(own_region.clone(), kms, replicas.clone());
    let rotator = Rotator::new(kms, store, config.rotation_policy(), config.keyring_secret_id.clone())
        .with_step_reserve(config.aws_timeouts.total);
    let rotator = if config.is_multi_region() {
        rotator.with_regions(own_region, replicas).with_configured_home(config.home_region.clone())
    } else {
        rotator
    };
    // A plain borrow: `lambda_runtime::run` handles one invocation at a time inside this
    // future and asks no 'static of the handler (`run_concurrent` would: Clone + Send + 'static).
    let rotator = &rotator;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        kms_jwt_rotate::handle(rotator, event.payload, event.context.deadline)
    }))
    .await
}

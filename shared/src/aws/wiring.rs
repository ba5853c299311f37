//! Each function's services, built from its configuration with the AWS adapters: the one
//! place where a function's settings meet the SDK. The configuration stays plain data and
//! builds the services from ports (so the tests build the same services over the twins);
//! this module gives it the adapters. The three `main`s are wired the same way: read the
//! configuration, call one function here, run.

use std::sync::Arc;

use super::{
    load_sdk_config, regional_sdk_config, regional_secret_id, CloudFrontEdgeCache, EventBridgeEvents,
    KeyDiscovery, KmsAdapter, SecretsManagerStore, SsmParameter,
};
use crate::config::{ConfigError, JwksConfig, KeyDiscoveryMode, RotateConfig, SignConfig};
use crate::jwks::JwksService;
use crate::key_policy::KeyAccess;
use crate::regions::{Regions, ReplicaRegion};
use crate::rotate::Rotator;
use crate::signer::TokenSigner;

/// The sign function's signer: KMS `Sign`, the keyring from Secrets Manager, the minting
/// policy from the environment or from SSM Parameter Store.
pub async fn token_signer(config: &SignConfig) -> TokenSigner<KmsAdapter, SecretsManagerStore> {
    let sdk = load_sdk_config(config.aws_timeouts).await;
    let store = SecretsManagerStore::new(&sdk, config.keyring_secret_id.clone(), None);
    match &config.minting_policy_parameter {
        Some(name) => {
            config.token_signer_with_policy(KmsAdapter::new(&sdk), store, SsmParameter::new(&sdk, name))
        }
        None => config.token_signer(KmsAdapter::new(&sdk), store),
    }
}

/// The jwks function's service: the keyring from Secrets Manager.
pub async fn jwks_service(config: &JwksConfig) -> JwksService<SecretsManagerStore> {
    let sdk = load_sdk_config(config.aws_timeouts).await;
    config.jwks_service(SecretsManagerStore::new(&sdk, config.keyring_secret_id.clone(), None))
}

/// The rotate function's rotator: KMS keys with this deployment's key policy, the keyring
/// secret, multi-region every other region's KMS and keyring copy, and, when configured, the
/// CloudFront distribution to invalidate on revocation and the lifecycle event bus.
pub async fn rotator(config: &RotateConfig) -> Result<Rotator<KmsAdapter, SecretsManagerStore>, ConfigError> {
    let key_access = config.key_access.clone().ok_or_else(|| ConfigError {
        problems: vec!["KEY_ADMIN_ROLE_ARN and KEY_USER_ROLE_ARNS are required".to_owned()],
    })?;
    let sdk = load_sdk_config(config.aws_timeouts).await;
    let discovery = match config.key_discovery {
        KeyDiscoveryMode::TaggingApi => {
            KeyDiscovery::TaggingApi(aws_sdk_resourcegroupstagging::Client::new(&sdk))
        }
        KeyDiscoveryMode::ListKeys => KeyDiscovery::ListKeys,
    };
    let kms = KmsAdapter::new(&sdk).with_key_access(key_access.clone()).with_discovery(discovery);
    let store =
        SecretsManagerStore::new(&sdk, config.keyring_secret_id.clone(), config.keyring_kms_key_id.clone());
    let rotator = match regions(config, &sdk, &key_access) {
        None => config.rotator(kms, store),
        Some(regions) => config.rotator(kms.with_multi_region_keys(), store).with_regions(regions),
    };
    // Without a distribution or a bus, the rotator keeps its no-op edge cache and event sink.
    let rotator = match &config.jwks_distribution_id {
        Some(id) => rotator.with_edge_cache(
            CloudFrontEdgeCache::new(&sdk, id.clone()),
            config.invalidation_paths(),
            config.keyring_cache_ttl,
        ),
        None => rotator,
    };
    Ok(match &config.lifecycle_event_bus {
        Some(bus) => {
            rotator.with_lifecycle_events(EventBridgeEvents::new(&sdk, bus.clone()), config.region.clone())
        }
        None => rotator,
    })
}

/// A multi-region deployment's other regions, each with its own clients (`None`:
/// single-region). The one walk of `REPLICA_REGIONS` from configuration to KMS.
fn regions(config: &RotateConfig, sdk: &aws_config::SdkConfig, key_access: &KeyAccess) -> Option<Regions> {
    // A multi-region configuration without AWS_REGION is refused when it is read.
    let own = config.region.clone().filter(|_| config.is_multi_region())?;
    let replicas = config
        .replica_regions
        .iter()
        .map(|name| {
            let regional = regional_sdk_config(sdk, name);
            ReplicaRegion {
                name: name.clone(),
                kms: Arc::new(KmsAdapter::new(&regional).with_key_access(key_access.clone())),
                keyring: Arc::new(SecretsManagerStore::new(
                    &regional,
                    regional_secret_id(&config.keyring_secret_id, name),
                    None,
                )),
            }
        })
        .collect();
    Some(Regions::new(own, replicas).with_configured_home(config.home_region.clone()))
}

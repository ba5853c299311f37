//! Shared plumbing of the LocalStack tests.

use std::time::Duration;

use aws_sdk_kms::types::KeyState;
use kms_jwt::aws::{KmsAdapter, SecretsManagerStore};
use kms_jwt::cache::{CachePolicy, KeyringCache};
use kms_jwt::jwks::{respond, PublishedKeys, Site, JWKS_PATH};
use kms_jwt::ports::KeyringStore;
use kms_jwt::rotate::{RotationPolicy, Rotator};
use kms_jwt::Keyring;

/// The SDK configuration for LocalStack, in `region` (a region per test isolates listings of
/// all keys) or the environment's. Refuses to run against anything but loopback.
pub async fn sdk(region: Option<&'static str>) -> aws_config::SdkConfig {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok_and(|u| u.contains("127.0.0.1") || u.contains("localhost")),
        "these tests run against LocalStack on loopback: use `make test`, which starts it and sets AWS_ENDPOINT_URL"
    );
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    match region {
        Some(region) => loader.region(aws_config::Region::new(region)).load().await,
        None => loader.load().await,
    }
}

/// A rotator on LocalStack for the keyring secret `secret_id`, as the rotate function builds it.
pub fn rotator(
    sdk: &aws_config::SdkConfig,
    secret_id: &str,
    policy: RotationPolicy,
) -> Rotator<KmsAdapter, SecretsManagerStore> {
    Rotator::new(KmsAdapter::new(sdk), SecretsManagerStore::new(sdk, secret_id, None), policy, secret_id)
}

/// The keyring in the secret `secret_id`, read as the functions read it; empty before the
/// first rotation.
pub async fn stored(sdk: &aws_config::SdkConfig, secret_id: &str) -> Keyring {
    let doc = SecretsManagerStore::new(sdk, secret_id, None).load().await.unwrap();
    doc.map(|d| Keyring::from_json(&d.text).unwrap()).unwrap_or_default()
}

/// (ARN, state) of every KMS key in the SDK's region tagged for `keyring`, asked of LocalStack
/// directly rather than through the code under test.
pub async fn keys_of(sdk: &aws_config::SdkConfig, keyring: &str) -> Vec<(String, KeyState)> {
    let kms = aws_sdk_kms::Client::new(sdk);
    let mut out = Vec::new();
    let mut pages = kms.list_keys().into_paginator().send();
    while let Some(page) = pages.next().await {
        for key in page.unwrap().keys() {
            let arn = key.key_arn().unwrap().to_owned();
            let tags = kms.list_resource_tags().key_id(&arn).send().await.unwrap();
            if tags.tags().iter().any(|t| t.tag_key() == "kms-jwt:keyring" && t.tag_value() == keyring) {
                let meta = kms.describe_key().key_id(&arn).send().await.unwrap().key_metadata.unwrap();
                out.push((arn, meta.key_state.unwrap()));
            }
        }
    }
    out
}

/// Daily ES256 rotation with a two-hour grace: the policy of tests that need a keyring and
/// do not exercise the lifecycle itself.
pub fn daily_es256_policy() -> RotationPolicy {
    RotationPolicy {
        alg: kms_jwt::SigningAlg::ES256,
        rotation_period: 86_400,
        prepublication: 600,
        retirement_grace: 7_200,
        deletion_window_days: 7,
        max_published_keys: kms_jwt::rotate::DEFAULT_MAX_PUBLISHED_KEYS,
    }
}

/// The JWKS body the jwks function would serve right now (its logic minus the Lambda HTTP
/// adapter, which the end-to-end tests exercise).
pub async fn jwks(sdk: &aws_config::SdkConfig, secret_id: &str, issuer: &str) -> String {
    let site = Site::new(issuer, None, Duration::from_secs(300));
    let render_site = site.clone();
    let cache = KeyringCache::new(
        SecretsManagerStore::new(sdk, secret_id, None),
        CachePolicy { ttl: Duration::ZERO, max_staleness: Duration::ZERO },
        move |ring: &Keyring| PublishedKeys::render(&render_site, ring),
    );
    let keys = cache.get().await.expect("keyring readable");
    let answer = respond(&site, "GET", JWKS_PATH, None, Some(&keys), kms_jwt::unix_now());
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

//! The signer the sign function's `main` builds from its configuration
//! ([`SignConfig::token_signer`]): its settings, and a keyring cache that is never stale.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use kms_jwt::config::SignConfig;
use kms_jwt::memory::{MemoryKms, MemoryStore};
use kms_jwt::rotate::{RotationPolicy, Rotator};
use kms_jwt::SigningAlg;
use serde_json::{json, Value};

fn config() -> SignConfig {
    config_with_policy(Some(kms_jwt::minting::ALLOW_ALL_POLICY))
}

fn config_with_policy(policy: Option<&'static str>) -> SignConfig {
    SignConfig::from_lookup(|name| {
        let value = match name {
            "MINTING_POLICY" => policy?,
            "KEYRING_SECRET_ID" => "kr",
            "ISSUER" => "https://issuer.example.com",
            "DEFAULT_TOKEN_TTL" => "10m",
            "MAX_TOKEN_TTL" => "20m",
            "KEYRING_CACHE_TTL" => "30s",
            _ => return None,
        };
        Some(value.to_owned())
    })
    .unwrap()
}

fn claims_of(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

/// Paused: tokio's clock moves only when told, so the cache's age is the test's to set.
#[tokio::test(start_paused = true)]
async fn the_configured_signer_uses_its_settings_and_never_a_stale_keyring() {
    let (kms, store) = (Arc::new(MemoryKms::new()), Arc::new(MemoryStore::new()));
    Rotator::new(
        Arc::clone(&kms),
        Arc::clone(&store),
        RotationPolicy::for_tests(SigningAlg::ES256),
        kms_jwt::test_stacks::single_region_keyring(),
    )
    .reconcile(kms_jwt::unix_now())
    .await
    .unwrap();
    // No MINTING_POLICY: no rule, every request refused before KMS.
    let closed = config_with_policy(None).token_signer(Arc::clone(&kms), Arc::clone(&store));
    assert_eq!(closed.sign_event(json!({"claims": {}}), 1_000).await.unwrap_err().code(), "NotAllowed");
    assert_eq!(kms.calls("Sign"), 0);
    let signer = config().token_signer(Arc::clone(&kms), Arc::clone(&store));

    // ISSUER, DEFAULT_TOKEN_TTL and MAX_TOKEN_TTL.
    let token = signer.sign_event(json!({"claims": {}}), 1_000).await.unwrap();
    assert_eq!(token.expires_at, 1_600);
    assert_eq!(claims_of(&token.token)["iss"], "https://issuer.example.com");
    assert_eq!(
        signer.sign_event(json!({"claims": {}, "ttl_seconds": 1_200}), 1_000).await.unwrap().expires_at,
        2_200
    );
    let too_long = signer.sign_event(json!({"claims": {}, "ttl_seconds": 1_201}), 1_000).await.unwrap_err();
    assert_eq!(too_long.code(), "InvalidTtl");

    // The keyring is read once per KEYRING_CACHE_TTL...
    let reads = store.reads();
    tokio::time::advance(Duration::from_secs(29)).await;
    signer.sign_event(json!({"claims": {}}), 1_029).await.unwrap();
    assert_eq!(store.reads(), reads, "no read inside the cache TTL");
    // ...and never used past it: with the store down, no token rather than one signed with a
    // key that may have been retired meanwhile.
    tokio::time::advance(Duration::from_secs(2)).await;
    store.set_unavailable(true);
    let err = signer.sign_event(json!({"claims": {}}), 1_031).await.unwrap_err();
    assert_eq!((err.code(), err.is_retryable()), ("KeyringUnavailable", true));
    assert_eq!(kms.calls("Sign"), 3, "no KMS call without a fresh keyring");
}

//! The sign function's request parser on arbitrary text: `parse_request` on whatever parses as
//! JSON, and `TokenSigner::invoke_json` (size limits, duplicate members, number ranges, single
//! requests and batches) against the in-memory KMS and keyring store, with a keyring that has a
//! current ES256 key. It must never panic or hang, and with healthy twins every refusal is the
//! caller's fault: a typed client error, never a service error.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kms_jwt::config::SignConfig;
use kms_jwt::memory::{MemoryKms, MemoryStore};
use kms_jwt::rotate::{RotationPolicy, Rotator};
use kms_jwt::signer::{parse_request, SignAnswer, SignedToken, TokenSigner};
use kms_jwt::{SigningAlg, UnixTime};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

type Signer = TokenSigner<Arc<MemoryKms>, Arc<MemoryStore>>;

/// What a service fault is called in an answer; none may appear with healthy twins.
const SERVICE_CODES: &[&str] = &[
    "NoCurrentKey",
    "KeyringUnavailable",
    "KmsThrottled",
    "KmsTimeout",
    "KmsUnavailable",
    "KmsAccessDenied",
    "KmsError",
    "SignatureInvalid",
    "EncodingError",
];

struct Harness {
    runtime: tokio::runtime::Runtime,
    signer: Signer,
    now: UnixTime,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        let kms = Arc::new(MemoryKms::new());
        let store = Arc::new(MemoryStore::new());
        let now = kms_jwt::unix_now();
        let policy = RotationPolicy::for_tests(SigningAlg::ES256);
        let rotator = Rotator::new(
            Arc::clone(&kms),
            Arc::clone(&store),
            policy,
            kms_jwt::test_stacks::single_region_keyring(),
        );
        runtime.block_on(rotator.reconcile(now)).expect("bootstrap the keyring");
        let signer = SignConfig {
            // Read once and kept: the fuzzer runs for minutes, the keyring never changes.
            keyring_cache_ttl: Duration::from_secs(86_400),
            ..SignConfig::for_tests("https://issuer.fuzz")
        }
        .token_signer(kms, Arc::clone(&store));
        Harness { runtime, signer, now }
    })
}

fn check_token(signed: &SignedToken) {
    let token = &signed.token;
    assert_eq!(token.split('.').count(), 3, "a JWS compact serialization has three parts: {token}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };

    if let Ok(value) = serde_json::from_str::<Value>(text) {
        if let Err(e) = parse_request(value) {
            assert!(e.is_client_error(), "parse_request gave a service error: {e:?}");
        }
    }

    let h = harness();
    match h.runtime.block_on(h.signer.invoke_json(text, h.now)) {
        Err(e) => assert!(e.is_client_error(), "invoke_json gave a service error for {text:?}: {e:?}"),
        Ok(SignAnswer::Single(signed)) => check_token(&signed),
        Ok(SignAnswer::Batch(results)) => {
            for result in results {
                match result {
                    Ok(signed) => check_token(&signed),
                    Err(e) => assert!(!SERVICE_CODES.contains(&e.code()), "batch item failed with {e:?}"),
                }
            }
        }
    }
});

//! The published-key cap (`MAX_PUBLISHED_KEYS`, ALB's 10 by default): a burst of forced
//! rotations stops at the cap with a clear error, creates no key it cannot publish, and every
//! token signed along the way still verifies; revocation is never refused; the rotation
//! becomes possible exactly when the error said. In-memory twins, real ES256 signatures.

use std::sync::Arc;
use std::time::Duration;

use kms_jwt::config::SignConfig;
use kms_jwt::memory::{MemoryKms, MemoryStore};
use kms_jwt::rotate::{
    Command, RotateError, RotationPolicy, Rotator, Transition, DEFAULT_MAX_PUBLISHED_KEYS,
};
use kms_jwt::SigningAlg;
use kms_jwt_tests::memory::stored;
use kms_jwt_tests::verify;
use serde_json::json;

const ISSUER: &str = "https://issuer.key-cap.test";
const HOUR: i64 = 3_600;

fn policy() -> RotationPolicy {
    RotationPolicy {
        alg: SigningAlg::ES256,
        rotation_period: 7 * 86_400,
        prepublication: HOUR,
        retirement_grace: 2 * HOUR,
        deletion_window_days: 7,
        max_published_keys: DEFAULT_MAX_PUBLISHED_KEYS,
    }
}

fn jwks(store: &MemoryStore) -> String {
    serde_json::to_string(&stored(store).jwks()).unwrap()
}

#[tokio::test]
async fn a_burst_of_forced_rotations_stops_at_the_cap_and_every_token_still_verifies() {
    let kms = Arc::new(MemoryKms::new());
    let store = Arc::new(MemoryStore::new());
    let rotator =
        Rotator::new(kms.clone(), store.clone(), policy(), kms_jwt::test_stacks::single_region_keyring());
    let signer = SignConfig { keyring_cache_ttl: Duration::ZERO, ..SignConfig::for_tests(ISSUER) }
        .token_signer(kms.clone(), store.clone());
    // Keyring times follow `t0 + i`; token times the wall clock (jsonwebtoken checks exp).
    let t0 = kms_jwt::unix_now();
    rotator.run(Command::Reconcile, t0).await.unwrap();

    let mut tokens = Vec::new();
    let mut refusals = Vec::new();
    for i in 1..=20 {
        let signed = signer
            .sign_event(json!({"claims": {"sub": format!("user-{i}")}}), kms_jwt::unix_now())
            .await
            .unwrap();
        tokens.push((signed.token, format!("user-{i}")));
        let keys_in_kms = kms.key_arns().len();
        match rotator.run(Command::Rotate { force: true }, t0 + i).await {
            Ok(report) => assert_eq!(report.transitions, vec![Transition::Rotate], "burst {i}"),
            Err(RotateError::TooManyPublishedKeys(held)) => {
                assert_eq!(kms.key_arns().len(), keys_in_kms, "a refused rotation creates no KMS key");
                refusals.push(held);
            }
            Err(e) => panic!("burst {i}: {e}"),
        }
        let ring = stored(&store);
        assert!(
            ring.keys.len() <= DEFAULT_MAX_PUBLISHED_KEYS,
            "burst {i}: {} keys published",
            ring.keys.len()
        );
        assert!(jwks(&store).len() <= kms_jwt::rotate::MAX_JWKS_BYTES);
    }
    // Bootstrap publishes 2 keys, each rotation one more: 8 rotations reach 10, 12 are refused.
    assert_eq!(refusals.len(), 12);
    assert_eq!(stored(&store).keys.len(), 10);
    let held = &refusals[0];
    assert_eq!((held.published_keys, held.max_published_keys), (11, 10));
    // The first previous key stopped signing at t0 + 1; its tokens have expired a grace later.
    let possible_at = t0 + 1 + policy().retirement_grace;
    assert_eq!(held.possible_at, Some(possible_at));
    let message = RotateError::TooManyPublishedKeys(held.clone()).to_string();
    assert!(message.contains("would hold 11 keys") && message.contains("MAX_PUBLISHED_KEYS"), "{message}");
    assert!(message.contains(&format!("(unix {possible_at})")), "{message}");
    assert_eq!(RotateError::TooManyPublishedKeys(held.clone()).code(), "TooManyPublishedKeys");

    // Every token issued along the way verifies against the capped JWKS.
    let published = jwks(&store);
    for (token, sub) in &tokens {
        assert_eq!(verify(token, &published, ISSUER).unwrap()["sub"], sub.as_str());
    }

    // A scheduled run at the cap does not fail: nothing is due yet, and nothing changes.
    let scheduled = rotator.run(Command::Reconcile, t0 + 30).await.unwrap();
    assert!(!scheduled.changed && scheduled.rotation_held.is_none());

    // Revocation is never refused at the cap, and removes a key.
    let victim = stored(&store).previous().last().unwrap().kid.clone();
    let revoked = rotator.run(Command::Revoke { kid: victim.clone() }, t0 + 40).await.unwrap();
    assert_eq!(revoked.transitions.first(), Some(&Transition::Revoke));
    assert!(stored(&store).find(&victim).is_none());
    assert_eq!(stored(&store).keys.len(), 9);

    // Room again: one more rotation fits (10 keys), the next is refused until the oldest
    // remaining previous key retires.
    rotator.run(Command::Rotate { force: true }, t0 + 50).await.unwrap();
    let Err(RotateError::TooManyPublishedKeys(held)) =
        rotator.run(Command::Rotate { force: true }, t0 + 60).await
    else {
        panic!("the eleventh key must be refused")
    };
    let at = held.possible_at.unwrap();
    assert_eq!(at, t0 + 2 + policy().retirement_grace, "the oldest key left was deactivated at t0 + 2");
    assert!(matches!(
        rotator.run(Command::Rotate { force: true }, at - 1).await,
        Err(RotateError::TooManyPublishedKeys(_))
    ));
    let report = rotator.run(Command::Rotate { force: true }, at).await.unwrap();
    assert_eq!(report.transitions, vec![Transition::Rotate, Transition::Retire]);
    assert_eq!(stored(&store).keys.len(), 10);
}

#[tokio::test]
async fn a_due_scheduled_rotation_at_the_cap_waits_without_failing_the_run() {
    let kms = Arc::new(MemoryKms::new());
    let store = Arc::new(MemoryStore::new());
    let policy = RotationPolicy { max_published_keys: 4, ..policy() };
    let rotator = Rotator::new(
        kms.clone(),
        store.clone(),
        policy.clone(),
        kms_jwt::test_stacks::single_region_keyring(),
    );
    let t0 = 1_800_000_000;
    rotator.run(Command::Reconcile, t0).await.unwrap();
    rotator.run(Command::Rotate { force: true }, t0 + 10).await.unwrap();
    rotator.run(Command::Rotate { force: true }, t0 + 20).await.unwrap();
    assert_eq!(stored(&store).keys.len(), 4);

    // The rotation period has passed: a rotation is due, but would publish a fifth key.
    let due = t0 + 20 + policy.rotation_period;
    // Both previous keys retire a grace after t0 + 10 and t0 + 20, long before `due`: no hold.
    let report = rotator.run(Command::Reconcile, due).await.unwrap();
    assert!(report.rotation_held.is_none());
    assert_eq!(report.transitions, vec![Transition::Rotate, Transition::Retire]);

    // One more forced rotation (4 keys: next, current, previous from `due` and from `t1`),
    // then let the period pass, with a grace longer than the period (a fresh rotator over the
    // same store) so that both previous keys are still published when the rotation is due.
    let t1 = due + 100;
    rotator.run(Command::Rotate { force: true }, t1).await.unwrap();
    let before = stored(&store);
    assert_eq!(before.keys.len(), 4);
    let long_grace = RotationPolicy { retirement_grace: 2 * policy.rotation_period, ..policy.clone() };
    let patient = Rotator::new(
        kms.clone(),
        store.clone(),
        long_grace.clone(),
        kms_jwt::test_stacks::single_region_keyring(),
    );
    let report = patient.run(Command::Reconcile, t1 + policy.rotation_period).await.unwrap();
    let held = report.rotation_held.expect("the due rotation is held, not failed");
    assert_eq!((held.published_keys, held.max_published_keys), (5, 4));
    // Possible once the older previous key (deactivated at `due`) has retired.
    assert_eq!(held.possible_at, Some(due + long_grace.retirement_grace));
    assert!(!report.changed, "nothing written");
    assert_eq!(stored(&store), before);
    let later = patient.run(Command::Reconcile, due + long_grace.retirement_grace).await.unwrap();
    assert!(later.rotation_held.is_none());
    assert_eq!(later.transitions, vec![Transition::Rotate, Transition::Retire]);
}

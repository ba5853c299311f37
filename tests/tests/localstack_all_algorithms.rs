//! Against LocalStack, for each of the nine algorithms and ES256K (LocalStack has secp256k1 keys;
//! it refuses Ed25519 and ML-DSA ones, which `es256k_eddsa_ml_dsa.rs` covers with the twin): bootstrap
//! → sign → JWKS from the jwks service → verify with an ordinary library; rotate; retire. Every
//! token is also verified in Node, with `aws-jwt-verify` and `jose` fetching that JWKS over HTTP
//! (`tests/node`), and ES256K with `@noble/curves` (neither library implements it, and both
//! refuse those tokens); `aws-jwt-verify` implements no PS* algorithm either. Run through
//! `make test`, which starts LocalStack, sets `AWS_ENDPOINT_URL` and installs the Node packages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use aws_sdk_kms::types::KeyState as KmsKeyState;
use kms_jwt::aws::{KmsAdapter, SecretsManagerStore};
use kms_jwt::config::SignConfig;
use kms_jwt::rotate::{RotationPolicy, Transition};
use kms_jwt::SigningAlg;
use kms_jwt_tests::localstack::daily_es256_policy;
use kms_jwt_tests::node::{assert_accepted, verify_with, with_claim, JwksServer, NodeVerifier};
use kms_jwt_tests::{tamper, verify, with_kid, VerifyError};
use serde_json::json;

const ISSUER: &str = "https://issuer.kms-jwt.test";

/// `aws-jwt-verify` and `jose`, and the `noble` check where it implements `alg` (ES256K).
fn verifiers(alg: SigningAlg) -> Vec<NodeVerifier> {
    let noble = NodeVerifier::Noble.supports(alg.as_str()).then_some(NodeVerifier::Noble);
    NodeVerifier::ALL.into_iter().chain(noble).collect()
}

/// Every Node verifier judges `token` as [`assert_accepted`] requires (accepted with the claim
/// `sub` where it implements `alg`, refused as an unimplemented algorithm elsewhere), each
/// after fetching the JWKS at `jwks` over HTTP.
async fn node_accepts(jwks: &JwksServer, token: &str, alg: SigningAlg, sub: &str) {
    for verifier in verifiers(alg) {
        let fetched = jwks.jwks_requests();
        assert_accepted(&[verifier], token, &jwks.url(), ISSUER, alg.as_str(), sub).await;
        assert!(jwks.jwks_requests() > fetched, "{alg}, {verifier}: did not fetch the JWKS");
    }
}

/// Every Node verifier refuses `token`, with one of `classes` (its error classes by verifier).
/// For the algorithms it does not implement, `aws-jwt-verify` refuses with its algorithm
/// error, unless an earlier step fails first: it parses the token, then looks up the kid,
/// then checks the algorithm, then the signature, then the claims (`verifyDecomposedJwt` in
/// `node_modules/aws-jwt-verify/dist/esm/jwt-verifier.js`).
async fn node_refuses(
    jwks: &JwksServer,
    token: &str,
    alg: SigningAlg,
    classes: fn(NodeVerifier) -> &'static [&'static str],
) {
    for verifier in verifiers(alg) {
        let verdict = verify_with(verifier, token, &jwks.url(), ISSUER, Some(alg.as_str())).await;
        let error = verdict.expect_err(&format!("{alg}, {verifier}: accepted"));
        let class = error.rejected_class().unwrap_or_else(|| panic!("{alg}, {verifier}: {error}"));
        let expected: Vec<&str> = if verifier.supports(alg.as_str()) {
            classes(verifier).to_vec()
        } else if verifier == NodeVerifier::Jose {
            // jose without the algorithm: refused, by whichever check comes first.
            vec!["JOSENotSupported", "JWKSNoMatchingKey", "JWSInvalid", "JWTInvalid"]
        } else {
            let before_the_algorithm_check = ["JwtParseError", "KidNotFoundInJwksError"];
            let earlier = classes(verifier).iter().filter(|c| before_the_algorithm_check.contains(c));
            earlier.copied().chain(["JwtInvalidSignatureAlgorithmError"]).collect()
        };
        assert!(
            expected.contains(&class),
            "{alg}, {verifier}: refused with {error}, expected one of {expected:?}"
        );
    }
}

fn refused_as(
    verdict: Result<serde_json::Value, kms_jwt_tests::node::NodeVerifyError>,
    class: &str,
    alg: SigningAlg,
    verifier: NodeVerifier,
) {
    let error = verdict.expect_err(&format!("{alg}, {verifier}: accepted"));
    assert_eq!(error.rejected_class(), Some(class), "{alg}, {verifier}: {error}");
}

/// A signature that does not match: the token's own signature class, or (when a changed
/// base64url character leaves the payload unparseable) the library's parse error.
fn bad_signature(verifier: NodeVerifier) -> &'static [&'static str] {
    match verifier {
        NodeVerifier::AwsJwtVerify => &["JwtInvalidSignatureError", "JwtParseError"],
        NodeVerifier::Jose => &["JWSSignatureVerificationFailed", "JWSInvalid", "JWTInvalid"],
        NodeVerifier::Noble => &["NobleSignatureInvalid", "NobleParseError"],
    }
}

/// Well-formed claims under a signature made for others: only the signature check refuses.
fn forged(verifier: NodeVerifier) -> &'static [&'static str] {
    match verifier {
        NodeVerifier::AwsJwtVerify => &["JwtInvalidSignatureError"],
        NodeVerifier::Jose => &["JWSSignatureVerificationFailed"],
        NodeVerifier::Noble => &["NobleSignatureInvalid"],
    }
}

fn unknown_kid(verifier: NodeVerifier) -> &'static [&'static str] {
    match verifier {
        NodeVerifier::AwsJwtVerify => &["KidNotFoundInJwksError"],
        NodeVerifier::Jose => &["JWKSNoMatchingKey"],
        NodeVerifier::Noble => &["NobleKidNotFound"],
    }
}

async fn full_lifecycle(alg: SigningAlg) {
    let sdk = kms_jwt_tests::localstack::sdk(None).await;
    let secret_id = format!("kms-jwt-test/{alg}/{}", uuid::Uuid::new_v4());
    let policy = RotationPolicy {
        alg,
        rotation_period: 7 * 86_400,
        prepublication: 600,
        retirement_grace: 7_200,
        deletion_window_days: 7,
        max_published_keys: kms_jwt::rotate::DEFAULT_MAX_PUBLISHED_KEYS,
    };
    let rotator = kms_jwt_tests::localstack::rotator(&sdk, &secret_id, policy.clone());
    let signer = SignConfig { keyring_cache_ttl: Duration::ZERO, ..SignConfig::for_tests(ISSUER) }
        .token_signer(KmsAdapter::new(&sdk), SecretsManagerStore::new(&sdk, &secret_id, None));
    // Keyring timestamps follow an injected clock; token times follow the real one, since
    // jsonwebtoken checks exp against the wall clock.
    let t0 = kms_jwt::unix_now();

    let boot = rotator.reconcile(t0).await.unwrap();
    assert_eq!(boot.transitions, vec![Transition::Bootstrap], "{alg}");
    let unchanged = rotator.reconcile(t0 + 60).await.unwrap();
    assert!(!unchanged.changed, "{alg}: a second run changes nothing");

    let old = signer
        .sign_event(json!({"claims": {"sub": "alice"}, "ttl_seconds": 900}), kms_jwt::unix_now())
        .await
        .unwrap();
    let jwks = kms_jwt_tests::localstack::jwks(&sdk, &secret_id, ISSUER).await;
    let claims = verify(&old.token, &jwks, ISSUER).unwrap_or_else(|e| panic!("{alg}: {e}"));
    assert_eq!(claims["sub"], "alice");
    // The same JWKS over HTTP, for the Node verifiers.
    let served = JwksServer::start(&jwks).unwrap();
    node_accepts(&served, &old.token, alg, "alice").await;
    let keys: serde_json::Value = serde_json::from_str(&jwks).unwrap();
    for key in keys["keys"].as_array().unwrap() {
        assert_eq!(key["alg"], alg.as_str());
        assert_eq!(key["use"], "sig");
        for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            assert!(key.get(private).is_none(), "{alg}: private member {private} served");
        }
    }
    let header: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            old.token.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(header, json!({"alg": alg.as_str(), "kid": old.kid, "typ": "JWT"}));

    // Rotate: the previous next key signs, the old token still verifies.
    let next_kid =
        boot.keys.iter().find(|k| k.state == kms_jwt::keyring::KeyState::Next).unwrap().kid.clone();
    let rotated = rotator.reconcile(t0 + policy.rotation_period).await.unwrap();
    assert_eq!(rotated.transitions, vec![Transition::Rotate], "{alg}");
    let new = signer.sign_event(json!({"claims": {"sub": "bob"}}), kms_jwt::unix_now()).await.unwrap();
    assert_eq!(new.kid, next_kid, "{alg}: new tokens carry the pre-published kid");
    let jwks = kms_jwt_tests::localstack::jwks(&sdk, &secret_id, ISSUER).await;
    assert_eq!(verify(&old.token, &jwks, ISSUER).unwrap()["sub"], "alice", "{alg}: old token after rotation");
    assert_eq!(verify(&new.token, &jwks, ISSUER).unwrap()["sub"], "bob");
    served.set_jwks(&jwks);
    node_accepts(&served, &old.token, alg, "alice").await;
    node_accepts(&served, &new.token, alg, "bob").await;

    // Tampering and unknown keys fail.
    assert!(
        matches!(verify(&tamper(&new.token), &jwks, ISSUER), Err(VerifyError::Rejected(_))),
        "{alg}: tampered"
    );
    assert_eq!(
        verify(&with_kid(&new.token, "not-a-published-kid"), &jwks, ISSUER),
        Err(VerifyError::UnknownKid("not-a-published-kid".into()))
    );
    assert!(verify(&new.token, &jwks, "https://someone-else.test").is_err(), "{alg}: wrong issuer");
    node_refuses(&served, &tamper(&new.token), alg, bad_signature).await;
    node_refuses(&served, &with_claim(&new.token, "sub", json!("mallory")).unwrap(), alg, forged).await;
    node_refuses(&served, &with_kid(&new.token, "not-a-published-kid"), alg, unknown_kid).await;
    for verifier in verifiers(alg).into_iter().filter(|v| v.supports(alg.as_str())) {
        let verdict =
            verify_with(verifier, &new.token, &served.url(), "https://someone-else.test", None).await;
        let expected = match verifier {
            NodeVerifier::AwsJwtVerify => "JwtInvalidIssuerError",
            NodeVerifier::Jose => "JWTClaimValidationFailed",
            NodeVerifier::Noble => "NobleClaimInvalid",
        };
        refused_as(verdict, expected, alg, verifier);
    }

    // Retire: once every token of the old key has expired, it leaves the JWKS and KMS.
    let retire_at = t0 + policy.rotation_period + policy.retirement_grace;
    let retired = rotator.reconcile(retire_at).await.unwrap();
    assert_eq!(retired.retired, vec![old.kid.clone()], "{alg}");
    let jwks = kms_jwt_tests::localstack::jwks(&sdk, &secret_id, ISSUER).await;
    assert_eq!(verify(&old.token, &jwks, ISSUER), Err(VerifyError::UnknownKid(old.kid.clone())));
    assert!(verify(&new.token, &jwks, ISSUER).is_ok());
    served.set_jwks(&jwks);
    node_refuses(&served, &old.token, alg, unknown_kid).await;
    node_accepts(&served, &new.token, alg, "bob").await;

    let kms = aws_sdk_kms::Client::new(&sdk);
    let old_arn = &boot.keys.iter().find(|k| k.kid == old.kid).unwrap().kms_key_arn;
    let meta = kms.describe_key().key_id(old_arn).send().await.unwrap().key_metadata.unwrap();
    assert_eq!(meta.key_state, Some(KmsKeyState::PendingDeletion), "{alg}: retired key is pending deletion");
    let tags = kms.list_resource_tags().key_id(new_key_arn(&rotated, &new.kid)).send().await.unwrap();
    let tags: Vec<(String, String)> =
        tags.tags().iter().map(|t| (t.tag_key().to_owned(), t.tag_value().to_owned())).collect();
    assert!(tags.contains(&("kms-jwt:keyring".to_owned(), secret_id.clone())), "{alg}: {tags:?}");
    let usage = kms
        .describe_key()
        .key_id(new_key_arn(&rotated, &new.kid))
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(usage.key_usage.map(|u| u.as_str().to_owned()).as_deref(), Some("SIGN_VERIFY"));
    assert_eq!(usage.key_spec.map(|s| s.as_str().to_owned()).as_deref(), Some(alg.kms_key_spec()));
}

fn new_key_arn(report: &kms_jwt::rotate::RotationReport, kid: &str) -> String {
    report.keys.iter().find(|k| k.kid == kid).unwrap().kms_key_arn.clone()
}

macro_rules! per_algorithm {
    ($($name:ident => $alg:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            full_lifecycle(SigningAlg::$alg).await;
        }
    )*};
}

per_algorithm! {
    es256 => ES256, es384 => ES384, es512 => ES512,
    rs256 => RS256, rs384 => RS384, rs512 => RS512,
    ps256 => PS256, ps384 => PS384, ps512 => PS512,
    es256k => ES256K,
}

#[tokio::test]
async fn a_corrupted_keyring_secret_is_refused_and_left_untouched() {
    let sdk = kms_jwt_tests::localstack::sdk(None).await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    for text in ["{\"schema_version\": 1, \"keys\": ", r#"{"schema_version": 7, "keys": []}"#] {
        let secret_id = format!("kms-jwt-test/corrupt/{}", uuid::Uuid::new_v4());
        secrets.create_secret().name(&secret_id).secret_string(text).send().await.unwrap();
        let rotator = kms_jwt_tests::localstack::rotator(&sdk, &secret_id, daily_es256_policy());
        let err = rotator.reconcile(kms_jwt::unix_now()).await.unwrap_err();
        assert_eq!(err.code(), "KeyringInvalid", "{err}");
        let stored = secrets.get_secret_value().secret_id(&secret_id).send().await.unwrap();
        assert_eq!(stored.secret_string(), Some(text), "the document is left exactly as it was");
        let versions = secrets.list_secret_version_ids().secret_id(&secret_id).send().await.unwrap();
        assert_eq!(versions.versions().len(), 1, "no new version was written");
    }
}

#[tokio::test]
async fn compare_and_swap_refuses_a_stale_writer() {
    use kms_jwt::ports::{KeyringStore, StoreError};
    let sdk = kms_jwt_tests::localstack::sdk(None).await;
    let secret_id = format!("kms-jwt-test/cas/{}", uuid::Uuid::new_v4());
    let store = SecretsManagerStore::new(&sdk, &secret_id, None);
    assert_eq!(store.load().await.unwrap(), None);
    let v1 = store.compare_and_swap(None, "one").await.unwrap();
    assert_eq!(store.compare_and_swap(None, "racing creator").await, Err(StoreError::Conflict));
    let v2 = store.compare_and_swap(Some(&v1), "two").await.unwrap();
    // Retrying the same write is idempotent: same version, no error.
    assert_eq!(store.compare_and_swap(Some(&v1), "two").await, Ok(v2.clone()));
    assert_eq!(store.compare_and_swap(Some(&v1), "stale writer").await, Err(StoreError::Conflict));
    let current = store.load().await.unwrap().unwrap();
    assert_eq!((current.version_id, current.text), (v2, "two".to_owned()));
}

//! ES256K, EdDSA / Ed25519 and ML-DSA-44/65/87 end to end against the in-memory twins (KMS's
//! Ed25519 and ML-DSA keys exist nowhere else here: LocalStack refuses them): rotate
//! bootstraps, sign issues tokens through the `KeySigner` port, the jwks code renders the JWKS
//! and discovery, and independent Node implementations verify the tokens over HTTP: `jose` and
//! `aws-jwt-verify` for EdDSA, `@noble/curves` for secp256k1 and Ed25519, `@noble/post-quantum`
//! for ML-DSA. Tampered and forged tokens fail in each. Needs `scripts/node-env.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use kms_jwt::config::SignConfig;
use kms_jwt::jwks::{respond, PublishedKeys, Site, DISCOVERY_PATH, JWKS_PATH};
use kms_jwt::memory::{MemoryKms, MemoryStore};
use kms_jwt::ports::{KeyTags, SigningInput};
use kms_jwt::rotate::{Command, RotationPolicy, Rotator};
use kms_jwt::signer::TokenSigner;
use kms_jwt::SigningAlg;
use kms_jwt_tests::memory::stored;
use kms_jwt_tests::node::{assert_accepted, verify_with, with_claim, JwksServer, NodeVerifier};
use kms_jwt_tests::{tamper, with_kid};
use serde_json::{json, Value};

const ISSUER: &str = "https://issuer.new-algorithms.test";
const VERIFIERS: [NodeVerifier; 3] = [NodeVerifier::AwsJwtVerify, NodeVerifier::Jose, NodeVerifier::Noble];

type Signer = TokenSigner<Arc<MemoryKms>, Arc<MemoryStore>>;

struct World {
    kms: Arc<MemoryKms>,
    store: Arc<MemoryStore>,
    rotator: Rotator<Arc<MemoryKms>, Arc<MemoryStore>>,
    signer: Signer,
}

fn world(alg: SigningAlg) -> World {
    let kms = Arc::new(MemoryKms::new());
    let store = Arc::new(MemoryStore::new());
    let rotator = Rotator::new(
        kms.clone(),
        store.clone(),
        RotationPolicy::for_tests(alg),
        kms_jwt::test_stacks::single_region_keyring(),
    );
    let signer = SignConfig { keyring_cache_ttl: Duration::ZERO, ..SignConfig::for_tests(ISSUER) }
        .token_signer(kms.clone(), store.clone());
    World { kms, store, rotator, signer }
}

/// What the jwks function serves for the stored keyring: (JWKS, discovery).
fn served(store: &MemoryStore) -> (String, Value) {
    let ring = stored(store);
    let site = Site::new(ISSUER, None, Duration::from_secs(300));
    let keys = PublishedKeys::render(&site, &ring);
    let jwks = respond(&site, "GET", JWKS_PATH, None, Some(&keys), 0);
    let discovery = respond(&site, "GET", DISCOVERY_PATH, None, Some(&keys), 0);
    assert_eq!((jwks.status, discovery.status), (200, 200));
    (jwks.body, serde_json::from_str(&discovery.body).unwrap())
}

fn header(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap()
}

/// Every verifier that implements `alg` refuses `token` with one of `classes`.
async fn node_refuses(jwks: &JwksServer, token: &str, alg: SigningAlg, classes: &[&str]) {
    for verifier in VERIFIERS.into_iter().filter(|v| v.supports(alg.as_str())) {
        let verdict = verify_with(verifier, token, &jwks.url(), ISSUER, Some(alg.as_str())).await;
        let error = verdict.expect_err(&format!("{alg}, {verifier}: accepted"));
        let class = error.rejected_class().unwrap_or_else(|| panic!("{alg}, {verifier}: {error}"));
        assert!(
            classes.contains(&class),
            "{alg}, {verifier}: refused with {error}, expected one of {classes:?}"
        );
    }
}

const BAD_SIGNATURE: &[&str] = &[
    "JwtInvalidSignatureError",
    "JwtParseError",
    "JWSSignatureVerificationFailed",
    "JWSInvalid",
    "JWTInvalid",
    "NobleSignatureInvalid",
    "NobleParseError",
];
const FORGED: &[&str] =
    &["JwtInvalidSignatureError", "JWSSignatureVerificationFailed", "NobleSignatureInvalid"];
const UNKNOWN_KID: &[&str] = &["KidNotFoundInJwksError", "JWKSNoMatchingKey", "NobleKidNotFound"];

async fn lifecycle(alg: SigningAlg) {
    let w = world(alg);
    let t0 = kms_jwt::unix_now();
    w.rotator.reconcile(t0).await.unwrap();

    let first = w.signer.sign_event(json!({"claims": {"sub": "alice"}}), kms_jwt::unix_now()).await.unwrap();
    assert_eq!(header(&first.token), json!({"alg": alg.as_str(), "kid": first.kid, "typ": "JWT"}));
    let (jwks, discovery) = served(&w.store);
    assert_eq!(discovery["id_token_signing_alg_values_supported"], json!([alg.as_str()]), "{alg}");
    let set: Value = serde_json::from_str(&jwks).unwrap();
    for key in set["keys"].as_array().unwrap() {
        assert_eq!((key["alg"].as_str(), key["use"].as_str()), (Some(alg.as_str()), Some("sig")));
        let mut members: Vec<&str> = key.as_object().unwrap().keys().map(String::as_str).collect();
        members.sort_unstable();
        let expected: &[&str] = match alg {
            SigningAlg::ES256K => &["alg", "crv", "kid", "kty", "use", "x", "y"],
            SigningAlg::EdDSA | SigningAlg::Ed25519 => &["alg", "crv", "kid", "kty", "use", "x"],
            _ => &["alg", "kid", "kty", "pub", "use"],
        };
        assert_eq!(members, expected, "{alg}: public members only");
    }
    let server = JwksServer::start(&jwks).unwrap();
    assert!(
        assert_accepted(&VERIFIERS, &first.token, &server.url(), ISSUER, alg.as_str(), "alice").await >= 1,
        "{alg}: some verifier implements it"
    );

    node_refuses(&server, &tamper(&first.token), alg, BAD_SIGNATURE).await;
    node_refuses(&server, &with_claim(&first.token, "sub", json!("mallory")).unwrap(), alg, FORGED).await;
    node_refuses(&server, &with_kid(&first.token, "not-a-published-kid"), alg, UNKNOWN_KID).await;

    // Size: EdDSA signing inputs go to KMS as they are, so at most 4096 bytes; ML-DSA ones
    // above that go as μ; ES256K ones as a digest, whatever their size.
    let signs = w.kms.calls("Sign");
    let big = w
        .signer
        .sign_event(json!({"claims": {"sub": "bob", "blob": "x".repeat(6_000)}}), kms_jwt::unix_now())
        .await;
    match alg {
        SigningAlg::EdDSA | SigningAlg::Ed25519 => {
            let err = big.unwrap_err();
            assert_eq!(
                (err.code(), err.is_client_error(), err.is_retryable()),
                ("SigningInputTooLarge", true, false)
            );
            assert!(err.public_message().contains("at most 4096 bytes"), "{}", err.public_message());
            assert_eq!(w.kms.calls("Sign"), signs, "refused before KMS");
            let fits = w
                .signer
                .sign_event(json!({"claims": {"sub": "bob", "blob": "x".repeat(2_500)}}), kms_jwt::unix_now())
                .await
                .unwrap();
            assert!(fits.token.rsplit_once('.').unwrap().0.len() <= 4096);
            assert_accepted(&VERIFIERS, &fits.token, &server.url(), ISSUER, alg.as_str(), "bob").await;
            assert_eq!(w.kms.calls("Sign/RAW"), 2);
        }
        SigningAlg::ES256K => {
            assert_accepted(&VERIFIERS, &big.unwrap().token, &server.url(), ISSUER, alg.as_str(), "bob")
                .await;
            // The twin returns high S half the time, as KMS may: every token must still pass
            // noble's low-S check.
            for i in 0..6 {
                let token = w
                    .signer
                    .sign_event(json!({"claims": {"sub": format!("u{i}")}}), kms_jwt::unix_now())
                    .await
                    .unwrap();
                assert_accepted(
                    &VERIFIERS,
                    &token.token,
                    &server.url(),
                    ISSUER,
                    alg.as_str(),
                    &format!("u{i}"),
                )
                .await;
            }
            assert_eq!(w.kms.calls("Sign/DIGEST"), w.kms.calls("Sign"));
        }
        _ => {
            let big = big.unwrap();
            assert!(big.token.rsplit_once('.').unwrap().0.len() > 4096);
            assert_eq!((w.kms.calls("Sign/RAW"), w.kms.calls("Sign/EXTERNAL_MU")), (1, 1), "{alg}");
            assert_accepted(&VERIFIERS, &big.token, &server.url(), ISSUER, alg.as_str(), "bob").await;
            node_refuses(&server, &tamper(&big.token), alg, BAD_SIGNATURE).await;
        }
    }

    // A forced rotation: new tokens carry the new kid; the old token still verifies.
    w.rotator.run(Command::Rotate { force: true }, t0 + 60).await.unwrap();
    let second = w.signer.sign_event(json!({"claims": {"sub": "carol"}}), kms_jwt::unix_now()).await.unwrap();
    assert_ne!(second.kid, first.kid);
    let (jwks, _) = served(&w.store);
    server.set_jwks(&jwks);
    assert_accepted(&VERIFIERS, &first.token, &server.url(), ISSUER, alg.as_str(), "alice").await;
    assert_accepted(&VERIFIERS, &second.token, &server.url(), ISSUER, alg.as_str(), "carol").await;
    for verifier in VERIFIERS.into_iter().filter(|v| v.supports(alg.as_str())) {
        let verdict =
            verify_with(verifier, &second.token, &server.url(), "https://someone-else.test", None).await;
        let class = verdict
            .expect_err(&format!("{alg}, {verifier}: wrong issuer accepted"))
            .rejected_class()
            .map(str::to_owned);
        let expected = ["JwtInvalidIssuerError", "JWTClaimValidationFailed", "NobleClaimInvalid"];
        assert!(class.as_deref().is_some_and(|c| expected.contains(&c)), "{alg}, {verifier}: {class:?}");
    }
}

#[tokio::test]
async fn eddsa() {
    lifecycle(SigningAlg::EdDSA).await;
}

#[tokio::test]
async fn ed25519_fully_specified() {
    lifecycle(SigningAlg::Ed25519).await;
}

#[tokio::test]
async fn es256k() {
    lifecycle(SigningAlg::ES256K).await;
}

#[tokio::test]
async fn ml_dsa_44() {
    lifecycle(SigningAlg::MlDsa44).await;
}

#[tokio::test]
async fn ml_dsa_65() {
    lifecycle(SigningAlg::MlDsa65).await;
}

#[tokio::test]
async fn ml_dsa_87() {
    lifecycle(SigningAlg::MlDsa87).await;
}

/// The twin holds KMS's line where LocalStack does not: a signing algorithm the key spec does
/// not support, a message type the algorithm does not take, a RAW message over 4096 bytes.
#[tokio::test]
async fn the_twin_refuses_what_kms_refuses() {
    let kms = MemoryKms::new();
    let tags = KeyTags { keyring: kms_jwt::test_stacks::single_region_keyring(), request_id: "r".into() };
    // What is refused here is refused by the key's spec, after authorization passed.
    let rotate = kms.rotate_role();
    let ed = kms.create_unrestricted_key(&rotate, SigningAlg::EdDSA, &tags).unwrap();
    let ml = kms.create_unrestricted_key(&rotate, SigningAlg::MlDsa44, &tags).unwrap();
    let k1 = kms.create_unrestricted_key(&rotate, SigningAlg::ES256K, &tags).unwrap();
    let p256 = kms.create_unrestricted_key(&rotate, SigningAlg::ES256, &tags).unwrap();
    let raw = |n: usize| SigningInput::Raw(vec![b'a'; n]);
    // Allowed: KMS knows key specs and its own algorithm names, not JOSE's; the same KMS
    // algorithm under another JOSE name is the same request.
    kms.sign_as(&rotate, &ed, SigningAlg::Ed25519, &raw(10)).unwrap();
    kms.sign_as(&rotate, &ml, SigningAlg::MlDsa44, &SigningInput::ExternalMu([1; 64])).unwrap();
    kms.sign_as(&rotate, &k1, SigningAlg::ES256K, &SigningInput::Digest(vec![1; 32])).unwrap();
    for (key, alg, input, why) in [
        (&ed, SigningAlg::EdDSA, SigningInput::Digest(vec![1; 64]), "requires MessageType RAW"),
        (&ed, SigningAlg::EdDSA, raw(4097), "at most 4096"),
        (&ed, SigningAlg::ES256, SigningInput::Digest(vec![1; 32]), "not valid for a ECC_NIST_EDWARDS25519"),
        (&ml, SigningAlg::MlDsa44, raw(4097), "at most 4096"),
        (&ml, SigningAlg::MlDsa44, SigningInput::Digest(vec![1; 64]), "RAW or a 64-byte EXTERNAL_MU"),
        (&k1, SigningAlg::ES256K, SigningInput::Digest(vec![1; 48]), "wrong length"),
        (&k1, SigningAlg::ES256K, SigningInput::ExternalMu([1; 64]), "EXTERNAL_MU is for ML-DSA"),
        (&p256, SigningAlg::ES384, SigningInput::Digest(vec![1; 48]), "not valid for a ECC_NIST_P256"),
        (&k1, SigningAlg::ES384, SigningInput::Digest(vec![1; 48]), "not valid for a ECC_SECG_P256K1"),
    ] {
        let err = kms.sign_as(&rotate, key, alg, &input).expect_err(why).to_string();
        assert!(err.contains(why), "{why}: {err}");
    }
}

/// The sizes docs/verifiers.md gives for ML-DSA tokens and JWKS entries (with a `sub` claim and the
/// registered ones), and how many keys fit in the 150,000 bytes rotate allows.
#[tokio::test]
async fn ml_dsa_token_and_jwks_sizes_are_as_documented() {
    for (alg, entry, keys_in_cap, token) in [
        (SigningAlg::MlDsa44, 1_800..1_950, 80, 3_400..3_700),
        (SigningAlg::MlDsa65, 2_650..2_800, 55, 4_550..4_850),
        (SigningAlg::MlDsa87, 3_500..3_650, 42, 6_350..6_650),
    ] {
        let w = world(alg);
        w.rotator.reconcile(kms_jwt::unix_now()).await.unwrap();
        let (jwks, _) = served(&w.store);
        let per_key = (jwks.len() - r#"{"keys":[]}"#.len()) / 2;
        assert!(entry.contains(&per_key), "{alg}: {per_key} bytes per JWKS entry");
        assert_eq!(kms_jwt::rotate::MAX_JWKS_BYTES / (per_key + 1), keys_in_cap, "{alg}");
        let signed =
            w.signer.sign_event(json!({"claims": {"sub": "alice"}}), kms_jwt::unix_now()).await.unwrap();
        assert!(token.contains(&signed.token.len()), "{alg}: token of {} bytes", signed.token.len());
        // Ten keys, the default cap, are far inside the JWKS limit.
        assert!(10 * (per_key + 1) < kms_jwt::rotate::MAX_JWKS_BYTES / 4);
    }
}

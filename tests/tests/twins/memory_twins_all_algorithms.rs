//! The in-memory KMS twin for the ten digest-signed algorithms (RS*, PS*, ES256/384/512,
//! ES256K): a key created in `MemoryKms`, a token signed with it through `TokenSigner`, verified
//! by an independent verifier from the JWKS alone (`jsonwebtoken` on aws-lc; `p521` for ES512,
//! `k256` for ES256K). Also KMS's refusals, for every algorithm: a signing algorithm the key
//! spec does not support, and a digest of the wrong length. EdDSA and ML-DSA tokens are
//! verified in `es256k_eddsa_ml_dsa.rs`.

use std::sync::Arc;
use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use kms_jwt::config::SignConfig;
use kms_jwt::jose::alg::KeyFamily;
use kms_jwt::jose::jwk::PublicJwk;
use kms_jwt::keyring::{Keyring, NewKey};
use kms_jwt::memory::{MemoryKms, MemoryStore};
use kms_jwt::ports::{KeyAdmin, KeyTags, KmsError, SigningInput};
use kms_jwt::signer::{TokenSigner, MAX_CLAIMS_BYTES};
use kms_jwt::SigningAlg;
use kms_jwt_tests::verify;
use serde_json::{json, Value};

const ISSUER: &str = "https://issuer.memory-twins.test";

async fn new_key(kms: &MemoryKms, alg: SigningAlg, n: i64) -> NewKey {
    let tags =
        KeyTags { keyring: kms_jwt::test_stacks::single_region_keyring(), request_id: format!("r{n}") };
    let arn = kms.create_key(alg, &tags).await.unwrap();
    // GetPublicKey's SubjectPublicKeyInfo, through the same parser rotate uses on KMS's answer.
    let public_jwk = PublicJwk::from_spki_der(&kms.public_key_der(&arn).await.unwrap()).unwrap();
    public_jwk.check_alg(alg).unwrap();
    NewKey { kid: public_jwk.thumbprint(), alg, kms_key_arn: arn, public_jwk, created_at: n }
}

/// A keyring of two `alg` keys in the twins, and a signer over it.
async fn setup(alg: SigningAlg) -> (Arc<MemoryKms>, TokenSigner<Arc<MemoryKms>, MemoryStore>, Keyring) {
    let kms = Arc::new(MemoryKms::new());
    let now = kms_jwt::unix_now();
    let ring = Keyring::empty().bootstrap(new_key(&kms, alg, 1).await, new_key(&kms, alg, 2).await, now);
    let signer =
        SignConfig::for_tests(ISSUER).token_signer(kms.clone(), MemoryStore::with_document(&ring.to_json()));
    (kms, signer, ring)
}

fn header(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

#[tokio::test]
async fn every_algorithm_signs_through_token_signer_and_verifies_independently() {
    for alg in SigningAlg::ALL.into_iter().filter(|alg| alg.hash().is_some()) {
        let started = Instant::now();
        let (kms, signer, ring) = setup(alg).await;
        let setup_time = started.elapsed();
        let jwks = serde_json::to_string(&ring.jwks()).unwrap();

        let signed =
            signer.sign_event(json!({"claims": {"sub": "alice"}}), kms_jwt::unix_now()).await.unwrap();
        assert_eq!(header(&signed.token)["alg"], alg.as_str());
        assert_eq!(Some(signed.kid.as_str()), ring.current().map(|k| k.kid.as_str()));
        let claims = verify(&signed.token, &jwks, ISSUER).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!((claims["sub"].as_str(), claims["iss"].as_str()), (Some("alice"), Some(ISSUER)));

        // A token far over KMS's 4096-byte limit on raw messages: KMS is sent its digest only.
        let big = "x".repeat(MAX_CLAIMS_BYTES - 100);
        let signed = signer.sign_event(json!({"claims": {"blob": big}}), kms_jwt::unix_now()).await.unwrap();
        assert!(signed.token.len() > 4 * 4_096, "{alg}: {} bytes", signed.token.len());
        verify(&signed.token, &jwks, ISSUER).unwrap_or_else(|e| panic!("{alg}: {e}"));
        let hash_len = alg.hash().unwrap().output_len();
        assert_eq!(kms.sign_message_sizes(), vec![hash_len; 2], "{alg}: what Sign was sent");

        // Someone else's key (the next one, not yet signing) does not verify this token.
        let next = ring.next().unwrap();
        let forged = kms_jwt_tests::with_kid(&signed.token, &next.kid);
        assert!(verify(&forged, &jwks, ISSUER).is_err(), "{alg}");
        // Keys are generated once per process and size (see `memory`): print what it cost.
        eprintln!("{alg}: two keys in {setup_time:?}, total {:?}", started.elapsed());
    }
}

/// What KMS accepts per key spec: ECDSA with the curve's own hash only; any of the six RSASSA
/// algorithms with any RSA key; ED25519_SHA_512 (EdDSA or Ed25519) with an Ed25519 key;
/// ML_DSA_SHAKE_256 with any ML-DSA key. Everything else is refused as
/// `InvalidKeyUsageException`.
#[tokio::test]
async fn sign_with_an_algorithm_the_key_spec_does_not_support_is_refused() {
    let kms = MemoryKms::new();
    let tags = KeyTags { keyring: kms_jwt::test_stacks::single_region_keyring(), request_id: "r".into() };
    // What is refused here is refused by the key spec, after authorization passed.
    let rotate = kms.rotate_role();
    for key_alg in SigningAlg::ALL {
        let arn = kms.create_unrestricted_key(&rotate, key_alg, &tags).unwrap();
        for alg in SigningAlg::ALL {
            let rsa = |a: SigningAlg| matches!(a.family(), KeyFamily::Rsa { .. });
            // KMS checks the signing algorithm, not the JWS name: ES256K's ECDSA_SHA_256 is
            // valid for a P-256 key, ML_DSA_SHAKE_256 for every ML-DSA level.
            let same_kms_alg = alg.kms_signing_algorithm() == key_alg.kms_signing_algorithm();
            let supported = (rsa(alg) && rsa(key_alg)) || (!rsa(key_alg) && same_kms_alg);
            let input = match alg.hash() {
                Some(hash) => SigningInput::Digest(hash.digest(b"payload")),
                None => SigningInput::Raw(b"payload".to_vec()),
            };
            match kms.sign_as(&rotate, &arn, alg, &input) {
                Ok(_) => assert!(supported, "a {} key signed {alg}", key_alg.kms_key_spec()),
                Err(e) => {
                    assert!(!supported, "a {} key refused {alg}: {e}", key_alg.kms_key_spec());
                    assert!(matches!(e, KmsError::Other { operation: "Sign", .. }), "{e:?}");
                    assert!(e.to_string().contains("InvalidKeyUsageException"), "{e}");
                }
            }
        }
        // The digest of another hash is refused even for a supported algorithm, and a digest
        // at all for EdDSA and ML-DSA, which KMS signs RAW (or as μ).
        let wrong = match key_alg.hash() {
            Some(hash) if hash.output_len() == 32 => vec![0; 48],
            _ => vec![0; 32],
        };
        let err = kms.sign_as(&rotate, &arn, key_alg, &SigningInput::Digest(wrong)).unwrap_err();
        assert!(err.to_string().contains("ValidationException"), "{key_alg}: {err}");
    }
}

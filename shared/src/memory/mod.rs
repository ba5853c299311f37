//! In-memory twins of the AWS ports, for fast tests and long simulations.
//!
//! They follow the AWS semantics that matter to kms-jwt: KMS keys of every key spec kms-jwt
//! uses sign real signatures over the digest they are sent (ECDSA as DER, RSASSA as the plain
//! octet string, as KMS returns them), `GetPublicKey` answers DER `SubjectPublicKeyInfo`,
//! disabled or deleted keys refuse to sign, and the store's compare-and-swap fails when the
//! current version moved. Every call is authorized as AWS would authorize it
//! (`authorization`, over [`crate::authz`] and [`crate::test_stacks`]).
//!
//! The KMS twin is `kms` (keys and state) with its operations by port, each authorized, as the
//! port's role or any principal: `kms_signing`, `kms_key_admin`, `kms_replicas`; `kms_views`
//! (a region's endpoint, one principal's calls). Secrets Manager is `store` and `replica`;
//! CloudFront and EventBridge are `notify` (not authorized: rotate's only calls there are
//! `CreateInvalidation` on one distribution and `PutEvents` on one bus); `faulty` injects
//! faults around any port.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use async_trait::async_trait;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::elliptic_curve::rand_core::OsRng;
use p256::pkcs8::EncodePublicKey;
use rsa::{Pkcs1v15Sign, Pss, RsaPrivateKey};
use sha2::{Sha256, Sha384, Sha512};

use crate::arn::{arn_region, regional_arn};
use crate::authz::{self, Decision, Request};
use crate::jose::alg::{Curve, KeyFamily, SigningAlg};
use crate::memory_keys::{check_sign_request, ExtraKey};
use crate::ports::{
    KeyAdmin, KeyPage, KeySigner, KeyTags, KeyringStore, KmsError, ReplicaAdmin, SigningInput, StoreError,
    StoredDocument,
};
use crate::test_stacks::{self, Deployment};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock must not hide the original failure.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

mod authorization;
mod faulty;
mod kms;
mod kms_key_admin;
mod kms_replicas;
mod kms_signing;
mod kms_views;
mod notify;
mod replica;
mod store;

use authorization::*;
pub use faulty::*;
pub use kms::*;
pub use kms_views::*;
pub use notify::*;
pub use replica::*;
pub use store::*;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::jwk::PublicJwk;

    fn tags() -> KeyTags {
        KeyTags { keyring: crate::test_stacks::single_region_keyring(), request_id: "r1".into() }
    }

    /// KMS's rule: an ECC key signs with its own curve's ECDSA only, an RSA key with any of the
    /// six RSASSA algorithms, Ed25519 and ML-DSA keys with their one algorithm; anything else is
    /// `InvalidKeyUsageException`, not a signature.
    #[tokio::test]
    async fn sign_refuses_algorithms_the_key_spec_does_not_support() {
        let kms = MemoryKms::new();
        // What is refused here is refused by the key spec, after authorization passed.
        let rotate = kms.rotate_role();
        for key_alg in SigningAlg::ALL {
            let arn = kms.create_unrestricted_key(&rotate, key_alg, &tags()).unwrap();
            let jwk = PublicJwk::from_spki_der(&kms.public_key_der(&arn).await.unwrap()).unwrap();
            assert_eq!(jwk.check_alg(key_alg), Ok(()), "{key_alg}");
            for alg in SigningAlg::ALL {
                let input = match alg.hash() {
                    Some(hash) => SigningInput::Digest(hash.digest(b"message")),
                    None => SigningInput::Raw(b"message".to_vec()),
                };
                let signed = kms.sign_as(&rotate, &arn, alg, &input);
                let rsa = |a: SigningAlg| matches!(a.family(), KeyFamily::Rsa { .. });
                // KMS sees only the signing algorithm: ECDSA_SHA_256 is valid for a P-256 and a
                // secp256k1 key, ML_DSA_SHAKE_256 for every ML-DSA key, ED25519_SHA_512 serves
                // EdDSA and Ed25519.
                let same_kms_alg = alg.kms_signing_algorithm() == key_alg.kms_signing_algorithm();
                let allowed = (rsa(key_alg) && rsa(alg)) || (!rsa(key_alg) && same_kms_alg);
                match signed {
                    Ok(signature) => assert!(allowed && !signature.is_empty(), "{key_alg} key signed {alg}"),
                    Err(e) => {
                        assert!(!allowed, "{key_alg} key refused {alg}: {e}");
                        assert!(matches!(e, KmsError::Other { operation: "Sign", .. }), "{e:?}");
                        assert!(e.to_string().contains("InvalidKeyUsageException"), "{e}");
                    }
                }
            }
        }
    }

    /// The message is a digest (`MessageType=DIGEST`) of exactly the hash's length, so a token
    /// of any size costs one 32–64-byte `Sign` request; a raw message is refused.
    #[tokio::test]
    async fn sign_takes_a_digest_of_the_hash_length_only() {
        let kms = MemoryKms::new();
        let arn = kms.create_key(SigningAlg::ES384, &tags()).await.unwrap();
        for len in [0, 32, 47, 49, 64, 4_096, 4_097] {
            let digest = SigningInput::Digest(vec![7; len]);
            let err = kms.sign(&arn, SigningAlg::ES384, &digest).await.unwrap_err();
            assert!(err.to_string().contains("ValidationException"), "{len}: {err}");
        }
        assert!(kms.sign(&arn, SigningAlg::ES384, &SigningInput::Digest(vec![7; 48])).await.is_ok());
        assert_eq!(kms.calls("Sign"), 8);
    }

    /// Each twin's RSA keys are distinct; twins share the process's generated keys.
    #[tokio::test]
    async fn rsa_keys_are_distinct_within_a_twin_and_shared_across_twins() {
        async fn kid(kms: &MemoryKms, alg: SigningAlg) -> String {
            let arn = kms.create_key(alg, &tags()).await.unwrap();
            let der = kms.public_key_der(&arn).await.unwrap();
            PublicJwk::from_spki_der(&der).unwrap().thumbprint()
        }
        let (a, b) = (MemoryKms::new(), MemoryKms::new());
        let (a1, a2) = (kid(&a, SigningAlg::PS256).await, kid(&a, SigningAlg::RS256).await);
        let b1 = kid(&b, SigningAlg::RS256).await;
        assert_ne!(a1, a2);
        assert_eq!(a1, b1);
    }
}

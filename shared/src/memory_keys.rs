//! The in-memory KMS's secp256k1, Ed25519 and ML-DSA keys (real, maintained implementations:
//! RustCrypto `k256` and `ml-dsa`, `ed25519-dalek`), and the rules KMS applies to a `Sign`
//! request, which LocalStack does not check.

use ed25519_dalek::pkcs8::EncodePublicKey as _;
use k256::ecdsa::signature::hazmat::PrehashSigner;
use ml_dsa::{Keypair as _, MlDsa44, MlDsa65, MlDsa87};
use p256::elliptic_curve::rand_core::{OsRng, RngCore};

use crate::jose::alg::{KeyFamily, MlDsaLevel, SigningAlg};
use crate::ports::SigningInput;

/// Private halves of the keys the twin holds besides NIST ECDSA and RSA.
pub(crate) enum ExtraKey {
    Secp256k1(k256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
    MlDsa44(Box<ml_dsa::SigningKey<MlDsa44>>),
    MlDsa65(Box<ml_dsa::SigningKey<MlDsa65>>),
    MlDsa87(Box<ml_dsa::SigningKey<MlDsa87>>),
}

impl ExtraKey {
    /// A new random key for `alg`, if it is one of these.
    pub(crate) fn generate(alg: SigningAlg) -> Option<ExtraKey> {
        let mut seed = [0u8; 32];
        OsRng.fill_bytes(&mut seed);
        let seed = ml_dsa::Seed::from(seed);
        Some(match alg.family() {
            KeyFamily::Ec { curve: crate::jose::alg::Curve::Secp256k1 } => {
                ExtraKey::Secp256k1(k256::ecdsa::SigningKey::random(&mut OsRng))
            }
            KeyFamily::Ed25519 => ExtraKey::Ed25519(ed25519_dalek::SigningKey::generate(&mut OsRng)),
            KeyFamily::MlDsa(MlDsaLevel::L44) => {
                ExtraKey::MlDsa44(Box::new(ml_dsa::SigningKey::from_seed(&seed)))
            }
            KeyFamily::MlDsa(MlDsaLevel::L65) => {
                ExtraKey::MlDsa65(Box::new(ml_dsa::SigningKey::from_seed(&seed)))
            }
            KeyFamily::MlDsa(MlDsaLevel::L87) => {
                ExtraKey::MlDsa87(Box::new(ml_dsa::SigningKey::from_seed(&seed)))
            }
            _ => return None,
        })
    }

    /// `GetPublicKey`: DER SubjectPublicKeyInfo, as KMS returns it.
    pub(crate) fn public_key_der(&self) -> Result<Vec<u8>, String> {
        let der = match self {
            ExtraKey::Secp256k1(k) => {
                use k256::pkcs8::EncodePublicKey;
                k.verifying_key().to_public_key_der().map(|d| d.as_bytes().to_vec())
            }
            ExtraKey::Ed25519(k) => k.verifying_key().to_public_key_der().map(|d| d.as_bytes().to_vec()),
            ExtraKey::MlDsa44(k) => {
                return ml_dsa_spki("2.16.840.1.101.3.4.3.17", &k.verifying_key().encode())
            }
            ExtraKey::MlDsa65(k) => {
                return ml_dsa_spki("2.16.840.1.101.3.4.3.18", &k.verifying_key().encode())
            }
            ExtraKey::MlDsa87(k) => {
                return ml_dsa_spki("2.16.840.1.101.3.4.3.19", &k.verifying_key().encode())
            }
        };
        der.map_err(|e| e.to_string())
    }

    /// Sign an input that [`check_sign_request`] accepted: DER for ECDSA (in either S form,
    /// as KMS does), the raw octets for Ed25519 and ML-DSA.
    pub(crate) fn sign(&self, input: &SigningInput) -> Result<Vec<u8>, String> {
        match (self, input) {
            (ExtraKey::Secp256k1(k), SigningInput::Digest(digest)) => {
                let sig: k256::ecdsa::Signature = k.sign_prehash(digest).map_err(|e| e.to_string())?;
                // k256 always answers low S; KMS does not promise it. Return the high form half
                // the time, so the tests see both.
                let sig = if OsRng.next_u32().is_multiple_of(2) {
                    let (r, s) = sig.split_scalars();
                    k256::ecdsa::Signature::from_scalars(r, -*s).map_err(|e| e.to_string())?
                } else {
                    sig
                };
                Ok(sig.to_der().as_bytes().to_vec())
            }
            (ExtraKey::Ed25519(k), SigningInput::Raw(message)) => {
                Ok(ed25519_dalek::Signer::sign(k, message).to_bytes().to_vec())
            }
            (ExtraKey::MlDsa44(k), input) => ml_dsa_sign(k, input),
            (ExtraKey::MlDsa65(k), input) => ml_dsa_sign(k, input),
            (ExtraKey::MlDsa87(k), input) => ml_dsa_sign(k, input),
            _ => Err(format!("unsupported MessageType {} for this key", input.message_type())),
        }
    }
}

fn ml_dsa_sign<P: ml_dsa::MlDsaParams>(
    key: &ml_dsa::SigningKey<P>,
    input: &SigningInput,
) -> Result<Vec<u8>, String> {
    let signature = match input {
        // Pure ML-DSA, empty context (what KMS's RAW ML_DSA_SHAKE_256 computes).
        SigningInput::Raw(message) => {
            key.expanded_key().sign_deterministic(message, &[]).map_err(|e| e.to_string())?
        }
        SigningInput::ExternalMu(mu) => {
            let mu = mu.as_slice().try_into().map_err(|_| "μ is not 64 bytes".to_owned())?;
            key.expanded_key().sign_mu_deterministic(&mu)
        }
        SigningInput::Digest(_) => return Err("ML-DSA takes RAW or EXTERNAL_MU".into()),
    };
    Ok(signature.encode().to_vec())
}

/// SubjectPublicKeyInfo of an ML-DSA key (RFC 9881 §2: parameters absent, the `pkEncode`
/// octets as the BIT STRING).
fn ml_dsa_spki(oid: &str, public_key: &[u8]) -> Result<Vec<u8>, String> {
    use der::Encode;
    let oid = der::asn1::ObjectIdentifier::new(oid).map_err(|e| e.to_string())?;
    spki::SubjectPublicKeyInfoRef {
        algorithm: spki::AlgorithmIdentifierRef { oid, parameters: None },
        subject_public_key: der::asn1::BitStringRef::from_bytes(public_key).map_err(|e| e.to_string())?,
    }
    .to_der()
    .map_err(|e| e.to_string())
}

/// KMS's checks of a `Sign` request against the key's spec, before any signing: the signing
/// algorithm must be one the key spec supports (KMS "Key spec reference"), and the message
/// type and length what that algorithm accepts (KMS API reference, `Sign`): ED25519_SHA_512
/// only RAW, ML_DSA_SHAKE_256 RAW or a 64-byte EXTERNAL_MU, ECDSA and RSA RAW or a DIGEST of
/// the algorithm's hash length; RAW messages at most 4096 bytes.
pub(crate) fn check_sign_request(
    spec: &str,
    requested: SigningAlg,
    input: &SigningInput,
) -> Result<(), String> {
    let kms_alg = requested.kms_signing_algorithm();
    let spec_allows = match spec {
        "ECC_NIST_P256" | "ECC_SECG_P256K1" => kms_alg == "ECDSA_SHA_256",
        "ECC_NIST_P384" => kms_alg == "ECDSA_SHA_384",
        "ECC_NIST_P521" => kms_alg == "ECDSA_SHA_512",
        "RSA_2048" | "RSA_3072" | "RSA_4096" => kms_alg.starts_with("RSASSA_"),
        "ECC_NIST_EDWARDS25519" => kms_alg == "ED25519_SHA_512" || kms_alg == "ED25519_PH_SHA_512",
        _ => kms_alg == "ML_DSA_SHAKE_256" && spec.starts_with("ML_DSA_"),
    };
    if !spec_allows {
        return Err(format!("InvalidKeyUsageException: {kms_alg} is not valid for a {spec} key"));
    }
    let len = input.message().len();
    match (kms_alg, input) {
        (_, SigningInput::Raw(_)) if len > crate::jose::ml_dsa::KMS_RAW_MESSAGE_LIMIT => {
            Err(format!("ValidationException: a RAW message is at most 4096 bytes, not {len}"))
        }
        ("ED25519_SHA_512", SigningInput::Raw(_)) => Ok(()),
        ("ED25519_SHA_512", _) => Err("ValidationException: ED25519_SHA_512 requires MessageType RAW".into()),
        ("ML_DSA_SHAKE_256", SigningInput::Raw(_)) => Ok(()),
        ("ML_DSA_SHAKE_256", SigningInput::ExternalMu(_)) if len == 64 => Ok(()),
        ("ML_DSA_SHAKE_256", _) => {
            Err("ValidationException: ML-DSA takes RAW or a 64-byte EXTERNAL_MU".into())
        }
        (_, SigningInput::ExternalMu(_)) => {
            Err(format!("ValidationException: EXTERNAL_MU is for ML-DSA, not {kms_alg}"))
        }
        (_, SigningInput::Raw(_)) => Ok(()),
        (_, SigningInput::Digest(_)) => match requested.hash() {
            Some(hash) if hash.digest(b"").len() == len => Ok(()),
            _ => Err(format!("ValidationException: a {kms_alg} digest of {len} bytes has the wrong length")),
        },
    }
}

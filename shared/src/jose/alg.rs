//! The JWS algorithms that an AWS KMS asymmetric key can back: the nine of RFC 7518 §3.1,
//! ES256K (RFC 8812), EdDSA / Ed25519 (RFC 8037, RFC 9864) and ML-DSA-44/65/87 (RFC 9964).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// A JWS `alg` value that KMS can sign for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlg {
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// ECDSA on P-521 with SHA-512.
    ES512,
    /// RSASSA-PKCS1-v1_5 with SHA-256: the default `SIGNING_ALG`.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on secp256k1 with SHA-256 (RFC 8812 §3.1).
    ES256K,
    /// Ed25519 under the polymorphic name of RFC 8037 §3.1, which verifiers know best.
    EdDSA,
    /// Ed25519 under its fully-specified name (RFC 9864 §2.2); same key, same signature.
    Ed25519,
    /// ML-DSA-44 (FIPS 204, RFC 9964), signed by KMS as `ML_DSA_SHAKE_256`.
    #[serde(rename = "ML-DSA-44")]
    MlDsa44,
    /// ML-DSA-65 (FIPS 204, RFC 9964), signed by KMS as `ML_DSA_SHAKE_256`.
    #[serde(rename = "ML-DSA-65")]
    MlDsa65,
    /// ML-DSA-87 (FIPS 204, RFC 9964), signed by KMS as `ML_DSA_SHAKE_256`.
    #[serde(rename = "ML-DSA-87")]
    MlDsa87,
}

/// The hash that an ECDSA or RSA algorithm signs over. We hash locally and send KMS only the
/// digest (`MessageType=DIGEST`), so those tokens are never bounded by KMS's 4096-byte message
/// limit. EdDSA and ML-DSA have no such prehash: see [`SigningAlg::hash`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    /// SHA-256: 32-byte digests.
    Sha256,
    /// SHA-384: 48-byte digests.
    Sha384,
    /// SHA-512: 64-byte digests.
    Sha512,
}

impl HashAlg {
    /// Octets in a digest: what KMS expects as a `DIGEST` message for the algorithm.
    pub fn output_len(self) -> usize {
        match self {
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    /// The digest of `message`: what KMS is asked to sign.
    pub fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            HashAlg::Sha256 => Sha256::digest(message).to_vec(),
            HashAlg::Sha384 => Sha384::digest(message).to_vec(),
            HashAlg::Sha512 => Sha512::digest(message).to_vec(),
        }
    }
}

/// Key family of an algorithm, which decides the JWK shape and the signature encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// ECDSA on the named curve; JWS signatures are fixed-width `R || S` of `coordinate_len` each.
    Ec {
        /// The curve, which fixes the JWK `crv` and the signature width.
        curve: Curve,
    },
    /// RSA with at least this many modulus bits.
    Rsa {
        /// Smallest modulus in bits (2048, 3072 or 4096), also the size rotate creates.
        min_bits: usize,
    },
    /// Ed25519 (RFC 8037): JWK `kty: OKP`, `crv: Ed25519`; 64-octet signatures.
    Ed25519,
    /// ML-DSA (FIPS 204, RFC 9964): JWK `kty: AKP` with `alg` and `pub`.
    MlDsa(MlDsaLevel),
}

/// The three ML-DSA parameter sets of FIPS 204 Table 1, and their sizes (Table 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MlDsaLevel {
    /// ML-DSA-44 (NIST security category 2).
    L44,
    /// ML-DSA-65 (category 3).
    L65,
    /// ML-DSA-87 (category 5).
    L87,
}

impl MlDsaLevel {
    /// Octets of the encoded public key (`pkEncode`, FIPS 204 Algorithm 22).
    pub fn public_key_len(self) -> usize {
        match self {
            MlDsaLevel::L44 => 1312,
            MlDsaLevel::L65 => 1952,
            MlDsaLevel::L87 => 2592,
        }
    }

    /// Octets of an encoded signature (`sigEncode`, FIPS 204 Algorithm 26).
    pub fn signature_len(self) -> usize {
        match self {
            MlDsaLevel::L44 => 2420,
            MlDsaLevel::L65 => 3309,
            MlDsaLevel::L87 => 4627,
        }
    }

    /// The JWS algorithm of this parameter set.
    pub fn alg(self) -> SigningAlg {
        match self {
            MlDsaLevel::L44 => SigningAlg::MlDsa44,
            MlDsaLevel::L65 => SigningAlg::MlDsa65,
            MlDsaLevel::L87 => SigningAlg::MlDsa87,
        }
    }
}

/// Elliptic curves KMS supports for ECDSA signing, with their JWK `crv` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    /// NIST P-256 (`secp256r1`), for ES256.
    P256,
    /// NIST P-384 (`secp384r1`), for ES384.
    P384,
    /// NIST P-521 (`secp521r1`), for ES512.
    P521,
    /// SEC 2 secp256k1 (RFC 8812 §3.1).
    Secp256k1,
}

impl Curve {
    /// RFC 7518 §6.2.1.1 name.
    pub fn jwk_name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
            Curve::Secp256k1 => "secp256k1",
        }
    }

    /// Octets per coordinate and per signature half (RFC 7518 §3.4, §6.2.1.2).
    pub fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 | Curve::Secp256k1 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }
}

impl SigningAlg {
    /// Every supported algorithm: the names [`FromStr`] accepts.
    pub const ALL: [SigningAlg; 15] = [
        SigningAlg::ES256,
        SigningAlg::ES384,
        SigningAlg::ES512,
        SigningAlg::RS256,
        SigningAlg::RS384,
        SigningAlg::RS512,
        SigningAlg::PS256,
        SigningAlg::PS384,
        SigningAlg::PS512,
        SigningAlg::ES256K,
        SigningAlg::EdDSA,
        SigningAlg::Ed25519,
        SigningAlg::MlDsa44,
        SigningAlg::MlDsa65,
        SigningAlg::MlDsa87,
    ];

    /// The JWS `alg` name, as it appears in token headers and JWKs.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::ES256 => "ES256",
            SigningAlg::ES384 => "ES384",
            SigningAlg::ES512 => "ES512",
            SigningAlg::RS256 => "RS256",
            SigningAlg::RS384 => "RS384",
            SigningAlg::RS512 => "RS512",
            SigningAlg::PS256 => "PS256",
            SigningAlg::PS384 => "PS384",
            SigningAlg::PS512 => "PS512",
            SigningAlg::ES256K => "ES256K",
            SigningAlg::EdDSA => "EdDSA",
            SigningAlg::Ed25519 => "Ed25519",
            SigningAlg::MlDsa44 => "ML-DSA-44",
            SigningAlg::MlDsa65 => "ML-DSA-65",
            SigningAlg::MlDsa87 => "ML-DSA-87",
        }
    }

    /// The hash we compute locally before KMS signs the digest, or `None` when KMS must see
    /// the message itself: Ed25519 (`ED25519_SHA_512` accepts only `MessageType=RAW`) and
    /// ML-DSA (RAW, or the external μ of [`crate::jose::ml_dsa`]).
    pub fn hash(self) -> Option<HashAlg> {
        use SigningAlg::*;
        match self {
            ES256 | RS256 | PS256 | ES256K => Some(HashAlg::Sha256),
            ES384 | RS384 | PS384 => Some(HashAlg::Sha384),
            ES512 | RS512 | PS512 => Some(HashAlg::Sha512),
            EdDSA | Ed25519 | MlDsa44 | MlDsa65 | MlDsa87 => None,
        }
    }

    /// The key type, curve or smallest RSA modulus the algorithm needs.
    pub fn family(self) -> KeyFamily {
        use SigningAlg::*;
        match self {
            ES256 => KeyFamily::Ec { curve: Curve::P256 },
            ES384 => KeyFamily::Ec { curve: Curve::P384 },
            ES512 => KeyFamily::Ec { curve: Curve::P521 },
            // RFC 7518 §3.3/§3.5: 2048 bits minimum. Larger hashes get larger keys by default so
            // the key strength is not the weak link.
            RS256 | PS256 => KeyFamily::Rsa { min_bits: 2048 },
            RS384 | PS384 => KeyFamily::Rsa { min_bits: 3072 },
            RS512 | PS512 => KeyFamily::Rsa { min_bits: 4096 },
            ES256K => KeyFamily::Ec { curve: Curve::Secp256k1 },
            EdDSA | Ed25519 => KeyFamily::Ed25519,
            MlDsa44 => KeyFamily::MlDsa(MlDsaLevel::L44),
            MlDsa65 => KeyFamily::MlDsa(MlDsaLevel::L65),
            MlDsa87 => KeyFamily::MlDsa(MlDsaLevel::L87),
        }
    }

    /// The KMS `KeySpec` a new key for this algorithm is created with (KMS "Key spec
    /// reference": `ECC_SECG_P256K1`, `ECC_NIST_EDWARDS25519`, `ML_DSA_44/65/87`).
    pub fn kms_key_spec(self) -> &'static str {
        match self.family() {
            KeyFamily::Ec { curve: Curve::P256 } => "ECC_NIST_P256",
            KeyFamily::Ec { curve: Curve::P384 } => "ECC_NIST_P384",
            KeyFamily::Ec { curve: Curve::P521 } => "ECC_NIST_P521",
            KeyFamily::Ec { curve: Curve::Secp256k1 } => "ECC_SECG_P256K1",
            KeyFamily::Rsa { min_bits: 2048 } => "RSA_2048",
            KeyFamily::Rsa { min_bits: 3072 } => "RSA_3072",
            KeyFamily::Rsa { .. } => "RSA_4096",
            KeyFamily::Ed25519 => "ECC_NIST_EDWARDS25519",
            KeyFamily::MlDsa(MlDsaLevel::L44) => "ML_DSA_44",
            KeyFamily::MlDsa(MlDsaLevel::L65) => "ML_DSA_65",
            KeyFamily::MlDsa(MlDsaLevel::L87) => "ML_DSA_87",
        }
    }

    /// The JWS algorithms a key of KMS key spec `spec` can sign for (configuration checks).
    pub fn for_key_spec(spec: &str) -> Vec<SigningAlg> {
        SigningAlg::ALL.into_iter().filter(|alg| alg.kms_key_spec() == spec).collect()
    }

    /// The KMS `SigningAlgorithm` for this JWS algorithm. Ed25519 is the pure
    /// `ED25519_SHA_512` (RFC 8032 §5.1), never the prehashed `ED25519_PH_SHA_512`, which
    /// JOSE does not define; ML-DSA is `ML_DSA_SHAKE_256` (KMS API reference, `Sign`).
    pub fn kms_signing_algorithm(self) -> &'static str {
        use SigningAlg::*;
        match self {
            ES256 => "ECDSA_SHA_256",
            ES384 => "ECDSA_SHA_384",
            ES512 => "ECDSA_SHA_512",
            RS256 => "RSASSA_PKCS1_V1_5_SHA_256",
            RS384 => "RSASSA_PKCS1_V1_5_SHA_384",
            RS512 => "RSASSA_PKCS1_V1_5_SHA_512",
            PS256 => "RSASSA_PSS_SHA_256",
            PS384 => "RSASSA_PSS_SHA_384",
            PS512 => "RSASSA_PSS_SHA_512",
            ES256K => "ECDSA_SHA_256",
            EdDSA | Ed25519 => "ED25519_SHA_512",
            MlDsa44 | MlDsa65 | MlDsa87 => "ML_DSA_SHAKE_256",
        }
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `alg` name that is none of the supported ones (names are case-sensitive; `HS256` and `none` are
/// refused). Holds the rejected text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported signing algorithm {0:?}; expected one of ES256, ES384, ES512, RS256, RS384, RS512, PS256, PS384, PS512, ES256K, EdDSA, Ed25519, ML-DSA-44, ML-DSA-65, ML-DSA-87")]
pub struct UnsupportedAlg(pub String);

impl FromStr for SigningAlg {
    type Err = UnsupportedAlg;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SigningAlg::ALL.into_iter().find(|alg| alg.as_str() == s).ok_or_else(|| UnsupportedAlg(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_lookalikes() {
        for alg in SigningAlg::ALL {
            assert_eq!(alg.as_str().parse::<SigningAlg>(), Ok(alg));
        }
        for bad in ["es256", "HS256", "none", "eddsa", "ES521", "ML-DSA-44 ", "MLDSA44", "ES256k", ""] {
            assert!(bad.parse::<SigningAlg>().is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn kms_parameters_match_rfc7518() {
        assert_eq!(SigningAlg::ES512.kms_key_spec(), "ECC_NIST_P521");
        assert_eq!(SigningAlg::PS384.kms_key_spec(), "RSA_3072");
        assert_eq!(SigningAlg::RS256.kms_signing_algorithm(), "RSASSA_PKCS1_V1_5_SHA_256");
        assert_eq!(SigningAlg::PS512.kms_signing_algorithm(), "RSASSA_PSS_SHA_512");
        assert_eq!(SigningAlg::ES384.hash().map(|h| h.digest(b"").len()), Some(48));
        for alg in SigningAlg::ALL {
            if let Some(hash) = alg.hash() {
                assert_eq!(hash.digest(b"jwt").len(), hash.output_len(), "{alg}");
            }
        }
    }

    #[test]
    fn new_algorithms_map_to_kms_parameters() {
        let expected = [
            (SigningAlg::ES256K, "ES256K", "ECC_SECG_P256K1", "ECDSA_SHA_256"),
            (SigningAlg::EdDSA, "EdDSA", "ECC_NIST_EDWARDS25519", "ED25519_SHA_512"),
            (SigningAlg::Ed25519, "Ed25519", "ECC_NIST_EDWARDS25519", "ED25519_SHA_512"),
            (SigningAlg::MlDsa44, "ML-DSA-44", "ML_DSA_44", "ML_DSA_SHAKE_256"),
            (SigningAlg::MlDsa65, "ML-DSA-65", "ML_DSA_65", "ML_DSA_SHAKE_256"),
            (SigningAlg::MlDsa87, "ML-DSA-87", "ML_DSA_87", "ML_DSA_SHAKE_256"),
        ];
        for (alg, name, spec, kms) in expected {
            assert_eq!((alg.as_str(), alg.kms_key_spec(), alg.kms_signing_algorithm()), (name, spec, kms));
            // The keyring stores the JOSE name.
            assert_eq!(serde_json::to_value(alg).unwrap(), serde_json::Value::from(name));
            assert_eq!(serde_json::from_value::<SigningAlg>(name.into()).unwrap(), alg);
            // The SDK knows every key spec and signing algorithm by these names.
            assert!(aws_sdk_kms::types::KeySpec::values().contains(&spec), "{spec}");
            assert!(aws_sdk_kms::types::SigningAlgorithmSpec::values().contains(&kms), "{kms}");
        }
        assert_eq!(SigningAlg::ES256K.hash(), Some(HashAlg::Sha256));
        assert_eq!(SigningAlg::EdDSA.hash(), None);
        assert_eq!(
            SigningAlg::for_key_spec("ECC_NIST_EDWARDS25519"),
            vec![SigningAlg::EdDSA, SigningAlg::Ed25519]
        );
        assert_eq!(SigningAlg::for_key_spec("RSA_2048"), vec![SigningAlg::RS256, SigningAlg::PS256]);
        assert_eq!(MlDsaLevel::L87.signature_len(), 4627);
    }
}

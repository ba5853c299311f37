//! The nine JWS algorithms (RFC 7518 §3.1) that an AWS KMS asymmetric key can back.

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
}

/// The hash that an algorithm signs over. We hash locally and send KMS only the digest
/// (`MessageType=DIGEST`), so token size is never bounded by KMS's 4 KiB message limit.
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
}

/// NIST curves KMS supports for signing, with their JWK `crv` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    /// NIST P-256 (`secp256r1`), for ES256.
    P256,
    /// NIST P-384 (`secp384r1`), for ES384.
    P384,
    /// NIST P-521 (`secp521r1`), for ES512.
    P521,
}

impl Curve {
    /// RFC 7518 §6.2.1.1 name.
    pub fn jwk_name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
        }
    }

    /// Octets per coordinate and per signature half (RFC 7518 §3.4, §6.2.1.2).
    pub fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }
}

impl SigningAlg {
    /// Every supported algorithm: the names [`FromStr`] accepts.
    pub const ALL: [SigningAlg; 9] = [
        SigningAlg::ES256,
        SigningAlg::ES384,
        SigningAlg::ES512,
        SigningAlg::RS256,
        SigningAlg::RS384,
        SigningAlg::RS512,
        SigningAlg::PS256,
        SigningAlg::PS384,
        SigningAlg::PS512,
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
        }
    }

    /// The hash signed over, computed locally before the KMS call.
    pub fn hash(self) -> HashAlg {
        use SigningAlg::*;
        match self {
            ES256 | RS256 | PS256 => HashAlg::Sha256,
            ES384 | RS384 | PS384 => HashAlg::Sha384,
            ES512 | RS512 | PS512 => HashAlg::Sha512,
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
        }
    }

    /// The KMS `KeySpec` a new key for this algorithm is created with.
    pub fn kms_key_spec(self) -> &'static str {
        match self.family() {
            KeyFamily::Ec { curve: Curve::P256 } => "ECC_NIST_P256",
            KeyFamily::Ec { curve: Curve::P384 } => "ECC_NIST_P384",
            KeyFamily::Ec { curve: Curve::P521 } => "ECC_NIST_P521",
            KeyFamily::Rsa { min_bits: 2048 } => "RSA_2048",
            KeyFamily::Rsa { min_bits: 3072 } => "RSA_3072",
            KeyFamily::Rsa { .. } => "RSA_4096",
        }
    }

    /// The KMS `SigningAlgorithm` for this JWS algorithm.
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
        }
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `alg` name that is none of the nine (names are case-sensitive; `HS256` and `none` are
/// refused). Holds the rejected text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported signing algorithm {0:?}; expected one of ES256, ES384, ES512, RS256, RS384, RS512, PS256, PS384, PS512")]
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
        for bad in ["es256", "HS256", "none", "EdDSA", "ES521", ""] {
            assert!(bad.parse::<SigningAlg>().is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn kms_parameters_match_rfc7518() {
        assert_eq!(SigningAlg::ES512.kms_key_spec(), "ECC_NIST_P521");
        assert_eq!(SigningAlg::PS384.kms_key_spec(), "RSA_3072");
        assert_eq!(SigningAlg::RS256.kms_signing_algorithm(), "RSASSA_PKCS1_V1_5_SHA_256");
        assert_eq!(SigningAlg::PS512.kms_signing_algorithm(), "RSASSA_PSS_SHA_512");
        assert_eq!(SigningAlg::ES384.hash().digest(b"").len(), 48);
        for alg in SigningAlg::ALL {
            assert_eq!(alg.hash().digest(b"jwt").len(), alg.hash().output_len(), "{alg}");
        }
    }
}

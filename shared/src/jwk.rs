//! Public keys as JWKs (RFC 7517/7518) built from the DER `SubjectPublicKeyInfo` that KMS
//! `GetPublicKey` returns, and their RFC 7638 thumbprints.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use der::asn1::ObjectIdentifier;
use der::Decode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spki::SubjectPublicKeyInfoRef;

use crate::alg::{Curve, KeyFamily, SigningAlg};

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_SECP521R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");

/// Why a public key could not be turned into a JWK.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    /// The bytes are not a DER `SubjectPublicKeyInfo`, or its RSA key is not PKCS #1.
    #[error("public key is not valid DER SubjectPublicKeyInfo: {0}")]
    Der(String),
    /// Neither an EC nor an RSA key; holds the algorithm OID.
    #[error("unsupported public key algorithm {0}")]
    UnsupportedKeyAlgorithm(String),
    /// An EC key on a curve other than P-256, P-384 or P-521, or with no named curve.
    #[error("unsupported elliptic curve {0}")]
    UnsupportedCurve(String),
    /// The EC point is compressed or has the wrong length for its curve.
    #[error("EC public key is not an uncompressed point of the expected size")]
    BadEcPoint,
    /// An RSA modulus under 2048 bits (RFC 7518 §3.3); holds its size in bits.
    #[error("RSA modulus of {0} bits is below the 2048-bit minimum")]
    RsaTooSmall(usize),
    /// The key cannot make `alg` signatures: another key type, curve, or too small a modulus.
    #[error("key type {key} cannot be used with {alg}")]
    AlgorithmMismatch {
        /// The key as found, such as `EC P-256` or `RSA 2048 bits`.
        key: String,
        /// The algorithm it was checked against.
        alg: SigningAlg,
    },
}

impl From<der::Error> for JwkError {
    fn from(e: der::Error) -> Self {
        JwkError::Der(e.to_string())
    }
}

/// The public parameters of a key, exactly as they appear in a JWK. There is deliberately no
/// place for private members (`d`, `p`, `q`, ...): they cannot be represented, so never served.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kty", deny_unknown_fields)]
pub enum PublicJwk {
    /// An elliptic-curve key (`"kty": "EC"`).
    #[serde(rename = "EC")]
    Ec {
        /// The curve: `P-256`, `P-384` or `P-521`.
        crv: String,
        /// The x coordinate, base64url, fixed width for the curve.
        x: String,
        /// The y coordinate, base64url, fixed width for the curve.
        y: String,
    },
    /// An RSA key (`"kty": "RSA"`).
    #[serde(rename = "RSA")]
    Rsa {
        /// The modulus, base64url, without leading zero octets.
        n: String,
        /// The public exponent, base64url (`AQAB` for 65537).
        e: String,
    },
}

impl PublicJwk {
    /// Parse a DER `SubjectPublicKeyInfo` (KMS `GetPublicKey` output).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, JwkError> {
        let spki = SubjectPublicKeyInfoRef::from_der(der)?;
        let key_bytes = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| JwkError::Der("public key BIT STRING has unused bits".into()))?;

        if spki.algorithm.oid == OID_EC_PUBLIC_KEY {
            let curve_oid = spki
                .algorithm
                .parameters_oid()
                .map_err(|_| JwkError::UnsupportedCurve("(missing named curve)".into()))?;
            let curve = match curve_oid {
                OID_SECP256R1 => Curve::P256,
                OID_SECP384R1 => Curve::P384,
                OID_SECP521R1 => Curve::P521,
                other => return Err(JwkError::UnsupportedCurve(other.to_string())),
            };
            let len = curve.coordinate_len();
            // SEC 1 §2.3.3 uncompressed point: 0x04 || X || Y, each coordinate fixed-width.
            match key_bytes.split_first() {
                Some((0x04, xy)) if xy.len() == 2 * len => Ok(PublicJwk::Ec {
                    crv: curve.jwk_name().to_owned(),
                    x: URL_SAFE_NO_PAD.encode(&xy[..len]),
                    y: URL_SAFE_NO_PAD.encode(&xy[len..]),
                }),
                _ => Err(JwkError::BadEcPoint),
            }
        } else if spki.algorithm.oid == OID_RSA_ENCRYPTION {
            let rsa = pkcs1::RsaPublicKey::from_der(key_bytes)?;
            // UintRef strips the sign octet, which is what RFC 7518 §6.3.1 asks for.
            let n = rsa.modulus.as_bytes();
            let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
            if bits < 2048 {
                return Err(JwkError::RsaTooSmall(bits));
            }
            Ok(PublicJwk::Rsa {
                n: URL_SAFE_NO_PAD.encode(n),
                e: URL_SAFE_NO_PAD.encode(rsa.public_exponent.as_bytes()),
            })
        } else {
            Err(JwkError::UnsupportedKeyAlgorithm(spki.algorithm.oid.to_string()))
        }
    }

    /// Check that this key can produce `alg` signatures (right family, curve, size).
    pub fn check_alg(&self, alg: SigningAlg) -> Result<(), JwkError> {
        let ok = match (self, alg.family()) {
            (PublicJwk::Ec { crv, .. }, KeyFamily::Ec { curve }) => crv == curve.jwk_name(),
            (PublicJwk::Rsa { n, .. }, KeyFamily::Rsa { min_bits }) => {
                // Base64url of a modulus of k bits is ceil(k/8) octets; compare octet counts.
                URL_SAFE_NO_PAD.decode(n).map(|n| n.len() * 8).unwrap_or(0) >= min_bits
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(JwkError::AlgorithmMismatch { key: self.describe(), alg })
        }
    }

    fn describe(&self) -> String {
        match self {
            PublicJwk::Ec { crv, .. } => format!("EC {crv}"),
            PublicJwk::Rsa { n, .. } => {
                format!("RSA {} bits", URL_SAFE_NO_PAD.decode(n).map(|n| n.len() * 8).unwrap_or(0))
            }
        }
    }

    /// RFC 7638 JWK thumbprint (SHA-256, base64url): the required members only, in
    /// lexicographic order, no whitespace. Used as the `kid`.
    pub fn thumbprint(&self) -> String {
        // serde_json escapes strings correctly; member order is fixed by hand as §3.2 requires.
        let canonical = match self {
            PublicJwk::Ec { crv, x, y } => {
                format!(r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#, json_str(crv), json_str(x), json_str(y))
            }
            PublicJwk::Rsa { n, e } => {
                format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, json_str(e), json_str(n))
            }
        };
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// One entry of a served JWK Set: public parameters plus `kid`, `alg` and `use`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedJwk {
    /// The public parameters, with their `kty`, flattened into the entry.
    #[serde(flatten)]
    pub key: PublicJwk,
    /// The key id tokens name in their header: the RFC 7638 thumbprint of `key`.
    pub kid: String,
    /// The one algorithm the key signs with, so verifiers accept no other.
    pub alg: SigningAlg,
    /// `use`: always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
}

impl PublishedJwk {
    /// An entry for a key that signs (`"use": "sig"`).
    pub fn signing_key(key: PublicJwk, kid: String, alg: SigningAlg) -> Self {
        PublishedJwk { key, kid, alg, use_: "sig".to_owned() }
    }
}

/// `{"keys": [...]}` (RFC 7517 §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    /// Every key verifiers must accept: next, current and previous.
    pub keys: Vec<PublishedJwk>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::EncodePublicKey;

    /// RFC 7638 §3.1: the example RSA key and its thumbprint.
    #[test]
    fn rfc7638_thumbprint_example() {
        let jwk = PublicJwk::Rsa {
            n: "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into(),
            e: "AQAB".into(),
        };
        assert_eq!(jwk.thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    /// RFC 7517 Appendix A.1: the example P-256 key, re-encoded as SPKI DER and parsed back.
    #[test]
    fn rfc7517_ec_example_round_trips_through_spki() {
        let x = "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4";
        let y = "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM";
        let jwk_json = format!(r#"{{"kty":"EC","crv":"P-256","x":"{x}","y":"{y}"}}"#);
        let key = p256::PublicKey::from_jwk_str(&jwk_json).unwrap();
        let der = key.to_public_key_der().unwrap();
        let parsed = PublicJwk::from_spki_der(der.as_bytes()).unwrap();
        assert_eq!(parsed, PublicJwk::Ec { crv: "P-256".into(), x: x.into(), y: y.into() });
        parsed.check_alg(SigningAlg::ES256).unwrap();
        assert!(parsed.check_alg(SigningAlg::ES384).is_err());
        assert!(parsed.check_alg(SigningAlg::RS256).is_err());
    }

    #[test]
    fn rfc7638_rsa_example_round_trips_through_spki() {
        // The RFC 7638 §3.1 modulus, wrapped in an RSAPublicKey inside a SubjectPublicKeyInfo.
        let n = URL_SAFE_NO_PAD.decode("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw").unwrap();
        let der = test_support::rsa_spki_der(&n, &[1, 0, 1]);
        let jwk = PublicJwk::from_spki_der(&der).unwrap();
        assert_eq!(jwk.thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        jwk.check_alg(SigningAlg::RS256).unwrap();
        jwk.check_alg(SigningAlg::PS256).unwrap();
        assert!(jwk.check_alg(SigningAlg::RS384).is_err(), "2048-bit key is below the RS384 floor");
    }

    #[test]
    fn p384_and_p521_keys_use_their_fixed_coordinate_width() {
        let k384 = p384::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let der = k384.public_key().to_public_key_der().unwrap();
        let PublicJwk::Ec { crv, x, y } = PublicJwk::from_spki_der(der.as_bytes()).unwrap() else {
            panic!("expected EC")
        };
        assert_eq!(crv, "P-384");
        assert_eq!(URL_SAFE_NO_PAD.decode(x).unwrap().len(), 48);
        assert_eq!(URL_SAFE_NO_PAD.decode(y).unwrap().len(), 48);

        let k521 = p521::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let der = k521.public_key().to_public_key_der().unwrap();
        let PublicJwk::Ec { crv, x, .. } = PublicJwk::from_spki_der(der.as_bytes()).unwrap() else {
            panic!("expected EC")
        };
        assert_eq!(crv, "P-521");
        assert_eq!(URL_SAFE_NO_PAD.decode(x).unwrap().len(), 66);
    }

    #[test]
    fn garbage_and_small_rsa_are_refused() {
        assert!(matches!(PublicJwk::from_spki_der(b""), Err(JwkError::Der(_))));
        assert!(matches!(PublicJwk::from_spki_der(&[0x30, 0x03, 0x02, 0x01]), Err(JwkError::Der(_))));
        let der = test_support::rsa_spki_der(&[0xc5; 128], &[1, 0, 1]);
        assert_eq!(PublicJwk::from_spki_der(&der), Err(JwkError::RsaTooSmall(1024)));
    }

    #[test]
    fn published_jwk_has_kid_alg_use_and_no_private_members() {
        let jwk = PublicJwk::Ec { crv: "P-256".into(), x: "eA".into(), y: "eQ".into() };
        let kid = jwk.thumbprint();
        let v = serde_json::to_value(PublishedJwk::signing_key(jwk, kid.clone(), SigningAlg::ES256)).unwrap();
        assert_eq!(v["kty"], "EC");
        assert_eq!(v["kid"], kid.as_str());
        assert_eq!(v["alg"], "ES256");
        assert_eq!(v["use"], "sig");
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 7);
    }

    pub(crate) mod test_support {
        use der::asn1::{BitStringRef, UintRef};
        use der::Encode;
        use spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};

        pub fn rsa_spki_der(n: &[u8], e: &[u8]) -> Vec<u8> {
            let rsa = pkcs1::RsaPublicKey {
                modulus: UintRef::new(n).unwrap(),
                public_exponent: UintRef::new(e).unwrap(),
            };
            let rsa_der = rsa.to_der().unwrap();
            let spki = SubjectPublicKeyInfoRef {
                algorithm: AlgorithmIdentifierRef {
                    oid: super::OID_RSA_ENCRYPTION,
                    parameters: Some(der::asn1::AnyRef::NULL),
                },
                subject_public_key: BitStringRef::from_bytes(&rsa_der).unwrap(),
            };
            spki.to_der().unwrap()
        }
    }
}

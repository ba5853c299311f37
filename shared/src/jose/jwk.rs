//! Public keys as JWKs (RFC 7517/7518) built from the DER `SubjectPublicKeyInfo` that KMS
//! `GetPublicKey` returns, and their RFC 7638 thumbprints.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use der::asn1::ObjectIdentifier;
use der::Decode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spki::SubjectPublicKeyInfoRef;

use crate::jose::alg::{Curve, KeyFamily, MlDsaLevel, SigningAlg};

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_SECP521R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
/// secp256k1 (SEC 2 §2.4.1; RFC 8812 §3.1).
const OID_SECP256K1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.10");
/// id-Ed25519 (RFC 8410 §3), with absent parameters and the 32-octet key as the BIT STRING.
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// id-ml-dsa-44/65/87 (RFC 9881 §2), absent parameters, the `pkEncode` octets as the BIT STRING.
const OID_ML_DSA_44: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.17");
const OID_ML_DSA_65: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.18");
const OID_ML_DSA_87: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.19");

/// Why a public key could not be turned into a JWK.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    /// The bytes are not a DER `SubjectPublicKeyInfo`, or its RSA key is not PKCS #1.
    #[error("public key is not valid DER SubjectPublicKeyInfo: {0}")]
    Der(String),
    /// Not an EC, RSA, Ed25519 or ML-DSA key; holds the algorithm OID.
    #[error("unsupported public key algorithm {0}")]
    UnsupportedKeyAlgorithm(String),
    /// An EC key on a curve other than P-256, P-384, P-521 or secp256k1, or with no named curve.
    #[error("unsupported elliptic curve {0}")]
    UnsupportedCurve(String),
    /// The EC point is compressed or has the wrong length for its curve.
    #[error("EC public key is not an uncompressed point of the expected size")]
    BadEcPoint,
    /// A public key of the wrong length for its type.
    #[error("{what} public key is {len} octets, expected {expected}")]
    BadKeyLength {
        /// Which key: `Ed25519`, `ML-DSA-65`…
        what: &'static str,
        /// Octets found.
        len: usize,
        /// Octets the type requires.
        expected: usize,
    },
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
/// place for private members (`d`, `p`, `q`, `priv`, ...): they cannot be represented, so never
/// served.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kty", deny_unknown_fields)]
pub enum PublicJwk {
    /// An elliptic-curve key (`"kty": "EC"`).
    #[serde(rename = "EC")]
    Ec {
        /// The curve: `P-256`, `P-384`, `P-521` or `secp256k1`.
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
    /// Octet key pair (RFC 8037 §2): `crv` `Ed25519`, `x` the 32-octet public key.
    #[serde(rename = "OKP")]
    Okp {
        /// The curve: `Ed25519`.
        crv: String,
        /// The public key, base64url.
        x: String,
    },
    /// Algorithm key pair (RFC 9964 §3): `alg` is part of the key (and of its thumbprint),
    /// `pub` the ML-DSA public key (`pkEncode`, FIPS 204 §7.2).
    #[serde(rename = "AKP")]
    Akp {
        /// The algorithm the key belongs to: `ML-DSA-44`, `ML-DSA-65` or `ML-DSA-87`.
        alg: String,
        /// The encoded public key, base64url.
        #[serde(rename = "pub")]
        public: String,
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
                OID_SECP256K1 => Curve::Secp256k1,
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
        } else if spki.algorithm.oid == OID_ED25519 {
            exact_len("Ed25519", key_bytes, 32)?;
            Ok(PublicJwk::Okp { crv: "Ed25519".to_owned(), x: URL_SAFE_NO_PAD.encode(key_bytes) })
        } else {
            let level = match spki.algorithm.oid {
                OID_ML_DSA_44 => MlDsaLevel::L44,
                OID_ML_DSA_65 => MlDsaLevel::L65,
                OID_ML_DSA_87 => MlDsaLevel::L87,
                other => return Err(JwkError::UnsupportedKeyAlgorithm(other.to_string())),
            };
            exact_len("ML-DSA", key_bytes, level.public_key_len())?;
            Ok(PublicJwk::Akp {
                alg: level.alg().as_str().to_owned(),
                public: URL_SAFE_NO_PAD.encode(key_bytes),
            })
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
            (PublicJwk::Okp { crv, x }, KeyFamily::Ed25519) => crv == "Ed25519" && decoded_len(x) == 32,
            // The key names its algorithm: an ML-DSA-44 key signs ML-DSA-44 only.
            (PublicJwk::Akp { alg: key_alg, public }, KeyFamily::MlDsa(level)) => {
                key_alg == alg.as_str() && decoded_len(public) == level.public_key_len()
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
            PublicJwk::Okp { crv, .. } => format!("OKP {crv}"),
            PublicJwk::Akp { alg, public } => format!("AKP {alg} of {} octets", decoded_len(public)),
        }
    }

    /// The `alg` a key itself carries (AKP keys only, RFC 9964 §3).
    pub fn own_alg(&self) -> Option<&str> {
        match self {
            PublicJwk::Akp { alg, .. } => Some(alg),
            _ => None,
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
            // RFC 8037 §2: `crv`, `kty`, `x`.
            PublicJwk::Okp { crv, x } => {
                format!(r#"{{"crv":{},"kty":"OKP","x":{}}}"#, json_str(crv), json_str(x))
            }
            // RFC 9964 §6: `alg`, `kty`, `pub`.
            PublicJwk::Akp { alg, public } => {
                format!(r#"{{"alg":{},"kty":"AKP","pub":{}}}"#, json_str(alg), json_str(public))
            }
        };
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn decoded_len(b64: &str) -> usize {
    URL_SAFE_NO_PAD.decode(b64).map_or(0, |bytes| bytes.len())
}

fn exact_len(what: &'static str, bytes: &[u8], expected: usize) -> Result<(), JwkError> {
    if bytes.len() == expected {
        Ok(())
    } else {
        Err(JwkError::BadKeyLength { what, len: bytes.len(), expected })
    }
}

/// One entry of a served JWK Set: public parameters plus `kid`, `alg` and `use`. An AKP key
/// carries `alg` itself (it is one of its parameters): it is written once, and must be the
/// entry's algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedJwk {
    /// The public parameters, with their `kty`, written first in the entry.
    pub key: PublicJwk,
    /// The key id tokens name in their header: the RFC 7638 thumbprint of `key`.
    pub kid: String,
    /// The one algorithm the key signs with, so verifiers accept no other.
    pub alg: SigningAlg,
    /// `use`: always `sig`.
    pub use_: String,
}

impl Serialize for PublishedJwk {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap};
        let serde_json::Value::Object(members) = serde_json::to_value(&self.key).map_err(S::Error::custom)?
        else {
            return Err(S::Error::custom("a JWK serializes as an object"));
        };
        let mut map = serializer.serialize_map(None)?;
        for (name, value) in &members {
            map.serialize_entry(name, value)?;
        }
        map.serialize_entry("kid", &self.kid)?;
        match self.key.own_alg() {
            None => map.serialize_entry("alg", &self.alg)?,
            Some(own) if own == self.alg.as_str() => {}
            Some(own) => return Err(S::Error::custom(format!("key of {own} published as {}", self.alg))),
        }
        map.serialize_entry("use", &self.use_)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for PublishedJwk {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        type Members = serde_json::Map<String, serde_json::Value>;
        fn take<E: Error>(members: &mut Members, name: &'static str) -> Result<serde_json::Value, E> {
            members.remove(name).ok_or_else(|| E::missing_field(name))
        }
        let mut members = Members::deserialize(deserializer)?;
        let kid = serde_json::from_value(take(&mut members, "kid")?).map_err(D::Error::custom)?;
        let use_ = serde_json::from_value(take(&mut members, "use")?).map_err(D::Error::custom)?;
        // An AKP key keeps its `alg`: it is one of the key's own members.
        let alg_value = if members.get("kty").and_then(|k| k.as_str()) == Some("AKP") {
            members.get("alg").cloned().ok_or_else(|| D::Error::missing_field("alg"))?
        } else {
            take(&mut members, "alg")?
        };
        let alg = serde_json::from_value(alg_value).map_err(D::Error::custom)?;
        let key = serde_json::from_value(serde_json::Value::Object(members)).map_err(D::Error::custom)?;
        Ok(PublishedJwk { key, kid, alg, use_ })
    }
}

impl PublishedJwk {
    /// The JWK Set entry of `key` for `alg`, a key that signs (`"use": "sig"`).
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

    /// RFC 8037 Appendix A.1–A.3: the example Ed25519 key, its public key and thumbprint.
    #[test]
    fn rfc8037_ed25519_key_and_thumbprint() {
        use ed25519_dalek::pkcs8::EncodePublicKey;
        let d = URL_SAFE_NO_PAD.decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A").unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&d.try_into().unwrap());
        let der = key.verifying_key().to_public_key_der().unwrap();
        let jwk = PublicJwk::from_spki_der(der.as_bytes()).unwrap();
        assert_eq!(
            jwk,
            PublicJwk::Okp { crv: "Ed25519".into(), x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into() }
        );
        assert_eq!(jwk.thumbprint(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        jwk.check_alg(SigningAlg::EdDSA).unwrap();
        jwk.check_alg(SigningAlg::Ed25519).unwrap();
        assert!(jwk.check_alg(SigningAlg::ES256).is_err());
        assert!(jwk.check_alg(SigningAlg::MlDsa44).is_err());
        let short = PublicJwk::Okp { crv: "Ed25519".into(), x: "11qYAYKxCrfV".into() };
        assert!(short.check_alg(SigningAlg::EdDSA).is_err());
        let published =
            serde_json::to_value(PublishedJwk::signing_key(jwk.clone(), jwk.thumbprint(), SigningAlg::EdDSA))
                .unwrap();
        assert_eq!(
            published,
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
                               "kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k", "alg": "EdDSA", "use": "sig"})
        );
    }

    /// The ML-DSA-44 key of the all-zero seed, from RFC 9964's examples (draft-ietf-cose-dilithium
    /// `examples/jose/examples/ML_DSA_44.jose.json`): its `pub` starts ba71f9f6…, its JWK
    /// thumbprint (the example's `kid`) is over `alg`, `kty`, `pub`. The SPKI comes from the
    /// RustCrypto encoder, so our parser is checked against an independent one.
    #[test]
    fn rfc9964_ml_dsa_44_example_key_and_thumbprint() {
        use ml_dsa::pkcs8::EncodePublicKey;
        use ml_dsa::Keypair as _;
        let key = ml_dsa::SigningKey::<ml_dsa::MlDsa44>::from_seed(&[0u8; 32].into());
        let der = key.verifying_key().to_public_key_der().unwrap();
        let jwk = PublicJwk::from_spki_der(der.as_bytes()).unwrap();
        let PublicJwk::Akp { alg, public } = &jwk else { panic!("expected AKP: {jwk:?}") };
        assert_eq!(alg, "ML-DSA-44");
        let raw = URL_SAFE_NO_PAD.decode(public).unwrap();
        assert_eq!((raw.len(), &raw[..8]), (1312, &[0xba, 0x71, 0xf9, 0xf6, 0x4e, 0x11, 0xba, 0xeb][..]));
        assert!(public.starts_with("unH59k4RuutY-pxvu24U5h8YZD2rSVtHU5qRZsoBmBMcRPgmu9VuNOVdteXi1zNIXjnqJg_GAAxepLqA00Vc3lO0bzRIKu39VFD8"));
        assert!(public.ends_with("DZgbTP07e7gEWzw4MFRrndjbDQ"));
        assert_eq!(jwk.thumbprint(), "T4xl70S7MT6Zeq6r9V9fPJGVn76wfnXJ21-gyo0Gu6o");
        jwk.check_alg(SigningAlg::MlDsa44).unwrap();
        assert!(jwk.check_alg(SigningAlg::MlDsa65).is_err(), "an AKP key names its one algorithm");
        assert!(jwk.check_alg(SigningAlg::EdDSA).is_err());

        // Published: `alg` once (it is the key's own member), and back again.
        let entry = PublishedJwk::signing_key(jwk.clone(), jwk.thumbprint(), SigningAlg::MlDsa44);
        let text = serde_json::to_string(&entry).unwrap();
        assert_eq!(text.matches("\"alg\"").count(), 1, "{text}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut members: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        members.sort_unstable();
        assert_eq!(members, ["alg", "kid", "kty", "pub", "use"]);
        assert_eq!(serde_json::from_str::<PublishedJwk>(&text).unwrap(), entry);
        let mismatched = PublishedJwk::signing_key(jwk, "k".into(), SigningAlg::MlDsa65);
        assert!(
            serde_json::to_string(&mismatched).is_err(),
            "an ML-DSA-44 key is never published as ML-DSA-65"
        );
    }

    #[test]
    fn every_ml_dsa_level_and_a_wrong_length_key() {
        use ml_dsa::pkcs8::EncodePublicKey;
        use ml_dsa::Keypair as _;
        let seed = [9u8; 32].into();
        let ders = [
            (
                SigningAlg::MlDsa44,
                ml_dsa::SigningKey::<ml_dsa::MlDsa44>::from_seed(&seed).verifying_key().to_public_key_der(),
            ),
            (
                SigningAlg::MlDsa65,
                ml_dsa::SigningKey::<ml_dsa::MlDsa65>::from_seed(&seed).verifying_key().to_public_key_der(),
            ),
            (
                SigningAlg::MlDsa87,
                ml_dsa::SigningKey::<ml_dsa::MlDsa87>::from_seed(&seed).verifying_key().to_public_key_der(),
            ),
        ];
        for (alg, der) in ders {
            let der = der.unwrap();
            let jwk = PublicJwk::from_spki_der(der.as_bytes()).unwrap();
            assert_eq!(jwk.own_alg(), Some(alg.as_str()));
            jwk.check_alg(alg).unwrap();
            // One octet short: refused with the expected length.
            let spki = SubjectPublicKeyInfoRef::from_der(der.as_bytes()).unwrap();
            let key = spki.subject_public_key.raw_bytes();
            let short = test_support::spki_der(spki.algorithm.oid, &key[..key.len() - 1]);
            assert!(matches!(
                PublicJwk::from_spki_der(&short),
                Err(JwkError::BadKeyLength { what: "ML-DSA", .. })
            ));
        }
    }

    #[test]
    fn secp256k1_keys_are_ec_jwks_with_rfc8812_curve_name() {
        use k256::elliptic_curve::sec1::ToEncodedPoint;
        use k256::pkcs8::EncodePublicKey;
        let key = k256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let der = key.public_key().to_public_key_der().unwrap();
        let jwk = PublicJwk::from_spki_der(der.as_bytes()).unwrap();
        let PublicJwk::Ec { crv, x, y } = &jwk else { panic!("expected EC") };
        assert_eq!(crv, "secp256k1");
        let point = key.public_key().to_encoded_point(false);
        assert_eq!(URL_SAFE_NO_PAD.decode(x).unwrap(), &point.x().unwrap()[..]);
        assert_eq!(URL_SAFE_NO_PAD.decode(y).unwrap(), &point.y().unwrap()[..]);
        // The k256 crate reads our JWK back as the same key.
        let text = serde_json::to_string(&jwk).unwrap();
        assert_eq!(k256::PublicKey::from_jwk_str(&text).unwrap(), key.public_key());
        jwk.check_alg(SigningAlg::ES256K).unwrap();
        assert!(jwk.check_alg(SigningAlg::ES256).is_err());
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

        /// A SubjectPublicKeyInfo with absent parameters (Ed25519, ML-DSA).
        pub fn spki_der(oid: der::asn1::ObjectIdentifier, key: &[u8]) -> Vec<u8> {
            SubjectPublicKeyInfoRef {
                algorithm: AlgorithmIdentifierRef { oid, parameters: None },
                subject_public_key: BitStringRef::from_bytes(key).unwrap(),
            }
            .to_der()
            .unwrap()
        }
    }
}

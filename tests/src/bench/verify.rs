//! Verification of our tokens the way a consumer does it (`jsonwebtoken` with a `DecodingKey`
//! made once from our JWKS), next to the raw signature verify of the same signing input: the
//! ceiling. Shared by the Criterion benches and the instruction-count example.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{DecodingKey, Validation};
use kms_jwt::jose::jwk::{JwkSet, PublicJwk, PublishedJwk};
use kms_jwt::jose::jws::{self, Header};
use kms_jwt::SigningAlg;
use serde_json::{json, Value};

pub const ISSUER: &str = "https://issuer.example.com";

/// The claims the sign function puts in a token for `events/sign.json`.
pub fn typical_claims() -> Value {
    json!({"sub": "user-123", "aud": "https://api.example.com", "scope": "orders:read",
        "iss": ISSUER, "iat": 1_795_600_000, "exp": 1_795_600_900,
        "jti": "c0ffee00-0000-4000-8000-000000000000"})
}

/// What an API reads from one of our tokens (unknown claims are skipped, not allocated).
#[derive(Debug, serde::Deserialize)]
pub struct ConsumerClaims {
    pub sub: String,
    pub scope: String,
    pub exp: u64,
}

pub struct VerifyCase {
    pub alg: SigningAlg,
    /// A token as kms-jwt signs it.
    pub token: String,
    /// The smallest token a verifier can check (header alg + kid; claims iss + exp): the
    /// difference to `token` is what our tokens' content costs.
    pub minimal_token: String,
    decoding: DecodingKey,
    validation: Validation,
    raw_key: UnparsedPublicKey<Vec<u8>>,
    signing_input: String,
    signature: Vec<u8>,
    pkcs8: Vec<u8>,
}

/// Failure to set a case up (key generation or encoding); never expected.
#[derive(Debug, thiserror::Error)]
#[error("verify case setup: {0}")]
pub struct SetupError(String);

fn setup<E: std::fmt::Display>(e: E) -> SetupError {
    SetupError(e.to_string())
}

type SignFn = Box<dyn Fn(&[u8]) -> Result<Vec<u8>, SetupError>>;

/// A fresh key pair: its JWK, the raw verification algorithm and key bytes, and a signer.
struct KeyMaterial {
    jwk: PublicJwk,
    raw_alg: &'static dyn signature::VerificationAlgorithm,
    public: Vec<u8>,
    sign: SignFn,
    /// The private key, PKCS#8, so a later process can verify with the same key.
    pkcs8: Vec<u8>,
}

impl KeyMaterial {
    /// The key in `pkcs8`, or a new one.
    fn new(alg: SigningAlg, pkcs8: Option<&[u8]>) -> Result<KeyMaterial, SetupError> {
        match alg {
            SigningAlg::ES256 => {
                let curve = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
                let pair = match pkcs8 {
                    Some(der) => EcdsaKeyPair::from_pkcs8(curve, der).map_err(setup)?,
                    None => EcdsaKeyPair::generate(curve).map_err(setup)?,
                };
                let pkcs8 = pair.to_pkcs8v1().map_err(setup)?.as_ref().to_vec();
                let public = pair.public_key().as_ref().to_vec(); // 0x04 || X || Y
                let jwk = PublicJwk::Ec {
                    crv: "P-256".into(),
                    x: URL_SAFE_NO_PAD.encode(&public[1..33]),
                    y: URL_SAFE_NO_PAD.encode(&public[33..65]),
                };
                let sign: SignFn = Box::new(move |m: &[u8]| {
                    pair.sign(&SystemRandom::new(), m).map(|s| s.as_ref().to_vec()).map_err(setup)
                });
                Ok(KeyMaterial { jwk, raw_alg: &signature::ECDSA_P256_SHA256_FIXED, public, sign, pkcs8 })
            }
            SigningAlg::RS256 => {
                let pair = match pkcs8 {
                    Some(der) => RsaKeyPair::from_pkcs8(der).map_err(setup)?,
                    None => RsaKeyPair::generate(KeySize::Rsa2048).map_err(setup)?,
                };
                let pkcs8 = pair.as_der().map_err(setup)?.as_ref().to_vec();
                let spki = pair.public_key().as_der().map_err(setup)?;
                let jwk = PublicJwk::from_spki_der(spki.as_ref()).map_err(setup)?;
                let public = pair.public_key().as_ref().to_vec(); // PKCS#1 RSAPublicKey
                let sign: SignFn = Box::new(move |m: &[u8]| {
                    let mut sig = vec![0; pair.public_modulus_len()];
                    pair.sign(&signature::RSA_PKCS1_SHA256, &SystemRandom::new(), m, &mut sig)
                        .map_err(setup)?;
                    Ok(sig)
                });
                Ok(KeyMaterial { jwk, raw_alg: &signature::RSA_PKCS1_2048_8192_SHA256, public, sign, pkcs8 })
            }
            other => Err(SetupError(format!("{other} is not benchmarked"))),
        }
    }
}

impl VerifyCase {
    /// A case with a new key.
    pub fn new(alg: SigningAlg) -> Result<VerifyCase, SetupError> {
        Self::with_key(alg, None)
    }

    /// A case with the key in `pkcs8` (from [`VerifyCase::pkcs8`]), or a new one.
    pub fn with_key(alg: SigningAlg, pkcs8: Option<&[u8]>) -> Result<VerifyCase, SetupError> {
        let KeyMaterial { jwk, raw_alg, public, sign, pkcs8 } = KeyMaterial::new(alg, pkcs8)?;
        let kid = jwk.thumbprint();
        let header = Header { alg, kid: &kid, typ: "JWT" };
        let signing_input =
            jws::signing_input(&header, &serde_json::to_vec(&typical_claims()).map_err(setup)?)
                .map_err(setup)?;
        let signature = sign(signing_input.as_bytes())?;
        let token = jws::compact(signing_input.clone(), &signature);
        let minimal_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(json!({"alg": alg.as_str(), "kid": kid}).to_string()),
            URL_SAFE_NO_PAD.encode(json!({"iss": ISSUER, "exp": 1_795_600_900}).to_string()),
        );
        let minimal_token = jws::compact(minimal_input.clone(), &sign(minimal_input.as_bytes())?);

        // The consumer's side: our JWKS, parsed by jsonwebtoken, one DecodingKey per kid.
        let set =
            serde_json::to_string(&JwkSet { keys: vec![PublishedJwk::signing_key(jwk, kid.clone(), alg)] })
                .map_err(setup)?;
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&set).map_err(setup)?;
        let decoding =
            DecodingKey::from_jwk(set.find(&kid).ok_or_else(|| SetupError("kid".into()))?).map_err(setup)?;
        let mut validation = Validation::new(alg.as_str().parse().map_err(setup)?);
        validation.set_issuer(&[ISSUER]);
        validation.validate_exp = false; // fixed claims; the comparison itself costs nothing
        validation.validate_aud = false;
        let case = VerifyCase {
            alg,
            token,
            minimal_token,
            decoding,
            validation,
            raw_key: UnparsedPublicKey::new(raw_alg, public),
            signing_input,
            signature,
            pkcs8,
        };
        case.jsonwebtoken(&case.token)?;
        case.jsonwebtoken(&case.minimal_token)?;
        case.raw()?;
        Ok(case)
    }

    /// The private key of this case (PKCS#8 DER), for [`VerifyCase::with_key`].
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// `jsonwebtoken::decode`: base64url, JSON header and claims, validation, signature.
    pub fn jsonwebtoken(&self, token: &str) -> Result<Value, SetupError> {
        jsonwebtoken::decode::<Value>(token, &self.decoding, &self.validation)
            .map(|t| t.claims)
            .map_err(setup)
    }

    /// `jsonwebtoken::decode` into the typed claims a consumer reads, instead of a JSON value.
    pub fn jsonwebtoken_typed(&self, token: &str) -> Result<ConsumerClaims, SetupError> {
        jsonwebtoken::decode::<ConsumerClaims>(token, &self.decoding, &self.validation)
            .map(|t| t.claims)
            .map_err(setup)
    }

    /// The signature check alone, on the already decoded signing input and signature.
    pub fn raw(&self) -> Result<(), SetupError> {
        self.raw_key.verify(self.signing_input.as_bytes(), &self.signature).map_err(setup)
    }
}

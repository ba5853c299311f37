//! Independent token verification, the way a consumer does it: from a JWKS document only.
//!
//! The algorithm is taken from the JWK the `kid` names, never from the token header, and the
//! header must agree with it. Verification uses `jsonwebtoken`, except ES512 and ES256K, which
//! `jsonwebtoken` does not implement; those use the RustCrypto `p521` and `k256` crates (`k256`
//! accepts only low-S signatures, as secp256k1 verifiers commonly do).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod aws_proxy;
pub mod bench;
pub mod cloudfront_stand_in;
pub mod localstack;
pub mod memory;
pub mod node;

use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VerifyError {
    #[error("token is not three base64url parts with a JSON header")]
    Malformed,
    #[error("token header has no kid")]
    NoKid,
    #[error("kid {0} is not in the JWKS")]
    UnknownKid(String),
    #[error("JWK has no usable alg")]
    NoAlg,
    #[error("token header alg {header} does not match the JWK alg {jwk}")]
    AlgMismatch { header: String, jwk: String },
    #[error("JWKS is invalid: {0}")]
    BadJwks(String),
    #[error("signature or claims rejected: {0}")]
    Rejected(String),
}

/// Verify `token` against a JWKS document; returns the claims.
pub fn verify(token: &str, jwks_json: &str, issuer: &str) -> Result<Value, VerifyError> {
    let header_b64 = token.split('.').next().ok_or(VerifyError::Malformed)?;
    let header: Value = URL_SAFE_NO_PAD
        .decode(header_b64)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or(VerifyError::Malformed)?;
    let kid = header["kid"].as_str().ok_or(VerifyError::NoKid)?;
    let header_alg = header["alg"].as_str().unwrap_or_default();

    let raw: Value = serde_json::from_str(jwks_json).map_err(|e| VerifyError::BadJwks(e.to_string()))?;
    let raw_jwk = raw["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid))
        .ok_or_else(|| VerifyError::UnknownKid(kid.to_owned()))?;
    let jwk_alg = raw_jwk["alg"].as_str().ok_or(VerifyError::NoAlg)?;
    if header_alg != jwk_alg {
        return Err(VerifyError::AlgMismatch { header: header_alg.to_owned(), jwk: jwk_alg.to_owned() });
    }

    if jwk_alg == "ES512" {
        return verify_es512(token, raw_jwk, issuer);
    }
    if jwk_alg == "ES256K" {
        return verify_es256k(token, raw_jwk, issuer);
    }

    let set: JwkSet = serde_json::from_str(jwks_json).map_err(|e| VerifyError::BadJwks(e.to_string()))?;
    let jwk = set.find(kid).ok_or_else(|| VerifyError::UnknownKid(kid.to_owned()))?;
    let alg = Algorithm::from_str(jwk_alg).map_err(|_| VerifyError::NoAlg)?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| VerifyError::BadJwks(e.to_string()))?;
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[issuer]);
    // kms-jwt omits `nbf` (a fresh token is valid at once, even to a verifier whose clock is
    // behind); one that is present is still checked.
    validation.set_required_spec_claims(&["exp", "iss", "iat"]);
    validation.validate_nbf = true;
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| VerifyError::Rejected(e.to_string()))
}

fn verify_es512(token: &str, jwk: &Value, issuer: &str) -> Result<Value, VerifyError> {
    use p521::ecdsa::signature::Verifier;
    let coordinate = |name: &str| -> Result<Vec<u8>, VerifyError> {
        let bytes = jwk[name].as_str().and_then(|c| URL_SAFE_NO_PAD.decode(c).ok());
        bytes
            .filter(|b| b.len() == 66)
            .ok_or_else(|| VerifyError::BadJwks(format!("P-521 {name} is not 66 octets")))
    };
    let mut sec1 = vec![0x04];
    sec1.extend(coordinate("x")?);
    sec1.extend(coordinate("y")?);
    let key = p521::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
        .map_err(|e| VerifyError::BadJwks(format!("P-521 point: {e}")))?;
    let (input, signature) = token.rsplit_once('.').ok_or(VerifyError::Malformed)?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| VerifyError::Malformed)?;
    let signature =
        p521::ecdsa::Signature::from_slice(&signature).map_err(|e| VerifyError::Rejected(e.to_string()))?;
    key.verify(input.as_bytes(), &signature).map_err(|e| VerifyError::Rejected(e.to_string()))?;
    registered_claims(input, issuer)
}

fn verify_es256k(token: &str, jwk: &Value, issuer: &str) -> Result<Value, VerifyError> {
    use k256::ecdsa::signature::Verifier;
    if jwk["crv"] != "secp256k1" {
        return Err(VerifyError::BadJwks("ES256K key is not on secp256k1".into()));
    }
    let coordinate = |name: &str| -> Result<Vec<u8>, VerifyError> {
        let bytes = jwk[name].as_str().and_then(|c| URL_SAFE_NO_PAD.decode(c).ok());
        bytes
            .filter(|b| b.len() == 32)
            .ok_or_else(|| VerifyError::BadJwks(format!("secp256k1 {name} is not 32 octets")))
    };
    let mut sec1 = vec![0x04];
    sec1.extend(coordinate("x")?);
    sec1.extend(coordinate("y")?);
    let key = k256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
        .map_err(|e| VerifyError::BadJwks(format!("secp256k1 point: {e}")))?;
    let (input, signature) = token.rsplit_once('.').ok_or(VerifyError::Malformed)?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| VerifyError::Malformed)?;
    let signature =
        k256::ecdsa::Signature::from_slice(&signature).map_err(|e| VerifyError::Rejected(e.to_string()))?;
    key.verify(input.as_bytes(), &signature).map_err(|e| VerifyError::Rejected(e.to_string()))?;
    registered_claims(input, issuer)
}

/// The claims of a signing input whose signature was verified: `iss` equal to `issuer`, `exp`
/// not passed and `nbf` (if any) reached, with a minute of leeway, as `jsonwebtoken` checks.
fn registered_claims(input: &str, issuer: &str) -> Result<Value, VerifyError> {
    let payload = input.split('.').nth(1).ok_or(VerifyError::Malformed)?;
    let claims: Value = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|p| serde_json::from_slice(&p).ok())
        .ok_or(VerifyError::Malformed)?;
    let now = kms_jwt::unix_now();
    let leeway = 60;
    if claims["iss"] != issuer {
        return Err(VerifyError::Rejected("InvalidIssuer".into()));
    }
    let not_before = claims.get("nbf").map(|nbf| nbf.as_i64().unwrap_or(i64::MAX)).unwrap_or(i64::MIN);
    match claims["exp"].as_i64() {
        Some(exp) if now < exp + leeway && now + leeway >= not_before => Ok(claims),
        _ => Err(VerifyError::Rejected("expired, not yet valid, or missing exp".into())),
    }
}

/// Replace one character of the payload so the signature no longer matches.
pub fn tamper(token: &str) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let payload = &mut parts[1];
    let last = payload.pop().unwrap();
    payload.push(if last == 'A' { 'B' } else { 'A' });
    parts.join(".")
}

/// Rewrite the header's `kid` (keeping the signature), as an attacker or a stale issuer might.
pub fn with_kid(token: &str, kid: &str) -> String {
    let (header, rest) = token.split_once('.').unwrap();
    let mut header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"] = Value::String(kid.to_owned());
    format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
}

/// The `kid` of a token's header, if it has one.
pub fn header_kid(token: &str) -> Option<String> {
    let header = URL_SAFE_NO_PAD.decode(token.split('.').next()?).ok()?;
    let header: Value = serde_json::from_slice(&header).ok()?;
    header["kid"].as_str().map(str::to_owned)
}

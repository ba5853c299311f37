//! The fixture the crate's tests share: a [`NewKey`] per seed, as KMS would hand it over.

use super::{NewKey, UnixTime};
use crate::jose::alg::SigningAlg;
use crate::jose::jwk::PublicJwk;

/// An ES256 key whose JWK, kid and ARN all follow from `seed`, created at `now`.
pub fn new_key(seed: u8, now: UnixTime) -> NewKey {
    // A syntactically valid P-256 JWK; thumbprints only need distinct inputs.
    let jwk =
        PublicJwk::Ec { crv: "P-256".into(), x: base64_of(seed, 32), y: base64_of(seed.wrapping_add(1), 32) };
    NewKey {
        kid: jwk.thumbprint(),
        alg: SigningAlg::ES256,
        kms_key_arn: format!("arn:aws:kms:us-east-1:000000000000:key/{seed}"),
        public_jwk: jwk,
        created_at: now,
    }
}

fn base64_of(byte: u8, len: usize) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(vec![byte; len])
}

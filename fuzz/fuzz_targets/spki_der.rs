//! `PublicJwk::from_spki_der` on arbitrary bytes (KMS `GetPublicKey` output is DER
//! SubjectPublicKeyInfo). It must never panic; what it accepts must be a usable public JWK:
//! thumbprint, algorithm check and a JSON round trip all work on it.
#![no_main]

use kms_jwt::jose::jwk::PublicJwk;
use kms_jwt::SigningAlg;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|der: &[u8]| {
    let Ok(jwk) = PublicJwk::from_spki_der(der) else { return };
    let thumbprint = jwk.thumbprint();
    assert_eq!(thumbprint.len(), 43, "a SHA-256 thumbprint is 43 base64url characters");
    let fits = SigningAlg::ALL.into_iter().filter(|alg| jwk.check_alg(*alg).is_ok()).count();
    assert!(fits >= 1, "an accepted key serves at least one algorithm: {jwk:?}");
    let json = serde_json::to_string(&jwk).expect("a JWK serializes");
    let back: PublicJwk = serde_json::from_str(&json).expect("a serialized JWK parses");
    assert_eq!(back, jwk);
});

//! JWS compact serialization (RFC 7515 §7.1) for signatures made elsewhere (by KMS).
//!
//! The classic bug in this field is shipping the DER `ECDSA-Sig-Value` that KMS returns:
//! RFC 7518 §3.4 requires the fixed-width `R || S` octet string instead, and verifiers reject
//! anything else. [`ecdsa_der_to_jose`] does that conversion.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use der::asn1::UintRef;
use der::{Decode, Sequence};
use serde::Serialize;

use crate::jose::alg::{Curve, KeyFamily, SigningAlg};

/// Why the signature KMS returned cannot go into a JWS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The ECDSA signature is not a valid DER `ECDSA-Sig-Value`.
    #[error("ECDSA signature is not a valid DER ECDSA-Sig-Value: {0}")]
    Der(String),
    /// `r` or `s` is wider than the curve allows.
    #[error("ECDSA signature component is {len} octets, more than the {max} the curve allows")]
    ComponentTooLong {
        /// Octets in the component.
        len: usize,
        /// Octets per component on the curve.
        max: usize,
    },
    /// `r` or `s` is zero, which no valid signature has.
    #[error("ECDSA signature component is zero")]
    ZeroComponent,
    /// An Ed25519 or ML-DSA signature of the wrong size.
    #[error("{alg} signature is {len} octets, expected {expected}")]
    WrongLength {
        /// The algorithm signed with.
        alg: SigningAlg,
        /// Octets KMS returned.
        len: usize,
        /// Octets the algorithm's signatures have.
        expected: usize,
    },
}

/// `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` (RFC 3279 §2.2.3).
#[derive(Sequence)]
struct EcdsaSigValue<'a> {
    r: UintRef<'a>,
    s: UintRef<'a>,
}

/// Convert a DER ECDSA signature to the JWS form: `R || S`, each left-padded with zeros to
/// `coordinate_len` octets (32, 48 or 66 for P-256, P-384, P-521).
pub fn ecdsa_der_to_jose(der: &[u8], coordinate_len: usize) -> Result<Vec<u8>, SignatureError> {
    // `from_der` rejects trailing data, non-minimal lengths and negative integers.
    let sig = EcdsaSigValue::from_der(der).map_err(|e| SignatureError::Der(e.to_string()))?;
    let mut out = vec![0u8; 2 * coordinate_len];
    for (half, value) in [sig.r, sig.s].into_iter().enumerate() {
        // UintRef::as_bytes has leading zero octets stripped.
        let bytes = value.as_bytes();
        if bytes.is_empty() || bytes.iter().all(|&b| b == 0) {
            return Err(SignatureError::ZeroComponent);
        }
        if bytes.len() > coordinate_len {
            return Err(SignatureError::ComponentTooLong { len: bytes.len(), max: coordinate_len });
        }
        let end = (half + 1) * coordinate_len;
        out[end - bytes.len()..end].copy_from_slice(bytes);
    }
    Ok(out)
}

/// Turn the raw signature KMS returned into the octets a JWS carries for `alg`.
pub fn jose_signature(alg: SigningAlg, kms_signature: &[u8]) -> Result<Vec<u8>, SignatureError> {
    let exactly = |expected: usize| {
        if kms_signature.len() == expected {
            Ok(kms_signature.to_vec())
        } else {
            Err(SignatureError::WrongLength { alg, len: kms_signature.len(), expected })
        }
    };
    match alg.family() {
        KeyFamily::Ec { curve: Curve::Secp256k1 } => {
            let mut rs = ecdsa_der_to_jose(kms_signature, 32)?;
            crate::jose::secp256k1::normalize_low_s(&mut rs);
            Ok(rs)
        }
        KeyFamily::Ec { curve } => ecdsa_der_to_jose(kms_signature, curve.coordinate_len()),
        // RSASSA signatures are already the octet string RFC 7518 §3.3/§3.5 expects.
        KeyFamily::Rsa { .. } => Ok(kms_signature.to_vec()),
        // KMS returns the 64-octet RFC 8032 signature (R || S), which is what RFC 8037 §3.1
        // puts in the JWS.
        KeyFamily::Ed25519 => exactly(64),
        // The FIPS 204 `sigEncode` octets, as RFC 9964 §5 puts them in the JWS.
        KeyFamily::MlDsa(level) => exactly(level.signature_len()),
    }
}

/// The protected header we emit. `alg` and `kid` come from the keyring, never from input.
#[derive(Debug, Clone, Serialize)]
pub struct Header<'a> {
    /// The signing key's algorithm.
    pub alg: SigningAlg,
    /// The signing key's thumbprint: how verifiers pick the key from the JWKS.
    pub kid: &'a str,
    /// `JWT`, or `at+jwt` for RFC 9068 access tokens.
    pub typ: &'a str,
}

/// `BASE64URL(header) . BASE64URL(payload)`: the JWS Signing Input (RFC 7515 §5.1 step 5).
pub fn signing_input(header: &Header<'_>, payload: &[u8]) -> Result<String, serde_json::Error> {
    let header_json = serde_json::to_vec(header)?;
    let mut out = String::with_capacity((header_json.len() + payload.len()) * 4 / 3 + 4);
    URL_SAFE_NO_PAD.encode_string(header_json, &mut out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut out);
    Ok(out)
}

/// Append the signature to a signing input, giving the compact serialization.
pub fn compact(mut signing_input: String, jose_signature: &[u8]) -> String {
    signing_input.push('.');
    URL_SAFE_NO_PAD.encode_string(jose_signature, &mut signing_input);
    signing_input
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use proptest::prelude::*;

    fn der_sig(r: &[u8], s: &[u8]) -> Vec<u8> {
        use der::Encode;
        EcdsaSigValue { r: UintRef::new(r).unwrap(), s: UintRef::new(s).unwrap() }.to_der().unwrap()
    }

    /// RFC 7515 Appendix A.3: ES256 example. R and S decoded from the published signature,
    /// re-encoded as DER, must convert back to the exact published 64 octets.
    #[test]
    fn rfc7515_a3_es256_signature_round_trips() {
        let jose = URL_SAFE_NO_PAD
            .decode("DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q")
            .unwrap();
        let der = der_sig(&jose[..32], &jose[32..]);
        assert_eq!(ecdsa_der_to_jose(&der, 32).unwrap(), jose);
    }

    /// RFC 7515 Appendix A.4: ES512 example, 132-octet R || S.
    #[test]
    fn rfc7515_a4_es512_signature_round_trips() {
        let jose = URL_SAFE_NO_PAD
            .decode("AdwMgeerwtHoh-l192l60hp9wAHZFVJbLfD_UxMi70cwnZOYaRI1bKPWROc-mZZqwqT2SI-KGDKB34XO0aw_7XdtAG8GaSwFKdCAPZgoXD2YBJZCPEX3xKpRwcdOO8KpEHwJjyqOgzDO7iKvU8vcnwNrmxYbSW9ERBXukOXolLzeO_Jn")
            .unwrap();
        assert_eq!(jose.len(), 132);
        let der = der_sig(&jose[..66], &jose[66..]);
        assert_eq!(ecdsa_der_to_jose(&der, 66).unwrap(), jose);
    }

    /// RFC 8037 Appendix A.4: the Ed25519 JWS of "Example of Ed25519 signing" under the A.1
    /// key. Ed25519 is deterministic, so the signature KMS would return for that key and this
    /// signing input is exactly the published one, which goes into the JWS unchanged.
    #[test]
    fn rfc8037_a4_ed25519_signature() {
        use ed25519_dalek::Signer;
        let d = URL_SAFE_NO_PAD.decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A").unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&d.try_into().unwrap());
        let input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        let published =
            "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
        let kms_signature = key.sign(input.as_bytes()).to_bytes();
        for alg in [SigningAlg::EdDSA, SigningAlg::Ed25519] {
            let jose = jose_signature(alg, &kms_signature).unwrap();
            assert_eq!(compact(input.to_owned(), &jose), format!("{input}.{published}"));
        }
        assert_eq!(
            jose_signature(SigningAlg::EdDSA, &kms_signature[..63]),
            Err(SignatureError::WrongLength { alg: SigningAlg::EdDSA, len: 63, expected: 64 })
        );
        let header = Header { alg: SigningAlg::Ed25519, kid: "k", typ: "JWT" };
        let input = signing_input(&header, b"{}").unwrap();
        let header = URL_SAFE_NO_PAD.decode(input.split('.').next().unwrap()).unwrap();
        assert_eq!(header, br#"{"alg":"Ed25519","kid":"k","typ":"JWT"}"#);
    }

    #[test]
    fn ml_dsa_signatures_have_the_fips_204_length() {
        for (alg, len) in
            [(SigningAlg::MlDsa44, 2420), (SigningAlg::MlDsa65, 3309), (SigningAlg::MlDsa87, 4627)]
        {
            assert_eq!(jose_signature(alg, &vec![5u8; len]).unwrap().len(), len);
            assert!(jose_signature(alg, &vec![5u8; len - 1]).is_err());
        }
        let header = Header { alg: SigningAlg::MlDsa65, kid: "k", typ: "JWT" };
        let input = signing_input(&header, b"{}").unwrap();
        let header = URL_SAFE_NO_PAD.decode(input.split('.').next().unwrap()).unwrap();
        assert_eq!(header, br#"{"alg":"ML-DSA-65","kid":"k","typ":"JWT"}"#);
    }

    /// ES256K: DER from KMS becomes 64 octets, always in low-S form.
    #[test]
    fn es256k_signatures_are_fixed_width_and_low_s() {
        use k256::ecdsa::signature::hazmat::PrehashSigner;
        let key = k256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let sig: k256::ecdsa::Signature = key.sign_prehash(&[1u8; 32]).unwrap();
        let (r, s) = sig.split_scalars();
        let high = k256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        for der in [sig.to_der(), high.to_der()] {
            let jose = jose_signature(SigningAlg::ES256K, der.as_bytes()).unwrap();
            assert_eq!(jose, sig.to_bytes().to_vec());
        }
    }

    #[test]
    fn short_components_are_left_padded() {
        let der = der_sig(&[0x01], &[0x00, 0x80]);
        let out = ecdsa_der_to_jose(&der, 32).unwrap();
        assert_eq!(out.len(), 64);
        assert_eq!(out[31], 0x01);
        assert!(out[..31].iter().all(|&b| b == 0));
        assert_eq!(out[63], 0x80);
        assert!(out[32..63].iter().all(|&b| b == 0));
    }

    #[test]
    fn malformed_signatures_are_refused() {
        assert!(ecdsa_der_to_jose(&[], 32).is_err());
        assert!(ecdsa_der_to_jose(&[0x30, 0x00], 32).is_err());
        // r is 33 significant octets: too long for P-256.
        let der = der_sig(&[0x7f; 33], &[1]);
        assert_eq!(ecdsa_der_to_jose(&der, 32), Err(SignatureError::ComponentTooLong { len: 33, max: 32 }));
        // Trailing garbage after the SEQUENCE.
        let mut der = der_sig(&[1], &[1]);
        der.push(0);
        assert!(ecdsa_der_to_jose(&der, 32).is_err());
        // Negative INTEGER (high bit set without a sign octet).
        assert!(ecdsa_der_to_jose(&[0x30, 0x06, 0x02, 0x01, 0x80, 0x02, 0x01, 0x01], 32).is_err());
    }

    #[test]
    fn signing_input_and_compact_form() {
        let header = Header { alg: SigningAlg::ES256, kid: "k1", typ: "JWT" };
        let input = signing_input(&header, br#"{"sub":"a"}"#).unwrap();
        let (h, p) = input.split_once('.').unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(h).unwrap(), br#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#);
        assert_eq!(URL_SAFE_NO_PAD.decode(p).unwrap(), br#"{"sub":"a"}"#);
        let token = compact(input, &[0xff, 0xee]);
        assert_eq!(token.rsplit('.').next(), Some("_-4"));
    }

    proptest! {
        /// Arbitrary R and S (including short ones with leading zeros) survive DER encoding and
        /// conversion unchanged, for every curve width.
        #[test]
        fn der_to_jose_preserves_arbitrary_components(
            width in prop::sample::select(vec![32usize, 48, 66]),
            r in prop::collection::vec(any::<u8>(), 1..=66),
            s in prop::collection::vec(any::<u8>(), 1..=66),
            r_zeros in 0usize..40,
            s_zeros in 0usize..40,
        ) {
            let pad = |v: &[u8], z: usize| { let mut p = vec![0u8; z.min(width)]; p.extend_from_slice(v); p };
            let (mut r, mut s) = (pad(&r, r_zeros), pad(&s, s_zeros));
            r.truncate(width); s.truncate(width);
            prop_assume!(r.iter().any(|&b| b != 0) && s.iter().any(|&b| b != 0));
            let out = ecdsa_der_to_jose(&der_sig(&r, &s), width).unwrap();
            prop_assert_eq!(out.len(), 2 * width);
            let mut want = vec![0u8; 2 * width];
            want[width - r.len()..width].copy_from_slice(&r);
            want[2 * width - s.len()..].copy_from_slice(&s);
            prop_assert_eq!(out, want);
        }

        /// Real P-256 signatures: our conversion of the DER form equals the library's own
        /// fixed-width encoding.
        #[test]
        fn der_to_jose_matches_p256_fixed_encoding(seed in any::<[u8; 32]>(), digest in any::<[u8; 32]>()) {
            let Ok(key) = p256::ecdsa::SigningKey::from_slice(&seed) else { return Ok(()); };
            let sig: p256::ecdsa::Signature = key.sign_prehash(&digest).unwrap();
            let converted = ecdsa_der_to_jose(sig.to_der().as_bytes(), 32).unwrap();
            let fixed: Vec<u8> = sig.to_bytes().to_vec();
            prop_assert_eq!(converted, fixed);
        }

        /// Arbitrary bytes never panic the converter.
        #[test]
        fn der_to_jose_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = ecdsa_der_to_jose(&bytes, 32);
        }
    }
}

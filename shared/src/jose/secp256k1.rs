//! ES256K signatures in the low-S form that secp256k1 verifiers commonly require.
//!
//! ECDSA accepts both `(r, s)` and `(r, n − s)`. KMS returns either; RFC 8812 does not pick
//! one, but widespread secp256k1 verifiers (libsecp256k1, the RustCrypto `k256` crate,
//! `@noble/curves` by default) accept only `s ≤ n/2`, to rule out malleated copies. So we
//! always publish the low form, which every ECDSA verifier accepts.

/// The order n of secp256k1's base point (SEC 2 §2.4.1), big-endian.
const ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xba,
    0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
];

/// ⌊n/2⌋, big-endian.
const HALF_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x5d,
    0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0,
];

/// Replace `s` by `n − s` when `s > n/2`, in a 64-octet `R || S`. Other lengths are left
/// alone (the caller has already checked the width).
pub fn normalize_low_s(rs: &mut [u8]) {
    let Some(s) = rs.get_mut(32..64) else { return };
    // Fixed-width big-endian octet strings compare like the integers they encode.
    if *s <= HALF_ORDER[..] {
        return;
    }
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let diff = i16::from(ORDER[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(diff < 0);
        s[i] = (diff + (borrow << 8)) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
    use proptest::prelude::*;

    #[test]
    fn half_order_is_half_the_order() {
        let mut doubled = [0u8; 32];
        let mut carry = 1u16; // n is odd: 2·⌊n/2⌋ + 1 = n
        for i in (0..32).rev() {
            let v = u16::from(HALF_ORDER[i]) * 2 + carry;
            doubled[i] = v as u8;
            carry = v >> 8;
        }
        assert_eq!(doubled, ORDER);
    }

    proptest! {
        /// Whatever s KMS picks, the published signature is k256's low-S normalization of it,
        /// and k256 (which refuses high S) verifies it.
        #[test]
        fn normalized_signatures_are_low_s_and_verify(seed in any::<[u8; 32]>(), digest in any::<[u8; 32]>(), flip in any::<bool>()) {
            let Ok(key) = k256::ecdsa::SigningKey::from_slice(&seed) else { return Ok(()); };
            let sig: k256::ecdsa::Signature = key.sign_prehash(&digest).unwrap();
            // The high form of the same signature, as KMS may return it.
            let high = if flip {
                let mut rs = sig.to_bytes().to_vec();
                let s = *sig.s();
                rs[32..].copy_from_slice(&(-s).to_bytes());
                rs
            } else {
                sig.to_bytes().to_vec()
            };
            let mut ours = high.clone();
            normalize_low_s(&mut ours);
            let reference = k256::ecdsa::Signature::from_slice(&high).unwrap();
            let want = reference.normalize_s().unwrap_or(reference);
            prop_assert_eq!(&ours, &want.to_vec());
            let parsed = k256::ecdsa::Signature::from_slice(&ours).unwrap();
            prop_assert!(key.verifying_key().verify_prehash(&digest, &parsed).is_ok());
        }
    }
}

//! ML-DSA (FIPS 204) as kms-jwt uses it: KMS signs (`ML_DSA_SHAKE_256`), we only compute the
//! message representative μ when a signing input is too long to send KMS as it is.
//!
//! KMS's `Sign` takes a message of at most 4096 bytes with `MessageType=RAW`; above that it
//! takes the 64-byte μ of FIPS 204 §6.2 with `MessageType=EXTERNAL_MU` ("EXTERNAL_MU KMS skips
//! the concatenated hashing of the public key hash and the message", KMS API reference,
//! `Sign`). μ needs only public data:
//!
//! - `tr = SHAKE256(pk, 64)` (FIPS 204 Algorithm 6, line 6; the hash of the encoded public key);
//! - `M′ = 0x00 ‖ 0x00 ‖ M`: pure ML-DSA (domain separator 0), with the empty context string
//!   that RFC 9964 §5 requires for JOSE ("The ctx parameter MUST be the empty string");
//! - `μ = SHAKE256(tr ‖ M′, 64)` (Algorithm 7, line 6).
//!
//! A signature over μ is the signature over M: any ML-DSA verifier accepts it.

use sha3::digest::{ExtendableOutput, Update, XofReader};
use sha3::Shake256;

/// The longest message KMS signs with `MessageType=RAW` (KMS API reference, `Sign`:
/// "Messages can be 0-4096 bytes").
pub const KMS_RAW_MESSAGE_LIMIT: usize = 4096;

/// Octets of `tr` and of μ (FIPS 204 §6.2).
pub const MU_LEN: usize = 64;

/// `tr`, the 64-byte hash of a public key: computed once per key, not per token.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKeyHash(pub [u8; MU_LEN]);

impl std::fmt::Debug for PublicKeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKeyHash({:02x}{:02x}{:02x}{:02x}…)", self.0[0], self.0[1], self.0[2], self.0[3])
    }
}

impl PublicKeyHash {
    /// `tr = SHAKE256(pk, 64)` of an encoded public key.
    pub fn of(public_key: &[u8]) -> Self {
        let mut tr = [0u8; MU_LEN];
        Shake256::default().chain(public_key).finalize_xof().read(&mut tr);
        PublicKeyHash(tr)
    }

    /// μ of `message` for pure ML-DSA with the empty context.
    pub fn mu(&self, message: &[u8]) -> [u8; MU_LEN] {
        let mut mu = [0u8; MU_LEN];
        Shake256::default()
            .chain(self.0)
            // M′ = IntegerToBytes(0, 1) ‖ IntegerToBytes(|ctx|, 1) ‖ ctx ‖ M, with ctx empty.
            .chain([0u8, 0u8])
            .chain(message)
            .finalize_xof()
            .read(&mut mu);
        mu
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ml_dsa::{Keypair as _, MlDsa44, MlDsa65, MlDsa87, MlDsaParams, SigningKey};

    /// μ against the RustCrypto implementation: its own μ (`compute_mu`) equals ours, a
    /// signature over our μ is the one it makes over the message, and it verifies as an
    /// ordinary signature of the message.
    fn mu_matches_the_reference<P: MlDsaParams>(seed: u8) {
        let key = SigningKey::<P>::from_seed(&[seed; 32].into());
        let vk = key.verifying_key();
        let tr = PublicKeyHash::of(&vk.encode());
        for len in [0usize, 1, 4096, 4097, 20_000] {
            let message: Vec<u8> = (0..len).map(|i| (i * 31 + usize::from(seed)) as u8).collect();
            let ours = tr.mu(&message);
            let theirs = vk
                .compute_mu(
                    |h| {
                        ml_dsa::signature::digest::Update::update(h, &message);
                        Ok(())
                    },
                    &[],
                )
                .unwrap();
            assert_eq!(ours.as_slice(), theirs.as_slice(), "μ of {len} bytes");
            let over_mu = key.expanded_key().sign_mu_deterministic(&theirs);
            let over_message = key.expanded_key().sign_deterministic(&message, &[]).unwrap();
            assert_eq!(over_mu.encode(), over_message.encode());
            assert!(vk.verify_with_context(&message, &[], &over_mu));
            let mut other = message.clone();
            other.push(1);
            assert!(!vk.verify_with_context(&other, &[], &over_mu));
        }
    }

    #[test]
    fn mu_agrees_with_the_ml_dsa_crate_for_every_parameter_set() {
        mu_matches_the_reference::<MlDsa44>(1);
        mu_matches_the_reference::<MlDsa65>(2);
        mu_matches_the_reference::<MlDsa87>(3);
    }

    #[test]
    fn tr_is_shake256_of_the_public_key() {
        // SHAKE256 of the empty string, 64 octets (FIPS 202 test value).
        let empty = PublicKeyHash::of(b"");
        assert_eq!(
            empty.0[..8],
            [0x46, 0xb9, 0xdd, 0x2b, 0x0b, 0xa8, 0x8d, 0x13],
            "SHAKE256(\"\") starts 46b9dd2b0ba88d13"
        );
    }
}

//! What KMS signs for a token: a digest we computed, the JWS signing input itself, or an
//! ML-DSA external μ. Each algorithm fixes which (KMS API reference, `Sign`, `MessageType`):
//!
//! | algorithm | `MessageType` | `Message` |
//! |---|---|---|
//! | RS*, PS*, ES256/384/512, ES256K | `DIGEST` | SHA-2 of the signing input |
//! | EdDSA, Ed25519 (`ED25519_SHA_512`) | `RAW` (the only type KMS accepts for it) | the signing input, at most 4096 bytes |
//! | ML-DSA-44/65/87 (`ML_DSA_SHAKE_256`) | `RAW` up to 4096 bytes, else `EXTERNAL_MU` | the signing input, or its 64-byte μ |
//!
//! The digest path keeps tokens of the classic algorithms unbounded by KMS's 4096-byte
//! message limit. Ed25519 has no such escape (`ED25519_PH_SHA_512` is another signature
//! algorithm, which JOSE does not define), so its tokens are refused above the limit, before
//! KMS is called.

use crate::jose::alg::{HashAlg, KeyFamily, SigningAlg};
use crate::jose::jwk::PublicJwk;
use crate::jose::ml_dsa::{PublicKeyHash, KMS_RAW_MESSAGE_LIMIT};

/// The `Message` of one KMS `Sign` call, tagged with its `MessageType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigningInput {
    /// `MessageType=DIGEST`: a hash of the signing input.
    Digest(Vec<u8>),
    /// `MessageType=RAW`: the signing input itself, at most 4096 bytes.
    Raw(Vec<u8>),
    /// `MessageType=EXTERNAL_MU`: the 64-byte ML-DSA message representative.
    ExternalMu([u8; 64]),
}

impl SigningInput {
    /// The KMS `MessageType` name.
    pub fn message_type(&self) -> &'static str {
        match self {
            SigningInput::Digest(_) => "DIGEST",
            SigningInput::Raw(_) => "RAW",
            SigningInput::ExternalMu(_) => "EXTERNAL_MU",
        }
    }

    /// The `Message` octets.
    pub fn message(&self) -> &[u8] {
        match self {
            SigningInput::Digest(bytes) | SigningInput::Raw(bytes) => bytes,
            SigningInput::ExternalMu(mu) => mu,
        }
    }
}

/// A signing input KMS cannot sign for this algorithm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the token's signing input is {size} bytes; {alg} tokens are signed by KMS as they are, at most {limit} bytes")]
pub struct InputTooLarge {
    /// The key's algorithm.
    pub alg: SigningAlg,
    /// Octets of the signing input.
    pub size: usize,
    /// Octets KMS takes as a RAW message (4096).
    pub limit: usize,
}

/// How one key's tokens go to KMS, decided once per key (not per token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputPlan {
    /// A digest of the signing input, by this hash.
    Digest(HashAlg),
    /// The signing input as it is, refused above 4096 bytes.
    Raw,
    /// RAW up to 4096 bytes; above, μ from this key's `tr`, when the keyring holds a usable
    /// public key (else refused above 4096 bytes, like [`InputPlan::Raw`]).
    MlDsa(Option<PublicKeyHash>),
}

impl InputPlan {
    /// The plan for a key of `alg` whose public key is `jwk`.
    pub fn for_key(alg: SigningAlg, jwk: &PublicJwk) -> InputPlan {
        if let Some(hash) = alg.hash() {
            return InputPlan::Digest(hash);
        }
        match (alg.family(), jwk) {
            (KeyFamily::MlDsa(level), PublicJwk::Akp { public, .. }) => {
                use base64::Engine;
                let pk = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(public).ok();
                InputPlan::MlDsa(
                    pk.filter(|pk| pk.len() == level.public_key_len()).map(|pk| PublicKeyHash::of(&pk)),
                )
            }
            (KeyFamily::MlDsa(_), _) => InputPlan::MlDsa(None),
            _ => InputPlan::Raw,
        }
    }

    /// What KMS signs for the JWS signing input `input` of an `alg` token.
    pub fn prepare(&self, alg: SigningAlg, input: &[u8]) -> Result<SigningInput, InputTooLarge> {
        let too_large = || InputTooLarge { alg, size: input.len(), limit: KMS_RAW_MESSAGE_LIMIT };
        match self {
            InputPlan::Digest(hash) => Ok(SigningInput::Digest(hash.digest(input))),
            _ if input.len() <= KMS_RAW_MESSAGE_LIMIT => Ok(SigningInput::Raw(input.to_vec())),
            InputPlan::MlDsa(Some(tr)) => Ok(SigningInput::ExternalMu(tr.mu(input))),
            InputPlan::Raw | InputPlan::MlDsa(None) => Err(too_large()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn akp(alg: &str, len: usize, byte: u8) -> PublicJwk {
        use base64::Engine;
        PublicJwk::Akp {
            alg: alg.into(),
            public: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(vec![byte; len]),
        }
    }

    #[test]
    fn each_algorithm_gets_the_message_type_kms_requires() {
        let ec = PublicJwk::Ec { crv: "P-256".into(), x: String::new(), y: String::new() };
        let big = vec![b'a'; 10_000];
        for alg in [SigningAlg::RS256, SigningAlg::PS512, SigningAlg::ES512, SigningAlg::ES256K] {
            let input = InputPlan::for_key(alg, &ec).prepare(alg, &big).unwrap();
            assert_eq!(input.message_type(), "DIGEST", "{alg}: classic tokens are never size-bound");
            assert_eq!(input.message().len(), alg.hash().unwrap().digest(b"").len());
        }
        let okp = PublicJwk::Okp { crv: "Ed25519".into(), x: String::new() };
        for alg in [SigningAlg::EdDSA, SigningAlg::Ed25519] {
            let plan = InputPlan::for_key(alg, &okp);
            assert_eq!(plan, InputPlan::Raw);
            let at_limit = plan.prepare(alg, &big[..4096]).unwrap();
            assert_eq!((at_limit.message_type(), at_limit.message()), ("RAW", &big[..4096]));
            assert_eq!(
                plan.prepare(alg, &big[..4097]),
                Err(InputTooLarge { alg, size: 4097, limit: 4096 }),
                "{alg}: KMS signs Ed25519 only RAW"
            );
        }
        let key = akp("ML-DSA-65", 1952, 7);
        let plan = InputPlan::for_key(SigningAlg::MlDsa65, &key);
        assert!(matches!(plan, InputPlan::MlDsa(Some(_))));
        assert_eq!(plan.prepare(SigningAlg::MlDsa65, &big[..4096]).unwrap().message_type(), "RAW");
        let mu = plan.prepare(SigningAlg::MlDsa65, &big[..4097]).unwrap();
        assert_eq!((mu.message_type(), mu.message().len()), ("EXTERNAL_MU", 64));
        // μ depends on the key: the same input under another key gives another μ.
        let same = InputPlan::for_key(SigningAlg::MlDsa65, &key);
        assert_eq!(same.prepare(SigningAlg::MlDsa65, &big[..4097]).unwrap(), mu);
        let other = InputPlan::for_key(SigningAlg::MlDsa65, &akp("ML-DSA-65", 1952, 8));
        assert_ne!(other.prepare(SigningAlg::MlDsa65, &big[..4097]).unwrap(), mu);
        let bad = InputPlan::for_key(SigningAlg::MlDsa65, &akp("ML-DSA-65", 100, 7));
        assert_eq!(bad, InputPlan::MlDsa(None), "no usable public key: no μ");
        assert!(bad.prepare(SigningAlg::MlDsa65, &big[..4096]).is_ok());
        assert!(bad.prepare(SigningAlg::MlDsa65, &big[..4097]).is_err());
    }
}

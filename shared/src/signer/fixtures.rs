//! What the signer's tests share: a rotator and a signer over one in-memory KMS and keyring
//! store, like two Lambda functions.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

use super::{SignAnswer, SignError, SignedToken, TokenSigner};
use crate::config::SignConfig;
use crate::jose::alg::SigningAlg;
use crate::memory::{MemoryKms, MemoryStore};
use crate::ports::KeySigner;
use crate::rotate::{RotationPolicy, Rotator};

/// A KMS and a store shared between a rotator and a signer, like two Lambda functions.
#[derive(Clone)]
pub(super) struct Shared(pub(super) Arc<MemoryKms>, pub(super) Arc<MemoryStore>);

pub(super) type MemorySigner = TokenSigner<Arc<MemoryKms>, Arc<MemoryStore>>;

pub(super) fn policy() -> RotationPolicy {
    RotationPolicy { rotation_period: 86_400, ..RotationPolicy::for_tests(SigningAlg::ES256) }
}

pub(super) fn signer_on<K: KeySigner>(kms: K, store: Arc<MemoryStore>) -> TokenSigner<K, Arc<MemoryStore>> {
    SignConfig::for_tests("https://issuer.test").token_signer(kms, store)
}

pub(super) async fn setup() -> (Shared, MemorySigner) {
    let shared = Shared(Arc::new(MemoryKms::new()), Arc::new(MemoryStore::new()));
    Rotator::new(
        Arc::clone(&shared.0),
        Arc::clone(&shared.1),
        policy(),
        crate::test_stacks::single_region_keyring(),
    )
    .reconcile(0)
    .await
    .unwrap();
    let signer = signer_on(Arc::clone(&shared.0), Arc::clone(&shared.1));
    (shared, signer)
}

pub(super) fn payload_of(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

/// The code of a refused invocation, and proof that it cost neither KMS nor the keyring.
pub(super) async fn refused(shared: &Shared, signer: &MemorySigner, text: &str) -> &'static str {
    let (signs, reads) = (shared.0.calls("Sign"), shared.1.reads());
    let code = signer.invoke_json(text, 0).await.unwrap_err().code();
    assert_eq!((shared.0.calls("Sign"), shared.1.reads()), (signs, reads), "{code}: nothing touched");
    code
}

/// The verdicts of a batch answer.
pub(super) fn verdicts(answer: SignAnswer) -> Vec<Result<SignedToken, SignError>> {
    match answer {
        SignAnswer::Batch(results) => results,
        single => panic!("a batch answer, not {single:?}"),
    }
}

//! Why a request was not signed: the error, its stable code, whether retrying may help, and
//! the message a caller may see.

use super::{MAX_BATCH, MAX_CLAIMS_BYTES};
use crate::cache::CacheError;
use crate::jose::jws::SignatureError;
use crate::jose::signing_input::InputTooLarge;
use crate::minting::Denial;
use crate::ports::KmsError;

/// Why a request was not signed. [`SignError::code`] is the stable contract; the `Display`
/// text is for logs and may name AWS resources, [`SignError::public_message`] is for callers.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The text is not JSON.
    #[error("the request is not valid JSON: {0}")]
    InvalidJson(String),
    /// JSON of the wrong shape: not an object, no `claims`, an unknown member or a wrong type.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A request's or an invocation's text is over its limit; refused before it is parsed.
    #[error("{what} is larger than the {limit} bytes allowed")]
    RequestTooLarge {
        /// Which text was too large.
        what: &'static str,
        /// The limit, in bytes.
        limit: usize,
    },
    /// A member name appears twice in one object, which JSON parsers read differently.
    #[error("member {0:?} is given more than once in one object")]
    DuplicateMember(String),
    /// An integer that fits neither `i64` nor `u64` (or a number beyond `f64`), which JSON
    /// parsers read differently.
    #[error("integer {0} fits in neither a signed nor an unsigned 64-bit integer; send it as a string")]
    NumberOutOfRange(String),
    /// `claims` is present but not a JSON object.
    #[error("claims must be a JSON object")]
    ClaimsNotObject,
    /// `claims` sets one of the [`RESERVED_CLAIMS`](super::RESERVED_CLAIMS), which only the
    /// service sets.
    #[error("claim {0:?} is set by the service and may not be supplied")]
    ReservedClaim(String),
    /// A request member such as `alg`, `kid` or `header` that would set the JOSE header.
    #[error("{0:?} would set a JOSE header field; the header is set by the service")]
    HeaderNotAllowed(String),
    /// `aud` or `sub` is given both in `claims` and as `audience` or `subject`.
    #[error("claim {0:?} is given twice (in claims and as a request field)")]
    AmbiguousClaim(String),
    /// `typ` is neither `JWT` nor `at+jwt`.
    #[error("typ must be \"JWT\" or \"at+jwt\"")]
    InvalidTyp,
    /// The serialized claims are larger than [`MAX_CLAIMS_BYTES`].
    #[error("claims are {size} bytes, more than the {MAX_CLAIMS_BYTES} allowed")]
    ClaimsTooLarge {
        /// Their size, in bytes.
        size: usize,
    },
    /// `ttl_seconds` is zero or longer than the longest token lifetime.
    #[error("ttl_seconds must be between 1 and {max}")]
    InvalidTtl {
        /// The longest lifetime allowed, in seconds.
        max: u64,
    },
    /// A batch that is empty or holds more than [`MAX_BATCH`] requests.
    #[error("a batch holds 1 to {MAX_BATCH} requests, not {0}")]
    InvalidBatchSize(usize),
    /// The minting policy does not let this caller mint this token: the rule tried and the
    /// check it failed, never what the policy allows.
    #[error("{0}")]
    NotAllowed(Denial),
    /// The keyring has no current key: rotate has not bootstrapped it yet.
    #[error("the keyring has no current key yet; run rotate first")]
    NoCurrentKey,
    /// The keyring could not be read, or the stored one is invalid.
    #[error("keyring unavailable: {0}")]
    Keyring(#[from] CacheError),
    /// The stored minting policy could not be read (an outage past its stale window), or this
    /// container never had a valid one. Nothing is signed: the policy is never guessed.
    #[error("minting policy unavailable: {0}")]
    MintingPolicy(CacheError),
    /// The KMS `Sign` call failed.
    #[error(transparent)]
    Kms(#[from] KmsError),
    /// KMS's signature could not be converted to JWS form.
    #[error("KMS returned an unusable signature: {0}")]
    Signature(#[from] SignatureError),
    /// EdDSA (and ML-DSA without a usable public key): KMS signs the signing input itself,
    /// at most 4096 bytes. Refused before KMS is called.
    #[error(transparent)]
    SigningInputTooLarge(#[from] InputTooLarge),
    /// The header or payload could not be serialized.
    #[error("could not encode the token: {0}")]
    Encoding(#[from] serde_json::Error),
}

impl SignError {
    /// A stable, machine-readable code (and Lambda `errorType`).
    pub fn code(&self) -> &'static str {
        match self {
            SignError::InvalidJson(_) => "InvalidJson",
            SignError::InvalidRequest(_) => "InvalidRequest",
            SignError::RequestTooLarge { .. } => "RequestTooLarge",
            SignError::DuplicateMember(_) => "DuplicateMember",
            SignError::NumberOutOfRange(_) => "NumberOutOfRange",
            SignError::ClaimsNotObject => "ClaimsNotObject",
            SignError::ReservedClaim(_) => "ReservedClaim",
            SignError::HeaderNotAllowed(_) => "HeaderNotAllowed",
            SignError::AmbiguousClaim(_) => "AmbiguousClaim",
            SignError::InvalidTyp => "InvalidTyp",
            SignError::ClaimsTooLarge { .. } => "ClaimsTooLarge",
            SignError::InvalidTtl { .. } => "InvalidTtl",
            SignError::InvalidBatchSize(_) => "InvalidBatchSize",
            SignError::NotAllowed(_) => "NotAllowed",
            SignError::NoCurrentKey => "NoCurrentKey",
            SignError::Keyring(_) => "KeyringUnavailable",
            SignError::MintingPolicy(_) => "MintingPolicyUnavailable",
            SignError::Kms(KmsError::Throttled) => "KmsThrottled",
            SignError::Kms(KmsError::Timeout { .. }) => "KmsTimeout",
            SignError::Kms(KmsError::Transport { .. }) => "KmsUnavailable",
            SignError::Kms(KmsError::AccessDenied { .. }) => "KmsAccessDenied",
            SignError::Kms(_) => "KmsError",
            SignError::Signature(_) => "SignatureInvalid",
            SignError::SigningInputTooLarge(_) => "SigningInputTooLarge",
            SignError::Encoding(_) => "EncodingError",
        }
    }

    /// True when the caller did something wrong (HTTP 4xx), false for service faults.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            SignError::InvalidJson(_)
                | SignError::InvalidRequest(_)
                | SignError::RequestTooLarge { .. }
                | SignError::DuplicateMember(_)
                | SignError::NumberOutOfRange(_)
                | SignError::ClaimsNotObject
                | SignError::ReservedClaim(_)
                | SignError::HeaderNotAllowed(_)
                | SignError::AmbiguousClaim(_)
                | SignError::InvalidTyp
                | SignError::ClaimsTooLarge { .. }
                | SignError::InvalidTtl { .. }
                | SignError::InvalidBatchSize(_)
                | SignError::NotAllowed(_)
                | SignError::SigningInputTooLarge(_)
        )
    }

    /// True when the same request may succeed if retried later. Signing has no side effect,
    /// so a KMS call whose outcome is unknown (timeout, lost connection) is safe to repeat.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SignError::Kms(KmsError::Throttled | KmsError::Timeout { .. } | KmsError::Transport { .. })
                | SignError::Keyring(_)
                | SignError::MintingPolicy(_)
                | SignError::NoCurrentKey
        )
    }

    /// The message a caller gets. Client errors describe the caller's own input; service
    /// errors are generic, because AWS error texts name key and role ARNs, which belong in
    /// our logs (the `Display` text), not in answers.
    pub fn public_message(&self) -> String {
        let generic = match self {
            SignError::Kms(KmsError::NotFound(_) | KmsError::InvalidState(_)) => {
                "the signing key is disabled, pending deletion or gone; retry after the next rotation"
            }
            SignError::Kms(KmsError::Throttled) => "KMS throttled the request; retry with backoff",
            SignError::Kms(KmsError::Timeout { .. }) => "KMS did not answer in time; retry",
            SignError::Kms(KmsError::Transport { .. }) => "KMS could not be reached; retry",
            SignError::Kms(KmsError::AccessDenied { .. }) => "the sign function may not use the signing key",
            SignError::Kms(KmsError::Other { .. }) => "KMS could not sign the token",
            SignError::Keyring(_) => "the keyring could not be read; retry",
            SignError::MintingPolicy(_) => "the minting policy could not be read; retry",
            SignError::Signature(_) => "KMS returned an unusable signature",
            SignError::Encoding(_) => "the token could not be encoded",
            _ => return self.to_string(),
        };
        generic.to_owned()
    }

    /// A JSON error of our parse that no seed claimed: bad syntax, or the wrong shape.
    pub(super) fn from_json_error(error: serde_json::Error) -> SignError {
        match error.classify() {
            serde_json::error::Category::Data => SignError::InvalidRequest(error.to_string()),
            // serde_json's own refusal of a literal beyond f64 (`1e400`, 400 digits).
            _ if error.to_string().starts_with("number out of range") => {
                SignError::NumberOutOfRange("beyond the range of a 64-bit float".into())
            }
            _ => SignError::InvalidJson(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::jose::alg::SigningAlg;
    use crate::ports::{KeySigner, SigningInput, StoreError};
    use crate::signer::fixtures::*;

    /// A KMS that fails every call the same way.
    struct FailingKms(KmsError);

    #[async_trait::async_trait]
    impl KeySigner for FailingKms {
        async fn sign(&self, _: &str, _: SigningAlg, _: &SigningInput) -> Result<Vec<u8>, KmsError> {
            Err(self.0.clone())
        }
    }

    #[tokio::test]
    async fn kms_failures_get_stable_codes_and_callers_never_see_an_arn() {
        let (shared, _) = setup().await;
        let arn = "arn:aws:kms:eu-west-1:123456789012:key/0f7c1d1e-0000-4000-8000-000000000000";
        let role = "arn:aws:sts::123456789012:assumed-role/kms-jwt-sign/fn";
        for (error, code, retryable) in [
            (KmsError::Timeout { operation: "Sign" }, "KmsTimeout", true),
            (KmsError::transport("Sign", format!("connection reset ({arn})")), "KmsUnavailable", true),
            (KmsError::Throttled, "KmsThrottled", true),
            (KmsError::AccessDenied { operation: "Sign" }, "KmsAccessDenied", false),
            (KmsError::NotFound(arn.into()), "KmsError", false),
            (KmsError::InvalidState(arn.into()), "KmsError", false),
            (KmsError::other("Sign", format!("{role} is not authorized on {arn}")), "KmsError", false),
        ] {
            let signer = signer_on(FailingKms(error.clone()), Arc::clone(&shared.1));
            let err = signer.sign_event(json!({"claims": {}}), 0).await.unwrap_err();
            assert_eq!(
                (err.code(), err.is_retryable(), err.is_client_error()),
                (code, retryable, false),
                "{error}"
            );
            let answer = signer.invoke(json!({"requests": [{"claims": {}}]}), 0).await.unwrap();
            let item = verdicts(answer).remove(0).unwrap_err();
            assert_eq!((item.code(), item.is_retryable()), (code, retryable));
            for message in [err.public_message(), item.public_message()] {
                assert!(!message.contains("arn:"), "{code}: {message}");
            }
            if matches!(error, KmsError::NotFound(_) | KmsError::InvalidState(_)) {
                assert!(err.to_string().contains(arn), "the log text keeps the detail: {err}");
            }
        }
        let store_error = SignError::Keyring(CacheError::Store(StoreError::unavailable(format!(
            "AccessDeniedException: {role} may not read arn:aws:secretsmanager:eu-west-1:123456789012:secret:kr"
        ))));
        assert!(!store_error.public_message().contains("arn:"));
        assert!(store_error.is_retryable());
    }
}

//! The sign function's Lambda handler: a direct invocation (one request or a batch) or
//! `POST /sign` through API Gateway. The binary (`main.rs`) only wires it up.
//!
//! The invocation arrives as JSON text ([`RawValue`]: lambda_runtime checks it is JSON and
//! copies it, nothing more), so the signer can refuse an oversize request by its length
//! before building anything from it.

pub mod http;
pub mod wire;

use kms_jwt::ports::{KeySigner, KeyringStore};
use kms_jwt::signer::{SignAnswer, SignError, TokenSigner};
use lambda_runtime::Diagnostic;
use serde_json::value::RawValue;
use serde_json::Value;
use tracing::Instrument;

/// Answer one invocation: HTTP events get an HTTP answer (errors included), direct
/// invocations the answer or a Lambda error whose `errorType` is the error code.
///
/// Every line logged meanwhile, the audit line of each token among them, carries the Lambda
/// `request_id` and who called: for `POST /sign` the IAM principal API Gateway authenticated;
/// for a direct invocation Lambda names no caller, and CloudTrail's `Invoke` data events do
/// (docs/functions.md, "Audit: who minted a token").
pub async fn handle<K: KeySigner, S: KeyringStore>(
    signer: &TokenSigner<K, S>,
    payload: &RawValue,
    request_id: &str,
) -> Result<Value, Diagnostic> {
    let text = payload.get();
    // POST /sign through API Gateway (IAM-authorized) answers HTTP, with 4xx for bad input.
    if let Some(event) = http::HttpEvent::parse(text) {
        let caller = event.caller();
        let span = tracing::info_span!(
            "sign",
            request_id,
            via = "api-gateway",
            caller = caller.principal_arn.as_deref(),
            caller_account = caller.account_id.as_deref(),
            api_request_id = caller.api_request_id.as_deref(),
        );
        return Ok(async {
            let answer = http::respond(signer, event, kms_jwt::unix_now()).await;
            tracing::info!(status = %answer["statusCode"], "sign request over HTTP answered");
            answer
        }
        .instrument(span)
        .await);
    }
    let span = tracing::info_span!("sign", request_id, via = "direct-invoke");
    Ok(direct(signer, text).instrument(span).await?)
}

async fn direct<K: KeySigner, S: KeyringStore>(
    signer: &TokenSigner<K, S>,
    text: &str,
) -> Result<Value, Refusal> {
    let answer = signer.invoke_json(text, kms_jwt::unix_now()).await.inspect_err(log_refusal)?;
    let kid = match &answer {
        SignAnswer::Single(token) => Some(token.kid.as_str()),
        SignAnswer::Batch(_) => None,
    };
    tracing::info!(kid, batch = kid.is_none(), "signed");
    Ok(wire::answer_json(answer))
}

/// A direct invocation the signer refused, as Lambda reports it: `errorType` is the stable
/// code, `errorMessage` the public message (the `Display` text can name ARNs). A newtype
/// because neither [`SignError`] nor [`Diagnostic`] is this crate's to convert.
#[derive(Debug)]
pub struct Refusal(pub SignError);

impl From<SignError> for Refusal {
    fn from(error: SignError) -> Self {
        Refusal(error)
    }
}

impl From<Refusal> for Diagnostic {
    fn from(Refusal(error): Refusal) -> Self {
        Diagnostic { error_type: error.code().into(), error_message: error.public_message() }
    }
}

/// Log why a request was not signed, with the detail (AWS error texts, ARNs) that callers
/// do not get.
fn log_refusal(e: &SignError) {
    if e.is_client_error() {
        tracing::warn!(code = e.code(), error = %e, "sign request refused");
    } else {
        tracing::error!(code = e.code(), retryable = e.is_retryable(), error = %e, "sign failed");
    }
}

#[cfg(test)]
mod tests {
    use kms_jwt::ports::KmsError;

    use super::*;

    #[test]
    fn a_refusal_becomes_a_lambda_error_named_by_its_code() {
        let client = Diagnostic::from(Refusal(SignError::InvalidTtl { max: 3_600 }));
        assert_eq!(client.error_type, "InvalidTtl");
        assert_eq!(client.error_message, "ttl_seconds must be between 1 and 3600");

        let arn = "arn:aws:kms:eu-west-1:123456789012:key/0f7c1d1e-0000-4000-8000-000000000000";
        let error = SignError::Kms(KmsError::InvalidState(arn.into()));
        let public = error.public_message();
        let service = Diagnostic::from(Refusal::from(error));
        assert_eq!(
            (service.error_type.as_str(), service.error_message.as_str()),
            ("KmsError", public.as_str())
        );
        assert!(!service.error_message.contains("arn:"));
    }
}

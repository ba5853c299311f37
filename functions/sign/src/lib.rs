//! The sign function's Lambda handler: a direct invocation (one request or a batch) or
//! `POST /sign` through API Gateway, one or the other per deployment (`SIGN_TRANSPORT`), so
//! that the caller's identity comes only from what AWS attests. The binary (`main.rs`) only
//! wires it up.
//!
//! The invocation arrives as JSON text ([`RawValue`]: lambda_runtime checks it is JSON and
//! copies it, nothing more), so the signer can refuse an oversize request by its length
//! before building anything from it.

pub mod http;
pub mod wire;

use kms_jwt::config::SignTransport;
use kms_jwt::ports::{KeySigner, KeyringStore};
use kms_jwt::signer::{SignAnswer, SignError, TokenSigner};
use lambda_runtime::Diagnostic;
use serde_json::value::RawValue;
use serde_json::Value;
use tracing::Instrument;

/// Answer one invocation as the deployment's transport reads it.
///
/// `direct` (Lambda `Invoke` by trusted backends): the payload is a sign request or a batch,
/// answered as such or as a Lambda error whose `errorType` is the error code. No request
/// context is read, so an API Gateway-shaped payload is an invalid request, never an
/// identity: Lambda names no invoker to the function, so the audit line says `via=direct`
/// and nothing more (CloudTrail's `Invoke` data events name the caller), and the minting
/// policy gives direct invokers only its `direct_invoke` rules.
///
/// `api-gateway` (a function only API Gateway may invoke, its resource policy bound to the
/// API): the caller is the IAM principal API Gateway's IAM authorization put in the request
/// context [APIGW2], and the answer is HTTP (4xx for bad input, 403 `NotAllowed`).
///
/// [APIGW2]: https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html
pub async fn handle<K: KeySigner, S: KeyringStore>(
    signer: &TokenSigner<K, S>,
    transport: SignTransport,
    payload: &RawValue,
    request_id: &str,
) -> Result<Value, Diagnostic> {
    let text = payload.get();
    match transport {
        SignTransport::Direct => {
            let span = tracing::info_span!("sign", request_id, via = "direct");
            Ok(direct(signer, text).instrument(span).await?)
        }
        SignTransport::ApiGateway => {
            let Some(event) = http::HttpEvent::parse(text) else {
                // Only API Gateway may invoke this function: anything else is a misconfigured
                // permission, refused without reading it further.
                let span = tracing::info_span!("sign", request_id, via = "api-gateway");
                let _entered = span.enter();
                let refusal =
                    SignError::InvalidRequest("this function answers API Gateway events only".into());
                log_refusal(&refusal);
                return Err(Refusal(refusal).into());
            };
            let caller = event.caller();
            let span = tracing::info_span!(
                "sign",
                request_id,
                via = "api-gateway",
                caller = caller.principal_arn.as_deref(),
                caller_account = caller.account_id.as_deref(),
                api_request_id = caller.api_request_id.as_deref(),
            );
            Ok(async {
                let answer = http::respond(signer, event, kms_jwt::unix_now()).await;
                tracing::info!(status = %answer["statusCode"], "sign request over HTTP answered");
                answer
            }
            .instrument(span)
            .await)
        }
    }
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

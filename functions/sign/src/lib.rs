//! The sign function's Lambda handler: a direct invocation (one request or a batch) or
//! `POST /sign` through API Gateway. The binary (`main.rs`) only wires it up.

use kms_jwt::ports::{KeySigner, KeyringStore};
use kms_jwt::signer::TokenSigner;
use lambda_runtime::Diagnostic;
use serde_json::Value;

pub async fn handle<K: KeySigner, S: KeyringStore>(
    signer: &TokenSigner<K, S>,
    payload: Value,
) -> Result<Value, Diagnostic> {
    let now = kms_jwt::unix_now();
    // POST /sign through API Gateway (IAM-authorized) answers HTTP, with 400s for bad input.
    if let Some(answer) = signer.invoke_http(&payload, now).await {
        tracing::info!(status = %answer["statusCode"], "sign request over HTTP answered");
        return Ok(answer);
    }
    match signer.invoke(payload, now).await {
        Ok(answer) => {
            tracing::info!(kid = %answer["kid"], batch = answer.get("results").is_some(), "signed");
            Ok(answer)
        }
        Err(e) => {
            if e.is_client_error() {
                tracing::warn!(code = e.code(), error = %e, "sign request refused");
            } else {
                tracing::error!(code = e.code(), retryable = e.is_retryable(), error = %e, "sign failed");
            }
            Err(Diagnostic { error_type: e.code().into(), error_message: e.to_string() })
        }
    }
}

//! sign: `{"claims": {...}, "ttl_seconds": 900}` (or a batch, directly or as `POST /sign`) → JWTs
//! signed inside KMS.

use kms_jwt::aws::{load_sdk_config, KmsAdapter, SecretsManagerStore};
use kms_jwt::cache::{CachePolicy, KeyringCache};
use kms_jwt::config::SignConfig;
use kms_jwt::signer::{current_signing_key, TokenSigner};
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;

type Service = TokenSigner<KmsAdapter, SecretsManagerStore>;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = SignConfig::from_env()?;
    let sdk = load_sdk_config().await;
    let keyring = KeyringCache::new(
        SecretsManagerStore::new(&sdk, config.keyring_secret_id.clone(), None),
        // Never sign with a keyring older than its TTL: no stale-if-error on the signing path.
        CachePolicy { ttl: config.keyring_cache_ttl, max_staleness: std::time::Duration::ZERO },
        current_signing_key,
    );
    let signer: &'static Service = Box::leak(Box::new(TokenSigner::new(
        KmsAdapter::new(&sdk),
        keyring,
        config.issuer.clone(),
        config.default_token_ttl,
        config.max_token_ttl,
    )));
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| handle(signer, event.payload))).await
}

async fn handle(signer: &Service, payload: Value) -> Result<Value, Diagnostic> {
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

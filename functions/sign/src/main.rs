//! sign: direct invocation `{"claims": {...}, "ttl_seconds": 900}` → a JWT signed inside KMS.

use kms_jwt::aws::{load_sdk_config, KmsAdapter, SecretsManagerStore};
use kms_jwt::cache::{CachePolicy, KeyringCache};
use kms_jwt::config::SignConfig;
use kms_jwt::signer::{current_signing_key, SignedToken, TokenSigner};
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

async fn handle(signer: &Service, payload: Value) -> Result<SignedToken, Diagnostic> {
    match signer.sign_event(payload, kms_jwt::unix_now()).await {
        Ok(signed) => {
            tracing::info!(kid = %signed.kid, expires_at = signed.expires_at, "token signed");
            Ok(signed)
        }
        Err(e) => {
            if e.is_client_error() {
                tracing::warn!(code = e.code(), error = %e, "sign request refused");
            } else {
                tracing::error!(code = e.code(), error = %e, "sign failed");
            }
            Err(Diagnostic { error_type: e.code().into(), error_message: e.to_string() })
        }
    }
}

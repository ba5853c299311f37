//! sign: `{"claims": {...}, "ttl_seconds": 900}` (or a batch, directly or as `POST /sign`) → JWTs
//! signed inside KMS.

use kms_jwt::aws::wiring;
use kms_jwt::config::SignConfig;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::value::RawValue;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = SignConfig::from_env()?;
    // Lives as long as `run`, which borrows it: the runtime asks nothing to be `'static`.
    let signer = wiring::token_signer(&config).await;
    let signer = &signer;
    // The payload stays text until the handler has checked its size.
    lambda_runtime::run(service_fn(|event: LambdaEvent<Box<RawValue>>| async move {
        kms_jwt_sign::handle(signer, config.transport, &event.payload, &event.context.request_id).await
    }))
    .await
}

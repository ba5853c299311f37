//! jwks: serves `/.well-known/jwks.json` and `/.well-known/openid-configuration` behind API
//! Gateway (HTTP or REST API) or a function URL.

use kms_jwt::aws::{load_sdk_config, SecretsManagerStore};
use kms_jwt::config::JwksConfig;
use kms_jwt::jwks::JwksService;
use lambda_http::{service_fn, Request};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = JwksConfig::from_env()?;
    let sdk = load_sdk_config(config.aws_timeouts).await;
    let store = SecretsManagerStore::new(&sdk, config.keyring_secret_id.clone(), None);
    let service: &'static JwksService<SecretsManagerStore> = Box::leak(Box::new(config.jwks_service(store)));
    lambda_http::run(service_fn(|request: Request| kms_jwt_jwks::handle(service, request))).await
}

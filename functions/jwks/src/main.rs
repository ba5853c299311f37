//! jwks: serves `/.well-known/jwks.json` and `/.well-known/openid-configuration` behind API
//! Gateway (HTTP or REST API) or a function URL.

use kms_jwt::aws::wiring;
use kms_jwt::config::JwksConfig;
use lambda_http::{service_fn, Request};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = JwksConfig::from_env()?;
    let service = wiring::jwks_service(&config).await;
    // `lambda_http::run` polls invocations one at a time inside this future and asks no
    // `'static` of the handler, so it can borrow the service for the container's lifetime.
    lambda_http::run(service_fn(|request: Request| kms_jwt_jwks::handle(&service, request))).await
}

//! jwks: serves `/.well-known/jwks.json` and `/.well-known/openid-configuration` behind API
//! Gateway (HTTP or REST API) or a function URL.

use kms_jwt::aws::{load_sdk_config, SecretsManagerStore};
use kms_jwt::cache::{CachePolicy, KeyringCache};
use kms_jwt::config::JwksConfig;
use kms_jwt::jwks::{respond, PublishedKeys, Site};
use lambda_http::http::header::IF_NONE_MATCH;
use lambda_http::{service_fn, Body, Request, Response};

struct Service {
    site: Site,
    keys: KeyringCache<SecretsManagerStore, PublishedKeys>,
}

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = JwksConfig::from_env()?;
    let sdk = load_sdk_config().await;
    let site = Site::new(&config.issuer, config.jwks_uri.as_deref(), config.jwks_max_age);
    let render_site = site.clone();
    let service: &'static Service = Box::leak(Box::new(Service {
        site,
        keys: KeyringCache::new(
            SecretsManagerStore::new(&sdk, config.keyring_secret_id.clone(), None),
            CachePolicy { ttl: config.keyring_cache_ttl, max_staleness: config.max_staleness },
            // Rendered once per keyring version: warm requests serialize nothing.
            move |ring| PublishedKeys::render(&render_site, ring),
        ),
    }));
    lambda_http::run(service_fn(|request: Request| handle(service, request))).await
}

async fn handle(service: &Service, request: Request) -> Result<Response<Body>, lambda_http::Error> {
    let keys = match service.keys.get().await {
        Ok(keys) => Some(keys),
        Err(e) => {
            tracing::error!(error = %e, "no keyring to serve");
            None
        }
    };
    let if_none_match = request.headers().get(IF_NONE_MATCH).and_then(|v| v.to_str().ok());
    let answer = respond(
        &service.site,
        request.method().as_str(),
        request.uri().path(),
        if_none_match,
        keys.as_deref(),
    );
    let mut response = Response::builder().status(answer.status);
    for (name, value) in answer.headers {
        response = response.header(name, value);
    }
    Ok(response.body(if answer.body.is_empty() { Body::Empty } else { Body::Text(answer.body) })?)
}

//! The jwks function's Lambda handler: API Gateway (HTTP or REST API) or function URL request
//! in, [`JwksService`] answer out. The binary (`main.rs`) only wires it up.

use kms_jwt::jwks::JwksService;
use kms_jwt::ports::KeyringStore;
use lambda_http::http::header::IF_NONE_MATCH;
use lambda_http::{Body, Request, Response};

pub async fn handle<S: KeyringStore>(
    service: &JwksService<S>,
    request: Request,
) -> Result<Response<Body>, lambda_http::Error> {
    let if_none_match = request.headers().get(IF_NONE_MATCH).and_then(|v| v.to_str().ok());
    let answer = service.answer(request.method().as_str(), request.uri().path(), if_none_match).await;
    let mut response = Response::builder().status(answer.status);
    for (name, value) in answer.headers {
        response = response.header(name, value);
    }
    Ok(response.body(if answer.body.is_empty() { Body::Empty } else { Body::Text(answer.body) })?)
}

/// The handler as the Lambda runtime drives it: API Gateway event JSON in, through
/// `lambda_http`'s adapter (request conversion, response encoding), response JSON out.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::time::Duration;

    use kms_jwt::cache::CachePolicy;
    use kms_jwt::jose::jwk::PublicJwk;
    use kms_jwt::jwks::{JwksService, Site};
    use kms_jwt::keyring::{Keyring, NewKey};
    use kms_jwt::memory::{MemoryKms, MemoryStore};
    use kms_jwt::ports::{KeyAdmin, KeyTags};
    use kms_jwt::SigningAlg;
    use lambda_http::lambda_runtime::{Context, LambdaEvent};
    use lambda_http::request::LambdaRequest;
    use lambda_http::{service_fn, Adapter, Service};
    use serde_json::{json, Value};

    const ISSUER: &str = "https://auth.example.com";
    const CACHE_CONTROL: &str = "public, max-age=300, stale-while-revalidate=60, stale-if-error=900";

    fn http_api_event() -> Value {
        serde_json::from_str(include_str!("../../../events/jwks-http-api.json")).unwrap()
    }

    fn rest_api_event() -> Value {
        serde_json::from_str(include_str!("../../../events/jwks-rest-api.json")).unwrap()
    }

    /// An HTTP API (payload 2.0) event for `method` on the JWKS path.
    fn http_api(method: &str) -> Value {
        let mut event = http_api_event();
        event["requestContext"]["http"]["method"] = method.into();
        event["routeKey"] = format!("{method} /.well-known/jwks.json").into();
        event
    }

    /// A REST API (payload 1.0) event for `method` on the discovery path (stage `prod`).
    fn rest_api(method: &str) -> Value {
        let mut event = rest_api_event();
        event["httpMethod"] = method.into();
        event["requestContext"]["httpMethod"] = method.into();
        event
    }

    async fn new_key(kms: &MemoryKms, n: i64) -> NewKey {
        let tags =
            KeyTags { keyring: kms_jwt::test_stacks::single_region_keyring(), request_id: format!("r{n}") };
        let arn = kms.create_key(SigningAlg::ES256, &tags).await.unwrap();
        let public_jwk = PublicJwk::from_spki_der(&kms.public_key_der(&arn).await.unwrap()).unwrap();
        NewKey {
            kid: public_jwk.thumbprint(),
            alg: SigningAlg::ES256,
            kms_key_arn: arn,
            public_jwk,
            created_at: n,
        }
    }

    fn service(store: MemoryStore) -> JwksService<MemoryStore> {
        let site = Site::new(ISSUER, None, Duration::from_secs(300));
        JwksService::new(
            store,
            site,
            CachePolicy { ttl: Duration::from_secs(60), max_staleness: Duration::ZERO },
        )
    }

    /// A service over a bootstrapped keyring: a current and a next key.
    async fn bootstrapped() -> JwksService<MemoryStore> {
        let kms = MemoryKms::new();
        let ring = Keyring::empty().bootstrap(new_key(&kms, 1).await, new_key(&kms, 2).await, 0);
        service(MemoryStore::with_document(&ring.to_json()))
    }

    /// Run one event through the adapter and `handle`; the response as the runtime sends it.
    async fn invoke(service: &JwksService<MemoryStore>, event: Value) -> Value {
        let request: LambdaRequest = serde_json::from_value(event).unwrap();
        let mut adapter = Adapter::from(service_fn(|request| super::handle(service, request)));
        let response = adapter.call(LambdaEvent::new(request, Context::default())).await.unwrap();
        serde_json::to_value(response).unwrap()
    }

    /// A response header. Payload 2.0 responses carry `headers`; for REST API (payload 1.0)
    /// `lambda_http` fills `multiValueHeaders` only, which API Gateway reads as well.
    fn header<'a>(response: &'a Value, name: &str) -> Option<&'a str> {
        let find = |map: &'a Value| {
            map.as_object()?.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
        };
        match find(&response["headers"]) {
            Some(value) => value.as_str(),
            None => match find(&response["multiValueHeaders"])?.as_array()?.as_slice() {
                [one] => one.as_str(),
                many => panic!("{name} has {} values", many.len()),
            },
        }
    }

    /// The body text; an empty body may be encoded as absent, null or "".
    fn body(response: &Value) -> &str {
        response["body"].as_str().unwrap_or_default()
    }

    #[tokio::test]
    async fn http_api_get_serves_the_jwks_with_its_caching_headers() {
        let service = bootstrapped().await;
        let response = invoke(&service, http_api("GET")).await;
        assert_eq!(response["statusCode"], 200, "{response}");
        assert_eq!(response["isBase64Encoded"], false, "JSON goes out as text");
        assert_eq!(header(&response, "content-type"), Some("application/json"));
        assert_eq!(header(&response, "cache-control"), Some(CACHE_CONTROL));
        assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
        let etag = header(&response, "etag").unwrap();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        assert_eq!(header(&response, "content-length"), Some(body(&response).len().to_string().as_str()));
        let jwks: Value = serde_json::from_str(body(&response)).unwrap();
        assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2), "{jwks}");
        assert_eq!(body(&response), service.answer("GET", "/.well-known/jwks.json", None).await.body);
    }

    #[tokio::test]
    async fn http_api_if_none_match_answers_304_without_a_body() {
        let service = bootstrapped().await;
        let first = invoke(&service, http_api("GET")).await;
        let etag = header(&first, "etag").unwrap().to_owned();
        let mut event = http_api("GET");
        event["headers"]["if-none-match"] = format!("W/{etag}").into();
        let response = invoke(&service, event).await;
        assert_eq!(response["statusCode"], 304, "{response}");
        assert_eq!(body(&response), "");
        assert_eq!(header(&response, "etag"), Some(etag.as_str()));
        assert_eq!(header(&response, "cache-control"), Some(CACHE_CONTROL));
        assert_eq!(header(&response, "content-type"), None);
        let mut stale = http_api("GET");
        stale["headers"]["if-none-match"] = "\"an-older-version\"".into();
        assert_eq!(invoke(&service, stale).await["statusCode"], 200);
    }

    #[tokio::test]
    async fn http_api_head_has_the_headers_of_get_and_no_body() {
        let service = bootstrapped().await;
        let get = invoke(&service, http_api("GET")).await;
        let head = invoke(&service, http_api("HEAD")).await;
        assert_eq!(head["statusCode"], 200, "{head}");
        assert_eq!(body(&head), "");
        for name in ["content-type", "cache-control", "etag", "content-length"] {
            assert_eq!(header(&head, name), header(&get, name), "{name}");
        }
    }

    #[tokio::test]
    async fn other_methods_and_paths_are_refused_cleanly() {
        let service = bootstrapped().await;
        for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
            let response = invoke(&service, http_api(method)).await;
            assert_eq!(response["statusCode"], 405, "{method}: {response}");
            assert_eq!(header(&response, "allow"), Some("GET, HEAD"), "{method}");
            assert_eq!(header(&response, "cache-control"), Some("no-store"), "{method}");
            let error: Value = serde_json::from_str(body(&response)).unwrap();
            assert_eq!(error, json!({"error": "method not allowed"}));
        }
        let mut elsewhere = http_api("GET");
        elsewhere["rawPath"] = "/admin".into();
        elsewhere["requestContext"]["http"]["path"] = "/admin".into();
        assert_eq!(invoke(&service, elsewhere).await["statusCode"], 404);
        let rest = invoke(&service, rest_api("PATCH")).await;
        assert_eq!((&rest["statusCode"], header(&rest, "allow")), (&json!(405), Some("GET, HEAD")), "{rest}");
    }

    /// REST API (payload 1.0): the stage name comes before the well-known path.
    #[tokio::test]
    async fn rest_api_serves_discovery_under_its_stage_with_304_and_head() {
        let service = bootstrapped().await;
        let response = invoke(&service, rest_api("GET")).await;
        assert_eq!(response["statusCode"], 200, "{response}");
        assert_eq!(header(&response, "content-type"), Some("application/json"));
        assert_eq!(header(&response, "cache-control"), Some(CACHE_CONTROL));
        let doc: Value = serde_json::from_str(body(&response)).unwrap();
        assert_eq!(doc["issuer"], ISSUER);
        assert_eq!(doc["jwks_uri"], format!("{ISSUER}/.well-known/jwks.json"));
        assert_eq!(doc["id_token_signing_alg_values_supported"], json!(["ES256"]));

        let etag = header(&response, "etag").unwrap().to_owned();
        let mut conditional = rest_api("GET");
        conditional["headers"]["If-None-Match"] = etag.clone().into();
        conditional["multiValueHeaders"]["If-None-Match"] = json!([etag]);
        let not_modified = invoke(&service, conditional).await;
        assert_eq!(not_modified["statusCode"], 304, "{not_modified}");
        assert_eq!(body(&not_modified), "");

        let head = invoke(&service, rest_api("HEAD")).await;
        assert_eq!(head["statusCode"], 200, "{head}");
        assert_eq!(body(&head), "");
        assert_eq!(header(&head, "content-length"), Some(body(&response).len().to_string().as_str()));
    }

    /// Before rotate has bootstrapped the keyring: 503 with Retry-After, never an empty set.
    #[tokio::test]
    async fn no_keyring_yet_is_a_503_to_retry() {
        let service = service(MemoryStore::new());
        let response = invoke(&service, http_api("GET")).await;
        assert_eq!(response["statusCode"], 503, "{response}");
        assert_eq!(header(&response, "retry-after"), Some("30"));
        assert_eq!(header(&response, "cache-control"), Some("no-store"));
    }
}

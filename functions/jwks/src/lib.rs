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

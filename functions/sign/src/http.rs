//! `POST /sign` and `POST /token` through API Gateway (REST payload 1.0, HTTP payload 2.0) or a function URL:
//! the event envelope in, an HTTP answer out. The sign contract itself is the signer's.

use base64::Engine;
use kms_jwt::minting::{self, Check, Denial, PrincipalArn};
use kms_jwt::ports::{KeySigner, KeyringStore};
use kms_jwt::signer::{identity_token_answer, IdentityTokenRequest, SignError, TokenSigner, MAX_BATCH_BYTES};
use kms_jwt::UnixTime;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The members of an API Gateway event that `POST /sign` needs. Everything else in the
/// envelope (headers, ...) is skipped unread.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpEvent {
    request_context: Option<RequestContext>,
    /// Payload 1.0 (REST API).
    http_method: Option<String>,
    /// Payload 2.0 (HTTP API, function URLs).
    raw_path: Option<String>,
    path: Option<String>,
    body: Option<String>,
    is_base64_encoded: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RequestContext {
    http: Option<HttpContext>,
    /// API Gateway's id of the request (its access logs carry it too).
    request_id: Option<String>,
    /// Payload 1.0 (REST API): the SigV4 caller when the method uses IAM authorization.
    identity: Option<Identity>,
    /// Payload 2.0 (HTTP API, function URLs): `authorizer.iam` under IAM authorization.
    authorizer: Option<Authorizer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Identity {
    user_arn: Option<String>,
    account_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Authorizer {
    iam: Option<Identity>,
}

/// Who called `POST /sign`, as API Gateway saw it: what the audit line names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The IAM principal that signed the request (SigV4), if the route uses IAM authorization.
    pub principal_arn: Option<String>,
    pub account_id: Option<String>,
    /// API Gateway's request id.
    pub api_request_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct HttpContext {
    method: Option<String>,
}

impl HttpEvent {
    /// The HTTP event in `payload`, or `None` for a direct invocation (no `requestContext` and
    /// method). Builds no JSON tree: besides the few strings above, members are skipped.
    pub fn parse(payload: &str) -> Option<HttpEvent> {
        let event: HttpEvent = serde_json::from_str(payload).ok()?;
        let context_method = event.request_context.as_ref()?.http.as_ref().and_then(|h| h.method.as_ref());
        (event.http_method.is_some() || context_method.is_some()).then_some(event)
    }

    /// The caller as the request context names it.
    pub fn caller(&self) -> Caller {
        let Some(context) = &self.request_context else { return Caller::default() };
        let identity = context.identity.as_ref().or(context.authorizer.as_ref().and_then(|a| a.iam.as_ref()));
        Caller {
            principal_arn: identity.and_then(|i| i.user_arn.clone()),
            account_id: identity.and_then(|i| i.account_id.clone()),
            api_request_id: context.request_id.clone(),
        }
    }

    fn method(&self) -> &str {
        let context =
            self.request_context.as_ref().and_then(|c| c.http.as_ref()).and_then(|h| h.method.as_deref());
        self.http_method.as_deref().or(context).unwrap_or_default()
    }

    /// The body as text, refused before decoding or parsing when it exceeds the largest
    /// invocation the signer accepts.
    fn into_body(self) -> Result<String, SignError> {
        let too_large = SignError::RequestTooLarge { what: "the HTTP body", limit: MAX_BATCH_BYTES };
        match (self.body, self.is_base64_encoded) {
            (None, _) => Err(SignError::InvalidJson("empty body".into())),
            (Some(encoded), Some(true)) => {
                // The decoded size follows from the encoded length: 3 bytes per 4 characters.
                let unpadded = encoded.trim_end_matches('=').len();
                if unpadded / 4 * 3 + unpadded % 4 * 3 / 4 > MAX_BATCH_BYTES {
                    return Err(too_large);
                }
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|e| SignError::InvalidJson(format!("the body is not base64: {e}")))?;
                String::from_utf8(bytes).map_err(|_| SignError::InvalidJson("the body is not UTF-8".into()))
            }
            (Some(text), _) if text.len() > MAX_BATCH_BYTES => Err(too_large),
            (Some(text), _) => Ok(text),
        }
    }
}

/// The HTTP status of a refusal.
pub fn status(error: &SignError) -> u16 {
    match error {
        SignError::RequestTooLarge { .. } => 413,
        SignError::NotAllowed(_) => 403,
        e if e.is_client_error() => 400,
        e if e.is_retryable() => 503,
        _ => 502,
    }
}

/// An API Gateway / function URL response object.
fn answer(status: u16, body: &Value, extra_headers: &[(&str, &str)]) -> Value {
    let mut headers = Map::new();
    headers.insert("content-type".into(), "application/json".into());
    headers.insert("cache-control".into(), "no-store".into());
    for (name, value) in extra_headers {
        headers.insert((*name).into(), (*value).into());
    }
    json!({ "statusCode": status, "headers": headers, "body": body.to_string(), "isBase64Encoded": false })
}

/// The two routes: `POST /sign` (the sign contract) and `POST /token` (identity exchange).
#[derive(Clone, Copy)]
enum Route {
    Sign,
    Token,
}

/// Answer `POST /sign` or `POST /token` (any stage or base-path prefix). Bad input gets a 4xx
/// with `{"error": {"code", "message", "retryable"}}`, service faults 502 or, when retrying
/// may help, 503 with `Retry-After`.
pub async fn respond<K: KeySigner, S: KeyringStore>(
    signer: &TokenSigner<K, S>,
    event: HttpEvent,
    now: UnixTime,
) -> Value {
    let path = event.raw_path.as_deref().or(event.path.as_deref()).unwrap_or_default();
    let route = match path.rsplit('/').next() {
        Some("sign") => Route::Sign,
        Some("token") => Route::Token,
        _ => return answer(404, &json!({"error": {"code": "NotFound", "message": "not found"}}), &[]),
    };
    if !event.method().eq_ignore_ascii_case("POST") {
        let error = json!({"error": {"code": "MethodNotAllowed", "message": "use POST"}});
        return answer(405, &error, &[("allow", "POST")]);
    }
    // The caller API Gateway authenticated. A route without IAM authorization names nobody:
    // such a request is refused, never taken for a direct invocation.
    let Some(principal) = event.caller().principal_arn.map(PrincipalArn::new) else {
        return refusal(SignError::NotAllowed(Denial { rule: None, check: Check::NoRuleForCaller }));
    };
    let body = match event.into_body() {
        Ok(body) => body,
        Err(e) => return refusal(e),
    };
    let answered = match route {
        Route::Sign => signer
            .invoke_json_as(&minting::Caller::Iam(principal), &body, now)
            .await
            .map(crate::wire::answer_json),
        Route::Token => exchange(signer, principal, &body, now).await,
    };
    match answered {
        Ok(body) => answer(200, &body, &[]),
        Err(e) => refusal(e),
    }
}

/// `POST /token`: a token about the caller itself ([`IdentityTokenRequest`]).
async fn exchange<K: KeySigner, S: KeyringStore>(
    signer: &TokenSigner<K, S>,
    principal: PrincipalArn,
    body: &str,
    now: UnixTime,
) -> Result<Value, SignError> {
    let request = IdentityTokenRequest::parse(body)?;
    request.check_algorithm(signer.current_alg().await?)?;
    let caller = minting::Caller::Iam(principal.clone());
    let token = signer.sign_json_as(&caller, &request.sign_request(&principal), now).await?;
    Ok(identity_token_answer(token))
}

/// A refused request as an HTTP answer, logged with the detail callers do not get.
fn refusal(error: SignError) -> Value {
    crate::log_refusal(&error);
    let status = status(&error);
    let retry: &[(&str, &str)] = if status == 503 { &[("retry-after", "1")] } else { &[] };
    answer(status, &json!({"error": crate::wire::error_json(&error)}), retry)
}

//! The request contract: what a sign request may say and how big it may be, and
//! [`parse_request`], which checks a request's shape with specific codes for callers'
//! mistakes.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::SignError;

/// Claims only the service sets. `nbf` is never emitted (see
/// [`TokenSigner::sign`](super::TokenSigner::sign)) but stays reserved: a caller-chosen `nbf`
/// would make tokens that start later than they are issued.
pub const RESERVED_CLAIMS: [&str; 5] = ["iss", "iat", "nbf", "exp", "jti"];
/// Request members that would set JOSE header fields: the header is ours alone.
const HEADER_MEMBERS: [&str; 5] = ["header", "headers", "alg", "kid", "jku"];
/// Largest serialized `claims` object accepted.
pub const MAX_CLAIMS_BYTES: usize = 16 * 1024;
/// Largest JSON text of one request: [`MAX_CLAIMS_BYTES`] of claims, twice over for the other
/// members, whitespace and escaping (`\u00e9` is six bytes of text for two of claims).
pub const MAX_REQUEST_BYTES: usize = 32 * 1024;
/// Most requests in one batch.
pub const MAX_BATCH: usize = 100;
/// Largest JSON text of one invocation (and of a `POST /sign` body): a full batch of requests
/// of the largest size. Far below Lambda's 6 MB payload limit once base64-encoded.
pub const MAX_BATCH_BYTES: usize = MAX_BATCH * MAX_REQUEST_BYTES;

/// `aud`: one audience or several (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience: `aud` is a string.
    One(String),
    /// Several audiences: `aud` is an array.
    Many(Vec<String>),
}

/// The `typ` header values a caller may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum TokenType {
    /// `JWT`, the default.
    #[default]
    #[serde(rename = "JWT")]
    Jwt,
    /// RFC 9068 access tokens.
    #[serde(rename = "at+jwt")]
    AccessToken,
}

impl TokenType {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            TokenType::Jwt => "JWT",
            TokenType::AccessToken => "at+jwt",
        }
    }
}

/// One token request.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// The caller's claims, copied into the payload; the reserved claims are refused.
    pub claims: Map<String, Value>,
    /// Token lifetime in seconds, up to `MAX_TOKEN_TTL`; the default lifetime when absent.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// Sets `aud`; refused if `claims` has one too.
    #[serde(default)]
    pub audience: Option<Audience>,
    /// Sets `sub`; refused if `claims` has one too.
    #[serde(default)]
    pub subject: Option<String>,
    /// The header's `typ`; `JWT` when absent.
    #[serde(default)]
    pub typ: Option<TokenType>,
}

/// Check one parsed request, with specific codes for the mistakes callers actually make.
pub fn parse_request(value: Value) -> Result<SignRequest, SignError> {
    let Value::Object(object) = &value else {
        return Err(SignError::InvalidRequest("a request is a JSON object".into()));
    };
    if let Some(member) = HEADER_MEMBERS.iter().find(|m| object.contains_key(**m)) {
        return Err(SignError::HeaderNotAllowed((*member).to_owned()));
    }
    match object.get("claims") {
        Some(Value::Object(_)) => {}
        Some(_) => return Err(SignError::ClaimsNotObject),
        None => return Err(SignError::InvalidRequest("missing field `claims`".into())),
    }
    if object.get("typ").is_some_and(|t| !matches!(t.as_str(), Some("JWT" | "at+jwt"))) {
        return Err(SignError::InvalidTyp);
    }
    serde_json::from_value(value).map_err(|e| SignError::InvalidRequest(e.to_string()))
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use serde_json::json;

    use super::*;
    use crate::signer::fixtures::*;

    #[tokio::test]
    async fn bad_requests_get_typed_errors() {
        let (shared, signer) = setup().await;
        let reads = shared.1.reads();
        let cases = [
            (json!({"claims": {"exp": 1}}), "ReservedClaim"),
            (json!({"claims": {"iss": "evil"}}), "ReservedClaim"),
            (json!({"claims": {"nbf": 1}}), "ReservedClaim"),
            (json!({"claims": {}, "ttl_seconds": 0}), "InvalidTtl"),
            (json!({"claims": {}, "ttl_seconds": 3_601}), "InvalidTtl"),
            (json!({"claims": []}), "ClaimsNotObject"),
            (json!({"claims": "sub=alice"}), "ClaimsNotObject"),
            (json!({"claims": {}, "header": {"alg": "none"}}), "HeaderNotAllowed"),
            (json!({"claims": {}, "kid": "mine"}), "HeaderNotAllowed"),
            (json!({"claims": {}, "typ": "JWE"}), "InvalidTyp"),
            (json!({"claims": {"aud": "a"}, "audience": "b"}), "AmbiguousClaim"),
            (json!({"claims": {"blob": "x".repeat(MAX_CLAIMS_BYTES)}}), "ClaimsTooLarge"),
            (json!({"claims": {}, "ttl_seconds": -5}), "InvalidRequest"),
            (json!({"claims": {}, "extra": 1}), "InvalidRequest"),
            (json!({}), "InvalidRequest"),
            (json!("just a string"), "InvalidRequest"),
            (json!([{"claims": {}}]), "InvalidRequest"),
        ];
        for (event, code) in cases {
            let err = signer.sign_event(event.clone(), 0).await.unwrap_err();
            assert_eq!(err.code(), code, "{event}");
            assert!(err.is_client_error());
            assert_eq!(signer.invoke(event.clone(), 0).await.unwrap_err().code(), code, "{event}");
        }
        assert_eq!(shared.0.calls("Sign"), 0, "nothing reaches KMS for a refused request");
        assert_eq!(shared.1.reads(), reads, "nor the keyring");
        for (text, code) in [("{not json", "InvalidJson"), ("", "InvalidJson"), ("{} {}", "InvalidJson")] {
            assert_eq!(signer.invoke_json(text, 0).await.unwrap_err().code(), code, "{text}");
        }
    }

    #[tokio::test]
    async fn audience_subject_and_typ_are_set_from_request_fields() {
        let (_, signer) = setup().await;
        let request =
            json!({"claims": {"scope": "a"}, "audience": ["x", "y"], "subject": "u1", "typ": "at+jwt"});
        let token = signer.sign_event(request, 5).await.unwrap().token;
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap())
                .unwrap();
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(payload_of(&token)["aud"], json!(["x", "y"]));
        assert_eq!(payload_of(&token)["sub"], "u1");
    }
}

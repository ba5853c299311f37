//! The sign service: claims in, a compact JWS out, signed by the current key inside KMS.
//!
//! Per token: one KMS `Sign` call, no keyring read (the keyring comes from [`KeyringCache`]).
//! One request contract for direct invocation and for `POST /sign` through API Gateway:
//! a single request, or `{"requests": [...]}` signed concurrently with bounded concurrency.

use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::alg::SigningAlg;
use crate::cache::{CacheError, CachePolicy, KeyringCache};
use crate::config::{secs, SignConfig};
use crate::jws::{self, Header, SignatureError};
use crate::keyring::{Keyring, UnixTime};
use crate::ports::{KeySigner, KeyringStore, KmsError};

/// Claims only the service sets.
pub const RESERVED_CLAIMS: [&str; 5] = ["iss", "iat", "nbf", "exp", "jti"];
/// Request members that would set JOSE header fields: the header is ours alone.
const HEADER_MEMBERS: [&str; 5] = ["header", "headers", "alg", "kid", "jku"];
/// Largest serialized `claims` object accepted.
pub const MAX_CLAIMS_BYTES: usize = 16 * 1024;
/// Most requests in one batch.
pub const MAX_BATCH: usize = 100;
/// KMS calls in flight per batch.
const BATCH_CONCURRENCY: usize = 16;

/// `aud`: one audience or several (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// The `typ` header values a caller may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum TokenType {
    #[default]
    #[serde(rename = "JWT")]
    Jwt,
    /// RFC 9068 access tokens.
    #[serde(rename = "at+jwt")]
    AccessToken,
}

impl TokenType {
    fn as_str(self) -> &'static str {
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
    pub claims: Map<String, Value>,
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    #[serde(default)]
    pub audience: Option<Audience>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub typ: Option<TokenType>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedToken {
    pub token: String,
    pub kid: String,
    pub expires_at: UnixTime,
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("the request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("claims must be a JSON object")]
    ClaimsNotObject,
    #[error("claim {0:?} is set by the service and may not be supplied")]
    ReservedClaim(String),
    #[error("{0:?} would set a JOSE header field; the header is set by the service")]
    HeaderNotAllowed(String),
    #[error("claim {0:?} is given twice (in claims and as a request field)")]
    AmbiguousClaim(String),
    #[error("typ must be \"JWT\" or \"at+jwt\"")]
    InvalidTyp,
    #[error("claims are {size} bytes, more than the {MAX_CLAIMS_BYTES} allowed")]
    ClaimsTooLarge { size: usize },
    #[error("ttl_seconds must be between 1 and {max}")]
    InvalidTtl { max: u64 },
    #[error("a batch holds 1 to {MAX_BATCH} requests, not {0}")]
    InvalidBatchSize(usize),
    #[error("the keyring has no current key yet; run rotate first")]
    NoCurrentKey,
    #[error("keyring unavailable: {0}")]
    Keyring(#[from] CacheError),
    #[error(transparent)]
    Kms(#[from] KmsError),
    #[error("KMS returned an unusable signature: {0}")]
    Signature(#[from] SignatureError),
    #[error("could not encode the token: {0}")]
    Encoding(#[from] serde_json::Error),
}

impl SignError {
    /// A stable, machine-readable code (and Lambda `errorType`).
    pub fn code(&self) -> &'static str {
        match self {
            SignError::InvalidJson(_) => "InvalidJson",
            SignError::InvalidRequest(_) => "InvalidRequest",
            SignError::ClaimsNotObject => "ClaimsNotObject",
            SignError::ReservedClaim(_) => "ReservedClaim",
            SignError::HeaderNotAllowed(_) => "HeaderNotAllowed",
            SignError::AmbiguousClaim(_) => "AmbiguousClaim",
            SignError::InvalidTyp => "InvalidTyp",
            SignError::ClaimsTooLarge { .. } => "ClaimsTooLarge",
            SignError::InvalidTtl { .. } => "InvalidTtl",
            SignError::InvalidBatchSize(_) => "InvalidBatchSize",
            SignError::NoCurrentKey => "NoCurrentKey",
            SignError::Keyring(_) => "KeyringUnavailable",
            SignError::Kms(KmsError::Throttled) => "KmsThrottled",
            SignError::Kms(_) => "KmsError",
            SignError::Signature(_) => "SignatureInvalid",
            SignError::Encoding(_) => "EncodingError",
        }
    }

    /// True when the caller did something wrong (HTTP 400), false for service faults.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            SignError::InvalidJson(_)
                | SignError::InvalidRequest(_)
                | SignError::ClaimsNotObject
                | SignError::ReservedClaim(_)
                | SignError::HeaderNotAllowed(_)
                | SignError::AmbiguousClaim(_)
                | SignError::InvalidTyp
                | SignError::ClaimsTooLarge { .. }
                | SignError::InvalidTtl { .. }
                | SignError::InvalidBatchSize(_)
        )
    }

    /// True when the same request may succeed if retried later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SignError::Kms(KmsError::Throttled) | SignError::Keyring(_) | SignError::NoCurrentKey)
    }

    /// The JSON error object of an answer: `{"code": ..., "message": ...}`.
    pub fn to_json(&self) -> Value {
        json!({ "code": self.code(), "message": self.to_string(), "retryable": self.is_retryable() })
    }
}

/// An API Gateway / function URL response object.
fn http_answer(status: u16, body: &Value, extra_headers: &[(&str, &str)]) -> Value {
    let mut headers = Map::new();
    headers.insert("content-type".into(), "application/json".into());
    headers.insert("cache-control".into(), "no-store".into());
    for (name, value) in extra_headers {
        headers.insert((*name).into(), (*value).into());
    }
    json!({ "statusCode": status, "headers": headers, "body": body.to_string(), "isBase64Encoded": false })
}

/// What the signer needs from the keyring: the current key, resolved once per version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub kid: String,
    pub kms_key_arn: String,
    pub alg: SigningAlg,
}

pub fn current_signing_key(ring: &Keyring) -> Option<SigningKey> {
    ring.current().map(|k| SigningKey { kid: k.kid.clone(), kms_key_arn: k.kms_key_arn.clone(), alg: k.alg })
}

/// Parse one request, with specific codes for the mistakes callers actually make.
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

/// A single request or a batch.
#[derive(Debug)]
pub enum Invocation {
    Single(Value),
    Batch(Vec<Value>),
}

impl Invocation {
    pub fn from_value(value: Value) -> Result<Invocation, SignError> {
        match value {
            Value::Object(mut object) if object.contains_key("requests") => {
                if object.len() != 1 {
                    return Err(SignError::InvalidRequest("a batch has only `requests`".into()));
                }
                match object.remove("requests") {
                    Some(Value::Array(items)) if (1..=MAX_BATCH).contains(&items.len()) => {
                        Ok(Invocation::Batch(items))
                    }
                    Some(Value::Array(items)) => Err(SignError::InvalidBatchSize(items.len())),
                    _ => Err(SignError::InvalidRequest("`requests` must be an array".into())),
                }
            }
            other => Ok(Invocation::Single(other)),
        }
    }
}

pub struct TokenSigner<K, S> {
    kms: K,
    keyring: KeyringCache<S, Option<SigningKey>>,
    issuer: String,
    default_ttl: u64,
    max_ttl: u64,
}

impl<K: KeySigner, S: KeyringStore> TokenSigner<K, S> {
    pub fn new(
        kms: K,
        keyring: KeyringCache<S, Option<SigningKey>>,
        issuer: String,
        default_ttl: Duration,
        max_ttl: Duration,
    ) -> Self {
        TokenSigner {
            kms,
            keyring,
            issuer,
            default_ttl: secs(default_ttl).max(0) as u64,
            max_ttl: secs(max_ttl).max(0) as u64,
        }
    }

    /// The signer the sign function runs: keyring cached for `KEYRING_CACHE_TTL` and never
    /// served stale, because signing with a retired key would mint unverifiable tokens.
    pub fn from_config(kms: K, store: S, config: &SignConfig) -> Self {
        let keyring = KeyringCache::new(
            store,
            CachePolicy { ttl: config.keyring_cache_ttl, max_staleness: Duration::ZERO },
            current_signing_key,
        );
        TokenSigner::new(kms, keyring, config.issuer.clone(), config.default_token_ttl, config.max_token_ttl)
    }

    pub fn kms(&self) -> &K {
        &self.kms
    }

    pub fn keyring(&self) -> &KeyringCache<S, Option<SigningKey>> {
        &self.keyring
    }

    /// Sign a single direct-invocation payload (`{"claims": {...}, "ttl_seconds": 900}`).
    pub async fn sign_event(&self, event: Value, now: UnixTime) -> Result<SignedToken, SignError> {
        self.sign(parse_request(event)?, now).await
    }

    /// Answer an invocation: a single request gives `{"token", "kid", "expires_at"}`; a batch
    /// gives `{"results": [...]}` in request order, each a token or `{"error": {...}}`.
    pub async fn invoke(&self, payload: Value, now: UnixTime) -> Result<Value, SignError> {
        match Invocation::from_value(payload)? {
            Invocation::Single(request) => Ok(serde_json::to_value(self.sign_event(request, now).await?)?),
            Invocation::Batch(requests) => {
                let results: Vec<Value> = stream::iter(requests)
                    .map(|request| async move {
                        match self.sign_event(request, now).await {
                            Ok(token) => serde_json::to_value(token).unwrap_or(Value::Null),
                            Err(e) => json!({ "error": e.to_json() }),
                        }
                    })
                    .buffered(BATCH_CONCURRENCY)
                    .collect()
                    .await;
                Ok(json!({ "results": results }))
            }
        }
    }

    /// Answer an API Gateway (REST payload 1.0, HTTP payload 2.0) or function URL event for
    /// `POST /sign`; `None` if `event` is not an HTTP event (a direct invocation). Bad input
    /// gets 400 with `{"error": {"code", "message", "retryable"}}`, never a 5xx.
    pub async fn invoke_http(&self, event: &Value, now: UnixTime) -> Option<Value> {
        let context = event.get("requestContext")?;
        let method = event["httpMethod"].as_str().or(context["http"]["method"].as_str())?;
        let path = event["rawPath"].as_str().or(event["path"].as_str()).unwrap_or_default();
        if !(path == "/sign" || path.ends_with("/sign")) {
            return Some(http_answer(
                404,
                &json!({"error": {"code": "NotFound", "message": "not found"}}),
                &[],
            ));
        }
        if !method.eq_ignore_ascii_case("POST") {
            let error = json!({"error": {"code": "MethodNotAllowed", "message": "use POST"}});
            return Some(http_answer(405, &error, &[("allow", "POST")]));
        }
        let body = match (event["body"].as_str(), event["isBase64Encoded"].as_bool()) {
            (Some(text), Some(true)) => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| SignError::InvalidJson(e.to_string()))
                    .and_then(|bytes| {
                        serde_json::from_slice(&bytes).map_err(|e| SignError::InvalidJson(e.to_string()))
                    })
            }
            (Some(text), _) => serde_json::from_str(text).map_err(|e| SignError::InvalidJson(e.to_string())),
            (None, _) => Err(SignError::InvalidJson("empty body".into())),
        };
        let answer = match body {
            Ok(payload) => self.invoke(payload, now).await,
            Err(e) => Err(e),
        };
        Some(match answer {
            Ok(value) => http_answer(200, &value, &[]),
            Err(e) if e.is_client_error() => http_answer(400, &json!({"error": e.to_json()}), &[]),
            Err(e) if e.is_retryable() => {
                http_answer(503, &json!({"error": e.to_json()}), &[("retry-after", "1")])
            }
            Err(e) => http_answer(502, &json!({"error": e.to_json()}), &[]),
        })
    }

    pub async fn sign(&self, request: SignRequest, now: UnixTime) -> Result<SignedToken, SignError> {
        let mut claims = request.claims;
        if let Some(reserved) = RESERVED_CLAIMS.iter().find(|c| claims.contains_key(**c)) {
            return Err(SignError::ReservedClaim((*reserved).to_owned()));
        }
        if let Some(audience) = request.audience {
            if claims.contains_key("aud") {
                return Err(SignError::AmbiguousClaim("aud".into()));
            }
            let aud = match audience {
                Audience::One(one) => Value::String(one),
                Audience::Many(many) => many.into_iter().map(Value::String).collect(),
            };
            claims.insert("aud".into(), aud);
        }
        if let Some(subject) = request.subject {
            if claims.contains_key("sub") {
                return Err(SignError::AmbiguousClaim("sub".into()));
            }
            claims.insert("sub".into(), Value::String(subject));
        }
        let size = serde_json::to_vec(&claims)?.len();
        if size > MAX_CLAIMS_BYTES {
            return Err(SignError::ClaimsTooLarge { size });
        }
        let ttl = request.ttl_seconds.unwrap_or(self.default_ttl);
        if ttl == 0 || ttl > self.max_ttl {
            return Err(SignError::InvalidTtl { max: self.max_ttl });
        }
        let expires_at = now.saturating_add(ttl as i64);
        claims.insert("iss".into(), Value::String(self.issuer.clone()));
        claims.insert("iat".into(), now.into());
        claims.insert("nbf".into(), now.into());
        claims.insert("exp".into(), expires_at.into());
        claims.insert("jti".into(), Value::String(uuid::Uuid::new_v4().to_string()));
        let payload = serde_json::to_vec(&claims)?;
        let typ = request.typ.unwrap_or_default().as_str();

        let key = self.keyring.get().await?;
        let key = key.as_ref().as_ref().ok_or(SignError::NoCurrentKey)?;
        match self.sign_with(key, typ, &payload).await {
            // The cached key was revoked or retired under us: re-read the keyring once and
            // sign with whatever is current now. Never fall back to a non-current key.
            Err(SignError::Kms(KmsError::InvalidState(_) | KmsError::NotFound(_))) => {
                let fresh = self.keyring.refresh().await?;
                let fresh = fresh.as_ref().as_ref().ok_or(SignError::NoCurrentKey)?;
                self.sign_with(fresh, typ, &payload).await.map(|token| SignedToken { expires_at, ..token })
            }
            other => other.map(|token| SignedToken { expires_at, ..token }),
        }
    }

    async fn sign_with(&self, key: &SigningKey, typ: &str, payload: &[u8]) -> Result<SignedToken, SignError> {
        let header = Header { alg: key.alg, kid: &key.kid, typ };
        let input = jws::signing_input(&header, payload)?;
        let digest = key.alg.hash().digest(input.as_bytes());
        let raw = self.kms.sign_digest(&key.kms_key_arn, key.alg, &digest).await?;
        let signature = jws::jose_signature(key.alg, &raw)?;
        Ok(SignedToken { token: jws::compact(input, &signature), kid: key.kid.clone(), expires_at: 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemoryKms, MemoryStore};
    use crate::ports::KeyAdmin;
    use crate::rotate::{RotationPolicy, Rotator};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use p256::ecdsa::signature::Verifier;
    use serde_json::json;
    use std::sync::Arc;

    /// A KMS and a store shared between a rotator and a signer, like two Lambda functions.
    #[derive(Clone)]
    struct Shared(Arc<MemoryKms>, Arc<MemoryStore>);

    async fn setup() -> (Shared, TokenSigner<Arc<MemoryKms>, Arc<MemoryStore>>) {
        let shared = Shared(Arc::new(MemoryKms::new()), Arc::new(MemoryStore::new()));
        let policy = RotationPolicy {
            alg: SigningAlg::ES256,
            rotation_period: 86_400,
            prepublication: 600,
            retirement_grace: 7_200,
            deletion_window_days: 7,
        };
        Rotator::new(Arc::clone(&shared.0), Arc::clone(&shared.1), policy, "kr").reconcile(0).await.unwrap();
        let cache = KeyringCache::new(
            Arc::clone(&shared.1),
            CachePolicy { ttl: Duration::from_secs(60), max_staleness: Duration::from_secs(600) },
            current_signing_key,
        );
        let signer = TokenSigner::new(
            Arc::clone(&shared.0),
            cache,
            "https://issuer.test".into(),
            Duration::from_secs(900),
            Duration::from_secs(3_600),
        );
        (shared, signer)
    }

    #[tokio::test]
    async fn signs_a_verifiable_token_with_one_kms_call_and_no_store_read_when_warm() {
        let (shared, signer) = setup().await;
        let first = signer
            .sign_event(json!({"claims": {"sub": "alice", "scope": "read"}, "ttl_seconds": 300}), 1_000)
            .await
            .unwrap();
        let reads = shared.1.reads();
        let second = signer.sign_event(json!({"claims": {"sub": "bob"}}), 1_001).await.unwrap();
        assert_eq!(shared.1.reads(), reads, "a warm signer does not read the keyring");
        assert_eq!(shared.0.calls("Sign"), 2, "one KMS call per token");
        assert_eq!(first.expires_at, 1_300);
        assert_eq!(second.expires_at, 1_001 + 900);

        let parts: Vec<&str> = first.token.split('.').collect();
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "ES256", "kid": first.kid, "typ": "JWT"}));
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], "https://issuer.test");
        assert_eq!(
            (claims["iat"].as_i64(), claims["nbf"].as_i64(), claims["exp"].as_i64()),
            (Some(1_000), Some(1_000), Some(1_300))
        );
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["jti"].as_str().map(str::len), Some(36));

        // Verify R||S against the public key in the keyring, as a consumer would.
        let ring = Keyring::from_json(&shared.1.current_text().unwrap()).unwrap();
        let crate::jwk::PublicJwk::Ec { x, y, .. } = &ring.find(&first.kid).unwrap().public_jwk else {
            panic!("EC key")
        };
        let jwk = format!(r#"{{"kty":"EC","crv":"P-256","x":"{x}","y":"{y}"}}"#);
        let key = p256::ecdsa::VerifyingKey::from(p256::PublicKey::from_jwk_str(&jwk).unwrap());
        let sig = p256::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
        key.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig).unwrap();
    }

    #[tokio::test]
    async fn bad_requests_get_typed_errors() {
        let (shared, signer) = setup().await;
        let cases = [
            (json!({"claims": {"exp": 1}}), "ReservedClaim"),
            (json!({"claims": {"iss": "evil"}}), "ReservedClaim"),
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
        ];
        for (event, code) in cases {
            let err = signer.sign_event(event.clone(), 0).await.unwrap_err();
            assert_eq!(err.code(), code, "{event}");
            assert!(err.is_client_error());
        }
        assert_eq!(shared.0.calls("Sign"), 0, "nothing reaches KMS for a refused request");
    }

    #[tokio::test]
    async fn audience_subject_and_typ_are_set_from_request_fields() {
        let (_, signer) = setup().await;
        let request =
            json!({"claims": {"scope": "a"}, "audience": ["x", "y"], "subject": "u1", "typ": "at+jwt"});
        let token = signer.sign_event(request, 5).await.unwrap().token;
        let part = |i: usize| -> Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(i).unwrap()).unwrap())
                .unwrap()
        };
        assert_eq!(part(0)["typ"], "at+jwt");
        assert_eq!(part(1)["aud"], json!(["x", "y"]));
        assert_eq!(part(1)["sub"], "u1");
    }

    #[tokio::test]
    async fn a_batch_answers_in_order_with_an_error_per_bad_item() {
        let (shared, signer) = setup().await;
        let mut requests: Vec<Value> = (0..40).map(|i| json!({"claims": {"n": i}})).collect();
        requests[7] = json!({"claims": {"exp": 1}});
        requests[30] = json!({"claims": []});
        let answer = signer.invoke(json!({ "requests": requests }), 100).await.unwrap();
        let results = answer["results"].as_array().unwrap();
        assert_eq!(results.len(), 40);
        for (i, result) in results.iter().enumerate() {
            match i {
                7 => assert_eq!(result["error"]["code"], "ReservedClaim"),
                30 => assert_eq!(result["error"]["code"], "ClaimsNotObject"),
                _ => {
                    let token = result["token"].as_str().unwrap();
                    let claims: Value = serde_json::from_slice(
                        &URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap(),
                    )
                    .unwrap();
                    assert_eq!(claims["n"], i, "results keep request order");
                }
            }
        }
        assert_eq!(shared.0.calls("Sign"), 38, "exactly one KMS call per token, none for refused items");
        for (payload, code) in [
            (json!({"requests": []}), "InvalidBatchSize"),
            (json!({"requests": vec![json!({"claims": {}}); MAX_BATCH + 1]}), "InvalidBatchSize"),
            (json!({"requests": {}}), "InvalidRequest"),
            (json!({"requests": [], "claims": {}}), "InvalidRequest"),
        ] {
            assert_eq!(signer.invoke(payload, 0).await.unwrap_err().code(), code);
        }
    }

    #[tokio::test]
    async fn http_requests_get_http_answers() {
        let (_, signer) = setup().await;
        let event = |method: &str, path: &str, body: Option<&str>| {
            json!({"version": "2.0", "rawPath": path, "body": body, "isBase64Encoded": false,
                   "requestContext": {"http": {"method": method, "path": path}}})
        };
        let ok =
            signer.invoke_http(&event("POST", "/sign", Some(r#"{"claims":{"sub":"a"}}"#)), 0).await.unwrap();
        assert_eq!(ok["statusCode"], 200);
        let body: Value = serde_json::from_str(ok["body"].as_str().unwrap()).unwrap();
        assert!(body["token"].as_str().unwrap().starts_with("ey"));
        for (e, status, code) in [
            (event("POST", "/sign", Some("{not json")), 400, "InvalidJson"),
            (event("POST", "/sign", None), 400, "InvalidJson"),
            (event("POST", "/sign", Some(r#"{"claims":{"iat":1}}"#)), 400, "ReservedClaim"),
            (event("GET", "/sign", None), 405, "MethodNotAllowed"),
            (event("POST", "/other", Some("{}")), 404, "NotFound"),
        ] {
            let answer = signer.invoke_http(&e, 0).await.unwrap();
            assert_eq!(answer["statusCode"], status, "{e}");
            let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
            assert_eq!(body["error"]["code"], code);
        }
        // REST API (payload 1.0), base64 body.
        let rest = json!({"httpMethod": "POST", "path": "/prod/sign", "isBase64Encoded": true,
                          "body": "eyJjbGFpbXMiOnt9fQ==", "requestContext": {"stage": "prod"}});
        assert_eq!(signer.invoke_http(&rest, 0).await.unwrap()["statusCode"], 200);
        assert!(
            signer.invoke_http(&json!({"claims": {}}), 0).await.is_none(),
            "direct invocations are not HTTP"
        );
    }

    #[tokio::test]
    async fn a_disabled_cached_key_triggers_one_refresh_and_the_new_current_key() {
        let (shared, signer) = setup().await;
        let before = signer.sign_event(json!({"claims": {}}), 10).await.unwrap();
        // Rotate behind the signer's back, then disable the key it has cached.
        let policy = RotationPolicy {
            alg: SigningAlg::ES256,
            rotation_period: 86_400,
            prepublication: 600,
            retirement_grace: 7_200,
            deletion_window_days: 7,
        };
        let rotator = Rotator::new(Arc::clone(&shared.0), Arc::clone(&shared.1), policy, "kr");
        rotator.run(crate::rotate::Command::Rotate { force: true }, 20).await.unwrap();
        let ring = Keyring::from_json(&shared.1.current_text().unwrap()).unwrap();
        shared.0.disable_key(&ring.find(&before.kid).unwrap().kms_key_arn).await.unwrap();

        let after = signer.sign_event(json!({"claims": {}}), 30).await.unwrap();
        assert_eq!(after.kid, ring.current().unwrap().kid);
        assert_ne!(after.kid, before.kid);
    }
}

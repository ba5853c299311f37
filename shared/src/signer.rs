//! The sign service: claims in, a compact JWS out, signed by the current key inside KMS.
//!
//! Per token: one KMS `Sign` call, no keyring read (the keyring comes from [`KeyringCache`]).
//! One request contract for direct invocation and for `POST /sign` through API Gateway:
//! a single request, or `{"requests": [...]}` signed concurrently with bounded concurrency.
//!
//! Requests arrive as JSON text and are read strictly, before anything else happens:
//! - size first: a single request's text over [`MAX_REQUEST_BYTES`], or an invocation's over
//!   [`MAX_BATCH_BYTES`], is refused before any of it is parsed; a request inside a batch is
//!   refused as soon as what was read of it exceeds [`MAX_REQUEST_BYTES`], so no request ever
//!   grows a JSON tree larger than that bound allows, and a batch's requests are turned into
//!   compact, checked form one at a time;
//! - one meaning only: a member name given twice in one object (at any depth) and an integer
//!   that fits neither `i64` nor `u64` are refused, because JSON parsers disagree about them
//!   (first or last member wins; big integers become floats or errors), so a front end could
//!   check something other than what gets signed.

use std::cell::Cell;
use std::fmt;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::alg::SigningAlg;
use crate::cache::{CacheError, CachePolicy, KeyringCache};
use crate::config::SignConfig;
use crate::jws::{self, Header, SignatureError};
use crate::keyring::{Keyring, UnixTime};
use crate::ports::{KeySigner, KeyringStore, KmsError};
use crate::signing_input::{InputPlan, InputTooLarge};

/// Claims only the service sets. `nbf` is never emitted (see [`TokenSigner::sign`]) but stays
/// reserved: a caller-chosen `nbf` would make tokens that start later than they are issued.
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
/// KMS calls in flight per batch.
const BATCH_CONCURRENCY: usize = 16;
/// The `tracing` target of the one line logged per issued token (see the README, "Audit").
pub const AUDIT_TARGET: &str = "kms_jwt::audit";
/// Longest excerpt of caller input quoted back in an error message.
const MAX_QUOTE_CHARS: usize = 64;

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

/// A signed token and what a caller needs to know about it without decoding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedToken {
    pub token: String,
    pub kid: String,
    pub expires_at: UnixTime,
}

/// Why a request was not signed. [`SignError::code`] is the stable contract; the `Display`
/// text is for logs and may name AWS resources, [`SignError::public_message`] is for callers.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("the request is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("{what} is larger than the {limit} bytes allowed")]
    RequestTooLarge { what: &'static str, limit: usize },
    #[error("member {0:?} is given more than once in one object")]
    DuplicateMember(String),
    #[error("integer {0} fits in neither a signed nor an unsigned 64-bit integer; send it as a string")]
    NumberOutOfRange(String),
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
    /// EdDSA (and ML-DSA without a usable public key): KMS signs the signing input itself,
    /// at most 4096 bytes. Refused before KMS is called.
    #[error(transparent)]
    SigningInputTooLarge(#[from] InputTooLarge),
    #[error("could not encode the token: {0}")]
    Encoding(#[from] serde_json::Error),
}

impl SignError {
    /// A stable, machine-readable code (and Lambda `errorType`).
    pub fn code(&self) -> &'static str {
        match self {
            SignError::InvalidJson(_) => "InvalidJson",
            SignError::InvalidRequest(_) => "InvalidRequest",
            SignError::RequestTooLarge { .. } => "RequestTooLarge",
            SignError::DuplicateMember(_) => "DuplicateMember",
            SignError::NumberOutOfRange(_) => "NumberOutOfRange",
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
            SignError::Kms(KmsError::Timeout { .. }) => "KmsTimeout",
            SignError::Kms(KmsError::Transport { .. }) => "KmsUnavailable",
            SignError::Kms(KmsError::AccessDenied { .. }) => "KmsAccessDenied",
            SignError::Kms(_) => "KmsError",
            SignError::Signature(_) => "SignatureInvalid",
            SignError::Encoding(_) => "EncodingError",
            SignError::SigningInputTooLarge(_) => "SigningInputTooLarge",
        }
    }

    /// True when the caller did something wrong (HTTP 4xx), false for service faults.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            SignError::InvalidJson(_)
                | SignError::InvalidRequest(_)
                | SignError::RequestTooLarge { .. }
                | SignError::DuplicateMember(_)
                | SignError::NumberOutOfRange(_)
                | SignError::ClaimsNotObject
                | SignError::ReservedClaim(_)
                | SignError::HeaderNotAllowed(_)
                | SignError::AmbiguousClaim(_)
                | SignError::InvalidTyp
                | SignError::ClaimsTooLarge { .. }
                | SignError::InvalidTtl { .. }
                | SignError::InvalidBatchSize(_)
                | SignError::SigningInputTooLarge(_)
        )
    }

    /// True when the same request may succeed if retried later. Signing has no side effect,
    /// so a KMS call whose outcome is unknown (timeout, lost connection) is safe to repeat.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SignError::Kms(KmsError::Throttled | KmsError::Timeout { .. } | KmsError::Transport { .. })
                | SignError::Keyring(_)
                | SignError::NoCurrentKey
        )
    }

    /// The message a caller gets. Client errors describe the caller's own input; service
    /// errors are generic, because AWS error texts name key and role ARNs, which belong in
    /// our logs (the `Display` text), not in answers.
    pub fn public_message(&self) -> String {
        let generic = match self {
            SignError::Kms(KmsError::NotFound(_) | KmsError::InvalidState(_)) => {
                "the signing key is disabled, pending deletion or gone; retry after the next rotation"
            }
            SignError::Kms(KmsError::Throttled) => "KMS throttled the request; retry with backoff",
            SignError::Kms(KmsError::Timeout { .. }) => "KMS did not answer in time; retry",
            SignError::Kms(KmsError::Transport { .. }) => "KMS could not be reached; retry",
            SignError::Kms(KmsError::AccessDenied { .. }) => "the sign function may not use the signing key",
            SignError::Kms(KmsError::Other { .. }) => "KMS could not sign the token",
            SignError::Keyring(_) => "the keyring could not be read; retry",
            SignError::Signature(_) => "KMS returned an unusable signature",
            SignError::Encoding(_) => "the token could not be encoded",
            _ => return self.to_string(),
        };
        generic.to_owned()
    }

    /// The JSON error object of an answer: `{"code", "message", "retryable"}`.
    pub fn to_json(&self) -> Value {
        json!({ "code": self.code(), "message": self.public_message(), "retryable": self.is_retryable() })
    }

    /// A JSON error of our parse that no seed claimed: bad syntax, or the wrong shape.
    fn from_json_error(error: serde_json::Error) -> SignError {
        match error.classify() {
            serde_json::error::Category::Data => SignError::InvalidRequest(error.to_string()),
            // serde_json's own refusal of a literal beyond f64 (`1e400`, 400 digits).
            _ if error.to_string().starts_with("number out of range") => {
                SignError::NumberOutOfRange("beyond the range of a 64-bit float".into())
            }
            _ => SignError::InvalidJson(error.to_string()),
        }
    }
}

/// At most [`MAX_QUOTE_CHARS`] characters of caller input, for an error message.
fn quote(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTE_CHARS) {
        Some((cut, _)) => format!("{}…", text.get(..cut).unwrap_or_default()),
        None => text.to_owned(),
    }
}

/// What the signer needs from the keyring: the current key, resolved once per version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub kid: String,
    pub kms_key_arn: String,
    pub alg: SigningAlg,
    /// What KMS is given to sign (digest, raw input, ML-DSA μ), fixed per key.
    pub plan: InputPlan,
}

/// The keyring's current key as the signer uses it, `None` before the first rotation.
pub fn current_signing_key(ring: &Keyring) -> Option<SigningKey> {
    ring.current().map(|k| SigningKey {
        kid: k.kid.clone(),
        kms_key_arn: k.kms_key_arn.clone(),
        alg: k.alg,
        plan: InputPlan::for_key(k.alg, &k.public_jwk),
    })
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

/// Token lifetimes: what a request gets without `ttl_seconds`, and the most it may ask for.
#[derive(Debug, Clone, Copy)]
struct TtlBounds {
    default: u64,
    max: u64,
}

/// A request that passed every check that needs neither a key nor the clock. The caller's
/// claims are kept serialized: a batch holds up to [`MAX_BATCH`] of these at once, and a JSON
/// tree can take twenty times the memory of its text.
#[derive(Debug)]
struct Prepared {
    /// The caller's claims with `aud` and `sub` from the request fields: a JSON object.
    claims: String,
    ttl: u64,
    typ: TokenType,
    /// `sub` and `aud` as the audit line shows them.
    audit: AuditedClaims,
}

/// Longest `sub` or `aud` the audit line carries; longer values are cut (and marked).
const MAX_AUDITED_CHARS: usize = 256;

/// The only claim values an audit line carries: who the token is for, and where it goes.
#[derive(Debug, Default)]
struct AuditedClaims {
    sub: Option<String>,
    aud: Option<String>,
}

impl AuditedClaims {
    fn of(claims: &Map<String, Value>) -> Self {
        let shown = |value: &Value| {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match text.char_indices().nth(MAX_AUDITED_CHARS) {
                Some((cut, _)) => format!("{}…", &text[..cut]),
                None => text,
            }
        };
        AuditedClaims { sub: claims.get("sub").map(shown), aud: claims.get("aud").map(shown) }
    }
}

fn prepare(request: SignRequest, bounds: TtlBounds) -> Result<Prepared, SignError> {
    let SignRequest { mut claims, ttl_seconds, audience, subject, typ } = request;
    if let Some(reserved) = RESERVED_CLAIMS.iter().find(|c| claims.contains_key(**c)) {
        return Err(SignError::ReservedClaim((*reserved).to_owned()));
    }
    if let Some(audience) = audience {
        if claims.contains_key("aud") {
            return Err(SignError::AmbiguousClaim("aud".into()));
        }
        let aud = match audience {
            Audience::One(one) => Value::String(one),
            Audience::Many(many) => many.into_iter().map(Value::String).collect(),
        };
        claims.insert("aud".into(), aud);
    }
    if let Some(subject) = subject {
        if claims.contains_key("sub") {
            return Err(SignError::AmbiguousClaim("sub".into()));
        }
        claims.insert("sub".into(), Value::String(subject));
    }
    let audit = AuditedClaims::of(&claims);
    let claims = serde_json::to_string(&claims)?;
    if claims.len() > MAX_CLAIMS_BYTES {
        return Err(SignError::ClaimsTooLarge { size: claims.len() });
    }
    let ttl = ttl_seconds.unwrap_or(bounds.default);
    if ttl == 0 || ttl > bounds.max {
        return Err(SignError::InvalidTtl { max: bounds.max });
    }
    Ok(Prepared { claims, ttl, typ: typ.unwrap_or_default(), audit })
}

/// The registered claims the service adds to every token.
#[derive(Serialize)]
struct Registered<'a> {
    iss: &'a str,
    iat: UnixTime,
    exp: UnixTime,
    jti: String,
}

/// The JWT payload: the caller's claims object joined with ours. Both are serde_json output
/// of an object (`{...}`, no whitespace) and share no member (reserved claims are refused).
fn token_payload(claims: &str, registered: &Registered<'_>) -> Result<Vec<u8>, SignError> {
    let ours = serde_json::to_string(registered)?;
    let (Some(theirs), Some(ours)) = (claims.strip_suffix('}'), ours.strip_prefix('{')) else {
        let error = <serde_json::Error as serde::ser::Error>::custom("claims are not a JSON object");
        return Err(SignError::Encoding(error));
    };
    let mut payload = String::with_capacity(theirs.len() + 1 + ours.len());
    payload.push_str(theirs);
    if theirs != "{" {
        payload.push(',');
    }
    payload.push_str(ours);
    Ok(payload.into_bytes())
}

/// A parsed invocation: one request, or a batch with a verdict per request.
#[derive(Debug)]
enum Parsed {
    Single(Prepared),
    Batch(Vec<Result<Prepared, SignError>>),
}

/// State shared by the seeds of one parse.
#[derive(Default)]
struct ParseState {
    /// Why the parse was cut short, when we cut it (serde errors carry only text).
    refusal: Cell<Option<SignError>>,
    /// Bytes of minified JSON the request being read may still take.
    budget: Cell<usize>,
    /// A number that fits no 64-bit integer arrived as a float: look at how it was written.
    big_float: Cell<bool>,
}

impl ParseState {
    fn new() -> Self {
        ParseState { budget: Cell::new(MAX_REQUEST_BYTES), ..ParseState::default() }
    }

    /// Stop the parse for `reason`.
    fn refuse<E: de::Error>(&self, reason: SignError) -> E {
        let error = E::custom(&reason);
        self.refusal.set(Some(reason));
        error
    }

    /// Count `bytes` of the current request's minified JSON against its budget. The counts
    /// never exceed the text they stand for, so a request whose text is within
    /// [`MAX_REQUEST_BYTES`] always fits.
    fn charge<E: de::Error>(&self, bytes: usize) -> Result<(), E> {
        match self.budget.get().checked_sub(bytes) {
            Some(left) => {
                self.budget.set(left);
                Ok(())
            }
            None => Err(self.refuse(SignError::RequestTooLarge {
                what: "a request of the batch",
                limit: MAX_REQUEST_BYTES,
            })),
        }
    }

    /// Run `seed` over all of `text`, and say why it failed in our terms.
    fn run<'de, S: DeserializeSeed<'de>>(&self, text: &'de str, seed: S) -> Result<S::Value, SignError> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let parsed = seed.deserialize(&mut deserializer).and_then(|value| deserializer.end().map(|()| value));
        let parsed =
            parsed.map_err(|e| self.refusal.take().unwrap_or_else(|| SignError::from_json_error(e)))?;
        if self.big_float.get() {
            if let Some(literal) = oversized_integer(text) {
                return Err(SignError::NumberOutOfRange(quote(literal)));
            }
        }
        Ok(parsed)
    }
}

/// The first integer literal of `text` (no fraction, no exponent) that fits neither `i64` nor
/// `u64`. serde_json reads such a literal as a float without saying so, so the literal itself
/// must be looked at. `text` is JSON that serde_json accepted: outside strings, digits occur
/// only in numbers.
fn oversized_integer(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'"' => {
                // Skip the string, escapes included.
                i += 1;
                while let Some(&b) = bytes.get(i) {
                    i += if b == b'\\' { 2 } else { 1 };
                    if b == b'"' {
                        break;
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while bytes
                    .get(i)
                    .is_some_and(|b| matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                {
                    i += 1;
                }
                let literal = text.get(start..i).unwrap_or_default();
                let integer = !literal.contains(['.', 'e', 'E']);
                if integer && literal.parse::<i64>().is_err() && literal.parse::<u64>().is_err() {
                    return Some(literal);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// Decimal digits of `n`.
fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// Builds a [`Value`] like serde_json does, but refuses duplicate member names and charges
/// what it builds to the request's budget before building more.
#[derive(Clone, Copy)]
struct Strict<'s> {
    state: &'s ParseState,
}

impl Strict<'_> {
    /// The members of an object, `first` key already read (by [`InvocationSeed`]).
    fn members<'de, A: MapAccess<'de>>(
        self,
        mut first: Option<String>,
        mut access: A,
    ) -> Result<Map<String, Value>, A::Error> {
        self.state.charge(1)?;
        let mut map = Map::new();
        loop {
            let key = match first.take() {
                Some(key) => key,
                None => match access.next_key::<String>()? {
                    Some(key) => key,
                    None => return Ok(map),
                },
            };
            // `"key":` and a comma or the closing brace.
            self.state.charge(key.len() + 4)?;
            if map.contains_key(&key) {
                return Err(self.state.refuse(SignError::DuplicateMember(quote(&key))));
            }
            let value = access.next_value_seed(self)?;
            map.insert(key, value);
        }
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        self.state.charge(if b { 4 } else { 5 })?;
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        self.state.charge(digits(n.unsigned_abs()) + usize::from(n < 0))?;
        Ok(n.into())
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        self.state.charge(digits(n))?;
        Ok(n.into())
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        self.state.charge(1)?;
        // Every integer literal beyond 64 bits lands here as an integral float of at least
        // 2^63 in magnitude; so do some honest floats (`1.5e300`). The literal decides.
        if f.fract() == 0.0 && f.abs() >= 9_223_372_036_854_775_808.0 {
            self.state.big_float.set(true);
        }
        Ok(serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        self.state.charge(s.len() + 2)?;
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        self.state.charge(s.len() + 2)?;
        Ok(Value::String(s))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.state.charge(4)?;
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.state.charge(1)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            // A comma or the closing bracket.
            self.state.charge(1)?;
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Value, A::Error> {
        self.members(None, access).map(Value::Object)
    }
}

/// An invocation's top level: `{"requests": [...]}` or a single request, told apart by the
/// first member so a single request's size is checked before any of it is built.
struct InvocationSeed<'s> {
    state: &'s ParseState,
    text_len: usize,
    bounds: TtlBounds,
}

impl InvocationSeed<'_> {
    fn single_size_ok<E: de::Error>(&self) -> Result<(), E> {
        if self.text_len > MAX_REQUEST_BYTES {
            return Err(self
                .state
                .refuse(SignError::RequestTooLarge { what: "a single request", limit: MAX_REQUEST_BYTES }));
        }
        Ok(())
    }

    fn single(&self, value: Value) -> Result<Parsed, SignError> {
        prepare(parse_request(value)?, self.bounds).map(Parsed::Single)
    }

    fn strict(&self) -> Strict<'_> {
        Strict { state: self.state }
    }
}

impl<'de> DeserializeSeed<'de> for InvocationSeed<'_> {
    type Value = Result<Parsed, SignError>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// Scalars and arrays at the top level are single requests of the wrong shape: checked for
/// size, read strictly, then refused by [`parse_request`] with its usual code.
macro_rules! single_scalar {
    ($($method:ident($($arg:ident: $ty:ty)?)),* $(,)?) => {$(
        fn $method<E: de::Error>(self, $($arg: $ty)?) -> Result<Self::Value, E> {
            self.single_size_ok()?;
            let value = self.strict().$method($($arg)?)?;
            Ok(self.single(value))
        }
    )*};
}

impl<'de> Visitor<'de> for InvocationSeed<'_> {
    type Value = Result<Parsed, SignError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sign request or a batch")
    }

    single_scalar!(
        visit_bool(b: bool),
        visit_i64(n: i64),
        visit_u64(n: u64),
        visit_f64(f: f64),
        visit_str(s: &str),
        visit_string(s: String),
        visit_unit(),
    );

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.single_size_ok()?;
        let value = self.strict().visit_seq(seq)?;
        Ok(self.single(value))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let first = access.next_key::<String>()?;
        if first.as_deref() != Some("requests") {
            self.single_size_ok()?;
            let members = self.strict().members(first, access)?;
            return Ok(self.single(Value::Object(members)));
        }
        let requests = access.next_value_seed(BatchSeed { state: self.state, bounds: self.bounds })?;
        if let Some(key) = access.next_key::<String>()? {
            let reason = match key.as_str() {
                "requests" => SignError::DuplicateMember(key),
                _ => SignError::InvalidRequest("a batch has only `requests`".into()),
            };
            return Err(self.state.refuse(reason));
        }
        Ok(Ok(Parsed::Batch(requests)))
    }
}

/// The `requests` array of a batch, read one request at a time: each is checked and made
/// compact ([`Prepared`]) before the next is read, so at most one request's tree exists.
struct BatchSeed<'s> {
    state: &'s ParseState,
    bounds: TtlBounds,
}

impl<'de> DeserializeSeed<'de> for BatchSeed<'_> {
    type Value = Vec<Result<Prepared, SignError>>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_> {
    type Value = Vec<Result<Prepared, SignError>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("`requests` as an array of sign requests")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut requests = Vec::new();
        loop {
            if requests.len() == MAX_BATCH {
                // Count the rest without building anything, for the error message.
                let mut extra = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    extra += 1;
                }
                if extra > 0 {
                    return Err(self.state.refuse(SignError::InvalidBatchSize(MAX_BATCH + extra)));
                }
                break;
            }
            self.state.budget.set(MAX_REQUEST_BYTES);
            match seq.next_element_seed(Strict { state: self.state })? {
                Some(value) => requests.push(parse_request(value).and_then(|r| prepare(r, self.bounds))),
                None => break,
            }
        }
        if requests.is_empty() {
            return Err(self.state.refuse(SignError::InvalidBatchSize(0)));
        }
        Ok(requests)
    }
}

/// Signs tokens with the keyring's current key, through a [`KeySigner`].
pub struct TokenSigner<K, S> {
    kms: K,
    keyring: KeyringCache<S, Option<SigningKey>>,
    issuer: String,
    bounds: TtlBounds,
}

impl<K: KeySigner, S: KeyringStore> TokenSigner<K, S> {
    /// A signer issuing tokens as `issuer`, `default_ttl` long unless a request asks for up to
    /// `max_ttl`.
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
            bounds: TtlBounds { default: default_ttl.as_secs(), max: max_ttl.as_secs() },
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

    /// The KMS port the signer signs through.
    pub fn kms(&self) -> &K {
        &self.kms
    }

    /// The signer's keyring cache.
    pub fn keyring(&self) -> &KeyringCache<S, Option<SigningKey>> {
        &self.keyring
    }

    /// Sign one request given as JSON text (`{"claims": {...}, "ttl_seconds": 900}`); a batch
    /// is refused. Text over [`MAX_REQUEST_BYTES`] is refused unread.
    pub async fn sign_json(&self, text: &str, now: UnixTime) -> Result<SignedToken, SignError> {
        if text.len() > MAX_REQUEST_BYTES {
            return Err(SignError::RequestTooLarge { what: "a single request", limit: MAX_REQUEST_BYTES });
        }
        let state = ParseState::new();
        let request = parse_request(state.run(text, Strict { state: &state })?)?;
        self.sign_prepared(prepare(request, self.bounds)?, now).await
    }

    /// [`Self::sign_json`] for a request already in memory (Rust callers and tests): it is
    /// serialized and read like text, so it meets the same limits.
    pub async fn sign_event(&self, event: Value, now: UnixTime) -> Result<SignedToken, SignError> {
        self.sign_json(&event.to_string(), now).await
    }

    /// Answer an invocation given as JSON text: a single request gives
    /// `{"token", "kid", "expires_at"}`; a batch gives `{"results": [...]}` in request order,
    /// each a token or `{"error": {...}}`. Size, duplicate members and out-of-range integers
    /// refuse the whole invocation, before any KMS call or keyring read.
    pub async fn invoke_json(&self, text: &str, now: UnixTime) -> Result<Value, SignError> {
        if text.len() > MAX_BATCH_BYTES {
            return Err(SignError::RequestTooLarge { what: "the invocation", limit: MAX_BATCH_BYTES });
        }
        let state = ParseState::new();
        let seed = InvocationSeed { state: &state, text_len: text.len(), bounds: self.bounds };
        match state.run(text, seed)?? {
            Parsed::Single(request) => Ok(serde_json::to_value(self.sign_prepared(request, now).await?)?),
            Parsed::Batch(requests) => {
                let results: Vec<Value> = stream::iter(requests)
                    .map(|request| async move {
                        let signed = match request {
                            Ok(request) => self.sign_prepared(request, now).await,
                            Err(e) => Err(e),
                        };
                        match signed.and_then(|token| serde_json::to_value(token).map_err(SignError::from)) {
                            Ok(token) => token,
                            Err(e) => {
                                if !e.is_client_error() {
                                    tracing::error!(code = e.code(), error = %e, "batch item failed");
                                }
                                json!({ "error": e.to_json() })
                            }
                        }
                    })
                    .buffered(BATCH_CONCURRENCY)
                    .collect()
                    .await;
                Ok(json!({ "results": results }))
            }
        }
    }

    /// [`Self::invoke_json`] for a payload already in memory: serialized and read like text.
    pub async fn invoke(&self, payload: Value, now: UnixTime) -> Result<Value, SignError> {
        self.invoke_json(&payload.to_string(), now).await
    }

    /// Sign a request: the caller's claims plus `iss`, `iat` = `now`, `exp` and a random `jti`.
    ///
    /// No `nbf`: it would equal `iat`, and a verifier that checks `nbf` with no leeway on a
    /// clock running behind ours would refuse a fresh token. RFC 7519 makes it optional.
    pub async fn sign(&self, request: SignRequest, now: UnixTime) -> Result<SignedToken, SignError> {
        self.sign_prepared(prepare(request, self.bounds)?, now).await
    }

    async fn sign_prepared(&self, request: Prepared, now: UnixTime) -> Result<SignedToken, SignError> {
        let Prepared { claims, ttl, typ, audit } = request;
        let expires_at = now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
        let registered = Registered {
            iss: &self.issuer,
            iat: now,
            exp: expires_at,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let payload = token_payload(&claims, &registered)?;
        drop(claims);
        let typ = typ.as_str();

        let key = self.keyring.get().await?;
        let key = key.as_ref().as_ref().ok_or(SignError::NoCurrentKey)?;
        let (token, alg) = match self.sign_with(key, typ, &payload).await {
            // The cached key was revoked or retired under us: re-read the keyring once and
            // sign with whatever is current now. Never fall back to a non-current key.
            Err(SignError::Kms(KmsError::InvalidState(_) | KmsError::NotFound(_))) => {
                let fresh = self.keyring.refresh().await?;
                let fresh = fresh.as_ref().as_ref().ok_or(SignError::NoCurrentKey)?;
                (self.sign_with(fresh, typ, &payload).await?, fresh.alg)
            }
            other => (other?, key.alg),
        };
        // The audit line: one per token, the registered claims plus `sub` and `aud`, never the
        // token or other claim values. The caller (IAM principal, Lambda request id) comes
        // from the span the function opens around the invocation.
        tracing::info!(
            target: AUDIT_TARGET,
            jti = %registered.jti,
            sub = audit.sub.as_deref(),
            aud = audit.aud.as_deref(),
            kid = %token.kid,
            alg = %alg,
            iat = registered.iat,
            exp = registered.exp,
            typ,
            "token issued"
        );
        Ok(SignedToken { expires_at, ..token })
    }

    async fn sign_with(&self, key: &SigningKey, typ: &str, payload: &[u8]) -> Result<SignedToken, SignError> {
        let header = Header { alg: key.alg, kid: &key.kid, typ };
        let input = jws::signing_input(&header, payload)?;
        let message = key.plan.prepare(key.alg, input.as_bytes())?;
        let raw = self.kms.sign(&key.kms_key_arn, key.alg, &message).await?;
        let signature = jws::jose_signature(key.alg, &raw)?;
        Ok(SignedToken { token: jws::compact(input, &signature), kid: key.kid.clone(), expires_at: 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemoryKms, MemoryStore};
    use crate::ports::{KeyAdmin, StoreError};
    use crate::rotate::{RotationPolicy, Rotator};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use p256::ecdsa::signature::Verifier;
    use proptest::prelude::*;
    use serde_json::json;
    use std::sync::Arc;

    /// A KMS and a store shared between a rotator and a signer, like two Lambda functions.
    #[derive(Clone)]
    struct Shared(Arc<MemoryKms>, Arc<MemoryStore>);

    type MemorySigner = TokenSigner<Arc<MemoryKms>, Arc<MemoryStore>>;

    fn policy() -> RotationPolicy {
        RotationPolicy {
            alg: SigningAlg::ES256,
            rotation_period: 86_400,
            prepublication: 600,
            retirement_grace: 7_200,
            deletion_window_days: 7,
            max_published_keys: crate::rotate::DEFAULT_MAX_PUBLISHED_KEYS,
        }
    }

    fn signer_on<K: KeySigner>(kms: K, store: Arc<MemoryStore>) -> TokenSigner<K, Arc<MemoryStore>> {
        let cache = KeyringCache::new(
            store,
            CachePolicy { ttl: Duration::from_secs(60), max_staleness: Duration::from_secs(600) },
            current_signing_key,
        );
        TokenSigner::new(
            kms,
            cache,
            "https://issuer.test".into(),
            Duration::from_secs(900),
            Duration::from_secs(3_600),
        )
    }

    async fn setup() -> (Shared, MemorySigner) {
        let shared = Shared(Arc::new(MemoryKms::new()), Arc::new(MemoryStore::new()));
        Rotator::new(Arc::clone(&shared.0), Arc::clone(&shared.1), policy(), "kr")
            .reconcile(0)
            .await
            .unwrap();
        let signer = signer_on(Arc::clone(&shared.0), Arc::clone(&shared.1));
        (shared, signer)
    }

    fn payload_of(token: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
    }

    /// The code of a refused invocation, and proof that it cost neither KMS nor the keyring.
    async fn refused(shared: &Shared, signer: &MemorySigner, text: &str) -> &'static str {
        let (signs, reads) = (shared.0.calls("Sign"), shared.1.reads());
        let code = signer.invoke_json(text, 0).await.unwrap_err().code();
        assert_eq!((shared.0.calls("Sign"), shared.1.reads()), (signs, reads), "{code}: nothing touched");
        code
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
        let claims = payload_of(&first.token);
        assert_eq!(claims["iss"], "https://issuer.test");
        assert_eq!((claims["iat"].as_i64(), claims["exp"].as_i64()), (Some(1_000), Some(1_300)));
        assert_eq!(claims.get("nbf"), None, "no nbf: a verifier whose clock lags must accept a fresh token");
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["jti"].as_str().map(str::len), Some(36));
        assert_eq!(claims.as_object().unwrap().len(), 6, "{claims}");

        // Verify R||S against the public key in the keyring, as a consumer would.
        let ring = Keyring::from_json(&shared.1.current_text().unwrap()).unwrap();
        let crate::jwk::PublicJwk::Ec { x, y, .. } = &ring.find(&first.kid).unwrap().public_jwk else {
            panic!("EC key")
        };
        let jwk = format!(r#"{{"kty":"EC","crv":"P-256","x":"{x}","y":"{y}"}}"#);
        let key = p256::ecdsa::VerifyingKey::from(p256::PublicKey::from_jwk_str(&jwk).unwrap());
        let sig = p256::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
        key.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig).unwrap();

        // Empty claims join the registered ones without a stray comma.
        let empty = signer.sign_event(json!({"claims": {}}), 5).await.unwrap();
        assert_eq!(payload_of(&empty.token).as_object().unwrap().len(), 4);
    }

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

    #[tokio::test]
    async fn a_batch_answers_in_order_with_an_error_per_bad_item() {
        let (shared, signer) = setup().await;
        let mut requests: Vec<Value> = (0..40).map(|i| json!({"claims": {"n": i}})).collect();
        requests[7] = json!({"claims": {"exp": 1}});
        requests[30] = json!({"claims": []});
        requests[31] = json!({"claims": {}, "alg": "none"});
        let answer = signer.invoke(json!({ "requests": requests }), 100).await.unwrap();
        let results = answer["results"].as_array().unwrap();
        assert_eq!(results.len(), 40);
        for (i, result) in results.iter().enumerate() {
            match i {
                7 => assert_eq!(result["error"]["code"], "ReservedClaim"),
                30 => assert_eq!(result["error"]["code"], "ClaimsNotObject"),
                31 => assert_eq!(result["error"]["code"], "HeaderNotAllowed"),
                _ => assert_eq!(payload_of(result["token"].as_str().unwrap())["n"], i, "request order"),
            }
        }
        assert_eq!(shared.0.calls("Sign"), 37, "exactly one KMS call per token, none for refused items");
        for (payload, code) in [
            (json!({"requests": []}), "InvalidBatchSize"),
            (json!({"requests": vec![json!({"claims": {}}); MAX_BATCH + 1]}), "InvalidBatchSize"),
            (json!({"requests": {}}), "InvalidRequest"),
            (json!({"requests": [], "claims": {}}), "InvalidRequest"),
        ] {
            assert_eq!(signer.invoke(payload, 0).await.unwrap_err().code(), code);
        }
        let extra = r#"{"requests": [{"claims": {}}], "ttl_seconds": 5}"#;
        assert_eq!(refused(&shared, &signer, extra).await, "InvalidRequest");
        let err = signer.invoke(json!({"requests": vec![json!({"claims": {}}); 250]}), 0).await.unwrap_err();
        assert_eq!(err.to_string(), "a batch holds 1 to 100 requests, not 250");
    }

    #[tokio::test]
    async fn a_disabled_cached_key_triggers_one_refresh_and_the_new_current_key() {
        let (shared, signer) = setup().await;
        let before = signer.sign_event(json!({"claims": {}}), 10).await.unwrap();
        // Rotate behind the signer's back, then disable the key it has cached.
        let rotator = Rotator::new(Arc::clone(&shared.0), Arc::clone(&shared.1), policy(), "kr");
        rotator.run(crate::rotate::Command::Rotate { force: true }, 20).await.unwrap();
        let ring = Keyring::from_json(&shared.1.current_text().unwrap()).unwrap();
        shared.0.disable_key(&ring.find(&before.kid).unwrap().kms_key_arn).await.unwrap();

        let after = signer.sign_event(json!({"claims": {}}), 30).await.unwrap();
        assert_eq!(after.kid, ring.current().unwrap().kid);
        assert_ne!(after.kid, before.kid);
    }

    /// `{"claims":{"a":[0,0,...]}}` of exactly `len` bytes: about `len / 2` JSON values.
    fn many_small_elements(len: usize) -> String {
        let key = if len % 2 == 0 { "a" } else { "ab" };
        let head = format!(r#"{{"claims":{{"{key}":[0"#);
        let tail = "]}}";
        let text = format!("{head}{}{tail}", ",0".repeat((len - head.len() - tail.len()) / 2));
        assert_eq!(text.len(), len);
        text
    }

    #[tokio::test]
    async fn oversize_requests_are_refused_before_they_are_parsed() {
        let (shared, signer) = setup().await;
        // Many small elements, one byte over: parsed, this would be ClaimsTooLarge.
        let text = many_small_elements(MAX_REQUEST_BYTES + 1);
        assert_eq!(refused(&shared, &signer, &text).await, "RequestTooLarge");
        let err = signer.sign_json(&text, 0).await.unwrap_err();
        assert_eq!(err.code(), "RequestTooLarge");
        assert!(err.is_client_error() && !err.is_retryable());
        // Nested beyond serde_json's recursion limit: parsed, this would be InvalidJson.
        let deep = format!(r#"{{"claims":{{"a":{}{}}}}}"#, "[".repeat(16_400), "]".repeat(16_400));
        assert!(deep.len() > MAX_REQUEST_BYTES);
        assert_eq!(refused(&shared, &signer, &deep).await, "RequestTooLarge");
        assert_eq!(refused(&shared, &signer, &"[".repeat(MAX_REQUEST_BYTES + 1)).await, "RequestTooLarge");
        // The same nesting in a batch-sized text, one byte over the batch limit.
        let nested = format!("{}{}", "[".repeat(MAX_BATCH_BYTES / 2), "]".repeat(MAX_BATCH_BYTES / 2 + 1));
        assert_eq!(nested.len(), MAX_BATCH_BYTES + 1);
        assert_eq!(refused(&shared, &signer, &nested).await, "RequestTooLarge");
        let batch = format!(r#"{{"requests":[{}]}}"#, vec![r#"{"claims":{}}"#; 300_000].join(","));
        assert!(batch.len() > MAX_BATCH_BYTES);
        assert_eq!(refused(&shared, &signer, &batch).await, "RequestTooLarge");
        // Inside the batch limit, one request of the batch over the request limit refuses the
        // whole batch as soon as it is read.
        let one_big =
            format!(r#"{{"requests":[{{"claims":{{}}}},{}]}}"#, many_small_elements(MAX_REQUEST_BYTES + 1));
        assert_eq!(refused(&shared, &signer, &one_big).await, "RequestTooLarge");
        let huge_item = format!(r#"{{"requests":[{}]}}"#, many_small_elements(3 * MAX_REQUEST_BYTES + 1));
        assert_eq!(refused(&shared, &signer, &huge_item).await, "RequestTooLarge");
    }

    #[tokio::test]
    async fn requests_at_the_size_limits_are_accepted() {
        let (_, signer) = setup().await;
        // Whitespace counts towards a single request's text...
        let small = r#"{"claims":{"sub":"a"}}"#;
        let padded = format!("{small}{}", " ".repeat(MAX_REQUEST_BYTES - small.len()));
        assert_eq!(padded.len(), MAX_REQUEST_BYTES);
        signer.invoke_json(&padded, 0).await.unwrap();
        signer.sign_json(&padded, 0).await.unwrap();
        // ...and in a batch, a request whose text is within the limit always fits.
        let pad = |text: &str, len: usize| format!("{text}{}", " ".repeat(len - text.len()));
        let mut items = vec![pad(small, MAX_REQUEST_BYTES - 2); MAX_BATCH];
        items[0] = padded.clone();
        let claims = format!(r#"{{"claims":{{"blob":"{}"}}}}"#, "x".repeat(MAX_CLAIMS_BYTES - 11));
        items[1] = pad(&claims, MAX_REQUEST_BYTES - 2);
        let batch = format!(r#"{{"requests":[{}]}}"#, items.join(","));
        assert!((MAX_BATCH_BYTES - 200..=MAX_BATCH_BYTES).contains(&batch.len()), "{}", batch.len());
        let answer = signer.invoke_json(&batch, 0).await.unwrap();
        let results = answer["results"].as_array().unwrap();
        assert_eq!(results.len(), MAX_BATCH);
        assert!(results.iter().all(|r| r["token"].is_string()), "{}", results[1]);
        assert_eq!(
            payload_of(results[1]["token"].as_str().unwrap())["blob"].as_str().map(str::len),
            Some(16_373)
        );
    }

    #[tokio::test]
    async fn duplicate_members_are_refused_at_any_depth() {
        let (shared, signer) = setup().await;
        for text in [
            r#"{"claims": {}, "claims": {"admin": true}}"#,
            r#"{"claims": {"role": "user", "role": "admin"}}"#,
            r#"{"claims": {"a": 1, "\u0061": 2}}"#,
            r#"{"claims": {"o": {"x": [1, {"k": 1, "k": 1}]}}}"#,
            r#"{"claims": {}, "ttl_seconds": 60, "ttl_seconds": 3600}"#,
            r#"{"requests": [{"claims": {"n": 1}}, {"claims": {"n": 1, "n": 2}}]}"#,
            r#"{"requests": [{"claims": {}}], "requests": [{"claims": {}}]}"#,
        ] {
            assert_eq!(refused(&shared, &signer, text).await, "DuplicateMember", "{text}");
        }
        let err = signer.sign_json(r#"{"claims": {"role": "user", "role": "admin"}}"#, 0).await.unwrap_err();
        assert_eq!(
            (err.code(), err.to_string().as_str()),
            ("DuplicateMember", r#"member "role" is given more than once in one object"#)
        );
        // The same name in different objects is fine.
        signer.invoke_json(r#"{"claims": {"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]}}"#, 0).await.unwrap();
    }

    #[tokio::test]
    async fn integers_beyond_64_bits_are_refused_and_floats_are_kept() {
        let (shared, signer) = setup().await;
        for text in [
            r#"{"claims": {"n": 18446744073709551616}}"#,
            r#"{"claims": {"n": -9223372036854775809}}"#,
            r#"{"claims": {"deep": [[{"n": 123456789012345678901234567890}]]}}"#,
            r#"{"claims": {}, "ttl_seconds": 18446744073709551616}"#,
            r#"{"claims": {"n": 1e400}}"#,
            r#"{"requests": [{"claims": {}}, {"claims": {"n": 18446744073709551616}}]}"#,
        ] {
            assert_eq!(refused(&shared, &signer, text).await, "NumberOutOfRange", "{text}");
        }
        let err = signer.sign_json(r#"{"claims": {"n": 18446744073709551616}}"#, 0).await.unwrap_err();
        assert!(err.to_string().starts_with("integer 18446744073709551616 fits in neither"), "{err}");

        let text = r#"{"claims": {"max": 9223372036854775807, "min": -9223372036854775808,
            "umax": 18446744073709551615, "big": 1.5e300, "big2": 2E19, "neg": -1.5e300, "f": 0.5,
            "s": "18446744073709551616 \" 18446744073709551616 \\", "k18446744073709551616": 1}}"#;
        let token = signer.sign_json(text, 0).await.unwrap().token;
        let claims = payload_of(&token);
        assert_eq!(claims["max"].as_i64(), Some(i64::MAX));
        assert_eq!(claims["min"].as_i64(), Some(i64::MIN));
        assert_eq!(claims["umax"].as_u64(), Some(u64::MAX));
        assert_eq!((claims["big"].as_f64(), claims["big2"].as_f64()), (Some(1.5e300), Some(2e19)));
        assert_eq!(claims["neg"].as_f64(), Some(-1.5e300));
    }

    /// A KMS that fails every call the same way.
    struct FailingKms(KmsError);

    #[async_trait::async_trait]
    impl KeySigner for FailingKms {
        async fn sign(
            &self,
            _: &str,
            _: SigningAlg,
            _: &crate::ports::SigningInput,
        ) -> Result<Vec<u8>, KmsError> {
            Err(self.0.clone())
        }
    }

    #[tokio::test]
    async fn kms_failures_get_stable_codes_and_callers_never_see_an_arn() {
        let (shared, _) = setup().await;
        let arn = "arn:aws:kms:eu-west-1:123456789012:key/0f7c1d1e-0000-4000-8000-000000000000";
        let role = "arn:aws:sts::123456789012:assumed-role/kms-jwt-sign/fn";
        for (error, code, retryable) in [
            (KmsError::Timeout { operation: "Sign" }, "KmsTimeout", true),
            (
                KmsError::Transport { operation: "Sign", message: format!("connection reset ({arn})") },
                "KmsUnavailable",
                true,
            ),
            (KmsError::Throttled, "KmsThrottled", true),
            (KmsError::AccessDenied { operation: "Sign" }, "KmsAccessDenied", false),
            (KmsError::NotFound(arn.into()), "KmsError", false),
            (KmsError::InvalidState(arn.into()), "KmsError", false),
            (
                KmsError::Other { operation: "Sign", message: format!("{role} is not authorized on {arn}") },
                "KmsError",
                false,
            ),
        ] {
            let signer = signer_on(FailingKms(error.clone()), Arc::clone(&shared.1));
            let err = signer.sign_event(json!({"claims": {}}), 0).await.unwrap_err();
            assert_eq!(
                (err.code(), err.is_retryable(), err.is_client_error()),
                (code, retryable, false),
                "{error}"
            );
            let answer = signer.invoke(json!({"requests": [{"claims": {}}]}), 0).await.unwrap();
            let item = &answer["results"][0]["error"];
            assert_eq!((item["code"].as_str(), item["retryable"].as_bool()), (Some(code), Some(retryable)));
            for message in
                [err.public_message(), err.to_json()["message"].to_string(), item["message"].to_string()]
            {
                assert!(!message.contains("arn:"), "{code}: {message}");
            }
            if matches!(error, KmsError::NotFound(_) | KmsError::InvalidState(_)) {
                assert!(err.to_string().contains(arn), "the log text keeps the detail: {err}");
            }
        }
        let store_error = SignError::Keyring(CacheError::Store(StoreError::Unavailable(format!(
            "AccessDeniedException: {role} may not read arn:aws:secretsmanager:eu-west-1:123456789012:secret:kr"
        ))));
        assert!(!store_error.public_message().contains("arn:"));
        assert!(store_error.is_retryable());
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            "[\"\\\\0-9eE.+ -]{0,12}|\\PC{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[\"\\\\0-9a-z]{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever serde_json writes, the strict reader reads back unchanged, and finds no
        /// oversized integer: digits inside strings, escaped quotes and floats do not fool it.
        #[test]
        fn the_strict_reader_agrees_with_serde_json_on_its_own_output(value in json_value()) {
            for text in [value.to_string(), serde_json::to_string_pretty(&value).unwrap()] {
                let state = ParseState { budget: Cell::new(usize::MAX), ..ParseState::default() };
                let expected: Value = serde_json::from_str(&text).unwrap();
                prop_assert_eq!(state.run(&text, Strict { state: &state }).unwrap(), expected);
                prop_assert_eq!(oversized_integer(&text), None);
                let text = format!("[{text}, -18446744073709551617]");
                prop_assert_eq!(oversized_integer(&text), Some("-18446744073709551617"));
            }
        }
    }
}

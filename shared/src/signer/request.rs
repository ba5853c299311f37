//! The request contract: what a sign request may say, how big it may be, and the strict
//! streaming parse that turns invocation text into checked, compact requests ([`Prepared`])
//! before any key or clock is involved.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
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
/// Longest excerpt of caller input quoted back in an error message.
const MAX_QUOTE_CHARS: usize = 64;

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

/// At most [`MAX_QUOTE_CHARS`] characters of caller input, for an error message.
fn quote(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTE_CHARS) {
        Some((cut, _)) => format!("{}…", text.get(..cut).unwrap_or_default()),
        None => text.to_owned(),
    }
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
pub(super) struct TtlBounds {
    pub(super) default: u64,
    pub(super) max: u64,
}

/// A request that passed every check that needs neither a key nor the clock. The caller's
/// claims are kept serialized: a batch holds up to [`MAX_BATCH`] of these at once, and a JSON
/// tree can take twenty times the memory of its text.
#[derive(Debug)]
pub(super) struct Prepared {
    /// The caller's claims with `aud` and `sub` from the request fields: a JSON object.
    pub(super) claims: String,
    pub(super) ttl: u64,
    pub(super) typ: TokenType,
    /// `sub` and `aud` as the audit line shows them.
    pub(super) audit: AuditedClaims,
}

/// Longest `sub` or `aud` the audit line carries; longer values are cut (and marked).
const MAX_AUDITED_CHARS: usize = 256;

/// The only claim values an audit line carries: who the token is for, and where it goes.
#[derive(Debug, Default)]
pub(super) struct AuditedClaims {
    pub(super) sub: Option<String>,
    pub(super) aud: Option<String>,
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

pub(super) fn prepare(request: SignRequest, bounds: TtlBounds) -> Result<Prepared, SignError> {
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

/// A parsed invocation: one request, or a batch with a verdict per request.
#[derive(Debug)]
pub(super) enum Parsed {
    Single(Prepared),
    Batch(Vec<Result<Prepared, SignError>>),
}

/// Read one request (a batch is refused) from its JSON text: refused unread over
/// [`MAX_REQUEST_BYTES`], then read strictly and prepared.
pub(super) fn parse_single(text: &str, bounds: TtlBounds) -> Result<Prepared, SignError> {
    if text.len() > MAX_REQUEST_BYTES {
        return Err(SignError::RequestTooLarge { what: "a single request", limit: MAX_REQUEST_BYTES });
    }
    let state = ParseState::new();
    let request = parse_request(state.run(text, Strict { state: &state })?)?;
    prepare(request, bounds)
}

/// Read an invocation, one request or a batch, from its JSON text: refused unread over
/// [`MAX_BATCH_BYTES`]. Size, duplicate members and out-of-range integers refuse all of it;
/// a batch keeps a verdict per request.
pub(super) fn parse_invocation(text: &str, bounds: TtlBounds) -> Result<Parsed, SignError> {
    if text.len() > MAX_BATCH_BYTES {
        return Err(SignError::RequestTooLarge { what: "the invocation", limit: MAX_BATCH_BYTES });
    }
    let state = ParseState::new();
    let seed = InvocationSeed { state: &state, text_len: text.len(), bounds };
    state.run(text, seed)?
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

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use proptest::prelude::*;
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

    /// `{"claims":{"a":[0,0,...]}}` of exactly `len` bytes: about `len / 2` JSON values.
    fn many_small_elements(len: usize) -> String {
        let key = if len.is_multiple_of(2) { "a" } else { "ab" };
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
        let results = verdicts(signer.invoke_json(&batch, 0).await.unwrap());
        assert_eq!(results.len(), MAX_BATCH);
        assert!(results.iter().all(Result::is_ok), "{:?}", results[1]);
        assert_eq!(
            payload_of(&results[1].as_ref().unwrap().token)["blob"].as_str().map(str::len),
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

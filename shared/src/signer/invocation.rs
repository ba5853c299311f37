//! The invocation parse: JSON text in, checked and compact requests ([`Prepared`]) out. The
//! text's size is checked before any of it is read; a batch's requests are read, checked and
//! made compact one at a time, so at most one request's JSON tree exists at once.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::prepare::{prepare, Checks, Prepared};
use super::request::{parse_request, MAX_BATCH, MAX_BATCH_BYTES, MAX_REQUEST_BYTES};
use super::strict_json::{ParseState, Strict};
use super::SignError;

/// A parsed invocation: one request, or a batch with a verdict per request.
#[derive(Debug)]
pub(super) enum Parsed {
    Single(Prepared),
    Batch(Vec<Result<Prepared, SignError>>),
}

/// Read one request (a batch is refused) from its JSON text: refused unread over
/// [`MAX_REQUEST_BYTES`], then read strictly and prepared.
pub(super) fn parse_single(text: &str, bounds: Checks<'_>) -> Result<Prepared, SignError> {
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
pub(super) fn parse_invocation(text: &str, bounds: Checks<'_>) -> Result<Parsed, SignError> {
    if text.len() > MAX_BATCH_BYTES {
        return Err(SignError::RequestTooLarge { what: "the invocation", limit: MAX_BATCH_BYTES });
    }
    let state = ParseState::new();
    let seed = InvocationSeed { state: &state, text_len: text.len(), bounds };
    state.run(text, seed)?
}

/// An invocation's top level: `{"requests": [...]}` or a single request, told apart by the
/// first member so a single request's size is checked before any of it is built.
struct InvocationSeed<'s> {
    state: &'s ParseState,
    text_len: usize,
    bounds: Checks<'s>,
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
    bounds: Checks<'s>,
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
            self.state.start_request();
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
    use super::*;
    use crate::signer::fixtures::*;
    use crate::signer::MAX_CLAIMS_BYTES;

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
}

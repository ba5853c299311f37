//! The strict JSON reader under the request parse: it builds a [`Value`] like serde_json,
//! but refuses a member name given twice in one object and an integer that fits neither `i64`
//! nor `u64` (JSON parsers disagree about both), and charges what it builds to the budget of
//! the request being read, so no request grows a tree beyond [`MAX_REQUEST_BYTES`].

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::request::MAX_REQUEST_BYTES;
use super::SignError;

/// Longest excerpt of caller input quoted back in an error message.
const MAX_QUOTE_CHARS: usize = 64;

/// At most [`MAX_QUOTE_CHARS`] characters of caller input, for an error message.
fn quote(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTE_CHARS) {
        Some((cut, _)) => format!("{}…", text.get(..cut).unwrap_or_default()),
        None => text.to_owned(),
    }
}

/// State shared by the seeds of one parse.
#[derive(Default)]
pub(super) struct ParseState {
    /// Why the parse was cut short, when we cut it (serde errors carry only text).
    refusal: Cell<Option<SignError>>,
    /// Bytes of minified JSON the request being read may still take.
    budget: Cell<usize>,
    /// A number that fits no 64-bit integer arrived as a float: look at how it was written.
    big_float: Cell<bool>,
}

impl ParseState {
    pub(super) fn new() -> Self {
        ParseState { budget: Cell::new(MAX_REQUEST_BYTES), ..ParseState::default() }
    }

    /// Stop the parse for `reason`.
    pub(super) fn refuse<E: de::Error>(&self, reason: SignError) -> E {
        let error = E::custom(&reason);
        self.refusal.set(Some(reason));
        error
    }

    /// Give the next request of a batch a full budget of [`MAX_REQUEST_BYTES`].
    pub(super) fn start_request(&self) {
        self.budget.set(MAX_REQUEST_BYTES);
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
    pub(super) fn run<'de, S: DeserializeSeed<'de>>(
        &self,
        text: &'de str,
        seed: S,
    ) -> Result<S::Value, SignError> {
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
pub(super) struct Strict<'s> {
    pub(super) state: &'s ParseState,
}

impl Strict<'_> {
    /// The members of an object, `first` key already read (by the invocation's
    /// top-level seed).
    pub(super) fn members<'de, A: MapAccess<'de>>(
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::signer::fixtures::*;

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

//! The sign service: claims in, a compact JWS out, signed by the current key inside KMS.
//!
//! Per token: one KMS `Sign` call, no keyring read (the keyring comes from a
//! [`KeyringCache`](crate::cache::KeyringCache)). One request contract for direct invocation
//! and for `POST /sign` through API Gateway: a single request, or `{"requests": [...]}` signed
//! concurrently with bounded concurrency. The answer is typed ([`SignAnswer`]): its JSON is
//! the sign function's to write.
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
//!
//! Parts: `request` (the contract and its limits), `prepare` (the claim checks before any key
//! or clock), `invocation` (text in, one request or a batch out), `strict_json` (the reader
//! that refuses duplicate members and oversized integers), `service` ([`TokenSigner`], token
//! assembly, the audit line) and `error` ([`SignError`]).

mod error;
mod exchange;
#[cfg(test)]
mod fixtures;
mod invocation;
mod prepare;
mod request;
mod service;
mod strict_json;

pub use error::SignError;
pub use exchange::{identity_token_answer, IdentityTokenRequest};
pub use request::{
    parse_request, Audience, SignRequest, TokenType, MAX_BATCH, MAX_BATCH_BYTES, MAX_CLAIMS_BYTES,
    MAX_REQUEST_BYTES, RESERVED_CLAIMS,
};
pub use service::{
    current_signing_key, signing_key_in, SignAnswer, SignedToken, SigningKey, TokenSigner, AUDIT_TARGET,
};

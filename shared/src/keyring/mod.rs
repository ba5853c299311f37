//! The keyring document kept in one Secrets Manager secret, and its pure lifecycle.
//!
//! Nothing here performs I/O or reads a clock: every transition takes `now` (Unix seconds)
//! as an argument, so a year of rotations can be simulated in milliseconds.
//!
//! Parts: `document` (the records, the JSON form and its invariants), `lifecycle` (the
//! transitions, from [`NewKey`]s) and `queries` (keys by state, the JWKS).

mod document;
mod lifecycle;
mod queries;
#[cfg(test)]
pub(crate) mod tests;

pub use document::{
    EdgeInvalidation, Home, KeyRecord, KeyState, Keyring, KeyringError, PendingCreation, RetireReason,
    RetiringKey, SCHEMA_VERSION,
};
pub use lifecycle::NewKey;

/// Seconds since the Unix epoch.
pub type UnixTime = i64;

//! kms-jwt: JWT signing keys that live in AWS KMS, rotated without breaking verifiers.
//!
//! The crate is the domain of the three Lambda functions:
//! - [`jose`]: the algorithms and pure JOSE encoding (RFC 7515/7517/7518/7638);
//! - [`keyring`]: the keyring document and its lifecycle, with an injected clock;
//! - [`rotate`], [`signer`], [`jwks`]: the services behind each function;
//! - [`ports`]: the KMS and Secrets Manager traits, with [`aws`] adapters and, behind the
//!   `test-util` feature, in-memory twins in `memory`.
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod arn;
#[cfg(any(test, feature = "test-util"))]
pub mod authz;
pub mod aws;
pub mod cache;
pub mod config;
pub mod events;
pub mod jose;
pub mod jwks;
pub mod key_policy;
pub mod keyring;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;
#[cfg(any(test, feature = "test-util"))]
mod memory_keys;
pub mod minting;
pub mod ports;
pub mod regions;
pub mod rotate;
pub mod signer;
#[cfg(any(test, feature = "test-util"))]
pub mod test_stacks;

pub use jose::alg::SigningAlg;
pub use keyring::{Keyring, UnixTime};

/// Wall-clock time in Unix seconds: the one place the real clock is read.
pub fn unix_now() -> UnixTime {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

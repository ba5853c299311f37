//! Building blocks of the `kms-jwt-bench` binary: latency statistics, a wire-level counter of
//! AWS calls, and a local Lambda runtime API for cold starts.

pub mod counting;
pub mod runtime_api;
pub mod stats;
pub mod verify;

//! The suites that run on the in-memory twins alone, as one test binary (it links once): the
//! year-long simulation, multi-region scenarios and year, the published-key cap, every
//! algorithm on the twins, the authorization the twins execute, and the CDN invalidation and
//! lifecycle events after transitions. `make test-unit` runs it.
//! Every call in them is authorized as AWS would authorize it (see `kms_jwt::authz`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod authorization;
mod key_cap;
mod memory_twins_all_algorithms;
mod multi_region;
mod notify;
mod simulation;

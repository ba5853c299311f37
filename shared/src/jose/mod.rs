//! JOSE: everything that depends on the algorithm and nothing that calls AWS. Pure functions
//! over bytes, each pinned by its RFC's vectors:
//! - [`alg`]: the JWS algorithms a KMS key can back, and their KMS parameters (RFC 7518,
//!   RFC 8812, RFC 8037, RFC 9964);
//! - [`signing_input`]: what KMS signs for a token (a digest, the raw input, or an ML-DSA μ);
//! - [`jws`]: compact serialization (RFC 7515) and the ECDSA DER → `R || S` conversion;
//! - [`jwk`]: SPKI DER → JWK (RFC 7517/7518) and thumbprints (RFC 7638);
//! - [`ml_dsa`], [`secp256k1`]: the two algorithms that need more than a table row.

pub mod alg;
pub mod jwk;
pub mod jws;
pub mod ml_dsa;
pub mod secp256k1;
pub mod signing_input;

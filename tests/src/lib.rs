//! Test support: independent token verification.

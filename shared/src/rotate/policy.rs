//! Lifecycle timing and the published-key limits a run plans with.

use crate::jose::alg::SigningAlg;

/// Lifecycle timing derived from configuration, in seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationPolicy {
    /// Algorithm of the keys a run creates.
    pub alg: SigningAlg,
    /// Seconds a key signs before the next one takes over.
    pub rotation_period: i64,
    /// Seconds a next key is published before it may sign.
    pub prepublication: i64,
    /// Seconds a previous key stays published after it stopped signing.
    pub retirement_grace: i64,
    /// Days KMS waits before deleting a retired key (7 to 30).
    pub deletion_window_days: i32,
    /// Most keys the JWKS may hold (`MAX_PUBLISHED_KEYS`): a rotation that would publish
    /// more waits until enough previous keys have retired.
    pub max_published_keys: usize,
}

#[cfg(any(test, feature = "test-util"))]
impl RotationPolicy {
    /// The policy tests start from (and override with struct update syntax where a test is
    /// about one of its values): weekly rotation, 10 minutes of pre-publication, two hours of
    /// retirement grace, the shortest KMS deletion window, ALB's key cap.
    pub fn for_tests(alg: SigningAlg) -> Self {
        RotationPolicy {
            alg,
            rotation_period: 7 * 86_400,
            prepublication: 600,
            retirement_grace: 7_200,
            deletion_window_days: 7,
            max_published_keys: DEFAULT_MAX_PUBLISHED_KEYS,
        }
    }
}

/// Most keys ALB's JWT verification accepts in a JWKS, our default cap.
pub const DEFAULT_MAX_PUBLISHED_KEYS: usize = 10;

/// Largest JWKS ALB's JWT verification accepts (150 KB; read as the smaller 150,000 bytes).
/// Rotation keeps the JWKS within it whatever the key size.
pub const MAX_JWKS_BYTES: usize = 150_000;

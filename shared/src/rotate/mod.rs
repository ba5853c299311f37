//! The rotate service: a reconciler that brings the keyring to the state due at `now`.
//!
//! One run:
//! 1. reads the keyring (refusing an invalid one: nothing is ever overwritten);
//! 2. a revocation first withdraws the key in a compare-and-swap of its own, before any KMS
//!    call, then carries on as a reconciliation (its replacement key);
//! 3. multi-region only: reads every replica region (its keyring copy and KMS replicas),
//!    refusing to go on if another region is the home (fencing), replicating keys in use where
//!    they are missing, and stamping keys seen everywhere (`replicated_at`) or no longer
//!    current anywhere (`superseded_everywhere_at`), which the planner counts from;
//! 4. plans the transitions due (pure `plan::plan`): bootstrap, rotation, a missing next key,
//!    retirement of expired keys;
//! 5. if the plan needs new KMS keys, first records an intent in the keyring, then creates
//!    keys tagged with the run's request id (one `CreateKey` attempt each: see `aws`);
//! 6. writes the new keyring with compare-and-swap; on a conflict it re-reads and plans again,
//!    reusing keys it already created;
//! 7. housekeeping, within the run's time budget: disables and schedules deletion of keys in
//!    the retirement queue, sweeps creation intents older than a run can live (their keys that
//!    never made it into the keyring are scheduled for deletion), and records what it finished.
//!
//! Any step may fail or the process may die between steps: every valid token stays
//! verifiable (keys leave KMS only after they left the keyring), and the next run converges.
//!
//! The module is split by job: `plan` decides (pure), `run` carries out against KMS and the
//! keyring store (the run's state and order in `run`, its steps in `run/`: `revoke`,
//! `regions` for fencing, observation and take-over, `converge` for intents, key creation and
//! writes, `kms_everywhere` for creating, retiring and finding keys in every region,
//! `housekeeping` for retirement and sweeps), `report` says what happened, `policy` holds the
//! lifecycle timing and the published-key limits, `error` says why a run failed. Event
//! recognition and the metrics record are transport: they live in the rotate function.

mod error;
mod plan;
mod policy;
mod preview;
mod report;
mod run;

pub use error::RotateError;
pub use policy::{RotationPolicy, DEFAULT_MAX_PUBLISHED_KEYS, MAX_JWKS_BYTES};
pub use preview::{next_due, preview, schedule, PlannedRun, PreviewAction, NEW_KEY_PREFIX};
pub use report::{EarlyActivation, KeyStatus, RotationHeld, RotationReport, Transition};
pub use run::{Command, Rotator, DEFAULT_RUN_BUDGET, DEFAULT_STEP_RESERVE, STALE_INTENT_SECS};

/// The policy the unit tests of `plan` and `run` share.
#[cfg(test)]
pub(crate) mod tests {
    use super::RotationPolicy;
    use crate::jose::alg::SigningAlg;

    pub const HOUR: i64 = 3_600;
    pub const DAY: i64 = 86_400;

    /// The shared fixture, with an hour of pre-publication and a 30-day deletion window.
    pub fn policy() -> RotationPolicy {
        RotationPolicy {
            prepublication: HOUR,
            deletion_window_days: 30,
            ..RotationPolicy::for_tests(SigningAlg::ES256)
        }
    }
}

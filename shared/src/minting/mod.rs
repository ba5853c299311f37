//! Who may mint what: the minting policy.
//!
//! A versioned document ([`PolicyDocument`]) lists rules; each names its callers (IAM
//! principal ARN patterns, and whether direct Lambda invocations count), the audiences it
//! may mint for, how `sub` is chosen, which other claims it may set and with which values,
//! the longest lifetime, the `typ`, and whether tokens carry RFC 8693's `act` naming the
//! caller. The signer checks every request against the caller's rules before any KMS call
//! and refuses what no rule admits (`NotAllowed`, naming the rule and the check, never the
//! policy's contents).
//!
//! Parts: `glob` (the `*`/`?` patterns), `principal` (the caller and how a role session
//! matches its role), `document` (the JSON form and validation reporting every problem at
//! once), `evaluate` (a request against the rules), `source` (a policy fixed at cold start or
//! read from SSM Parameter Store through a cache).

mod document;
mod evaluate;
mod glob;
mod principal;
mod source;

pub use document::{
    parse_policy, validate, ClaimValues, MintingPolicy, PolicyDocument, PolicyError, Rule, SubjectRule,
    ALLOW_ALL_POLICY, MAX_POLICY_BYTES, POLICY_VERSION,
};
pub use evaluate::{Admission, Asked, Check, Denial};
pub use glob::glob_match;
pub use principal::{Caller, PrincipalArn};
pub use source::PolicySource;

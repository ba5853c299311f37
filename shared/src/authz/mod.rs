//! Authorization as AWS performs it, for the in-memory twins (`test-util` only).
//!
//! The twins call these functions on every KMS, Secrets Manager, Lambda and STS call, so
//! tests execute the project's key policies, IAM policies and trust policies instead of
//! asserting their text. Statement matching (principals, wildcard actions and resources,
//! condition operators, `IfExists`, set operators, absent keys) is iam-rs's; this module adds
//! what AWS's services add around it:
//! - KMS's key-policy-first logic ([`authorize_kms`]): a key policy names a principal
//!   directly, or delegates to IAM through the account;
//! - strictness: a condition operator or key outside [`OPERATORS`] / [`CONDITION_KEYS`], or a
//!   statement element the wrapper has not verified, is a [`PolicyError`], never an allow;
//! - the places where iam-rs 0.8.0 departs from AWS's documentation, each worked around
//!   before evaluation and pinned by a test (see `strict`).

mod strict;
#[cfg(test)]
mod tests;

use std::fmt;

use iam_rs::{
    Arn, Context, EvaluationOptions, IAMEffect, IAMPolicy, IAMRequest, PolicyEvaluator, Principal,
    PrincipalId,
};
use serde_json::Value;

use strict::Kind;
pub use strict::{is_known_condition_key, CONDITION_KEYS, CONDITION_KEY_PREFIXES, OPERATORS};

/// One call to an AWS API as the twins see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The caller: an IAM role ARN (`arn:aws:iam::ACCT:role/NAME`, the `aws:PrincipalArn` of
    /// its sessions) or an account root (`arn:aws:iam::ACCT:root`).
    pub principal: String,
    /// The API action, `service:Operation` (`kms:Sign`).
    pub action: String,
    /// The resource ARN (key, secret, function) or `"*"` for actions without a resource type.
    pub resource: String,
    /// The request context: condition keys and their values.
    pub context: Vec<(String, ContextValue)>,
}

/// The value of one request-context key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextValue {
    /// A single string (`kms:SigningAlgorithm`, `aws:RequestTag/...`).
    String(String),
    /// A multivalued key (`aws:TagKeys`).
    List(Vec<String>),
    /// A boolean key (`kms:MultiRegion`, `kms:BypassPolicyLockoutSafetyCheck`).
    Bool(bool),
}

impl From<&str> for ContextValue {
    fn from(value: &str) -> Self {
        ContextValue::String(value.to_owned())
    }
}

impl From<String> for ContextValue {
    fn from(value: String) -> Self {
        ContextValue::String(value)
    }
}

impl From<bool> for ContextValue {
    fn from(value: bool) -> Self {
        ContextValue::Bool(value)
    }
}

impl From<Vec<String>> for ContextValue {
    fn from(value: Vec<String>) -> Self {
        ContextValue::List(value)
    }
}

impl From<&[&str]> for ContextValue {
    fn from(value: &[&str]) -> Self {
        ContextValue::List(value.iter().map(|s| (*s).to_owned()).collect())
    }
}

impl Request {
    /// A request with the global keys the twins know: `aws:PrincipalArn` (the principal),
    /// `aws:PrincipalAccount` and, for `kms:*` actions, `kms:CallerAccount` (both the
    /// principal's account, when the principal is an ARN with one).
    pub fn new(principal: impl Into<String>, action: impl Into<String>, resource: impl Into<String>) -> Self {
        let principal = principal.into();
        let action = action.into();
        let account = account_of(&principal).map(str::to_owned);
        let is_kms = action.len() > 4 && action[..4].eq_ignore_ascii_case("kms:");
        let mut request =
            Request { principal: principal.clone(), action, resource: resource.into(), context: Vec::new() };
        request = request.with("aws:PrincipalArn", principal);
        if let Some(account) = account {
            request = request.with("aws:PrincipalAccount", account.as_str());
            if is_kms {
                request = request.with("kms:CallerAccount", account);
            }
        }
        request
    }

    /// Sets a context key (replacing a value already set under the same key, ignoring case).
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<ContextValue>) -> Self {
        let key = key.into();
        self.context.retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
        self.context.push((key, value.into()));
        self
    }

    /// The caller's account, from its ARN.
    pub fn account(&self) -> Option<&str> {
        account_of(&self.principal)
    }
}

/// The outcome of an authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A statement allows the request and none denies it.
    Allow,
    /// A `Deny` statement matches: it wins over every `Allow`.
    ExplicitDeny {
        /// Which policy ("key policy", "identity policy #0", "trust policy").
        policy: String,
        /// The denying statement's `Sid`, if it has one.
        sid: Option<String>,
    },
    /// Nothing allows the request.
    ImplicitDeny,
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Allow => f.write_str("allowed"),
            Decision::ExplicitDeny { policy, sid: Some(sid) } => {
                write!(f, "explicitly denied by statement {sid:?} of the {policy}")
            }
            Decision::ExplicitDeny { policy, sid: None } => {
                write!(f, "explicitly denied by a statement without Sid of the {policy}")
            }
            Decision::ImplicitDeny => f.write_str("implicitly denied: no statement allows it"),
        }
    }
}

/// Why a policy or a request could not be evaluated. A test that meets one fails: the twins
/// never turn it into an allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A condition key outside [`CONDITION_KEYS`] / [`CONDITION_KEY_PREFIXES`], in a policy
    /// or in a request's context; holds the key.
    #[error("condition key {0:?} is not in authz's allowlist")]
    UnknownConditionKey(String),
    /// A condition operator outside [`OPERATORS`]; holds the operator.
    #[error("condition operator {0:?} is not in authz's allowlist")]
    UnknownOperator(String),
    /// A malformed policy or request, or an element the wrapper refuses; says what.
    #[error("invalid policy or request: {0}")]
    Invalid(String),
}

/// KMS's authorization ("Key policies in AWS KMS", "Default key policy", "Determining access
/// to an AWS KMS key" in the AWS KMS developer guide):
/// - an explicit `Deny` in the key policy or in the caller's IAM policies wins (a key-policy
///   `Deny` naming the caller's account root applies to the account's principals);
/// - a key-policy statement that names the caller (or `"*"`) allows directly (for a caller of
///   another account than the key's, its IAM policies must allow too: "Allowing users in
///   other accounts to use a KMS key");
/// - a key-policy `Allow` for the caller's account root (`arn:aws:iam::ACCT:root` or `ACCT`)
///   delegates to IAM: the action is allowed iff the caller's IAM policies allow it;
/// - otherwise an implicit deny: without the root statement, IAM grants nothing.
///
/// `key_policy` `None` is an action without a key (`kms:CreateKey`, `kms:ListKeys`): IAM
/// alone decides.
pub fn authorize_kms(
    request: &Request,
    key_policy: Option<&Value>,
    identity_policies: &[Value],
) -> Result<Decision, PolicyError> {
    let context = iam_context(&request.context)?;
    let identity = prepare_identity(request, identity_policies)?;
    let identity: Vec<Verdict> = identity
        .iter()
        .map(|p| p.evaluate(aws(&request.principal), request, &context))
        .collect::<Result<_, _>>()?;
    let Some(key_policy) = key_policy else {
        return Ok(combine(None, &identity));
    };
    let key = Prepared::new("key policy".into(), key_policy, Kind::Key, &request.resource)?;
    let direct = key.evaluate(aws(&request.principal), request, &context)?;
    let root = match root_of(&request.principal) {
        Some(root) if root != request.principal => Some(key.evaluate(aws(&root), request, &context)?),
        _ => None,
    };
    if let Some(deny) =
        [Some(&direct), root.as_ref()].into_iter().flatten().chain(&identity).find_map(|v| v.deny.clone())
    {
        return Ok(deny);
    }
    let iam_allows = identity.iter().any(|v| v.allowed);
    let cross_account = match (account_of(&request.resource), request.account()) {
        (Some(key_account), Some(caller_account)) => key_account != caller_account,
        _ => false,
    };
    let delegated = root.as_ref().is_some_and(|r| r.allowed);
    Ok(if (direct.allowed && (!cross_account || iam_allows)) || (delegated && iam_allows) {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    })
}

/// Authorization by identity policies only: Secrets Manager without a resource policy,
/// Lambda's `lambda:InvokeFunction` by a role of the function's account,
/// `tag:GetResources`. An explicit `Deny` wins, then any `Allow`, else an implicit deny.
pub fn authorize_identity(request: &Request, identity_policies: &[Value]) -> Result<Decision, PolicyError> {
    let context = iam_context(&request.context)?;
    let identity = prepare_identity(request, identity_policies)?;
    let verdicts: Vec<Verdict> = identity
        .iter()
        .map(|p| p.evaluate(aws(&request.principal), request, &context))
        .collect::<Result<_, _>>()?;
    Ok(combine(None, &verdicts))
}

/// A role's trust policy: may `service_principal` (`scheduler.amazonaws.com`) call
/// `sts:AssumeRole`, with `context` (`aws:SourceAccount`, `aws:SourceArn`)? Allowed only if
/// a statement matches and none denies.
pub fn authorize_assume_role(
    service_principal: &str,
    trust_policy: &Value,
    context: &[(String, ContextValue)],
) -> Result<Decision, PolicyError> {
    let iam_context = iam_context(context)?;
    let request = Request {
        principal: service_principal.to_owned(),
        action: "sts:AssumeRole".to_owned(),
        resource: "*".to_owned(),
        context: context.to_vec(),
    };
    let trust = Prepared::new("trust policy".into(), trust_policy, Kind::Trust, "*")?;
    let principal = Principal::Service(PrincipalId::String(service_principal.to_owned()));
    let verdict = trust.evaluate(principal, &request, &iam_context)?;
    Ok(combine(None, &[verdict]))
}

/// KMS's policy lockout safety check, for `CreateKey`, `ReplicateKey` and `PutKeyPolicy` with
/// `BypassPolicyLockoutSafetyCheck` false.
///
/// The KMS API reference (the `Policy` parameter of CreateKey, ReplicateKey and PutKeyPolicy)
/// says: "The key policy must allow the calling principal to make a subsequent PutKeyPolicy
/// request on the KMS key. This reduces the risk that the KMS key becomes unmanageable."
///
/// The documented test is on the key policy; it does not say how a key policy that allows
/// the account (the root statement) rather than the caller is treated. Here the caller's
/// hypothetical `kms:PutKeyPolicy` on `key_arn` is authorized under the NEW key policy by
/// [`authorize_kms`], with `kms:BypassPolicyLockoutSafetyCheck` false: a statement naming the
/// caller passes on the key policy alone, as documented; a root statement passes only if
/// `identity_policies` (the caller's IAM policies) allow `kms:PutKeyPolicy` on the key, since
/// through the root statement the key policy allows exactly what IAM allows. That is the
/// stricter reading: a root-only policy whose caller lacks IAM permission fails here, where
/// KMS might (undocumented) accept it.
pub fn passes_lockout_check(
    caller: &str,
    key_arn: &str,
    new_key_policy: &Value,
    identity_policies: &[Value],
) -> Result<bool, PolicyError> {
    let request =
        Request::new(caller, "kms:PutKeyPolicy", key_arn).with("kms:BypassPolicyLockoutSafetyCheck", false);
    Ok(authorize_kms(&request, Some(new_key_policy), identity_policies)?.is_allowed())
}

/// What one policy says about one request.
#[derive(Debug)]
struct Verdict {
    /// An `Allow` statement matches.
    allowed: bool,
    /// The first matching `Deny` statement, as a decision.
    deny: Option<Decision>,
}

/// Deny first (in policy order), then allow, then implicit deny.
fn combine(first: Option<&Verdict>, rest: &[Verdict]) -> Decision {
    let all = || first.into_iter().chain(rest);
    if let Some(deny) = all().find_map(|v| v.deny.clone()) {
        deny
    } else if all().any(|v| v.allowed) {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

/// A policy checked, rewritten and parsed by iam-rs.
struct Prepared {
    name: String,
    policy: IAMPolicy,
}

impl Prepared {
    fn new(name: String, policy: &Value, kind: Kind, resource: &str) -> Result<Prepared, PolicyError> {
        let document = strict::prepare(policy, kind, resource == "*").map_err(|e| match e {
            PolicyError::Invalid(why) => PolicyError::Invalid(format!("{name}: {why}")),
            other => other,
        })?;
        let policy: IAMPolicy =
            serde_json::from_value(document).map_err(|e| PolicyError::Invalid(format!("{name}: {e}")))?;
        Ok(Prepared { name, policy })
    }

    fn evaluate(
        &self,
        principal: Principal,
        request: &Request,
        context: &Context,
    ) -> Result<Verdict, PolicyError> {
        // A `"*"` request kept only the `Resource: "*"` statements (see `strict::prepare`), and
        // a trust policy has no Resource: no resource to match then.
        let no_resource = request.resource == "*";
        let resource = if no_resource {
            Arn {
                partition: "aws".into(),
                service: "none".into(),
                region: String::new(),
                account_id: String::new(),
                resource: "*".into(),
            }
        } else {
            Arn::parse(&request.resource)
                .map_err(|e| PolicyError::Invalid(format!("resource {:?}: {e}", request.resource)))?
        };
        let iam_request =
            IAMRequest::new_with_context(principal, request.action.clone(), resource, context.clone());
        let options = EvaluationOptions {
            stop_on_explicit_deny: false,
            collect_match_details: true,
            ignore_resource_constraints: no_resource,
            ..EvaluationOptions::default()
        };
        let result = PolicyEvaluator::with_policies(vec![self.policy.clone()])
            .with_options(options)
            .evaluate(&iam_request)
            .map_err(|e| PolicyError::Invalid(format!("{}: {e}", self.name)))?;
        let matching = || result.statement_details.iter().filter(|m| m.conditions_satisfied);
        Ok(Verdict {
            allowed: matching().any(|m| m.effect == IAMEffect::Allow),
            deny: matching()
                .find(|m| m.effect == IAMEffect::Deny)
                .map(|m| Decision::ExplicitDeny { policy: self.name.clone(), sid: m.sid.clone() }),
        })
    }
}

fn prepare_identity(request: &Request, policies: &[Value]) -> Result<Vec<Prepared>, PolicyError> {
    policies
        .iter()
        .enumerate()
        .map(|(i, p)| Prepared::new(format!("identity policy #{i}"), p, Kind::Identity, &request.resource))
        .collect()
}

fn aws(principal: &str) -> Principal {
    Principal::Aws(PrincipalId::String(principal.to_owned()))
}

/// The request context for iam-rs; every key must be a known one.
fn iam_context(pairs: &[(String, ContextValue)]) -> Result<Context, PolicyError> {
    let mut context = Context::new();
    for (key, value) in pairs {
        if !is_known_condition_key(key) {
            return Err(PolicyError::UnknownConditionKey(key.clone()));
        }
        let value = match value {
            ContextValue::String(s) => iam_rs::ContextValue::String(s.clone()),
            ContextValue::List(list) => iam_rs::ContextValue::StringList(list.clone()),
            ContextValue::Bool(b) => iam_rs::ContextValue::Boolean(*b),
        };
        context.insert(key.clone(), value);
    }
    Ok(context)
}

/// The 12-digit account of an ARN (`arn:PARTITION:SERVICE:REGION:ACCOUNT:...`).
fn account_of(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_), Some(_), Some(_), Some(account), Some(_)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then_some(account)
}

/// The account root of an IAM principal ARN: `arn:PARTITION:iam::ACCOUNT:root`.
fn root_of(principal: &str) -> Option<String> {
    let partition = principal.strip_prefix("arn:")?.split(':').next()?;
    let account = account_of(principal)?;
    Some(format!("arn:{partition}:iam::{account}:root"))
}

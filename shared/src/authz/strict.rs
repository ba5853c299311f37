//! What a policy may say before it is evaluated, and the rewrites that make iam-rs evaluate
//! it as AWS documents.
//!
//! Every statement is checked against allowlists: an operator, a condition key, a statement
//! element or a principal form that is not listed is a [`PolicyError`], never a silent allow
//! or deny. Extend the consts below when the project starts to use a new key or operator.

use serde_json::{Map, Value};

use super::PolicyError;

/// Condition operators a policy may use (exact, case-sensitive names).
pub const OPERATORS: &[&str] = &[
    "StringEquals",
    "StringNotEquals",
    "StringLike",
    "StringNotLike",
    "StringEqualsIfExists",
    "ArnEquals",
    "ArnNotEquals",
    "ArnLike",
    "ArnNotLike",
    "Bool",
    "BoolIfExists",
    "Null",
    "ForAllValues:StringEquals",
    "ForAllValues:StringNotEquals",
    "ForAllValues:StringLike",
    "ForAllValues:StringNotLike",
    "ForAnyValue:StringEquals",
    "ForAnyValue:StringNotEquals",
    "ForAnyValue:StringLike",
    "ForAnyValue:StringNotLike",
];

/// Condition keys a policy may use (compared ignoring ASCII case, as AWS does).
pub const CONDITION_KEYS: &[&str] = &[
    "kms:SigningAlgorithm",
    "kms:ReplicaRegion",
    "kms:KeySpec",
    "kms:KeyUsage",
    "kms:MultiRegion",
    "kms:MultiRegionKeyType",
    "kms:CallerAccount",
    "kms:BypassPolicyLockoutSafetyCheck",
    "kms:ViaService",
    "kms:EncryptionContext:SecretARN",
    "aws:TagKeys",
    "aws:PrincipalArn",
    "aws:PrincipalAccount",
    "aws:RequestedRegion",
    "aws:SourceAccount",
    "aws:SourceArn",
    "iam:AWSServiceName",
];

/// Condition key prefixes whose suffix (a tag key) is free.
pub const CONDITION_KEY_PREFIXES: &[&str] = &["aws:RequestTag/", "aws:ResourceTag/"];

/// AWS documents `ArnEquals` as the same test as `ArnLike` (and `ArnNotEquals` as
/// `ArnNotLike`): "Case-sensitive matching of the ARN. Each of the six colon-delimited
/// components of the ARN is checked separately and each can include multi-character match
/// wildcards (*) or single-character match wildcards (?)" (IAM User Guide, "IAM JSON policy
/// elements: Condition operators", ARN condition operators). iam-rs 0.8.0 compares
/// `ArnEquals` values as plain strings, so a wildcard in an `ArnEquals` value never matches:
/// the operator is renamed before evaluation.
const ARN_EQUALS_REWRITES: &[(&str, &str)] = &[("ArnEquals", "ArnLike"), ("ArnNotEquals", "ArnNotLike")];

/// Statement elements that iam-rs would evaluate but that are refused here (not verified
/// against AWS's semantics, e.g. `NotPrincipal` must list a role's session ARNs too).
const REFUSED_ELEMENTS: &[&str] = &["NotPrincipal", "NotAction", "NotResource"];

/// Statement elements accepted.
const ELEMENTS: &[&str] = &["Sid", "Effect", "Principal", "Action", "Resource", "Condition"];

/// Which kind of policy a document is: decides which elements are required or forbidden.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// An IAM identity policy: no `Principal`, a `Resource`.
    Identity,
    /// A KMS key policy (a resource policy): a `Principal` and a `Resource`.
    Key,
    /// A role trust policy: a `Principal`, no `Resource`.
    Trust,
}

/// Is `key` an allowed condition key?
pub fn is_known_condition_key(key: &str) -> bool {
    CONDITION_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key))
        || CONDITION_KEY_PREFIXES.iter().any(|prefix| {
            key.len() > prefix.len()
                && key.is_char_boundary(prefix.len())
                && key[..prefix.len()].eq_ignore_ascii_case(prefix)
        })
}

/// Checks `policy` and returns the document to give iam-rs: statements always in an array,
/// `ArnEquals`/`ArnNotEquals` renamed, and, for a request on `Resource: "*"` (`star_request`),
/// only the statements whose `Resource` lists `"*"` (AWS: an action without a resource type
/// is matched by `"*"` only), with that `Resource` narrowed to `"*"`.
pub(super) fn prepare(policy: &Value, kind: Kind, star_request: bool) -> Result<Value, PolicyError> {
    let invalid = |why: String| PolicyError::Invalid(why);
    let document = policy.as_object().ok_or_else(|| invalid("a policy must be a JSON object".into()))?;
    for key in document.keys() {
        if !["Version", "Id", "Statement"].contains(&key.as_str()) {
            return Err(invalid(format!("unknown policy element {key:?}")));
        }
    }
    let statements = match document.get("Statement") {
        Some(Value::Array(statements)) => statements.clone(),
        Some(statement @ Value::Object(_)) => vec![statement.clone()],
        _ => return Err(invalid("a policy needs a Statement (object or array)".into())),
    };
    let mut prepared = Vec::with_capacity(statements.len());
    for statement in statements {
        let mut statement = statement
            .as_object()
            .cloned()
            .ok_or_else(|| invalid("a statement must be a JSON object".into()))?;
        check_statement(&statement, kind)?;
        if let Some(Value::Object(condition)) = statement.get("Condition") {
            let condition = check_condition(condition)?;
            statement.insert("Condition".into(), Value::Object(condition));
        }
        if star_request && kind != Kind::Trust {
            if !statement.get("Resource").is_some_and(|r| strings(r).any(|r| r == "*")) {
                continue;
            }
            statement.insert("Resource".into(), Value::String("*".into()));
        }
        prepared.push(Value::Object(statement));
    }
    let mut out = Map::new();
    out.insert("Version".into(), document.get("Version").cloned().unwrap_or_else(|| "2012-10-17".into()));
    out.insert("Statement".into(), Value::Array(prepared));
    Ok(Value::Object(out))
}

/// The strings of a string-or-array-of-strings element (anything else yields nothing).
fn strings(value: &Value) -> Box<dyn Iterator<Item = &str> + '_> {
    match value {
        Value::String(s) => Box::new(std::iter::once(s.as_str())),
        Value::Array(items) => Box::new(items.iter().filter_map(Value::as_str)),
        _ => Box::new(std::iter::empty()),
    }
}

fn is_string_or_strings(value: &Value) -> bool {
    match value {
        Value::String(_) => true,
        Value::Array(items) => !items.is_empty() && items.iter().all(Value::is_string),
        _ => false,
    }
}

fn check_statement(statement: &Map<String, Value>, kind: Kind) -> Result<(), PolicyError> {
    let sid = statement.get("Sid").and_then(Value::as_str).unwrap_or("(no Sid)");
    let invalid = |why: &str| PolicyError::Invalid(format!("statement {sid}: {why}"));
    for key in statement.keys() {
        if REFUSED_ELEMENTS.contains(&key.as_str()) {
            return Err(invalid(&format!("{key} is not supported by the twins' evaluation")));
        }
        if !ELEMENTS.contains(&key.as_str()) {
            return Err(invalid(&format!("unknown element {key:?}")));
        }
    }
    match statement.get("Effect").and_then(Value::as_str) {
        Some("Allow" | "Deny") => {}
        _ => return Err(invalid("Effect must be \"Allow\" or \"Deny\"")),
    }
    if !statement.get("Action").is_some_and(is_string_or_strings) {
        return Err(invalid("Action must be a string or a non-empty array of strings"));
    }
    let resource = statement.get("Resource");
    match kind {
        Kind::Identity | Kind::Key if !resource.is_some_and(is_string_or_strings) => {
            return Err(invalid("Resource must be a string or a non-empty array of strings"));
        }
        Kind::Trust if resource.is_some() => return Err(invalid("a trust policy has no Resource")),
        _ => {}
    }
    match (kind, statement.get("Principal")) {
        (Kind::Identity, Some(_)) => return Err(invalid("an identity policy has no Principal")),
        (Kind::Key | Kind::Trust, None) => return Err(invalid("a resource policy needs a Principal")),
        (_, Some(principal)) => check_principal(principal).map_err(|why| invalid(&why))?,
        (Kind::Identity, None) => {}
    }
    match statement.get("Condition") {
        None | Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(invalid("Condition must be an object")),
    }
}

/// AWS: "You cannot use a wildcard to match part of a principal name or ARN" (IAM User
/// Guide, "AWS JSON policy elements: Principal"). iam-rs 0.8.0 matches principal ARNs as
/// wildcard patterns (`arn:aws:iam::111122223333:role/*` would match every role), so a
/// wildcard anywhere but a whole `"*"` is refused.
fn check_principal(principal: &Value) -> Result<(), String> {
    let check_id = |id: &str| {
        if id != "*" && (id.contains('*') || id.contains('?')) {
            Err(format!("principal {id:?}: a wildcard can only be the whole principal (\"*\")"))
        } else {
            Ok(())
        }
    };
    match principal {
        Value::String(s) if s == "*" => Ok(()),
        Value::Object(map) if !map.is_empty() => {
            for (kind, ids) in map {
                if kind != "AWS" && kind != "Service" {
                    return Err(format!("principal type {kind:?} is not supported"));
                }
                if !is_string_or_strings(ids) {
                    return Err(format!("principal {kind}: a string or a non-empty array of strings"));
                }
                strings(ids).try_for_each(check_id)?;
            }
            Ok(())
        }
        _ => Err("Principal must be \"*\" or an object of AWS / Service principals".into()),
    }
}

fn check_condition(condition: &Map<String, Value>) -> Result<Map<String, Value>, PolicyError> {
    let mut out = Map::new();
    for (operator, entries) in condition {
        if !OPERATORS.contains(&operator.as_str()) {
            return Err(PolicyError::UnknownOperator(operator.clone()));
        }
        let entries = entries
            .as_object()
            .ok_or_else(|| PolicyError::Invalid(format!("{operator}: an object of condition keys")))?;
        for (key, value) in entries {
            if !is_known_condition_key(key) {
                return Err(PolicyError::UnknownConditionKey(key.clone()));
            }
            let valid = match value {
                Value::String(_) | Value::Bool(_) => true,
                Value::Array(items) => !items.is_empty() && items.iter().all(Value::is_string),
                _ => false,
            };
            if !valid {
                return Err(PolicyError::Invalid(format!(
                    "{operator} {key}: a value must be a string, a boolean or a non-empty array of strings"
                )));
            }
        }
        let renamed = ARN_EQUALS_REWRITES
            .iter()
            .find(|(from, _)| from == operator)
            .map_or(operator.as_str(), |(_, to)| to);
        match out.get_mut(renamed) {
            None => {
                out.insert(renamed.to_owned(), Value::Object(entries.clone()));
            }
            Some(Value::Object(existing)) => {
                for (key, value) in entries {
                    if existing.contains_key(key) {
                        return Err(PolicyError::Invalid(format!(
                            "{operator} and {renamed} both test {key}: not representable once merged"
                        )));
                    }
                    existing.insert(key.clone(), value.clone());
                }
            }
            Some(_) => return Err(PolicyError::Invalid(format!("{renamed}: not an object"))),
        }
    }
    Ok(out)
}

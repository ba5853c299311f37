//! A request against the caller's rules: the first rule that admits it decides, and its id
//! goes into the audit line; a refusal names the rule tried first and the check it failed,
//! never what the policy allows.

use std::fmt;

use serde_json::{json, Map, Value};

use super::document::{ClaimValues, MintingPolicy, Rule, SubjectRule};
use super::glob::glob_match;
use super::principal::Caller;
use crate::signer::TokenType;

/// What a request asks for, besides its claims.
#[derive(Debug, Clone, Copy)]
pub struct Asked {
    /// `ttl_seconds`, if the request names one.
    pub ttl_seconds: Option<u64>,
    /// The `typ` header.
    pub typ: TokenType,
}

/// A request a rule admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The admitting rule's id.
    pub rule: String,
    /// The longest lifetime the rule allows, in seconds.
    pub max_ttl_seconds: u64,
}

/// Which check refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// No rule names this caller.
    NoRuleForCaller,
    /// `aud` is missing or a value is not allowed.
    Audience,
    /// `sub` is missing, or not the one the rule chooses.
    Subject,
    /// A claim, by name, is not allowed or has a value that is not.
    Claim(String),
    /// `ttl_seconds` is longer than the rule allows.
    Lifetime,
    /// The `typ` is not allowed.
    Typ,
    /// The request sets `act`, which the rule sets itself.
    Actor,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::NoRuleForCaller => f.write_str("no rule applies to this caller"),
            Check::Audience => f.write_str("the audience is missing or not allowed"),
            Check::Subject => f.write_str("the subject is missing or not allowed"),
            Check::Claim(name) => write!(f, "claim {name:?} or its value is not allowed"),
            Check::Lifetime => f.write_str("ttl_seconds is longer than allowed"),
            Check::Typ => f.write_str("the typ is not allowed"),
            Check::Actor => f.write_str("act is set by the service"),
        }
    }
}

/// A refusal: the rule tried first for this caller (none when no rule applies) and the check
/// it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The id of the rule whose check failed.
    pub rule: Option<String>,
    /// The check that failed.
    pub check: Check,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Some(rule) => write!(f, "not allowed by minting rule {rule:?}: {}", self.check),
            None => write!(f, "not allowed: {}", self.check),
        }
    }
}

impl MintingPolicy {
    /// Decide `claims` (with `aud` and `sub` already in them) for `caller`. When a rule admits
    /// them, `claims` is completed as it says (`sub` it chooses, `act`).
    pub fn admit(
        &self,
        caller: &Caller,
        claims: &mut Map<String, Value>,
        asked: Asked,
    ) -> Result<Admission, Denial> {
        let mut first_denial = None;
        for rule in self.rules.iter().filter(|rule| applies(rule, caller)) {
            match check(rule, caller, claims, asked) {
                Ok(completion) => {
                    completion.apply(claims);
                    return Ok(Admission { rule: rule.id.clone(), max_ttl_seconds: rule.max_ttl_seconds });
                }
                Err(check) => {
                    first_denial.get_or_insert(Denial { rule: Some(rule.id.clone()), check });
                }
            }
        }
        Err(first_denial.unwrap_or(Denial { rule: None, check: Check::NoRuleForCaller }))
    }
}

fn applies(rule: &Rule, caller: &Caller) -> bool {
    match caller {
        Caller::DirectInvoke => rule.direct_invoke,
        Caller::Iam(principal) => rule.callers.iter().any(|pattern| principal.matches(pattern)),
    }
}

/// The claims a rule adds to an admitted request.
#[derive(Default)]
struct Completion {
    sub: Option<String>,
    act: Option<String>,
}

impl Completion {
    fn apply(self, claims: &mut Map<String, Value>) {
        if let Some(sub) = self.sub {
            claims.insert("sub".into(), Value::String(sub));
        }
        if let Some(actor) = self.act {
            claims.insert("act".into(), json!({ "sub": actor }));
        }
    }
}

fn check(
    rule: &Rule,
    caller: &Caller,
    claims: &Map<String, Value>,
    asked: Asked,
) -> Result<Completion, Check> {
    if !rule.typ.contains(&asked.typ) {
        return Err(Check::Typ);
    }
    if asked.ttl_seconds.is_some_and(|ttl| ttl > rule.max_ttl_seconds) {
        return Err(Check::Lifetime);
    }
    check_audience(rule, claims.get("aud"))?;
    let mut completion = Completion { sub: choose_subject(rule, caller, claims.get("sub"))?, act: None };
    if rule.act {
        if claims.contains_key("act") {
            return Err(Check::Actor);
        }
        let Caller::Iam(principal) = caller else { return Err(Check::Actor) };
        completion.act = Some(principal.subject().to_owned());
    }
    for (name, value) in claims {
        if matches!(name.as_str(), "sub" | "aud") || (rule.act && name == "act") {
            continue;
        }
        let allowed = match rule.claims.get(name) {
            Some(values) => value_allowed(values, value),
            None => rule.any_other_claims,
        };
        if !allowed {
            return Err(Check::Claim(name.clone()));
        }
    }
    Ok(completion)
}

fn check_audience(rule: &Rule, aud: Option<&Value>) -> Result<(), Check> {
    let allowed = |value: &Value| value.as_str().is_some_and(|aud| matches_any(&rule.audiences, aud));
    let ok = match aud {
        None => !rule.require_audience,
        Some(Value::Array(values)) => !values.is_empty() && values.iter().all(allowed),
        Some(value) => allowed(value),
    };
    ok.then_some(()).ok_or(Check::Audience)
}

/// The `sub` to set (`None`: keep the request's), or the refusal.
fn choose_subject(rule: &Rule, caller: &Caller, sub: Option<&Value>) -> Result<Option<String>, Check> {
    let required = match &rule.subject {
        SubjectRule::Any => return Ok(None),
        SubjectRule::Pattern(pattern) => {
            let ok = sub.and_then(Value::as_str).is_some_and(|sub| glob_match(pattern, sub));
            return ok.then_some(None).ok_or(Check::Subject);
        }
        SubjectRule::Fixed(value) => value.as_str(),
        SubjectRule::Caller => match caller {
            Caller::Iam(principal) => principal.subject(),
            Caller::DirectInvoke => return Err(Check::Subject),
        },
    };
    match sub {
        None => Ok(Some(required.to_owned())),
        Some(given) if given.as_str() == Some(required) => Ok(None),
        Some(_) => Err(Check::Subject),
    }
}

fn value_allowed(values: &ClaimValues, value: &Value) -> bool {
    match values {
        ClaimValues::Any => true,
        ClaimValues::OneOf(patterns) => match value {
            Value::String(text) => matches_any(patterns, text),
            Value::Array(items) => {
                items.iter().all(|item| item.as_str().is_some_and(|t| matches_any(patterns, t)))
            }
            _ => false,
        },
        ClaimValues::SpaceDelimited(patterns) => value.as_str().is_some_and(|text| {
            !text.is_empty() && text.split(' ').all(|t| !t.is_empty() && matches_any(patterns, t))
        }),
    }
}

fn matches_any(patterns: &[String], text: &str) -> bool {
    patterns.iter().any(|pattern| glob_match(pattern, text))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::minting::{parse_policy, PrincipalArn};

    const ORDERS: &str = "arn:aws:sts::123456789012:assumed-role/orders-api/i-0abc";

    fn policy() -> MintingPolicy {
        parse_policy(
            r#"{"version": 1, "rules": [
            {"id": "orders-for-users", "callers": ["arn:aws:iam::123456789012:role/orders-*"],
             "audiences": ["https://api.example.com", "https://*.internal.example.com"],
             "subject": {"pattern": "user-*"},
             "claims": {"scope": {"space_delimited": ["orders:read", "orders:write"]}, "tenant": {"one_of": ["acme", "t-*"]}},
             "max_ttl_seconds": 900, "act": true, "typ": ["JWT", "at+jwt"]},
            {"id": "orders-self", "callers": ["arn:aws:iam::123456789012:role/orders-api"],
             "audiences": ["https://peer.example.com"], "subject": "caller", "max_ttl_seconds": 300},
            {"id": "batch-jobs", "direct_invoke": true, "audiences": ["https://batch.example.com"],
             "subject": {"fixed": "batch"}, "max_ttl_seconds": 60}
        ]}"#,
        )
        .unwrap()
    }

    fn orders() -> Caller {
        Caller::Iam(PrincipalArn::new(ORDERS))
    }

    fn asked(ttl: Option<u64>) -> Asked {
        Asked { ttl_seconds: ttl, typ: TokenType::Jwt }
    }

    fn admit(caller: &Caller, claims: Value, ttl: Option<u64>) -> Result<(String, Value), Denial> {
        let Value::Object(mut claims) = claims else { panic!("claims object") };
        let admission = policy().admit(caller, &mut claims, asked(ttl))?;
        Ok((admission.rule, Value::Object(claims)))
    }

    fn denied(caller: &Caller, claims: Value, ttl: Option<u64>) -> (Option<String>, Check) {
        let denial = admit(caller, claims, ttl).unwrap_err();
        (denial.rule, denial.check)
    }

    #[test]
    fn a_backend_mints_for_its_users_within_its_rule_and_the_token_names_it() {
        let claims = json!({"sub": "user-42", "aud": "https://api.example.com", "scope": "orders:read orders:write", "tenant": "t-9"});
        let (rule, claims) = admit(&orders(), claims, Some(900)).unwrap();
        assert_eq!(rule, "orders-for-users");
        assert_eq!(claims["act"], json!({"sub": "arn:aws:iam::123456789012:role/orders-api"}));
        assert_eq!(claims["sub"], "user-42");

        let many =
            json!({"sub": "user-1", "aud": ["https://a.internal.example.com", "https://api.example.com"]});
        assert!(admit(&orders(), many, None).is_ok());
    }

    #[test]
    fn a_refusal_names_the_first_rule_tried_and_the_check() {
        let first = Some("orders-for-users".to_owned());
        for (claims, ttl, check) in [
            (json!({"sub": "user-1", "aud": "https://evil.example.com"}), None, Check::Audience),
            (json!({"sub": "user-1"}), None, Check::Audience),
            (json!({"sub": "user-1", "aud": []}), None, Check::Audience),
            (json!({"sub": "user-1", "aud": [1]}), None, Check::Audience),
            (json!({"sub": "admin", "aud": "https://api.example.com"}), None, Check::Subject),
            (json!({"sub": 7, "aud": "https://api.example.com"}), None, Check::Subject),
            (
                json!({"sub": "user-1", "aud": "https://api.example.com", "scope": "orders:read admin"}),
                None,
                Check::Claim("scope".into()),
            ),
            (
                json!({"sub": "user-1", "aud": "https://api.example.com", "scope": "orders:read  orders:write"}),
                None,
                Check::Claim("scope".into()),
            ),
            (
                json!({"sub": "user-1", "aud": "https://api.example.com", "tenant": ["acme", "globex"]}),
                None,
                Check::Claim("tenant".into()),
            ),
            (
                json!({"sub": "user-1", "aud": "https://api.example.com", "admin": true}),
                None,
                Check::Claim("admin".into()),
            ),
            (
                json!({"sub": "user-1", "aud": "https://api.example.com", "act": {"sub": "someone"}}),
                None,
                Check::Actor,
            ),
            (json!({"sub": "user-1", "aud": "https://api.example.com"}), Some(901), Check::Lifetime),
        ] {
            assert_eq!(denied(&orders(), claims.clone(), ttl), (first.clone(), check), "{claims}");
        }
        let stranger = Caller::Iam(PrincipalArn::new("arn:aws:sts::123456789012:assumed-role/billing/x"));
        assert_eq!(denied(&stranger, json!({}), None), (None, Check::NoRuleForCaller));
        let mut claims = Map::new();
        let at = Asked { ttl_seconds: None, typ: TokenType::AccessToken };
        let denial = policy().admit(&Caller::DirectInvoke, &mut claims, at).unwrap_err();
        assert_eq!(denial.to_string(), "not allowed by minting rule \"batch-jobs\": the typ is not allowed");
    }

    #[test]
    fn a_later_rule_may_admit_what_the_first_refuses() {
        let (rule, claims) = admit(&orders(), json!({"aud": "https://peer.example.com"}), None).unwrap();
        assert_eq!(rule, "orders-self");
        assert_eq!(claims["sub"], "arn:aws:iam::123456789012:role/orders-api", "the caller's own identity");
        assert_eq!(claims.get("act"), None);
        let spoof = json!({"aud": "https://peer.example.com", "sub": "arn:aws:iam::123456789012:role/admin"});
        assert_eq!(denied(&orders(), spoof, None).1, Check::Audience, "the first rule's failure is reported");
    }

    #[test]
    fn direct_invokers_get_only_direct_rules() {
        let (rule, claims) =
            admit(&Caller::DirectInvoke, json!({"aud": "https://batch.example.com"}), Some(60)).unwrap();
        assert_eq!((rule.as_str(), &claims["sub"]), ("batch-jobs", &json!("batch")));
        let other = json!({"aud": "https://batch.example.com", "sub": "root"});
        assert_eq!(denied(&Caller::DirectInvoke, other, None), (Some("batch-jobs".into()), Check::Subject));
        let orders_claims = json!({"sub": "user-1", "aud": "https://api.example.com"});
        assert_eq!(denied(&Caller::DirectInvoke, orders_claims, None).1, Check::Audience);
    }

    proptest! {
        #[test]
        fn an_admitted_request_stays_inside_its_rule(
            sub in "[a-z-]{0,8}", aud in prop::sample::select(vec!["https://api.example.com", "https://x.internal.example.com", "https://evil.example.com"]),
            scope in prop::collection::vec(prop::sample::select(vec!["orders:read", "orders:write", "admin"]), 0..3),
            ttl in prop::option::of(1u64..2_000), extra in any::<bool>(),
        ) {
            let mut claims = json!({"sub": sub, "aud": aud});
            if !scope.is_empty() {
                claims["scope"] = json!(scope.join(" "));
            }
            if extra {
                claims["admin"] = json!(true);
            }
            if let Ok((rule, claims)) = admit(&orders(), claims, ttl) {
                let policy = policy();
                let rule = policy.rules().iter().find(|r| r.id == rule).unwrap();
                prop_assert!(ttl.unwrap_or(0) <= rule.max_ttl_seconds);
                prop_assert!(claims.get("admin").is_none());
                prop_assert!(!claims["scope"].as_str().unwrap_or_default().contains("admin"));
                prop_assert!(aud != "https://evil.example.com");
                let sub = claims["sub"].as_str().unwrap_or_default();
                prop_assert!(sub.starts_with("user-") || sub == "arn:aws:iam::123456789012:role/orders-api");
            }
        }
    }
}

//! The minting policy document: its JSON form, read strictly, and its validation, which
//! reports every problem at once. A document that does not validate is never used.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::principal::pattern_problem;
use crate::signer::{TokenType, RESERVED_CLAIMS};

/// The document version this build reads.
pub const POLICY_VERSION: u32 = 1;
/// Largest policy text read (an SSM advanced parameter holds 8 KB; room to spare).
pub const MAX_POLICY_BYTES: usize = 64 * 1024;
/// Longest rule id: ids appear in refusals and audit lines.
const MAX_RULE_ID_CHARS: usize = 64;
/// Claims a rule governs through its own fields, never through `claims`.
const GOVERNED_CLAIMS: [&str; 3] = ["sub", "aud", "act"];

/// A policy document as written (`{"version": 1, "rules": [...]}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// The document format; only [`POLICY_VERSION`] is read.
    pub version: u32,
    /// The rules, tried in order: the first that admits a request signs it.
    pub rules: Vec<Rule>,
}

/// What some callers may mint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Names the rule in refusals and audit lines: `[A-Za-z0-9._-]`, at most 64 characters.
    pub id: String,
    /// IAM principal ARN patterns (`*`, `?`; see [`super::principal`]) of the callers.
    #[serde(default)]
    pub callers: Vec<String>,
    /// The rule also applies to direct Lambda invocations, whose caller nobody attests.
    #[serde(default)]
    pub direct_invoke: bool,
    /// Patterns every `aud` value must match.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// A token without `aud` is refused (the default).
    #[serde(default = "yes")]
    pub require_audience: bool,
    /// How `sub` is chosen.
    pub subject: SubjectRule,
    /// Other claims the caller may set, by name, with the values allowed.
    #[serde(default)]
    pub claims: BTreeMap<String, ClaimValues>,
    /// Claims not named in `claims` are allowed with any value (for migrations only).
    #[serde(default)]
    pub any_other_claims: bool,
    /// Longest lifetime, in seconds; a request that names none gets at most this.
    pub max_ttl_seconds: u64,
    /// The `typ` headers allowed (default `["JWT"]`).
    #[serde(default = "jwt_only")]
    pub typ: Vec<TokenType>,
    /// Add RFC 8693's `act` claim naming the caller: `{"act": {"sub": "<caller>"}}`.
    #[serde(default)]
    pub act: bool,
}

fn yes() -> bool {
    true
}

fn jwt_only() -> Vec<TokenType> {
    vec![TokenType::Jwt]
}

/// How a rule chooses `sub`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SubjectRule {
    /// `"caller"`: the caller's own identity (a role session: its role ARN).
    Caller,
    /// `{"fixed": "..."}`: this value; the request may omit `sub` or repeat it.
    Fixed(String),
    /// `{"pattern": "..."}`: the request sets `sub`, which must match.
    Pattern(String),
    /// `"any"`: whatever the request says, or no `sub` at all (what sign did before
    /// minting policies; for migrations).
    Any,
}

/// The values a rule allows for one claim.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ClaimValues {
    /// `"any"`: any JSON value.
    Any,
    /// `{"one_of": [...]}`: a string matching a pattern, or an array of such strings.
    OneOf(Vec<String>),
    /// `{"space_delimited": [...]}`: a string of space-separated tokens (OAuth `scope`), each
    /// matching a pattern.
    SpaceDelimited(Vec<String>),
}

/// A policy that validated: the only form the signer uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintingPolicy {
    pub(super) rules: Vec<Rule>,
}

impl MintingPolicy {
    /// A policy with no rule: every request is refused.
    pub fn refuse_all() -> Self {
        MintingPolicy { rules: Vec::new() }
    }

    /// The rules, in the order they are tried.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

/// Why a policy document was not accepted: every problem found, each a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the minting policy is invalid: {}", problems.join("; "))]
pub struct PolicyError {
    /// One entry per problem.
    pub problems: Vec<String>,
}

/// Read and validate a policy document. Never panics, whatever the text.
pub fn parse_policy(text: &str) -> Result<MintingPolicy, PolicyError> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(PolicyError {
            problems: vec![format!("the document is {} bytes, more than {MAX_POLICY_BYTES}", text.len())],
        });
    }
    let document: PolicyDocument = serde_json::from_str(text)
        .map_err(|e| PolicyError { problems: vec![format!("not a policy document: {e}")] })?;
    validate(document)
}

/// Check a document, reporting every problem at once.
pub fn validate(document: PolicyDocument) -> Result<MintingPolicy, PolicyError> {
    let mut problems = Vec::new();
    if document.version != POLICY_VERSION {
        problems.push(format!(
            "version {} is not supported (this build reads {POLICY_VERSION})",
            document.version
        ));
    }
    let mut ids = BTreeSet::new();
    for (index, rule) in document.rules.iter().enumerate() {
        let name = if rule.id.is_empty() { format!("rule #{index}") } else { format!("rule {:?}", rule.id) };
        let mut problem = |text: String| problems.push(format!("{name}: {text}"));
        if !valid_id(&rule.id) {
            problem(format!("id must be 1 to {MAX_RULE_ID_CHARS} characters of A-Z a-z 0-9 . _ -"));
        } else if !ids.insert(rule.id.as_str()) {
            problem("id is used by an earlier rule".into());
        }
        if rule.callers.is_empty() && !rule.direct_invoke {
            problem("no callers and no direct_invoke: the rule applies to nobody".into());
        }
        for pattern in &rule.callers {
            if let Some(text) = pattern_problem(pattern) {
                problem(text);
            }
        }
        if rule.require_audience && rule.audiences.is_empty() {
            problem("require_audience with no audiences: nothing could pass".into());
        }
        if rule.direct_invoke && rule.subject == SubjectRule::Caller {
            problem(
                "subject \"caller\" with direct_invoke: a direct invocation has no attested caller".into(),
            );
        }
        if rule.direct_invoke && rule.act {
            problem("act with direct_invoke: a direct invocation has no attested caller to name".into());
        }
        for (claim, values) in &rule.claims {
            if RESERVED_CLAIMS.contains(&claim.as_str()) {
                problem(format!("claim {claim:?} is set by the service only"));
            } else if GOVERNED_CLAIMS.contains(&claim.as_str()) {
                problem(format!("claim {claim:?} is governed by the rule's own fields, not by claims"));
            }
            if matches!(values, ClaimValues::OneOf(p) | ClaimValues::SpaceDelimited(p) if p.is_empty()) {
                problem(format!("claim {claim:?} lists no values: leave it out to refuse it"));
            }
        }
        if rule.max_ttl_seconds == 0 {
            problem("max_ttl_seconds must be at least 1".into());
        }
        if rule.typ.is_empty() {
            problem("typ lists no token type".into());
        }
    }
    if problems.is_empty() {
        Ok(MintingPolicy { rules: document.rules })
    } else {
        Err(PolicyError { problems })
    }
}

fn valid_id(id: &str) -> bool {
    (1..=MAX_RULE_ID_CHARS).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A policy that reproduces what sign did before minting policies: any caller, direct or
/// through API Gateway, any `sub`, `aud` and claims, up to the signer's own lifetime limit.
/// The template's starting value for upgraded deployments, to be narrowed (README).
pub const ALLOW_ALL_POLICY: &str = r#"{
  "version": 1,
  "rules": [{
    "id": "allow-all-until-narrowed",
    "callers": ["*"],
    "direct_invoke": true,
    "audiences": ["*"],
    "require_audience": false,
    "subject": "any",
    "any_other_claims": true,
    "max_ttl_seconds": 86400,
    "typ": ["JWT", "at+jwt"]
  }]
}"#;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_allow_all_policy_validates() {
        let policy = parse_policy(ALLOW_ALL_POLICY).unwrap();
        assert_eq!(policy.rules()[0].id, "allow-all-until-narrowed");
    }

    #[test]
    fn the_documented_example_validates() {
        let page = include_str!("../../../docs/minting.md");
        let example = page.split("```json\n").nth(1).and_then(|rest| rest.split("```").next()).unwrap();
        let policy = parse_policy(example).unwrap();
        let ids: Vec<&str> = policy.rules().iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["orders-for-users", "workload-self", "batch-jobs"]);
    }

    #[test]
    fn a_typical_document_reads() {
        let text = r#"{"version": 1, "rules": [{
            "id": "orders-backend",
            "callers": ["arn:aws:iam::123456789012:role/orders-*"],
            "audiences": ["https://api.example.com"],
            "subject": {"pattern": "user-*"},
            "claims": {"scope": {"space_delimited": ["orders:*"]}, "tenant": "any"},
            "max_ttl_seconds": 900,
            "act": true
        }]}"#;
        let rule = &parse_policy(text).unwrap().rules[0];
        assert_eq!(rule.subject, SubjectRule::Pattern("user-*".into()));
        assert_eq!(rule.typ, vec![TokenType::Jwt]);
        assert!(rule.require_audience && rule.act && !rule.direct_invoke && !rule.any_other_claims);
        assert_eq!(rule.claims["tenant"], ClaimValues::Any);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"{"version": 2, "rules": [
            {"id": "a", "subject": "caller", "max_ttl_seconds": 0, "typ": [], "direct_invoke": true, "act": true,
             "claims": {"exp": "any", "sub": "any", "scope": {"one_of": []}}},
            {"id": "a", "callers": ["orders", "arn:aws:iam::1:role/team/x"], "audiences": ["x"], "subject": "caller", "max_ttl_seconds": 60},
            {"id": "", "callers": ["*"], "audiences": ["x"], "subject": "caller", "max_ttl_seconds": 60}
        ]}"#;
        let problems = parse_policy(text).unwrap_err().problems;
        let expected = [
            "version 2 is not supported",
            "rule \"a\": require_audience with no audiences",
            "rule \"a\": subject \"caller\" with direct_invoke",
            "rule \"a\": act with direct_invoke",
            "rule \"a\": claim \"exp\" is set by the service only",
            "rule \"a\": claim \"sub\" is governed",
            "rule \"a\": claim \"scope\" lists no values",
            "rule \"a\": max_ttl_seconds must be at least 1",
            "rule \"a\": typ lists no token type",
            "rule \"a\": id is used by an earlier rule",
            "caller pattern \"orders\" is neither",
            "names a role path",
            "rule #2: id must be",
        ];
        for needle in expected {
            assert!(problems.iter().any(|p| p.contains(needle)), "{needle:?} missing from {problems:#?}");
        }
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    }

    #[test]
    fn unknown_members_and_shapes_are_refused() {
        for text in [
            r#"{"version": 1, "rules": [], "extra": 1}"#,
            r#"{"version": 1, "rules": [{"id": "a", "callers": ["*"], "audiences": ["x"], "subject": "caller", "max_ttl_seconds": 1, "sub": "x"}]}"#,
            r#"{"version": 1, "rules": [{"id": "a", "callers": ["*"], "audiences": ["x"], "subject": {"regex": ".*"}, "max_ttl_seconds": 1}]}"#,
            r#"{"version": 1, "rules": [{"id": "a", "callers": ["*"], "audiences": ["x"], "subject": "caller", "max_ttl_seconds": 1, "typ": ["JWE"]}]}"#,
            r#"{"rules": []}"#,
            "",
            "[]",
        ] {
            assert!(parse_policy(text).is_err(), "{text}");
        }
        let huge = format!(r#"{{"version": 1, "rules": [], "pad": "{}"}}"#, "x".repeat(MAX_POLICY_BYTES));
        assert!(parse_policy(&huge).unwrap_err().problems[0].contains("bytes"));
    }

    proptest! {
        #[test]
        fn any_text_is_read_without_panicking(text in ".{0,300}") {
            let _ = parse_policy(&text);
        }

        #[test]
        fn json_shaped_noise_is_read_without_panicking(
            version in 0u32..3, id in "[a-z.-]{0,4}", ttl in 0u64..3, direct in any::<bool>(),
            subject in prop::sample::select(vec![r#""caller""#, r#"{"fixed": "s"}"#, r#"{"pattern": "*"}"#, r#""x""#]),
        ) {
            let text = format!(
                r#"{{"version": {version}, "rules": [{{"id": "{id}", "callers": ["*"], "direct_invoke": {direct}, "audiences": ["a"], "subject": {subject}, "max_ttl_seconds": {ttl}}}]}}"#
            );
            let outcome = parse_policy(&text);
            let valid = version == 1 && !id.is_empty() && ttl > 0 && subject != r#""x""#
                && !(direct && subject == r#""caller""#);
            prop_assert_eq!(outcome.is_ok(), valid, "{:?}", outcome);
        }
    }
}

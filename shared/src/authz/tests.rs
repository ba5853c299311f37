//! Behaviour pinned by AWS's documented examples (page titles in each test's comment), and
//! the places where iam-rs 0.8.0 needs the wrapper.

use serde_json::{json, Value};

use super::*;

const ACCT: &str = "111122223333";
const ROOT: &str = "arn:aws:iam::111122223333:root";
const SIGN_ROLE: &str = "arn:aws:iam::111122223333:role/sign";
const ROTATE_ROLE: &str = "arn:aws:iam::111122223333:role/rotate";
const OTHER_ROLE: &str = "arn:aws:iam::111122223333:role/other";
const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn policy(statements: Value) -> Value {
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The default key policy's only statement (KMS developer guide, "Default key policy":
/// "Allows access to the AWS account and enables IAM policies").
fn default_key_policy() -> Value {
    policy(json!([{
        "Sid": "Enable IAM User Permissions",
        "Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCT}:root")},
        "Action": "kms:*",
        "Resource": "*"
    }]))
}

fn iam_allow(action: &str, resource: &str) -> Value {
    policy(json!([{"Effect": "Allow", "Action": action, "Resource": resource}]))
}

fn sign(principal: &str) -> Request {
    Request::new(principal, "kms:Sign", KEY).with("kms:SigningAlgorithm", "ECDSA_SHA_256")
}

#[test]
fn request_new_adds_the_global_keys() {
    let request = Request::new(SIGN_ROLE, "kms:Sign", KEY);
    let get = |k: &str| request.context.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    assert_eq!(get("aws:PrincipalArn"), Some(ContextValue::String(SIGN_ROLE.into())));
    assert_eq!(get("aws:PrincipalAccount"), Some(ContextValue::String(ACCT.into())));
    assert_eq!(get("kms:CallerAccount"), Some(ContextValue::String(ACCT.into())));
    let secrets = Request::new(SIGN_ROLE, "secretsmanager:GetSecretValue", "*");
    assert!(secrets.context.iter().all(|(k, _)| k != "kms:CallerAccount"));
    // `with` replaces, ignoring case.
    let replaced = request.with("AWS:principalarn", "x");
    assert_eq!(
        replaced.context.iter().filter(|(k, _)| k.eq_ignore_ascii_case("aws:PrincipalArn")).count(),
        1
    );
}

/// (1) "Default key policy" — "Allows access to the AWS account and enables IAM policies":
/// the root statement lets IAM policies grant access; without an IAM permission, no access.
#[test]
fn default_key_policy_delegates_to_iam() {
    let key_policy = default_key_policy();
    let iam = [iam_allow("kms:Sign", "*")];
    assert_eq!(authorize_kms(&sign(SIGN_ROLE), Some(&key_policy), &iam).unwrap(), Decision::Allow);
    assert_eq!(authorize_kms(&sign(OTHER_ROLE), Some(&key_policy), &[]).unwrap(), Decision::ImplicitDeny);
    // The account ID form of the root principal delegates the same way.
    let by_id =
        policy(json!([{"Effect": "Allow", "Principal": {"AWS": ACCT}, "Action": "kms:*", "Resource": "*"}]));
    assert!(authorize_kms(&sign(SIGN_ROLE), Some(&by_id), &iam).unwrap().is_allowed());
    assert!(!authorize_kms(&sign(SIGN_ROLE), Some(&by_id), &[]).unwrap().is_allowed());
    // The root itself is named by the statement.
    assert!(authorize_kms(&Request::new(ROOT, "kms:PutKeyPolicy", KEY), Some(&key_policy), &[])
        .unwrap()
        .is_allowed());
    // IAM scoped to another key does not help.
    let elsewhere = [iam_allow("kms:Sign", "arn:aws:kms:us-east-1:111122223333:key/other")];
    assert!(!authorize_kms(&sign(SIGN_ROLE), Some(&key_policy), &elsewhere).unwrap().is_allowed());
}

/// (2) "Key policies in AWS KMS" — a key policy statement naming an IAM role gives it access
/// on its own ("Allows key users to use the KMS key" of "Default key policy").
#[test]
fn key_policy_naming_the_role_allows_without_iam() {
    let key_policy = policy(json!([{
        "Sid": "Allow use of the key",
        "Effect": "Allow",
        "Principal": {"AWS": SIGN_ROLE},
        "Action": ["kms:Sign", "kms:GetPublicKey"],
        "Resource": "*"
    }]));
    assert_eq!(authorize_kms(&sign(SIGN_ROLE), Some(&key_policy), &[]).unwrap(), Decision::Allow);
    assert_eq!(authorize_kms(&sign(OTHER_ROLE), Some(&key_policy), &[]).unwrap(), Decision::ImplicitDeny);
    let verify = Request::new(SIGN_ROLE, "kms:Verify", KEY);
    assert!(!authorize_kms(&verify, Some(&key_policy), &[]).unwrap().is_allowed());
}

/// (3) "Key policies in AWS KMS": "Unless the key policy explicitly allows it, you cannot use
/// IAM policies to allow access to a KMS key." Without the root statement IAM grants nothing.
#[test]
fn without_the_root_statement_iam_grants_nothing() {
    let key_policy = policy(json!([{
        "Effect": "Allow", "Principal": {"AWS": ROTATE_ROLE}, "Action": "kms:*", "Resource": "*"
    }]));
    let iam = [iam_allow("kms:*", "*")];
    assert_eq!(authorize_kms(&sign(SIGN_ROLE), Some(&key_policy), &iam).unwrap(), Decision::ImplicitDeny);
    // No key (CreateKey, ListKeys): IAM alone.
    let create = Request::new(SIGN_ROLE, "kms:CreateKey", "*");
    assert!(authorize_kms(&create, None, &iam).unwrap().is_allowed());
    assert!(!authorize_kms(&create, None, &[]).unwrap().is_allowed());
    // An action without a resource type matches only `Resource: "*"`.
    let narrow = [iam_allow("kms:CreateKey", "arn:aws:kms:*:111122223333:key/*")];
    assert!(!authorize_kms(&create, None, &narrow).unwrap().is_allowed());
}

/// (4) "AWS KMS condition keys", kms:SigningAlgorithm: allow `kms:Sign` only with the named
/// signing algorithm(s).
#[test]
fn signing_algorithm_condition() {
    let key_policy = policy(json!([{
        "Effect": "Allow",
        "Principal": {"AWS": SIGN_ROLE},
        "Action": "kms:Sign",
        "Resource": "*",
        "Condition": {"StringEquals": {"kms:SigningAlgorithm": "ECDSA_SHA_256"}}
    }]));
    assert!(authorize_kms(&sign(SIGN_ROLE), Some(&key_policy), &[]).unwrap().is_allowed());
    let other = sign(SIGN_ROLE).with("kms:SigningAlgorithm", "ECDSA_SHA_384");
    assert_eq!(authorize_kms(&other, Some(&key_policy), &[]).unwrap(), Decision::ImplicitDeny);
    let absent = Request::new(SIGN_ROLE, "kms:Sign", KEY);
    assert!(!authorize_kms(&absent, Some(&key_policy), &[]).unwrap().is_allowed());
    // The documented StringLike form (RSASSA_PSS_* only).
    let pss = policy(json!([{
        "Effect": "Allow", "Principal": {"AWS": SIGN_ROLE}, "Action": "kms:Sign", "Resource": "*",
        "Condition": {"StringLike": {"kms:SigningAlgorithm": "RSASSA_PSS*"}}
    }]));
    let with = |alg: &str| sign(SIGN_ROLE).with("kms:SigningAlgorithm", alg);
    assert!(authorize_kms(&with("RSASSA_PSS_SHA_384"), Some(&pss), &[]).unwrap().is_allowed());
    assert!(!authorize_kms(&with("RSASSA_PKCS1_V1_5_SHA_256"), Some(&pss), &[]).unwrap().is_allowed());
}

/// (5) "AWS KMS condition keys", kms:ReplicaRegion, and "Control access to multi-Region
/// keys": allow `kms:ReplicateKey` only into the listed Regions.
#[test]
fn replica_region_condition() {
    let key_policy = policy(json!([{
        "Effect": "Allow",
        "Principal": {"AWS": ROTATE_ROLE},
        "Action": "kms:ReplicateKey",
        "Resource": "*",
        "Condition": {"StringEquals": {"kms:ReplicaRegion": ["us-east-1", "eu-west-3", "ap-southeast-2"]}}
    }]));
    let replicate =
        |region: &str| Request::new(ROTATE_ROLE, "kms:ReplicateKey", KEY).with("kms:ReplicaRegion", region);
    assert!(authorize_kms(&replicate("eu-west-3"), Some(&key_policy), &[]).unwrap().is_allowed());
    assert!(!authorize_kms(&replicate("us-west-2"), Some(&key_policy), &[]).unwrap().is_allowed());
}

/// (6) "Determining access to an AWS KMS key" / IAM "Policy evaluation logic": an explicit
/// deny in any policy overrides every allow.
#[test]
fn explicit_deny_wins() {
    let named = policy(json!([{
        "Effect": "Allow", "Principal": {"AWS": SIGN_ROLE}, "Action": "kms:Sign", "Resource": "*"
    }]));
    let iam_deny =
        policy(json!([{"Sid": "NoSigning", "Effect": "Deny", "Action": "kms:Sign", "Resource": "*"}]));
    let decision = authorize_kms(&sign(SIGN_ROLE), Some(&named), &[iam_deny]).unwrap();
    assert_eq!(
        decision,
        Decision::ExplicitDeny { policy: "identity policy #0".into(), sid: Some("NoSigning".into()) }
    );
    assert!(decision.to_string().contains("NoSigning"), "{decision}");

    // A key-policy Deny for everyone but the sign role beats the root delegation + IAM.
    let mut key_policy = default_key_policy();
    key_policy["Statement"].as_array_mut().unwrap().push(json!({
        "Sid": "OnlySignRoleSigns",
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": "kms:Sign",
        "Resource": "*",
        "Condition": {"ArnNotEquals": {"aws:PrincipalArn": [SIGN_ROLE]}}
    }));
    let iam = [iam_allow("kms:*", "*")];
    assert_eq!(
        authorize_kms(&sign(OTHER_ROLE), Some(&key_policy), &iam).unwrap(),
        Decision::ExplicitDeny { policy: "key policy".into(), sid: Some("OnlySignRoleSigns".into()) }
    );
    assert!(authorize_kms(&sign(SIGN_ROLE), Some(&key_policy), &iam).unwrap().is_allowed());
}

/// ArnNotEquals with a list means "matches none of them" (IAM User Guide, "Condition
/// operators": negated operators with several values are a NOR), and aws:PrincipalArn is
/// the role ARN.
#[test]
fn arn_not_equals_with_a_list_matches_none() {
    let key_policy = policy(json!([
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:Sign", "Resource": "*"},
        {"Sid": "D", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "kms:Sign", "Resource": "*",
         "Condition": {"ArnNotEquals": {"aws:PrincipalArn": [SIGN_ROLE, ROTATE_ROLE]}}}
    ]));
    assert!(authorize_kms(&sign(SIGN_ROLE), Some(&key_policy), &[]).unwrap().is_allowed());
    assert!(authorize_kms(&sign(ROTATE_ROLE), Some(&key_policy), &[]).unwrap().is_allowed());
    assert!(!authorize_kms(&sign(OTHER_ROLE), Some(&key_policy), &[]).unwrap().is_allowed());
}

/// iam-rs 0.8.0 compares ArnEquals values as plain strings; AWS documents ArnEquals and
/// ArnLike as the same per-component wildcard match ("IAM JSON policy elements: Condition
/// operators", ARN condition operators). The wrapper renames ArnEquals to ArnLike.
#[test]
fn arn_equals_takes_wildcards_as_aws_documents() {
    let key_policy = policy(json!([{
        "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:Sign", "Resource": "*",
        "Condition": {"ArnEquals": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/si*"}}
    }]));
    assert!(authorize_kms(&sign(SIGN_ROLE), Some(&key_policy), &[]).unwrap().is_allowed());
    assert!(!authorize_kms(&sign(OTHER_ROLE), Some(&key_policy), &[]).unwrap().is_allowed());
}

/// AWS: "You cannot use a wildcard to match part of a principal name or ARN" ("AWS JSON
/// policy elements: Principal"). iam-rs would match it as a pattern: refused.
#[test]
fn partial_wildcard_principals_are_refused() {
    let key_policy = policy(json!([{
        "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/*"}, "Action": "kms:Sign", "Resource": "*"
    }]));
    assert!(matches!(authorize_kms(&sign(SIGN_ROLE), Some(&key_policy), &[]), Err(PolicyError::Invalid(_))));
}

/// Statement elements the wrapper has not verified are refused, as are identity policies
/// with a Principal and key policies without one.
#[test]
fn unverified_elements_are_refused() {
    for element in ["NotPrincipal", "NotAction", "NotResource"] {
        let mut statement =
            json!({"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "kms:Sign", "Resource": "*"});
        statement[element] = json!("kms:Sign");
        let key_policy = policy(json!([statement]));
        assert!(matches!(
            authorize_kms(&sign(SIGN_ROLE), Some(&key_policy), &[]),
            Err(PolicyError::Invalid(_))
        ));
    }
    let with_principal = policy(
        json!([{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:Sign", "Resource": "*"}]),
    );
    assert!(matches!(authorize_identity(&sign(SIGN_ROLE), &[with_principal]), Err(PolicyError::Invalid(_))));
    let no_principal = iam_allow("kms:Sign", "*");
    assert!(matches!(
        authorize_kms(&sign(SIGN_ROLE), Some(&no_principal), &[]),
        Err(PolicyError::Invalid(_))
    ));
}

/// (7) "ABAC for AWS KMS" / "Controlling access to tags": CreateKey only with the listed
/// request tags; an extra tag key is refused (ForAllValues:StringEquals on aws:TagKeys).
#[test]
fn request_tags_and_tag_keys() {
    let iam = [policy(json!([{
        "Effect": "Allow",
        "Action": "kms:CreateKey",
        "Resource": "*",
        "Condition": {
            "StringEquals": {"aws:RequestTag/kms-jwt:keyring": "main", "kms:KeyUsage": "SIGN_VERIFY"},
            "ForAllValues:StringEquals": {"aws:TagKeys": ["kms-jwt:keyring", "kms-jwt:managed-by"]},
            "BoolIfExists": {"kms:MultiRegion": false, "kms:BypassPolicyLockoutSafetyCheck": false}
        }
    }]))];
    let create = |keys: &[&str]| {
        Request::new(ROTATE_ROLE, "kms:CreateKey", "*")
            .with("aws:RequestTag/kms-jwt:keyring", "main")
            .with("kms:KeyUsage", "SIGN_VERIFY")
            .with("aws:TagKeys", keys)
    };
    let ok = create(&["kms-jwt:keyring", "kms-jwt:managed-by"]);
    assert!(authorize_kms(&ok, None, &iam).unwrap().is_allowed());
    let extra = create(&["kms-jwt:keyring", "owner"]);
    assert!(!authorize_kms(&extra, None, &iam).unwrap().is_allowed());
    let other_keyring = ok.clone().with("aws:RequestTag/kms-jwt:keyring", "other");
    assert!(!authorize_kms(&other_keyring, None, &iam).unwrap().is_allowed());
    // BoolIfExists: absent passes; present must be false.
    assert!(authorize_kms(&ok.clone().with("kms:MultiRegion", false), None, &iam).unwrap().is_allowed());
    assert!(!authorize_kms(&ok.clone().with("kms:MultiRegion", true), None, &iam).unwrap().is_allowed());
    let bypass = ok.with("kms:BypassPolicyLockoutSafetyCheck", true);
    assert!(!authorize_kms(&bypass, None, &iam).unwrap().is_allowed());
}

/// (8) "Confused deputy prevention" (EventBridge Scheduler user guide): the execution role
/// trusts scheduler.amazonaws.com only for the account's schedule group.
#[test]
fn scheduler_trust_policy() {
    let trust = policy(json!([{
        "Effect": "Allow",
        "Principal": {"Service": "scheduler.amazonaws.com"},
        "Action": "sts:AssumeRole",
        "Condition": {
            "StringEquals": {"aws:SourceAccount": "123456789012"},
            "ArnEquals": {"aws:SourceArn": "arn:aws:scheduler:*:123456789012:schedule-group/your-schedule-group"}
        }
    }]));
    let context = |account: &str, arn: &str| {
        vec![
            ("aws:SourceAccount".to_owned(), ContextValue::from(account)),
            ("aws:SourceArn".to_owned(), ContextValue::from(arn)),
        ]
    };
    let group = "arn:aws:scheduler:us-east-1:123456789012:schedule-group/your-schedule-group";
    let assume =
        |service: &str, ctx: &[(String, ContextValue)]| authorize_assume_role(service, &trust, ctx).unwrap();
    assert_eq!(assume("scheduler.amazonaws.com", &context("123456789012", group)), Decision::Allow);
    let other_group = "arn:aws:scheduler:us-east-1:123456789012:schedule-group/other";
    assert!(!assume("scheduler.amazonaws.com", &context("123456789012", other_group)).is_allowed());
    let other_account = "arn:aws:scheduler:us-east-1:999999999999:schedule-group/your-schedule-group";
    assert!(!assume("scheduler.amazonaws.com", &context("999999999999", other_account)).is_allowed());
    assert!(!assume("events.amazonaws.com", &context("123456789012", group)).is_allowed());
    assert!(!assume("scheduler.amazonaws.com", &[]).is_allowed(), "absent source keys never match");
}

/// (9) The policy lockout safety check: "The key policy must allow the calling principal to
/// make a subsequent PutKeyPolicy request on the KMS key" (KMS API reference, CreateKey).
#[test]
fn lockout_check() {
    let naming_caller = policy(json!([
        {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": ROTATE_ROLE}, "Action": ["kms:DescribeKey", "kms:PutKeyPolicy"], "Resource": "*"}
    ]));
    assert!(passes_lockout_check(ROTATE_ROLE, KEY, &naming_caller, &[]).unwrap());
    let sign_only = policy(json!([
        {"Effect": "Allow", "Principal": {"AWS": ROTATE_ROLE}, "Action": "kms:Sign", "Resource": "*"}
    ]));
    assert!(!passes_lockout_check(ROTATE_ROLE, KEY, &sign_only, &[iam_allow("kms:*", "*")]).unwrap());
    // Through the root statement, the caller's IAM policies decide.
    assert!(passes_lockout_check(
        ROTATE_ROLE,
        KEY,
        &default_key_policy(),
        &[iam_allow("kms:PutKeyPolicy", "*")]
    )
    .unwrap());
    assert!(!passes_lockout_check(ROTATE_ROLE, KEY, &default_key_policy(), &[]).unwrap());
    // A conditional grant evaluated with BypassPolicyLockoutSafetyCheck false.
    let conditional = policy(json!([{
        "Effect": "Allow", "Principal": {"AWS": ROTATE_ROLE}, "Action": "kms:PutKeyPolicy", "Resource": "*",
        "Condition": {"Bool": {"kms:BypassPolicyLockoutSafetyCheck": true}}
    }]));
    assert!(!passes_lockout_check(ROTATE_ROLE, KEY, &conditional, &[]).unwrap());
}

/// (10) An unknown operator or condition key is an error, never an allow.
#[test]
fn unknown_operator_or_key_is_an_error() {
    let with_condition = |condition: Value| {
        policy(
            json!([{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:Sign", "Resource": "*", "Condition": condition}]),
        )
    };
    let unknown_op = with_condition(json!({"NumericLessThan": {"kms:SigningAlgorithm": "1"}}));
    assert_eq!(
        authorize_kms(&sign(SIGN_ROLE), Some(&unknown_op), &[]),
        Err(PolicyError::UnknownOperator("NumericLessThan".into()))
    );
    let typo_op = with_condition(json!({"StringEqual": {"kms:SigningAlgorithm": "ECDSA_SHA_256"}}));
    assert!(matches!(
        authorize_kms(&sign(SIGN_ROLE), Some(&typo_op), &[]),
        Err(PolicyError::UnknownOperator(_))
    ));
    let unknown_key = with_condition(json!({"StringNotEquals": {"kms:SigningAlgorithms": "ECDSA_SHA_256"}}));
    assert_eq!(
        authorize_kms(&sign(SIGN_ROLE), Some(&unknown_key), &[]),
        Err(PolicyError::UnknownConditionKey("kms:SigningAlgorithms".into()))
    );
    // In an identity policy too, and in a request's context.
    let iam = [policy(json!([{"Effect": "Allow", "Action": "kms:*", "Resource": "*",
        "Condition": {"StringEquals": {"aws:SourceVpc": "vpc-1"}}}]))];
    assert!(matches!(
        authorize_kms(&sign(SIGN_ROLE), Some(&default_key_policy()), &iam),
        Err(PolicyError::UnknownConditionKey(_))
    ));
    let odd = sign(SIGN_ROLE).with("kms:GrantOperations", "Sign");
    assert!(matches!(
        authorize_kms(&odd, Some(&default_key_policy()), &[]),
        Err(PolicyError::UnknownConditionKey(_))
    ));
    // Keys compare without case; tag keys are free.
    assert!(is_known_condition_key("KMS:signingalgorithm"));
    assert!(is_known_condition_key("aws:ResourceTag/kms-jwt:keyring"));
    assert!(!is_known_condition_key("aws:ResourceTag/"));
}

/// (11) Secrets Manager: `??????` in a secret ARN matches the six random characters Secrets
/// Manager appends ("Authentication and access control for AWS Secrets Manager").
#[test]
fn secret_arn_wildcard() {
    let iam = [iam_allow(
        "secretsmanager:GetSecretValue",
        "arn:aws:secretsmanager:us-east-1:000000000000:secret:kms-jwt/keyring-??????",
    )];
    let role = "arn:aws:iam::000000000000:role/sign";
    let get = |arn: &str| Request::new(role, "secretsmanager:GetSecretValue", arn);
    let keyring = "arn:aws:secretsmanager:us-east-1:000000000000:secret:kms-jwt/keyring-AbCdEf";
    assert_eq!(authorize_identity(&get(keyring), &iam).unwrap(), Decision::Allow);
    let other = "arn:aws:secretsmanager:us-east-1:000000000000:secret:other-AbCdEf";
    assert_eq!(authorize_identity(&get(other), &iam).unwrap(), Decision::ImplicitDeny);
    let longer = "arn:aws:secretsmanager:us-east-1:000000000000:secret:kms-jwt/keyring-x-AbCdEf";
    assert!(!authorize_identity(&get(longer), &iam).unwrap().is_allowed());
    let put = Request::new(role, "secretsmanager:PutSecretValue", keyring);
    assert!(!authorize_identity(&put, &iam).unwrap().is_allowed());
}

/// A role of another account named in a key policy also needs its own IAM permission
/// ("Allowing users in other accounts to use a KMS key").
#[test]
fn cross_account_needs_both() {
    let external = "arn:aws:iam::444455556666:role/ext";
    let key_policy = policy(
        json!([{"Effect": "Allow", "Principal": {"AWS": external}, "Action": "kms:Sign", "Resource": "*"}]),
    );
    assert!(!authorize_kms(&sign(external), Some(&key_policy), &[]).unwrap().is_allowed());
    assert!(authorize_kms(&sign(external), Some(&key_policy), &[iam_allow("kms:Sign", KEY)])
        .unwrap()
        .is_allowed());
}

/// What the wrapper works around, observed on iam-rs itself: if an upgrade changes this,
/// the workarounds in `strict` can go.
#[test]
fn iam_rs_0_8_0_departures_from_aws() {
    use iam_rs::{evaluate_policy, Arn, Decision as IamDecision, IAMPolicy, IAMRequest};
    let evaluate = |policy: Value, principal: &str| {
        let policy: IAMPolicy = serde_json::from_value(policy).unwrap();
        let request = IAMRequest::new_with_context(
            aws(principal),
            "kms:Sign",
            Arn::parse(KEY).unwrap(),
            iam_context(&sign(principal).context).unwrap(),
        );
        evaluate_policy(&policy, &request).unwrap()
    };
    // ArnEquals with a wildcard: AWS matches it (same test as ArnLike), iam-rs does not.
    let arn_equals = policy(json!([{
        "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:Sign", "Resource": "*",
        "Condition": {"ArnEquals": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/si*"}}
    }]));
    assert_eq!(evaluate(arn_equals, SIGN_ROLE), IamDecision::NotApplicable);
    // A partial wildcard in a principal ARN: AWS does not allow it, iam-rs matches it.
    let partial = policy(json!([{
        "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/*"}, "Action": "kms:Sign", "Resource": "*"
    }]));
    assert_eq!(evaluate(partial, OTHER_ROLE), IamDecision::Allow);
}

//! Who may sign, who may change who may sign, who may write the keyring: executed, not
//! asserted as text. Every call goes through the twins, which authorize it as AWS does
//! (`kms_jwt::authz`) against each key's own policy and the roles' IAM policies from
//! `infra/template.yaml` (`kms_jwt::test_stacks`). Each role tries what it must not do and
//! is refused; what it must do is allowed (the lifecycle, revocation and fail-over suites run
//! on the same enforcing twins and assert that nothing they do is refused).

use std::sync::Arc;

use kms_jwt::arn::regional_arn;
use kms_jwt::authz::{authorize_assume_role, authorize_identity, ContextValue, Request};
use kms_jwt::memory::{MemoryKms, MemoryStore};
use kms_jwt::ports::{KeyAdmin, KeySigner, KeyTags, KeyringStore, KmsError, SigningInput, StoreError};
use kms_jwt::rotate::{Command, RotationPolicy, Rotator};
use kms_jwt::test_stacks::{self, Deployment};
use kms_jwt::SigningAlg;
use kms_jwt_tests::memory::stored;
use serde_json::json;

const HOME: &str = "us-east-1";
const EU: &str = "eu-west-1";
const AP: &str = "ap-southeast-2";

fn denied(operation: &'static str) -> Result<(), KmsError> {
    Err(KmsError::AccessDenied { operation })
}

fn digest() -> SigningInput {
    SigningInput::Digest(vec![7; 32])
}

/// A keyring bootstrapped by the single-Region stack's rotate; its current key's ARN.
async fn single_region() -> (Arc<MemoryKms>, Arc<MemoryStore>, String) {
    let (kms, store) = (Arc::new(MemoryKms::new()), Arc::new(MemoryStore::new()));
    let rotator = Rotator::new(
        kms.clone(),
        store.clone(),
        RotationPolicy::for_tests(SigningAlg::ES256),
        test_stacks::single_region_keyring(),
    );
    rotator.reconcile(kms_jwt::unix_now()).await.unwrap();
    let ring = stored(&store);
    let current = ring.current().unwrap().kms_key_arn.clone();
    (kms, store, current)
}

/// A key policy that would let `principal` sign: what a role that may change the policy
/// would write.
fn letting_sign(principal: &str) -> serde_json::Value {
    json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": test_stacks::account_root()}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "kms:Sign", "Resource": "*"}]})
}

/// Review finding 1: no rotate role, the home's or a peer's, may change a key's policy or
/// grant on it, nor sign, in any region; the break-glass administrator (by default the root
/// user) may change the policy.
#[tokio::test]
async fn no_rotate_role_can_grant_itself_sign_in_any_region() {
    let kms = Arc::new(MemoryKms::new());
    kms.create_multi_region_keys();
    let deployment = kms.deployment();
    let home = deployment.stack(HOME).unwrap().rotate_role().to_owned();
    let arn = kms
        .create_key(
            SigningAlg::ES256,
            &KeyTags { keyring: deployment.keyring_name(), request_id: "r".into() },
        )
        .await
        .unwrap();
    for region in [EU, AP] {
        kms.replicate_key_as(&home, &arn, region, SigningAlg::ES256, &tags(&deployment)).unwrap();
    }
    for region in [HOME, EU, AP] {
        let rotate = deployment.stack(region).unwrap().rotate_role().to_owned();
        for key_region in [HOME, EU, AP] {
            let key = regional_arn(&arn, key_region).unwrap();
            let what = format!("{rotate} on the {key_region} copy");
            assert_eq!(
                kms.put_key_policy_as(&rotate, &key, letting_sign(&rotate), true),
                denied("PutKeyPolicy"),
                "{what}"
            );
            assert_eq!(kms.create_grant_as(&rotate, &key), denied("CreateGrant"), "{what}");
            let signed = kms.sign_as(&rotate, &key, SigningAlg::ES256, &digest()).map(drop);
            assert_eq!(signed, denied("Sign"), "{what}");
        }
    }
    // The break-glass path: the root user may rewrite the policy (and so recover the key).
    let root = test_stacks::account_root();
    kms.put_key_policy_as(&root, &arn, letting_sign(&root), true).unwrap();
}

/// Review finding 6: the key policy's root statement delegates to IAM, and a principal whose
/// IAM allows `kms:*` on `*` (PowerUserAccess does) gets every delegated action, but never
/// `Sign` on our keys. On a key with KMS's default policy, the same principal signs: the
/// delegation the explicit deny closes.
#[tokio::test]
async fn a_principal_with_kms_star_in_iam_cannot_sign_with_our_keys() {
    let (kms, _, current) = single_region().await;
    let power_user = "arn:aws:iam::000000000000:role/PowerUser";
    kms.attach_identity_policy(
        power_user,
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}),
    );
    let as_power_user = kms.as_principal(power_user);
    assert_eq!(as_power_user.sign(&current, SigningAlg::ES256, &digest()).await.map(drop), denied("Sign"));
    assert!(as_power_user.public_key_der(&current).await.is_ok(), "delegation to IAM still works");
    assert_eq!(
        kms.put_key_policy_as(power_user, &current, letting_sign(power_user), true),
        denied("PutKeyPolicy")
    );

    let rotate = kms.rotate_role();
    let tags = tags(&kms.deployment());
    let default_policy = kms.create_key_with(&rotate, SigningAlg::ES256, &tags, None, true).unwrap();
    assert!(as_power_user.sign(&default_policy, SigningAlg::ES256, &digest()).await.is_ok());
}

/// rotate never signs; sign never creates, disables, deletes, tags nor writes the keyring;
/// jwks only reads the keyring.
#[tokio::test]
async fn each_function_role_is_refused_what_is_not_its_job() {
    let (kms, store, current) = single_region().await;
    let stack = kms.deployment().stack(HOME).unwrap().clone();
    let tags = tags(&kms.deployment());

    let rotate = kms.as_principal(stack.rotate_role());
    assert_eq!(rotate.sign(&current, SigningAlg::ES256, &digest()).await.map(drop), denied("Sign"));

    let sign = kms.as_principal(stack.sign_role());
    assert!(sign.sign(&current, SigningAlg::ES256, &digest()).await.is_ok(), "its one job");
    assert_eq!(
        sign.sign(&current, SigningAlg::ES384, &SigningInput::Digest(vec![7; 48])).await.map(drop),
        denied("Sign")
    );
    assert_eq!(sign.create_key(SigningAlg::ES256, &tags).await.map(drop), denied("CreateKey"));
    assert_eq!(sign.disable_key(&current).await, denied("DisableKey"));
    assert_eq!(sign.schedule_deletion(&current, 7).await, denied("ScheduleKeyDeletion"));
    assert_eq!(sign.public_key_der(&current).await.map(drop), denied("GetPublicKey"));
    let tag = [("kms-jwt:keyring".to_owned(), "x".to_owned())];
    assert_eq!(kms.tag_resource_as(stack.sign_role(), &current, &tag), denied("TagResource"));

    let jwks = kms.as_principal(stack.jwks_role());
    assert_eq!(jwks.sign(&current, SigningAlg::ES256, &digest()).await.map(drop), denied("Sign"));

    for reader in [stack.sign_role(), stack.jwks_role()] {
        let view = store.as_principal(reader);
        let read = view.load().await.unwrap().unwrap();
        let write = view.compare_and_swap(Some(&read.version_id), "{}").await;
        assert!(
            matches!(&write, Err(StoreError::Unavailable(m, _)) if m.contains("AccessDenied")),
            "{write:?}"
        );
    }
    assert!(kms.key_state(&current).is_some_and(|s| s == kms_jwt::memory::FakeKeyState::Enabled));
}

/// Review finding 7: rotate may tag keys at creation (`kms:TagResource` on `*` is what KMS
/// requires), but not retag another stack's key as its own, which would hide it from that
/// stack's sweep.
#[tokio::test]
async fn rotate_cannot_retag_another_stacks_key() {
    let kms = Arc::new(MemoryKms::new());
    let root = test_stacks::account_root();
    let theirs = KeyTags { keyring: "other-stack/keyring".into(), request_id: "r".into() };
    let key = kms.create_key_with(&root, SigningAlg::ES256, &theirs, None, false).unwrap();
    let ours = tags(&kms.deployment()).pairs().map(|(k, v)| (k.to_owned(), v));
    assert_eq!(kms.tag_resource_as(&kms.rotate_role(), &key, &ours), denied("TagResource"));
    assert!(kms.key_tags(&key).contains(&("kms-jwt:keyring".to_owned(), "other-stack/keyring".to_owned())));
}

/// `CreateKey` applies KMS's lockout check: rotate's policy keeps `kms:PutKeyPolicy` from
/// rotate itself, so rotate must bypass the check (and does, as the adapter does); a policy
/// that lets the caller change it passes without.
#[tokio::test]
async fn create_key_applies_the_policy_lockout_check() {
    let kms = MemoryKms::new();
    let deployment = kms.deployment();
    let stack = deployment.stack(HOME).unwrap();
    let policy = stack.key_access().unwrap().policy(SigningAlg::ES256);
    let rotate = stack.rotate_role();
    let refused =
        kms.create_key_with(rotate, SigningAlg::ES256, &tags(&deployment), Some(policy.clone()), false);
    assert!(refused.unwrap_err().to_string().contains("MalformedPolicyDocumentException"));
    assert!(kms.create_key_with(rotate, SigningAlg::ES256, &tags(&deployment), Some(policy), true).is_ok());
    let own = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": rotate}, "Action": "kms:PutKeyPolicy", "Resource": "*"}]});
    assert!(kms.create_key_with(rotate, SigningAlg::ES256, &tags(&deployment), Some(own), false).is_ok());
}

/// Review finding 2's other half: the Regions a key may be replicated to are named in
/// rotate's IAM policy (updated with the stack), and only the creating rotate role
/// replicates: a replica's policy is whatever its creator sends.
#[tokio::test]
async fn replication_goes_only_to_the_deployed_regions_and_only_by_the_creator() {
    let kms = Arc::new(MemoryKms::new());
    kms.create_multi_region_keys();
    let deployment = kms.deployment();
    let arn = kms.create_key(SigningAlg::ES256, &tags(&deployment)).await.unwrap();
    let home = deployment.stack(HOME).unwrap().rotate_role().to_owned();
    let replicate = |caller: &str, region: &str| {
        kms.replicate_key_as(caller, &arn, region, SigningAlg::ES256, &tags(&deployment))
    };
    assert_eq!(replicate(&home, "sa-east-1"), denied("ReplicateKey"), "a Region the stacks do not name");
    let peer = deployment.stack(EU).unwrap().rotate_role().to_owned();
    assert_eq!(replicate(&peer, AP), denied("ReplicateKey"), "a peer rotate role");
    replicate(&home, AP).unwrap();
}

/// The scheduler's role invokes rotate and nothing else, and only this stack's schedule group
/// may use it (review finding 7: the trust named the account only).
#[test]
fn the_scheduler_role_invokes_rotate_only_for_this_stacks_schedules() {
    let deployment = Deployment::single_region();
    let stack = deployment.stack(HOME).unwrap();
    let scheduler = stack.scheduler_role();
    let policies = deployment.identity_policies(scheduler);
    let invoke = |function: &str| {
        let request = Request::new(scheduler, "lambda:InvokeFunction", stack.function_arn(function));
        authorize_identity(&request, &policies).unwrap().is_allowed()
    };
    assert!(invoke("RotateFunction"));
    assert!(!invoke("SignFunction") && !invoke("JwksFunction"));

    let trust = &stack.roles["SchedulerRole"].trust_policy;
    let assume = |account: &str, group: &str| {
        let context = [
            ("aws:SourceAccount".to_owned(), ContextValue::from(account)),
            ("aws:SourceArn".to_owned(), ContextValue::from(group)),
        ];
        authorize_assume_role("scheduler.amazonaws.com", trust, &context).unwrap().is_allowed()
    };
    let account = test_stacks::account();
    assert!(assume(account, &stack.schedule_group_arn));
    assert!(!assume(account, "arn:aws:scheduler:us-east-1:000000000000:schedule-group/default"));
    assert!(!assume("111122223333", &stack.schedule_group_arn));
    assert!(!authorize_assume_role("lambda.amazonaws.com", trust, &[]).unwrap().is_allowed());
}

/// A fenced or replica Region's rotate, running anyway, is refused by its own roles before it
/// could matter: the revocation path of the home works, the old home's rotate role cannot
/// undo it through KMS.
#[tokio::test]
async fn revocation_by_the_home_is_allowed_and_a_peer_cannot_re_enable_signing() {
    let (kms, store, current) = single_region().await;
    let rotator = Rotator::new(
        kms.clone(),
        store.clone(),
        RotationPolicy::for_tests(SigningAlg::ES256),
        test_stacks::single_region_keyring(),
    );
    let ring = stored(&store);
    let kid = ring.current().unwrap().kid.clone();
    rotator.run(Command::Revoke { kid }, kms_jwt::unix_now() + 60).await.unwrap();
    assert_ne!(kms.key_state(&current), Some(kms_jwt::memory::FakeKeyState::Enabled));
    assert_eq!(kms.denials(), Vec::<String>::new(), "revocation's calls are all allowed");
    let sign = kms.deployment().stack(HOME).unwrap().sign_role().to_owned();
    assert!(
        kms.sign_as(&sign, &current, SigningAlg::ES256, &digest()).is_err(),
        "a revoked key signs no more"
    );
}

fn tags(deployment: &Deployment) -> KeyTags {
    KeyTags { keyring: deployment.keyring_name(), request_id: "adversary".into() }
}

/// The minting policy's parameter (both sign functions read the same one: an IAM assertion of
/// infra/check_template.py): the sign role may read it and nothing else of SSM, and no function role may write it (writing it is the
/// power to mint anything, like `PutKeyPolicy` on a key).
#[test]
fn only_sign_reads_the_minting_policy_and_no_function_role_writes_it() {
    for deployment in [Deployment::single_region(), Deployment::multi_region()] {
        for stack in deployment.stacks.values() {
            let name = &stack.functions["SignFunction"].environment["MINTING_POLICY_PARAMETER"];
            let arn = format!("arn:aws:ssm:{}:{}:parameter{name}", stack.region, test_stacks::account());
            let other = format!(
                "arn:aws:ssm:{}:{}:parameter/other/minting-policy",
                stack.region,
                test_stacks::account()
            );
            let may = |role: &str, action: &str, resource: &str| {
                let request = Request::new(role, action, resource);
                authorize_identity(&request, &deployment.identity_policies(role)).unwrap().is_allowed()
            };
            assert!(may(stack.sign_role(), "ssm:GetParameter", &arn), "{}", stack.region);
            assert!(!may(stack.sign_role(), "ssm:GetParameter", &other));
            for role in [stack.sign_role(), stack.rotate_role(), stack.jwks_role(), stack.scheduler_role()] {
                for write in ["ssm:PutParameter", "ssm:DeleteParameter", "ssm:LabelParameterVersion"] {
                    assert!(!may(role, write, &arn), "{role} may {write}");
                }
            }
            assert!(
                !may(stack.rotate_role(), "ssm:GetParameter", &arn)
                    && !may(stack.jwks_role(), "ssm:GetParameter", &arn)
            );
        }
    }
}

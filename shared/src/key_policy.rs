//! The key policy every signing key is created with (`CreateKey`'s `Policy` parameter).
//!
//! Access to a signing key comes from the key itself, never from a tag: tags can be written
//! by whoever holds `kms:TagResource`, and KMS documents that tag changes take up to five
//! minutes to affect authorization ("ABAC for AWS KMS"). So each key's policy names the roles
//! that may use it, and it is in force from the moment the key exists:
//! - the account root: `kms:*`, AWS's default statement, so the account can always recover
//!   the key (and IAM administrators can, through IAM, act on it);
//! - the rotate role: what rotate does to its keys (read the public key, disable, schedule
//!   deletion, read tags), plus `kms:PutKeyPolicy`, which KMS's policy-lockout safety check
//!   requires of the principal that calls `CreateKey` with a policy;
//! - the sign role(s): `kms:Sign` only, and only with the keyring's signing algorithm.

use serde_json::{json, Value};

use crate::alg::SigningAlg;

/// Why a set of role ARNs cannot make a key policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyPolicyError {
    /// The text is not an IAM role ARN; holds it.
    #[error("{0:?} is not an IAM role ARN (arn:<partition>:iam::<12-digit account>:role/<name>)")]
    NotARoleArn(String),
    /// A signer role is in another account (or partition) than the admin role, whose account
    /// holds the keys.
    #[error("role {role} is in account {found}, the keys are in account {expected}")]
    OtherAccount {
        /// The signer role's ARN.
        role: String,
        /// Its account.
        found: String,
        /// The admin role's account.
        expected: String,
    },
    /// No role was given that may sign (`KEY_USER_ROLE_ARNS` is empty).
    #[error("at least one role must be allowed to sign")]
    NoSigner,
}

/// Actions the rotate role holds on each key it creates.
pub const ADMIN_ACTIONS: [&str; 6] = [
    "kms:DescribeKey",
    "kms:GetPublicKey",
    "kms:DisableKey",
    "kms:ScheduleKeyDeletion",
    "kms:ListResourceTags",
    "kms:PutKeyPolicy",
];

/// An IAM role ARN, split into what a key policy needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RoleArn {
    arn: String,
    partition: String,
    account: String,
}

impl RoleArn {
    fn parse(text: &str) -> Result<RoleArn, KeyPolicyError> {
        let invalid = || KeyPolicyError::NotARoleArn(text.to_owned());
        let mut parts = text.splitn(6, ':');
        let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let name = resource.strip_prefix("role/").ok_or_else(invalid)?;
        let valid_account = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
        if partition.is_empty() || !valid_account || name.is_empty() || name.ends_with('/') {
            return Err(invalid());
        }
        Ok(RoleArn { arn: text.to_owned(), partition: partition.to_owned(), account: account.to_owned() })
    }
}

/// Who may do what with the signing keys rotate creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAccess {
    admin: RoleArn,
    signers: Vec<RoleArn>,
    /// Multi-region: the regions rotate may replicate each key to.
    replica_regions: Vec<String>,
    /// Multi-region: the other regions' rotate roles, which administer the key as `admin`
    /// does once a fail-over makes one of them home.
    peer_admins: Vec<RoleArn>,
}

impl KeyAccess {
    /// `admin_role_arn` is the role that calls `CreateKey` (the rotate function's role);
    /// `signer_role_arns` may sign (the sign function's role). All in one account.
    pub fn new(admin_role_arn: &str, signer_role_arns: &[String]) -> Result<KeyAccess, KeyPolicyError> {
        let admin = RoleArn::parse(admin_role_arn)?;
        if signer_role_arns.is_empty() {
            return Err(KeyPolicyError::NoSigner);
        }
        let signers =
            signer_role_arns.iter().map(|arn| RoleArn::parse(arn)).collect::<Result<Vec<_>, _>>()?;
        if let Some(other) =
            signers.iter().find(|s| s.account != admin.account || s.partition != admin.partition)
        {
            return Err(KeyPolicyError::OtherAccount {
                role: other.arn.clone(),
                found: other.account.clone(),
                expected: admin.account.clone(),
            });
        }
        Ok(KeyAccess { admin, signers, replica_regions: Vec::new(), peer_admins: Vec::new() })
    }

    /// Multi-region: let the other regions' rotate roles administer each key too (disable it,
    /// schedule its deletion), so that after a fail-over the new home retires the keys the
    /// old home created. Same account as the admin role.
    pub fn with_peer_admins(mut self, peer_role_arns: &[String]) -> Result<KeyAccess, KeyPolicyError> {
        let peers = peer_role_arns.iter().map(|arn| RoleArn::parse(arn)).collect::<Result<Vec<_>, _>>()?;
        if let Some(other) =
            peers.iter().find(|p| p.account != self.admin.account || p.partition != self.admin.partition)
        {
            return Err(KeyPolicyError::OtherAccount {
                role: other.arn.clone(),
                found: other.account.clone(),
                expected: self.admin.account.clone(),
            });
        }
        self.peer_admins = peers;
        Ok(self)
    }

    /// Let rotate replicate each key to `regions` (`kms:ReplicateKey`, narrowed by
    /// `kms:ReplicaRegion`). Each replica gets the same policy, so the signer roles of every
    /// region belong in `signer_role_arns`.
    pub fn with_replica_regions(mut self, regions: &[String]) -> KeyAccess {
        self.replica_regions = regions.to_vec();
        self
    }

    /// The account root principal, `arn:<partition>:iam::<account>:root`.
    fn account_root(&self) -> String {
        format!("arn:{}:iam::{}:root", self.admin.partition, self.admin.account)
    }

    /// The key policy document for a key that signs with `alg`.
    pub fn policy(&self, alg: SigningAlg) -> Value {
        let mut policy = self.single_region_policy(alg);
        if let (false, Some(statements)) =
            (self.replica_regions.is_empty(), policy["Statement"].as_array_mut())
        {
            statements.push(json!({
                "Sid": "RotateReplicatesThisKeyToItsRegions",
                "Effect": "Allow",
                "Principal": { "AWS": self.admin.arn },
                "Action": "kms:ReplicateKey",
                "Resource": "*",
                "Condition": { "StringEquals": { "kms:ReplicaRegion": self.replica_regions } },
            }));
        }
        policy
    }

    fn single_region_policy(&self, alg: SigningAlg) -> Value {
        let signers: Vec<&str> = self.signers.iter().map(|s| s.arn.as_str()).collect();
        // A single string when there are no peers: single-region policies stay as they were.
        let admins = if self.peer_admins.is_empty() {
            json!(self.admin.arn)
        } else {
            json!(std::iter::once(&self.admin)
                .chain(&self.peer_admins)
                .map(|r| r.arn.as_str())
                .collect::<Vec<_>>())
        };
        json!({
            "Version": "2012-10-17",
            "Id": "kms-jwt-signing-key",
            "Statement": [
                {
                    "Sid": "AccountRootRecovery",
                    "Effect": "Allow",
                    "Principal": { "AWS": self.account_root() },
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    "Sid": "RotateAdministersThisKey",
                    "Effect": "Allow",
                    "Principal": { "AWS": admins },
                    "Action": ADMIN_ACTIONS,
                    "Resource": "*",
                },
                {
                    "Sid": "SignOnlyWithTheKeyringAlgorithm",
                    "Effect": "Allow",
                    "Principal": { "AWS": signers },
                    "Action": "kms:Sign",
                    "Resource": "*",
                    "Condition": {
                        "StringEquals": { "kms:SigningAlgorithm": alg.kms_signing_algorithm() },
                    },
                },
            ],
        })
    }

    /// [`Self::policy`] as the JSON text `CreateKey` takes.
    pub fn policy_json(&self, alg: SigningAlg) -> String {
        self.policy(alg).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROTATE: &str = "arn:aws:iam::123456789012:role/kms-jwt-rotate";
    const SIGN: &str = "arn:aws:iam::123456789012:role/service/kms-jwt-sign";

    fn access() -> KeyAccess {
        KeyAccess::new(ROTATE, &[SIGN.to_owned()]).unwrap()
    }

    fn statements(policy: &Value) -> &Vec<Value> {
        policy["Statement"].as_array().unwrap()
    }

    fn actions(statement: &Value) -> Vec<&str> {
        match &statement["Action"] {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().map(|a| a.as_str().unwrap()).collect(),
            other => panic!("Action {other}"),
        }
    }

    fn principals(statement: &Value) -> Vec<&str> {
        match &statement["Principal"]["AWS"] {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().map(|a| a.as_str().unwrap()).collect(),
            other => panic!("Principal {other}"),
        }
    }

    /// The statements that allow `principal` to do `action` (exact or `kms:*`).
    fn allowing<'a>(policy: &'a Value, principal: &str, action: &str) -> Vec<&'a Value> {
        statements(policy)
            .iter()
            .filter(|s| s["Effect"] == "Allow")
            .filter(|s| principals(s).contains(&principal))
            .filter(|s| actions(s).iter().any(|a| *a == action || *a == "kms:*"))
            .collect()
    }

    /// Multi-region: rotate may replicate the key, to the configured regions only; a
    /// single-region policy has no such statement.
    #[test]
    fn replication_is_granted_by_the_key_policy_to_the_configured_regions_only() {
        assert!(allowing(&access().policy(SigningAlg::RS256), ROTATE, "kms:ReplicateKey").is_empty());
        let regions = ["eu-west-1".to_owned(), "ap-southeast-2".to_owned()];
        let policy = access().with_replica_regions(&regions).policy(SigningAlg::RS256);
        let granted = allowing(&policy, ROTATE, "kms:ReplicateKey");
        assert_eq!(granted.len(), 1);
        assert_eq!(granted[0]["Condition"]["StringEquals"]["kms:ReplicaRegion"], json!(regions));
        assert!(allowing(&policy, SIGN, "kms:ReplicateKey").is_empty(), "signers never replicate");
        assert_eq!(statements(&policy).len(), 4);
    }

    /// After a fail-over the new home's rotate role retires keys the old home created: the
    /// peers administer the key like the creator, but neither sign nor replicate it.
    #[test]
    fn peer_rotate_roles_administer_but_neither_sign_nor_replicate() {
        const PEER: &str = "arn:aws:iam::123456789012:role/kms-jwt-rotate-eu";
        let regions = ["eu-west-1".to_owned()];
        let with_peer = access().with_replica_regions(&regions).with_peer_admins(&[PEER.to_owned()]).unwrap();
        let policy = with_peer.policy(SigningAlg::ES256);
        for action in ADMIN_ACTIONS {
            assert_eq!(allowing(&policy, PEER, action).len(), 1, "{action}");
        }
        assert!(allowing(&policy, PEER, "kms:Sign").is_empty());
        assert!(allowing(&policy, PEER, "kms:ReplicateKey").is_empty());
        let elsewhere = "arn:aws:iam::999999999999:role/kms-jwt-rotate";
        assert!(matches!(
            access().with_peer_admins(&[elsewhere.to_owned()]),
            Err(KeyPolicyError::OtherAccount { .. })
        ));
        assert!(matches!(
            access().with_peer_admins(&["nope".to_owned()]),
            Err(KeyPolicyError::NotARoleArn(_))
        ));
    }

    #[test]
    fn each_role_gets_exactly_its_job() {
        let policy = access().policy(SigningAlg::RS256);
        let root = "arn:aws:iam::123456789012:root";
        assert_eq!(statements(&policy).len(), 3);
        assert_eq!(
            allowing(&policy, root, "kms:ScheduleKeyDeletion").len(),
            1,
            "the account can recover the key"
        );
        for action in ADMIN_ACTIONS {
            assert_eq!(allowing(&policy, ROTATE, action).len(), 1, "rotate may {action}");
        }
        for forbidden in
            ["kms:Sign", "kms:Decrypt", "kms:CreateGrant", "kms:EnableKey", "kms:CancelKeyDeletion"]
        {
            assert!(allowing(&policy, ROTATE, forbidden).is_empty(), "rotate must not {forbidden}");
        }
        let sign = allowing(&policy, SIGN, "kms:Sign");
        assert_eq!(sign.len(), 1);
        assert_eq!(actions(sign[0]), vec!["kms:Sign"], "sign may only sign");
        assert_eq!(sign[0]["Condition"]["StringEquals"]["kms:SigningAlgorithm"], "RSASSA_PKCS1_V1_5_SHA_256");
        for forbidden in ["kms:GetPublicKey", "kms:DisableKey", "kms:ScheduleKeyDeletion", "kms:PutKeyPolicy"]
        {
            assert!(allowing(&policy, SIGN, forbidden).is_empty(), "sign must not {forbidden}");
        }
    }

    #[test]
    fn no_wildcard_principal_and_no_tag_conditions() {
        let policy = access().policy(SigningAlg::ES256);
        for statement in statements(&policy) {
            assert_eq!(statement["Effect"], "Allow");
            for principal in principals(statement) {
                assert_ne!(principal, "*");
                assert!(principal.starts_with("arn:aws:iam::123456789012:"), "{principal}");
            }
            let condition = statement.get("Condition").map(Value::to_string).unwrap_or_default();
            assert!(!condition.contains("ResourceTag"), "access never depends on a tag: {condition}");
        }
    }

    #[test]
    fn passes_the_policy_lockout_safety_check_for_the_creating_role() {
        // KMS refuses a CreateKey policy that does not let the caller call PutKeyPolicy later.
        let policy = access().policy(SigningAlg::ES384);
        let lets_rotate = allowing(&policy, ROTATE, "kms:PutKeyPolicy");
        assert_eq!(lets_rotate.len(), 1);
        assert!(lets_rotate[0].get("Condition").is_none(), "unconditional, as the check evaluates it");
    }

    #[test]
    fn several_signers_and_other_partitions() {
        let gov = "arn:aws-us-gov:iam::123456789012:role/rotate";
        let signers = vec![
            "arn:aws-us-gov:iam::123456789012:role/a".to_owned(),
            "arn:aws-us-gov:iam::123456789012:role/b".to_owned(),
        ];
        let access = KeyAccess::new(gov, &signers).unwrap();
        assert_eq!(access.account_root(), "arn:aws-us-gov:iam::123456789012:root");
        let policy = access.policy(SigningAlg::PS512);
        assert_eq!(allowing(&policy, &signers[1], "kms:Sign").len(), 1);
        let text = access.policy_json(SigningAlg::PS512);
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), policy);
    }

    #[test]
    fn bad_role_arns_are_refused() {
        for bad in [
            "",
            "rotate",
            "arn:aws:iam::123456789012:user/alice",
            "arn:aws:iam::12345:role/x",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:sts::123456789012:assumed-role/x/session",
            "arn:aws:iam::*:role/x",
        ] {
            assert!(
                matches!(KeyAccess::new(bad, &[SIGN.to_owned()]), Err(KeyPolicyError::NotARoleArn(_))),
                "{bad}"
            );
        }
        assert_eq!(KeyAccess::new(ROTATE, &[]), Err(KeyPolicyError::NoSigner));
        assert!(matches!(
            KeyAccess::new(ROTATE, &["arn:aws:iam::210987654321:role/sign".to_owned()]),
            Err(KeyPolicyError::OtherAccount { .. })
        ));
    }
}

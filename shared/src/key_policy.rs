//! The key policy every signing key is created with (`CreateKey`'s `Policy` parameter).
//!
//! Access to a signing key comes from the key itself, never from a tag: tags can be written
//! by whoever holds `kms:TagResource`, and KMS documents that tag changes take up to five
//! minutes to affect authorization ("ABAC for AWS KMS"). So each key's policy names the roles
//! that may use it, and it is in force from the moment the key exists:
//! - the account root: `kms:*`, AWS's default statement, so the account can always recover
//!   the key. It delegates to IAM ("Key policies": a principal whose IAM policy allows an
//!   action gets it), so the policy also *denies*, to every principal but the named ones,
//!   the actions that mint tokens or change who may: `kms:Sign` (the sign roles only),
//!   `kms:PutKeyPolicy` and `kms:CreateGrant` (the key-policy administrators only: break-glass
//!   principals, by default the account root user), `kms:ReplicateKey` (the creating rotate
//!   role only: a replica's policy is whatever its creator sends);
//! - the rotate roles (the creator and, multi-region, its peers): what rotate does to its keys
//!   (read the public key, disable, schedule deletion, read tags); the creator also
//!   replicates. No rotate role may change the policy: rotate creates keys with
//!   `BypassPolicyLockoutSafetyCheck`, since KMS's lockout check would otherwise require the
//!   creator itself to keep `kms:PutKeyPolicy` (CreateKey API reference, "Policy"); the
//!   administrators named here keep it, so the key stays manageable;
//! - the sign role(s): `kms:Sign` only, and only with the keyring's signing algorithm.
//!
//! The Regions a key may be replicated to are not fixed here (a key policy is per key and
//! never rewritten by rotate): the rotate role's IAM policy names them, and a stack update
//! changes it when a Region is added.

use serde_json::{json, Value};

use crate::jose::alg::SigningAlg;

/// Why a set of role ARNs cannot make a key policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyPolicyError {
    /// The text is not an IAM role ARN; holds it.
    #[error("{0:?} is not an IAM role ARN (arn:<partition>:iam::<12-digit account>:role/<name>)")]
    NotARoleArn(String),
    /// The text is neither an IAM role ARN nor the account root; holds it.
    #[error("{0:?} is neither an IAM role ARN nor the account root (arn:<partition>:iam::<account>:root)")]
    NotAnAdminArn(String),
    /// A role is in another account (or partition) than the admin role, whose account
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
    /// A role may both sign and administer keys: the split of duties is the point.
    #[error("role {0} is both a signer and a key administrator")]
    SignerAdministers(String),
}

/// Actions every rotate role holds on each key (the creator and its peers).
pub const ADMIN_ACTIONS: [&str; 5] = [
    "kms:DescribeKey",
    "kms:GetPublicKey",
    "kms:DisableKey",
    "kms:ScheduleKeyDeletion",
    "kms:ListResourceTags",
];

/// Actions that change who may use a key: only the key-policy administrators may take them.
pub const ACCESS_CHANGING_ACTIONS: [&str; 2] = ["kms:PutKeyPolicy", "kms:CreateGrant"];

/// An IAM principal ARN (a role, or the account root), split into what a key policy needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PrincipalArn {
    arn: String,
    partition: String,
    account: String,
}

impl PrincipalArn {
    /// A role ARN: `arn:<partition>:iam::<account>:role/<path/name>`.
    fn role(text: &str) -> Result<PrincipalArn, KeyPolicyError> {
        let (principal, resource) =
            Self::split(text).ok_or_else(|| KeyPolicyError::NotARoleArn(text.to_owned()))?;
        match resource.strip_prefix("role/") {
            Some(name) if !name.is_empty() && !name.ends_with('/') => Ok(principal),
            _ => Err(KeyPolicyError::NotARoleArn(text.to_owned())),
        }
    }

    /// A key-policy administrator: a role ARN or the account root.
    fn admin(text: &str) -> Result<PrincipalArn, KeyPolicyError> {
        let not_admin = || KeyPolicyError::NotAnAdminArn(text.to_owned());
        match Self::split(text) {
            Some((principal, "root")) => Ok(principal),
            Some(_) => Self::role(text).map_err(|_| not_admin()),
            None => Err(not_admin()),
        }
    }

    fn split(text: &str) -> Option<(PrincipalArn, &str)> {
        let mut parts = text.splitn(6, ':');
        let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let valid_account = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
        if partition.is_empty() || !valid_account {
            return None;
        }
        Some((
            PrincipalArn {
                arn: text.to_owned(),
                partition: partition.to_owned(),
                account: account.to_owned(),
            },
            resource,
        ))
    }
}

/// Who may do what with the signing keys rotate creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAccess {
    admin: PrincipalArn,
    signers: Vec<PrincipalArn>,
    /// Multi-region: the other regions' rotate roles, which administer the key as `admin`
    /// does once a fail-over makes one of them home.
    peer_admins: Vec<PrincipalArn>,
    /// Break-glass principals that keep `kms:PutKeyPolicy` and `kms:CreateGrant`
    /// (`KEY_POLICY_ADMIN_ARNS`); empty: the account root user.
    policy_admins: Vec<PrincipalArn>,
}

impl KeyAccess {
    /// `admin_role_arn` is the role that calls `CreateKey` (the rotate function's role);
    /// `signer_role_arns` may sign (the sign function's role). All in one account.
    pub fn new(admin_role_arn: &str, signer_role_arns: &[String]) -> Result<KeyAccess, KeyPolicyError> {
        let admin = PrincipalArn::role(admin_role_arn)?;
        if signer_role_arns.is_empty() {
            return Err(KeyPolicyError::NoSigner);
        }
        let signers =
            signer_role_arns.iter().map(|arn| PrincipalArn::role(arn)).collect::<Result<Vec<_>, _>>()?;
        let access = KeyAccess { admin, signers, peer_admins: Vec::new(), policy_admins: Vec::new() };
        access.same_account(&access.signers)?;
        access.no_signer_administers()?;
        Ok(access)
    }

    fn same_account(&self, others: &[PrincipalArn]) -> Result<(), KeyPolicyError> {
        match others.iter().find(|o| o.account != self.admin.account || o.partition != self.admin.partition) {
            Some(other) => Err(KeyPolicyError::OtherAccount {
                role: other.arn.clone(),
                found: other.account.clone(),
                expected: self.admin.account.clone(),
            }),
            None => Ok(()),
        }
    }

    fn no_signer_administers(&self) -> Result<(), KeyPolicyError> {
        let admins = || std::iter::once(&self.admin).chain(&self.peer_admins).chain(&self.policy_admins);
        match self.signers.iter().find(|s| admins().any(|a| a.arn == s.arn)) {
            Some(both) => Err(KeyPolicyError::SignerAdministers(both.arn.clone())),
            None => Ok(()),
        }
    }

    /// Multi-region: let the other regions' rotate roles administer each key too (disable it,
    /// schedule its deletion), so that after a fail-over the new home retires the keys the
    /// old home created. Same account as the admin role. They never sign, replicate nor
    /// change the policy.
    pub fn with_peer_admins(mut self, peer_role_arns: &[String]) -> Result<KeyAccess, KeyPolicyError> {
        let peers =
            peer_role_arns.iter().map(|arn| PrincipalArn::role(arn)).collect::<Result<Vec<_>, _>>()?;
        self.same_account(&peers)?;
        self.peer_admins = peers;
        self.no_signer_administers()?;
        Ok(self)
    }

    /// The break-glass principals that keep `kms:PutKeyPolicy` and `kms:CreateGrant` on
    /// every key (`KEY_POLICY_ADMIN_ARNS`: roles, or the account root). None given: the
    /// account root user alone.
    pub fn with_policy_admins(mut self, admin_arns: &[String]) -> Result<KeyAccess, KeyPolicyError> {
        let admins = admin_arns.iter().map(|arn| PrincipalArn::admin(arn)).collect::<Result<Vec<_>, _>>()?;
        self.same_account(&admins)?;
        self.policy_admins = admins;
        self.no_signer_administers()?;
        Ok(self)
    }

    /// The account root principal, `arn:<partition>:iam::<account>:root`.
    fn account_root(&self) -> String {
        format!("arn:{}:iam::{}:root", self.admin.partition, self.admin.account)
    }

    /// The key policy document for a key that signs with `alg`.
    pub fn policy(&self, alg: SigningAlg) -> Value {
        let arns = |roles: &[&PrincipalArn]| roles.iter().map(|r| r.arn.clone()).collect::<Vec<_>>();
        let signers: Vec<&PrincipalArn> = self.signers.iter().collect();
        let rotate_roles: Vec<&PrincipalArn> =
            std::iter::once(&self.admin).chain(&self.peer_admins).collect();
        let root = self.account_root();
        let policy_admins = if self.policy_admins.is_empty() {
            vec![root.clone()]
        } else {
            self.policy_admins.iter().map(|a| a.arn.clone()).collect()
        };
        // Deny `actions` to every principal whose ARN (a role session's is its role's) is
        // not one of `allowed`: explicit denies win over any allow, IAM's included.
        let deny_all_but = |sid: &str, actions: Value, allowed: Vec<String>| {
            json!({
                "Sid": sid,
                "Effect": "Deny",
                "Principal": { "AWS": "*" },
                "Action": actions,
                "Resource": "*",
                "Condition": { "ArnNotEquals": { "aws:PrincipalArn": allowed } },
            })
        };
        json!({
            "Version": "2012-10-17",
            "Id": "kms-jwt-signing-key",
            "Statement": [
                {
                    "Sid": "AccountRootRecovery",
                    "Effect": "Allow",
                    "Principal": { "AWS": root },
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    "Sid": "RotateAdministersThisKey",
                    "Effect": "Allow",
                    "Principal": { "AWS": arns(&rotate_roles) },
                    "Action": ADMIN_ACTIONS,
                    "Resource": "*",
                },
                {
                    // Meaningful for multi-Region keys only (KMS replicates no other kind);
                    // the Regions are limited by the rotate role's IAM policy.
                    "Sid": "RotateReplicatesThisKey",
                    "Effect": "Allow",
                    "Principal": { "AWS": self.admin.arn },
                    "Action": "kms:ReplicateKey",
                    "Resource": "*",
                },
                {
                    "Sid": "SignOnlyWithTheKeyringAlgorithm",
                    "Effect": "Allow",
                    "Principal": { "AWS": arns(&signers) },
                    "Action": "kms:Sign",
                    "Resource": "*",
                    "Condition": {
                        "StringEquals": { "kms:SigningAlgorithm": alg.kms_signing_algorithm() },
                    },
                },
                deny_all_but("NobodyElseSigns", json!("kms:Sign"), arns(&signers)),
                deny_all_but("OnlyKeyPolicyAdministratorsChangeAccess", json!(ACCESS_CHANGING_ACTIONS), policy_admins),
                deny_all_but("OnlyTheCreatorReplicates", json!("kms:ReplicateKey"), vec![self.admin.arn.clone()]),
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
    const PEER: &str = "arn:aws:iam::123456789012:role/kms-jwt-rotate-eu";

    fn access() -> KeyAccess {
        KeyAccess::new(ROTATE, &[SIGN.to_owned()]).unwrap()
    }

    fn statement<'a>(policy: &'a Value, sid: &str) -> &'a Value {
        policy["Statement"].as_array().unwrap().iter().find(|s| s["Sid"] == sid).unwrap()
    }

    // What each principal may do is evaluated, as AWS does, by the twins' authorizer
    // (`crate::authz`, tests in `tests/tests/twins/authorization.rs`); these pin the document's shape.

    #[test]
    fn denies_name_exactly_the_principals_allowed_to_mint_or_change_access() {
        let policy = access().with_peer_admins(&[PEER.to_owned()]).unwrap().policy(SigningAlg::RS256);
        let allowed =
            |sid: &str| statement(&policy, sid)["Condition"]["ArnNotEquals"]["aws:PrincipalArn"].clone();
        assert_eq!(allowed("NobodyElseSigns"), json!([SIGN]));
        assert_eq!(allowed("OnlyTheCreatorReplicates"), json!([ROTATE]));
        assert_eq!(
            allowed("OnlyKeyPolicyAdministratorsChangeAccess"),
            json!(["arn:aws:iam::123456789012:root"])
        );
        for sid in ["NobodyElseSigns", "OnlyTheCreatorReplicates", "OnlyKeyPolicyAdministratorsChangeAccess"]
        {
            assert_eq!(statement(&policy, sid)["Effect"], "Deny");
            assert_eq!(statement(&policy, sid)["Principal"], json!({"AWS": "*"}));
        }
        assert_eq!(statement(&policy, "RotateAdministersThisKey")["Principal"]["AWS"], json!([ROTATE, PEER]));
        assert_eq!(statement(&policy, "RotateReplicatesThisKey")["Principal"]["AWS"], json!(ROTATE));
        assert_eq!(
            statement(&policy, "SignOnlyWithTheKeyringAlgorithm")["Condition"]["StringEquals"]
                ["kms:SigningAlgorithm"],
            "RSASSA_PKCS1_V1_5_SHA_256"
        );
        let conditions: String =
            policy["Statement"].as_array().unwrap().iter().map(|s| s["Condition"].to_string()).collect();
        assert!(!conditions.contains("ResourceTag"), "access never depends on a tag");
        let text = policy.to_string();
        assert!(
            !text.contains("kms:ReplicaRegion"),
            "Regions live in IAM, not in a policy fixed at creation"
        );
    }

    #[test]
    fn break_glass_administrators_replace_the_root_user() {
        let admins = ["arn:aws:iam::123456789012:role/security-break-glass".to_owned()];
        let policy = access().with_policy_admins(&admins).unwrap().policy(SigningAlg::ES256);
        assert_eq!(
            statement(&policy, "OnlyKeyPolicyAdministratorsChangeAccess")["Condition"]["ArnNotEquals"]
                ["aws:PrincipalArn"],
            json!(admins)
        );
        assert!(access().with_policy_admins(&["arn:aws:iam::123456789012:root".to_owned()]).is_ok());
        for bad in ["arn:aws:iam::123456789012:user/alice", "root", "arn:aws:iam::999999999999:root"] {
            assert!(access().with_policy_admins(&[bad.to_owned()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_signer_never_administers() {
        assert_eq!(
            KeyAccess::new(ROTATE, &[ROTATE.to_owned()]),
            Err(KeyPolicyError::SignerAdministers(ROTATE.to_owned()))
        );
        assert!(access().with_peer_admins(&[SIGN.to_owned()]).is_err());
        assert!(access().with_policy_admins(&[SIGN.to_owned()]).is_err());
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
        assert_eq!(statement(&policy, "SignOnlyWithTheKeyringAlgorithm")["Principal"]["AWS"], json!(signers));
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
            "arn:aws:iam::123456789012:root",
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
        assert!(matches!(
            access().with_peer_admins(&["arn:aws:iam::999999999999:role/kms-jwt-rotate".to_owned()]),
            Err(KeyPolicyError::OtherAccount { .. })
        ));
    }
}

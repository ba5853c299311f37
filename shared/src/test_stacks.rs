//! The test stacks the twins authorize against (`test-util` only): `infra/template.yaml`
//! deployed, on paper, in account `000000000000`, every intrinsic resolved by
//! `infra/render_test_stacks.py` into `shared/fixtures/test-stacks.json` (which
//! `scripts/lint-infra.sh` re-renders and compares, so it cannot drift from the template).
//!
//! Each role's IAM policies are the template's, and rotate's key policy is built from the
//! rotate function's environment as the template sets it, by the same configuration code the
//! function runs. So a twin call is allowed exactly when the deployed stack would allow it.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

use crate::config::RotateConfig;
use crate::key_policy::KeyAccess;

const RENDERED: &str = include_str!("../fixtures/test-stacks.json");

/// One role of a stack: its ARN, trust policy and every IAM policy attached to it.
#[derive(Debug, Clone, Deserialize)]
pub struct Role {
    /// The role's ARN.
    pub arn: String,
    /// Who may assume it.
    pub trust_policy: Value,
    /// Its inline policies and the `AWS::IAM::RolePolicy` resources attached to it.
    pub policies: Vec<NamedPolicy>,
}

/// An IAM policy document with its name.
#[derive(Debug, Clone, Deserialize)]
pub struct NamedPolicy {
    /// `PolicyName`.
    pub name: String,
    /// The resolved document.
    pub document: Value,
}

/// One function of a stack.
#[derive(Debug, Clone, Deserialize)]
pub struct Function {
    /// The function's ARN.
    pub arn: String,
    /// The logical id of its role in [`Stack::roles`].
    pub role: String,
    /// Its environment variables, resolved.
    pub environment: BTreeMap<String, String>,
}

/// One Region's stack.
#[derive(Debug, Clone, Deserialize)]
pub struct Stack {
    /// The stack's Region.
    pub region: String,
    /// Roles by logical id (`RotateRole`, `SignRole`, `JwksRole`, `SchedulerRole`).
    pub roles: BTreeMap<String, Role>,
    /// Functions by logical id (`RotateFunction`, `SignFunction`, `JwksFunction`).
    pub functions: BTreeMap<String, Function>,
    /// The keyring secret's ARN in this Region.
    pub keyring_secret_arn: String,
    /// The rotate schedule's group.
    pub schedule_group_arn: String,
    /// Where the security alerts go.
    pub security_topic_arn: String,
}

/// A deployment: one stack per Region, and the home Region.
#[derive(Debug, Clone, Deserialize)]
pub struct Deployment {
    /// Where rotate writes.
    pub home: String,
    /// Stacks by Region.
    pub stacks: BTreeMap<String, Stack>,
}

#[derive(Deserialize)]
struct Rendered {
    account: String,
    deployments: BTreeMap<String, Deployment>,
}

fn rendered() -> &'static Rendered {
    static PARSED: OnceLock<Rendered> = OnceLock::new();
    PARSED.get_or_init(|| match serde_json::from_str(RENDERED) {
        Ok(rendered) => rendered,
        // The fixture is checked in and checked by lint-infra: unreadable is a build defect.
        #[allow(clippy::panic)]
        Err(e) => panic!("shared/fixtures/test-stacks.json: {e}"),
    })
}

fn deployment(name: &str) -> Deployment {
    match rendered().deployments.get(name) {
        Some(deployment) => deployment.clone(),
        #[allow(clippy::panic)]
        None => panic!("shared/fixtures/test-stacks.json has no deployment {name}"),
    }
}

/// The keyring of the single-Region test stack, as its rotate is configured
/// (`KEYRING_SECRET_ID`): the name every key is tagged with, which rotate's IAM checks.
pub fn single_region_keyring() -> String {
    Deployment::single_region().keyring_name()
}

/// The account the test stacks are deployed in.
pub fn account() -> &'static str {
    &rendered().account
}

/// The account's root principal: the root user, `arn:aws:iam::000000000000:root`.
pub fn account_root() -> String {
    format!("arn:aws:iam::{}:root", account())
}

impl Deployment {
    /// The default stack in `us-east-1`.
    pub fn single_region() -> Deployment {
        deployment("single_region")
    }

    /// Three stacks: `us-east-1` (home), `eu-west-1`, `ap-southeast-2`.
    pub fn multi_region() -> Deployment {
        deployment("multi_region")
    }

    /// The keyring's id as the home stack's rotate is configured (`KEYRING_SECRET_ID`).
    pub fn keyring_name(&self) -> String {
        self.stack(&self.home)
            .and_then(|stack| stack.functions.get("RotateFunction"))
            .and_then(|rotate| rotate.environment.get("KEYRING_SECRET_ID").cloned())
            .unwrap_or_default()
    }

    /// The stack of `region`, if the deployment has one.
    pub fn stack(&self, region: &str) -> Option<&Stack> {
        self.stacks.get(region)
    }

    /// Every IAM policy attached to `principal` (a role ARN), in whichever stack it is. None
    /// for any other principal (the root user needs none; a stranger has none).
    pub fn identity_policies(&self, principal: &str) -> Vec<Value> {
        self.stacks
            .values()
            .flat_map(|stack| stack.roles.values())
            .filter(|role| role.arn == principal)
            .flat_map(|role| role.policies.iter().map(|p| p.document.clone()))
            .collect()
    }

    /// The same deployment with the `KeySpec` parameter set to `key_spec` in every stack, as
    /// a stack update would: the rendered fixture uses the template's default, and rotate's
    /// IAM lets it create keys of the deployed spec only.
    pub fn with_key_spec(mut self, key_spec: &str) -> Deployment {
        for role in self.stacks.values_mut().flat_map(|stack| stack.roles.values_mut()) {
            for policy in &mut role.policies {
                set_condition_values(&mut policy.document, "kms:KeySpec", key_spec);
            }
        }
        self
    }

    /// The same deployment with the `HomeRegion` and `ReplicaRegions` parameters set in every
    /// stack, as a stack update does (adding a Region, or a fail-over): rotate's configuration
    /// (`HOME_REGION`, `REPLICA_REGIONS`) and the IAM statement that names the Regions keys
    /// may be replicated to (`kms:ReplicaRegion`).
    pub fn with_regions(mut self, home: &str, replicas: &[&str]) -> Deployment {
        let listed = Value::from(replicas.iter().map(|r| Value::from(*r)).collect::<Vec<_>>());
        self.home = home.to_owned();
        for stack in self.stacks.values_mut() {
            for policy in stack.roles.values_mut().flat_map(|role| role.policies.iter_mut()) {
                set_condition_values(&mut policy.document, "kms:ReplicaRegion", listed.clone());
            }
            if let Some(rotate) = stack.functions.get_mut("RotateFunction") {
                rotate.environment.insert("HOME_REGION".into(), home.to_owned());
                rotate.environment.insert("REPLICA_REGIONS".into(), replicas.join(","));
            }
        }
        self
    }
}

/// Replace the value of every condition on `key` (the parameter a stack update changes).
fn set_condition_values(document: &mut Value, key: &str, value: impl Into<Value>) {
    let value = value.into();
    let statements = match document.get_mut("Statement") {
        Some(Value::Array(statements)) => statements,
        _ => return,
    };
    for operators in
        statements.iter_mut().filter_map(|s| s.get_mut("Condition")).filter_map(Value::as_object_mut)
    {
        for conditions in operators.values_mut().filter_map(Value::as_object_mut) {
            if let Some(old) = conditions.get_mut(key) {
                *old = value.clone();
            }
        }
    }
}

impl Stack {
    fn role_arn(&self, logical_id: &str) -> &str {
        self.roles.get(logical_id).map_or("", |role| role.arn.as_str())
    }

    /// The rotate function's role.
    pub fn rotate_role(&self) -> &str {
        self.role_arn("RotateRole")
    }

    /// The sign function's role.
    pub fn sign_role(&self) -> &str {
        self.role_arn("SignRole")
    }

    /// The jwks function's role.
    pub fn jwks_role(&self) -> &str {
        self.role_arn("JwksRole")
    }

    /// The role EventBridge Scheduler invokes rotate with.
    pub fn scheduler_role(&self) -> &str {
        self.role_arn("SchedulerRole")
    }

    /// The function `logical_id`'s ARN.
    pub fn function_arn(&self, logical_id: &str) -> &str {
        self.functions.get(logical_id).map_or("", |f| f.arn.as_str())
    }

    /// rotate's configuration as the template sets its environment (and Lambda its Region).
    pub fn rotate_config(&self) -> Result<RotateConfig, crate::config::ConfigError> {
        let env = self.functions.get("RotateFunction").map(|f| f.environment.clone()).unwrap_or_default();
        RotateConfig::from_lookup(|name| match name {
            "AWS_REGION" => Some(self.region.clone()),
            _ => env.get(name).cloned(),
        })
    }

    /// Who may do what with the keys this stack's rotate creates: from its configuration. A
    /// configuration rotate would refuse to start with is a defect of the test.
    pub fn key_access(&self) -> Option<KeyAccess> {
        match self.rotate_config() {
            Ok(config) => config.key_access,
            #[allow(clippy::panic)]
            Err(e) => panic!("the {} stack's rotate would not start: {e}", self.region),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rendered_stacks_configure_rotate_and_name_every_role() {
        for deployment in [Deployment::single_region(), Deployment::multi_region()] {
            for (region, stack) in &deployment.stacks {
                assert_eq!(&stack.region, region);
                for role in
                    [stack.rotate_role(), stack.sign_role(), stack.jwks_role(), stack.scheduler_role()]
                {
                    assert!(role.starts_with("arn:aws:iam::000000000000:role/"), "{role}");
                    assert!(!deployment.identity_policies(role).is_empty(), "{role}");
                }
                let config = stack.rotate_config().unwrap();
                assert!(config.key_access.is_some());
                assert_eq!(config.is_multi_region(), deployment.stacks.len() > 1);
            }
        }
    }

    #[test]
    fn a_key_spec_update_reaches_every_create_key_condition() {
        let text = |d: &Deployment| {
            serde_json::to_string(&d.identity_policies(d.stacks["us-east-1"].rotate_role())).unwrap()
        };
        let updated = Deployment::single_region().with_key_spec("ECC_NIST_P256");
        assert!(text(&updated).contains("\"kms:KeySpec\":\"ECC_NIST_P256\""), "{}", text(&updated));
        assert!(!text(&updated).contains("RSA_2048"));
    }
}

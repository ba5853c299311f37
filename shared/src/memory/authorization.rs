//! What the twins authorize against: the test stacks' IAM policies and each key's policy.

use super::*;

/// KMS's default key policy (`CreateKey` without `Policy`): the account, through IAM.
pub(super) fn default_key_policy() -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Id": "key-default-1",
        "Statement": [{
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": { "AWS": test_stacks::account_root() },
            "Action": "kms:*",
            "Resource": "*",
        }],
    })
}

/// What the twins authorize calls against: a deployment of the template (its roles' IAM
/// policies), the key spec its stacks were deployed with, and what was refused.
pub(super) struct Authorization {
    pub(super) deployment: Deployment,
    /// The template's `KeySpec` parameter as deployed: set by the first `CreateKey` (the test
    /// deployed the stack for the algorithm it rotates with), changed by
    /// [`MemoryKms::redeploy_for`] as a stack update would.
    pub(super) key_spec: Option<String>,
    /// Every refusal: "caller action resource: decision".
    pub(super) denials: Vec<String>,
    /// IAM policies of principals outside the stacks (an administrator, a PowerUser).
    pub(super) attached: Vec<(String, serde_json::Value)>,
}

impl Default for Authorization {
    fn default() -> Self {
        Authorization {
            deployment: Deployment::single_region(),
            key_spec: None,
            denials: Vec::new(),
            attached: Vec::new(),
        }
    }
}

impl Authorization {
    /// The deployment's stack in `region`, else the home's.
    pub(super) fn stack(&self, region: &str) -> Option<&test_stacks::Stack> {
        self.deployment.stack(region).or_else(|| self.deployment.stack(&self.deployment.home))
    }

    pub(super) fn identity_policies(&self, principal: &str) -> Vec<serde_json::Value> {
        if principal == test_stacks::account_root() {
            // The root user: every permission, which no IAM policy can narrow.
            return vec![serde_json::json!({"Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})];
        }
        let mut policies = self.deployment.identity_policies(principal);
        policies.extend(self.attached.iter().filter(|(p, _)| p == principal).map(|(_, doc)| doc.clone()));
        policies
    }
}

/// Authorize `request` (on a key with `key_policy`, or IAM alone) against `authorization`.
/// A refusal is `Err` with the decision's text; a policy the evaluator does not understand
/// fails the test: it must never allow, nor pass for a refusal.
pub(super) fn decide(
    authorization: &Mutex<Authorization>,
    request: &Request,
    key_policy: Option<&serde_json::Value>,
) -> Result<(), String> {
    let mut authorization = lock(authorization);
    let identity = authorization.identity_policies(&request.principal);
    let decision = if request.action.starts_with("kms:") {
        authz::authorize_kms(request, key_policy, &identity)
    } else {
        authz::authorize_identity(request, &identity)
    };
    match decision {
        Ok(Decision::Allow) => Ok(()),
        Ok(refused) => {
            let line = format!("{} {} {}: {refused}", request.principal, request.action, request.resource);
            authorization.denials.push(line.clone());
            Err(line)
        }
        // A test twin: an unknown operator or condition key stops the test here.
        #[allow(clippy::panic)]
        Err(e) => panic!("authorization of {} {} cannot be evaluated: {e}", request.action, request.resource),
    }
}

/// The request-context keys of tags sent with a request.
pub(super) fn with_request_tags(mut request: Request, tags: &[(String, String)]) -> Request {
    for (key, value) in tags {
        request = request.with(format!("aws:RequestTag/{key}"), value.as_str());
    }
    request.with("aws:TagKeys", tags.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>())
}

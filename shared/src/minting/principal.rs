//! Who is asking, as far as AWS attests it, and how rule patterns match them.
//!
//! An IAM-authorized API Gateway request names its caller's ARN (`userArn`). For a role
//! session it is the session ARN, `arn:aws:sts::ACCOUNT:assumed-role/ROLE-NAME/SESSION`, which
//! carries the role's name but not its path [IAMID]. A role's name is unique in its account
//! whatever its path, so account and name identify the role: a session is matched as the role
//! ARN without a path, `arn:aws:iam::ACCOUNT:role/ROLE-NAME`. Rule patterns therefore name
//! roles without their path (validation refuses `role/some/path/NAME`, which no session could
//! match). A pattern may also name sessions directly (`...:assumed-role/ROLE/*`), and any
//! other principal (IAM users, the root) by its own ARN.
//!
//! [IAMID]: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-arns

use super::glob::glob_match;

/// The caller of one invocation, as AWS attests it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An IAM principal authenticated by API Gateway (SigV4, IAM authorization), by ARN.
    Iam(PrincipalArn),
    /// A direct Lambda invocation: Lambda tells the function nothing about the invoker, so
    /// there is no identity to match (CloudTrail's data events name it, after the fact).
    DirectInvoke,
}

/// An IAM principal's ARN, with the role it acts as when it is a role session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalArn {
    arn: String,
    role: Option<String>,
}

impl PrincipalArn {
    /// The principal named by `arn` (any text: one that is not an ARN simply matches no
    /// pattern but `*`).
    pub fn new(arn: impl Into<String>) -> Self {
        let arn = arn.into();
        let role = session_role_arn(&arn);
        PrincipalArn { arn, role }
    }

    /// The ARN as attested.
    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// Who this principal is as a token subject: the role ARN (no path) for a role session,
    /// so that every session of a role gets the same `sub`; the ARN itself otherwise.
    pub fn subject(&self) -> &str {
        self.role.as_deref().unwrap_or(&self.arn)
    }

    /// True when `pattern` names this principal: its own ARN, or for a session its role.
    pub fn matches(&self, pattern: &str) -> bool {
        glob_match(pattern, &self.arn) || self.role.as_deref().is_some_and(|role| glob_match(pattern, role))
    }
}

/// `arn:P:iam::ACCOUNT:role/NAME` for `arn:P:sts::ACCOUNT:assumed-role/NAME/SESSION`.
fn session_role_arn(arn: &str) -> Option<String> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("sts"), Some(""), Some(account), Some(resource)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let (name, session) = resource.strip_prefix("assumed-role/")?.split_once('/')?;
    if partition.is_empty() || account.is_empty() || name.is_empty() || session.is_empty() {
        return None;
    }
    Some(format!("arn:{partition}:iam::{account}:role/{name}"))
}

/// Why a caller pattern can never do what it seems to say, if it cannot.
pub(super) fn pattern_problem(pattern: &str) -> Option<String> {
    if pattern == "*" {
        return None;
    }
    if !pattern.starts_with("arn:") {
        return Some(format!("caller pattern {pattern:?} is neither \"*\" nor an ARN pattern"));
    }
    let resource = pattern.splitn(6, ':').nth(5).unwrap_or_default();
    if pattern.split(':').nth(2) == Some("iam") {
        if let Some(name) = resource.strip_prefix("role/") {
            if name.contains('/') {
                return Some(format!(
                    "caller pattern {pattern:?} names a role path; role sessions carry no path, write role/NAME"
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_session_matches_its_role_without_the_path() {
        let session = PrincipalArn::new("arn:aws:sts::123456789012:assumed-role/orders-api/i-0abc");
        assert_eq!(session.subject(), "arn:aws:iam::123456789012:role/orders-api");
        assert!(session.matches("arn:aws:iam::123456789012:role/orders-api"));
        assert!(session.matches("arn:aws:iam::123456789012:role/orders-*"));
        assert!(session.matches("arn:aws:sts::123456789012:assumed-role/orders-api/*"));
        assert!(!session.matches("arn:aws:iam::123456789012:role/billing"));
        assert!(!session.matches("arn:aws:iam::210987654321:role/orders-api"));
        assert!(!session.matches("arn:aws:sts::123456789012:assumed-role/orders-api/other"));

        let user = PrincipalArn::new("arn:aws:iam::123456789012:user/ops/alice");
        assert_eq!(user.subject(), user.arn());
        assert!(user.matches("arn:aws:iam::123456789012:user/ops/*"));
        assert!(!user.matches("arn:aws:iam::123456789012:role/*"));

        let china = PrincipalArn::new("arn:aws-cn:sts::123456789012:assumed-role/r/s");
        assert_eq!(china.subject(), "arn:aws-cn:iam::123456789012:role/r");
    }

    #[test]
    fn text_that_is_not_a_session_arn_is_taken_as_is() {
        for arn in [
            "arn:aws:sts::123456789012:assumed-role/no-session",
            "arn:aws:sts::123456789012:assumed-role//s",
            "arn:aws:sts::123456789012:federated-user/bob",
            "arn:aws:sts:eu-west-1:123456789012:assumed-role/r/s",
            "not an arn",
        ] {
            let principal = PrincipalArn::new(arn);
            assert_eq!(principal.subject(), arn);
        }
    }

    #[test]
    fn pattern_problems_are_found() {
        assert_eq!(pattern_problem("*"), None);
        assert_eq!(pattern_problem("arn:aws:iam::1:role/x-*"), None);
        assert_eq!(pattern_problem("arn:aws:iam::1:user/path/x"), None);
        assert!(pattern_problem("orders").is_some());
        assert!(pattern_problem("arn:aws:iam::1:role/team/x").is_some());
    }

    proptest! {
        #[test]
        fn a_role_pattern_matches_every_session_of_that_role_only(
            account in "[0-9]{12}", name in "[A-Za-z0-9+=,.@_-]{1,20}", other in "[A-Za-z0-9+=,.@_-]{1,20}",
            session in "[A-Za-z0-9=,.@_-]{2,20}",
        ) {
            let principal = PrincipalArn::new(format!("arn:aws:sts::{account}:assumed-role/{name}/{session}"));
            let pattern = format!("arn:aws:iam::{account}:role/{other}");
            prop_assert_eq!(principal.matches(&pattern), name == other);
        }
    }
}

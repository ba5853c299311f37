//! Identity exchange: a workload asks for a token about itself (`POST /token`), in the shape of
//! STS `GetWebIdentityToken` [GWIT]: `Audience` (1 to 10, each 1 to 1000 characters),
//! `DurationSeconds` (60 to 3600, default 300), `SigningAlgorithm`. The answer is
//! `{"WebIdentityToken", "Expiration"}`. The request becomes an ordinary sign request whose
//! `sub` is the caller's own identity, so the minting policy still decides (its rule must
//! admit that `sub`, the audiences and the lifetime). Differences: docs/minting.md.
//!
//! [GWIT]: https://docs.aws.amazon.com/STS/latest/APIReference/API_GetWebIdentityToken.html

use serde::Deserialize;
use serde_json::{json, Value};

use super::{SignError, SignedToken};
use crate::minting::PrincipalArn;
use crate::SigningAlg;

/// Most audiences, and longest audience, `GetWebIdentityToken` takes.
const MAX_AUDIENCES: usize = 10;
const MAX_AUDIENCE_CHARS: usize = 1_000;
/// `DurationSeconds`: its range and default in `GetWebIdentityToken`.
const DURATION_RANGE: std::ops::RangeInclusive<u64> = 60..=3_600;
const DEFAULT_DURATION: u64 = 300;

/// A `POST /token` body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct IdentityTokenRequest {
    /// The token's `aud`.
    pub audience: Vec<String>,
    /// The token's lifetime.
    #[serde(default)]
    pub duration_seconds: Option<u64>,
    /// The algorithm asked for: it must be the current key's.
    #[serde(default)]
    pub signing_algorithm: Option<String>,
}

impl IdentityTokenRequest {
    /// Read and check a body; `InvalidRequest` names what is wrong.
    pub fn parse(text: &str) -> Result<Self, SignError> {
        let request: IdentityTokenRequest =
            serde_json::from_str(text).map_err(|e| SignError::InvalidRequest(e.to_string()))?;
        let audiences_ok = (1..=MAX_AUDIENCES).contains(&request.audience.len())
            && request.audience.iter().all(|a| (1..=MAX_AUDIENCE_CHARS).contains(&a.chars().count()));
        if !audiences_ok {
            return Err(SignError::InvalidRequest(format!(
                "Audience holds 1 to {MAX_AUDIENCES} values of 1 to {MAX_AUDIENCE_CHARS} characters"
            )));
        }
        if request.duration_seconds.is_some_and(|d| !DURATION_RANGE.contains(&d)) {
            return Err(SignError::InvalidRequest("DurationSeconds must be between 60 and 3600".into()));
        }
        Ok(request)
    }

    /// Refuse an algorithm other than `current`'s (the keyring signs with one key at a time).
    pub fn check_algorithm(&self, current: SigningAlg) -> Result<(), SignError> {
        match &self.signing_algorithm {
            Some(asked) if asked.as_str() != current.to_string() => Err(SignError::InvalidRequest(format!(
                "SigningAlgorithm {asked:?} is not available; the current key signs {current}"
            ))),
            _ => Ok(()),
        }
    }

    /// The sign request this stands for: no claims of the caller's, `sub` its own identity.
    pub fn sign_request(&self, caller: &PrincipalArn) -> String {
        json!({
            "claims": {},
            "subject": caller.subject(),
            "audience": self.audience,
            "ttl_seconds": self.duration_seconds.unwrap_or(DEFAULT_DURATION),
        })
        .to_string()
    }
}

/// The answer: `{"WebIdentityToken", "Expiration"}` (RFC 3339, UTC), as STS gives them.
pub fn identity_token_answer(token: SignedToken) -> Value {
    let expires =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(token.expires_at.max(0).unsigned_abs());
    json!({
        "WebIdentityToken": token.token,
        "Expiration": humantime::format_rfc3339_seconds(expires).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_like_get_web_identity_token() {
        let ok = IdentityTokenRequest::parse(r#"{"Audience": ["https://a"], "SigningAlgorithm": "ES256"}"#)
            .unwrap();
        let caller = PrincipalArn::new("arn:aws:sts::123456789012:assumed-role/billing/s");
        let request: Value = serde_json::from_str(&ok.sign_request(&caller)).unwrap();
        assert_eq!(
            request,
            json!({"claims": {}, "subject": "arn:aws:iam::123456789012:role/billing",
                   "audience": ["https://a"], "ttl_seconds": 300})
        );
        assert!(ok.check_algorithm(SigningAlg::ES256).is_ok());
        assert_eq!(ok.check_algorithm(SigningAlg::RS256).unwrap_err().code(), "InvalidRequest");
        for bad in [
            r#"{"Audience": []}"#,
            r#"{"Audience": [""]}"#,
            r#"{"Audience": ["a","a","a","a","a","a","a","a","a","a","a"]}"#,
            r#"{"Audience": ["a"], "DurationSeconds": 59}"#,
            r#"{"Audience": ["a"], "DurationSeconds": 3601}"#,
            r#"{"Audience": ["a"], "Tags": []}"#,
            r#"{"DurationSeconds": 60}"#,
            "[]",
        ] {
            assert_eq!(IdentityTokenRequest::parse(bad).unwrap_err().code(), "InvalidRequest", "{bad}");
        }
        let long = format!(r#"{{"Audience": ["{}"]}}"#, "a".repeat(MAX_AUDIENCE_CHARS + 1));
        assert!(IdentityTokenRequest::parse(&long).is_err());
    }

    #[test]
    fn the_answer_has_the_sts_shape() {
        let token = SignedToken { token: "h.p.s".into(), kid: "k".into(), expires_at: 1_795_608_300 };
        assert_eq!(
            identity_token_answer(token),
            json!({"WebIdentityToken": "h.p.s", "Expiration": "2026-11-25T12:05:00Z"})
        );
    }
}

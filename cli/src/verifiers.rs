//! What each AWS verifier accepts and how long it keeps a key, from the verifier-compatibility
//! tables of docs/verifiers.md ("Verifier compatibility", "How a removed key stays accepted").
//! The published-key and byte limits are the domain's (`kms_jwt::rotate`), not copied here.

use kms_jwt::rotate::{DEFAULT_MAX_PUBLISHED_KEYS, MAX_JWKS_BYTES};

/// A verifier the command line reasons about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verifier {
    HttpApi,
    RestApi,
    Alb,
    AwsJwtVerify,
}

impl Verifier {
    pub const ALL: [Verifier; 4] =
        [Verifier::HttpApi, Verifier::RestApi, Verifier::Alb, Verifier::AwsJwtVerify];

    pub fn name(self) -> &'static str {
        match self {
            Verifier::HttpApi => "API Gateway HTTP API JWT authorizer",
            Verifier::RestApi => "API Gateway REST API JWT authorizer",
            Verifier::Alb => "ALB JWT verification",
            Verifier::AwsJwtVerify => "aws-jwt-verify",
        }
    }

    /// Whether it accepts tokens of `alg` (the JWS name).
    pub fn accepts_alg(self, alg: &str) -> bool {
        match self {
            // "only RSA-based algorithms"
            Verifier::HttpApi => matches!(alg, "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512"),
            Verifier::RestApi => matches!(alg, "RS256" | "RS384" | "RS512" | "ES256" | "ES384" | "ES512"),
            Verifier::Alb => alg == "RS256",
            // src/jwt-verifier.ts: no PS*, ES256K, Ed25519 (by that name), ML-DSA.
            Verifier::AwsJwtVerify => {
                matches!(alg, "RS256" | "RS384" | "RS512" | "ES256" | "ES384" | "ES512" | "EdDSA")
            }
        }
    }

    /// Why it would refuse a JWKS of `keys` keys and `bytes` bytes fetched from `jwks_uri`,
    /// if it would.
    pub fn jwks_problem(self, keys: usize, bytes: usize, jwks_uri: &str) -> Option<String> {
        let https = jwks_uri.starts_with("https://");
        match self {
            Verifier::Alb if keys > DEFAULT_MAX_PUBLISHED_KEYS => {
                Some(format!("the JWKS holds {keys} keys; ALB accepts at most {DEFAULT_MAX_PUBLISHED_KEYS}"))
            }
            Verifier::Alb | Verifier::HttpApi if bytes > MAX_JWKS_BYTES => {
                Some(format!("the JWKS is {bytes} bytes; at most {MAX_JWKS_BYTES} are accepted"))
            }
            Verifier::Alb if jwks_uri.len() > 256 => {
                Some("the JWKS URL is longer than 256 characters".into())
            }
            Verifier::Alb | Verifier::HttpApi | Verifier::RestApi if !https => {
                Some(format!("{jwks_uri} is not https: AWS fetches keys over https only"))
            }
            _ => None,
        }
    }

    /// How long it may keep accepting a key after the JWKS dropped it, as operators read it.
    pub fn keeps_removed_key(self) -> &'static str {
        match self {
            Verifier::HttpApi => "up to 2 h (its key cache)",
            Verifier::RestApi => "up to 1 h (best effort; it refetches on an unknown kid)",
            Verifier::Alb => "for a time AWS does not document",
            Verifier::AwsJwtVerify => "until the process restarts (it never expires a fetched key)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rs256_is_accepted_everywhere_and_the_rest_as_the_table_says() {
        for v in Verifier::ALL {
            assert!(v.accepts_alg("RS256"), "{}", v.name());
            assert!(!v.accepts_alg("ML-DSA-65"), "{}", v.name());
        }
        assert!(!Verifier::HttpApi.accepts_alg("ES256"));
        assert!(Verifier::RestApi.accepts_alg("ES512"));
        assert!(!Verifier::Alb.accepts_alg("RS384"));
        assert!(!Verifier::AwsJwtVerify.accepts_alg("PS256"));
        assert!(Verifier::AwsJwtVerify.accepts_alg("EdDSA"));
    }

    #[test]
    fn alb_refuses_more_than_ten_keys_and_plain_http() {
        let url = "https://auth.example.com/.well-known/jwks.json";
        assert_eq!(Verifier::Alb.jwks_problem(10, 5_000, url), None);
        assert!(Verifier::Alb.jwks_problem(11, 5_000, url).is_some());
        assert!(Verifier::HttpApi.jwks_problem(3, 150_001, url).is_some());
        assert!(Verifier::RestApi.jwks_problem(3, 1_000, "http://127.0.0.1/jwks").is_some());
        assert_eq!(Verifier::AwsJwtVerify.jwks_problem(30, 1_000, "http://127.0.0.1/jwks"), None);
    }
}

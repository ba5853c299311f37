//! `kms-jwt verify TOKEN`: fetch the issuer's discovery document and JWKS as a verifier does,
//! verify the token (algorithm from the JWK, never from the token; `iss` must equal the
//! issuer), and say which AWS verifiers would accept it.
//!
//! What is printed of the token: its header (`alg`, `kid`, `typ`) and the standard claims an
//! operator needs (`iss`, `aud`, `exp`, `iat`, `nbf`); `sub` only as its length, other claims
//! only by name. Never the token or the signature.

use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use kms_jwt::UnixTime;
use serde::Serialize;
use serde_json::Value;

use super::emit;
use crate::error::{CliError, Outcome};
use crate::render::{relative, timestamp, Style, Tone};
use crate::verifiers::Verifier;

/// The documents a verifier fetches, with what `doctor` checks of their HTTP answers.
#[derive(Debug, Clone)]
pub struct Documents {
    pub discovery_url: String,
    pub discovery: Value,
    pub discovery_headers: reqwest::header::HeaderMap,
    pub jwks_uri: String,
    pub jwks_text: String,
    pub jwks: Value,
    pub jwks_headers: reqwest::header::HeaderMap,
}

impl Documents {
    pub fn jwks_keys(&self) -> Vec<Value> {
        self.jwks.get("keys").and_then(Value::as_array).cloned().unwrap_or_default()
    }

    pub fn jwks_kids(&self) -> Vec<String> {
        self.jwks_keys()
            .iter()
            .filter_map(|k| k.get("kid").and_then(Value::as_str).map(str::to_owned))
            .collect()
    }
}

/// An error with its causes, `: `-joined (reqwest's own text omits them).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn get(client: &reqwest::Client, url: &str) -> Result<(reqwest::header::HeaderMap, String), CliError> {
    let answer =
        client.get(url).send().await.map_err(|e| CliError::Http(format!("GET {url}: {}", chain(&e))))?;
    let status = answer.status();
    let headers = answer.headers().clone();
    let text = answer.text().await.map_err(|e| CliError::Http(format!("GET {url}: {}", chain(&e))))?;
    if !status.is_success() {
        return Err(CliError::Http(format!("GET {url}: HTTP {status}")));
    }
    Ok((headers, text))
}

/// Fetch `{issuer}/.well-known/openid-configuration`, then its `jwks_uri`.
pub async fn fetch_documents(issuer: &str) -> Result<Documents, CliError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| CliError::Http(e.to_string()))?;
    let discovery_url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    let (discovery_headers, text) = get(&client, &discovery_url).await?;
    let discovery: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::Http(format!("{discovery_url} is not JSON: {e}")))?;
    let jwks_uri = discovery
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or_else(|| CliError::Http(format!("{discovery_url} has no jwks_uri")))?
        .to_owned();
    let (jwks_headers, jwks_text) = get(&client, &jwks_uri).await?;
    let jwks: Value = serde_json::from_str(&jwks_text)
        .map_err(|e| CliError::Http(format!("{jwks_uri} is not JSON: {e}")))?;
    Ok(Documents { discovery_url, discovery, discovery_headers, jwks_uri, jwks_text, jwks, jwks_headers })
}

/// The token's parts an operator may see.
#[derive(Debug, Serialize, PartialEq)]
pub struct TokenShape {
    pub alg: String,
    pub kid: Option<String>,
    pub typ: Option<String>,
    pub iss: Option<String>,
    pub aud: Option<Value>,
    pub exp: Option<i64>,
    pub iat: Option<i64>,
    pub nbf: Option<i64>,
    /// `sub`'s length in characters, not its value.
    pub sub_chars: Option<usize>,
    /// Names of the other claims.
    pub other_claims: Vec<String>,
}

/// Read a token's header and claims without verifying them; a malformed token is bad input.
pub fn shape(token: &str) -> Result<TokenShape, CliError> {
    let malformed = |why: &str| {
        CliError::BadInput(format!("malformed token: {why} (a JWT is three base64url parts joined by dots)"))
    };
    let parts: Vec<&str> = token.trim().split('.').collect();
    if parts.len() != 3 {
        return Err(malformed(&format!("{} part(s)", parts.len())));
    }
    let decode = |part: &str, what: &str| -> Result<Value, CliError> {
        let bytes =
            URL_SAFE_NO_PAD.decode(part).map_err(|_| malformed(&format!("the {what} is not base64url")))?;
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|_| malformed(&format!("the {what} is not JSON")))?;
        if value.is_object() {
            Ok(value)
        } else {
            Err(malformed(&format!("the {what} is not a JSON object")))
        }
    };
    let header = decode(parts[0], "header")?;
    let claims = decode(parts[1], "payload")?;
    let text = |v: &Value, name: &str| v.get(name).and_then(Value::as_str).map(str::to_owned);
    let number = |name: &str| claims.get(name).and_then(Value::as_i64);
    let standard = ["iss", "aud", "exp", "iat", "nbf", "sub"];
    let mut other_claims: Vec<String> = claims
        .as_object()
        .map(|o| o.keys().filter(|k| !standard.contains(&k.as_str())).cloned().collect())
        .unwrap_or_default();
    other_claims.sort();
    Ok(TokenShape {
        alg: text(&header, "alg").ok_or_else(|| malformed("the header has no alg"))?,
        kid: text(&header, "kid"),
        typ: text(&header, "typ"),
        iss: text(&claims, "iss"),
        aud: claims.get("aud").cloned(),
        exp: number("exp"),
        iat: number("iat"),
        nbf: number("nbf"),
        sub_chars: text(&claims, "sub").map(|s| s.chars().count()),
        other_claims,
    })
}

#[derive(Debug, Serialize)]
pub struct Verdict {
    pub verifier: &'static str,
    pub accepts: bool,
    pub reasons: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub now: UnixTime,
    pub issuer: String,
    pub jwks_uri: String,
    pub jwks_keys: usize,
    pub jwks_bytes: usize,
    pub token: TokenShape,
    /// The signature and claims check: `None` when it passed.
    pub rejected: Option<String>,
    pub verifiers: Vec<Verdict>,
}

/// Verify `token` against `docs` (signature with the JWK's algorithm, `iss` = `issuer`,
/// `exp`, `nbf`, `aud` if asked).
pub fn check_token(
    token: &str,
    docs: &Documents,
    issuer: &str,
    audience: Option<&str>,
) -> Result<(), String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("the token has no kid: every AWS verifier needs one")?;
    let raw = docs
        .jwks_keys()
        .into_iter()
        .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid.as_str()))
        .ok_or_else(|| {
            format!("kid {kid} is not in the JWKS (revoked or retired, or another issuer's key)")
        })?;
    let jwk_alg = raw.get("alg").and_then(Value::as_str).ok_or("the JWK has no alg")?.to_owned();
    let alg = Algorithm::from_str(&jwk_alg)
        .map_err(|_| format!("{jwk_alg} cannot be checked by this tool (jsonwebtoken has no {jwk_alg}); use the Node verifiers"))?;
    let jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(raw).map_err(|e| format!("the JWK is invalid: {e}"))?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("the JWK is invalid: {e}"))?;
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss"]);
    validation.validate_nbf = true;
    match audience {
        Some(aud) => validation.set_audience(&[aud]),
        None => validation.validate_aud = false,
    }
    jsonwebtoken::decode::<Value>(token, &key, &validation).map(|_| ()).map_err(|e| e.to_string())
}

/// Which verifiers accept the token (pure).
pub fn verdicts(
    alg: &str,
    rejected: Option<&str>,
    keys: usize,
    bytes: usize,
    jwks_uri: &str,
    issuer: &str,
) -> Vec<Verdict> {
    Verifier::ALL
        .iter()
        .map(|&v| {
            let mut reasons = Vec::new();
            if let Some(why) = rejected {
                reasons.push(format!("the token fails verification: {why}"));
            }
            if !v.accepts_alg(alg) {
                reasons.push(format!("{alg} is not among its algorithms"));
            }
            if let Some(problem) = v.jwks_problem(keys, bytes, jwks_uri) {
                reasons.push(problem);
            }
            if matches!(v, Verifier::HttpApi | Verifier::RestApi) && !issuer.starts_with("https://") {
                reasons.push("the issuer is not https: API Gateway fetches discovery over https only".into());
            }
            Verdict { verifier: v.name(), accepts: reasons.is_empty(), reasons }
        })
        .collect()
}

pub fn render(report: &VerifyReport, style: Style) -> String {
    let mut out = String::new();
    let t = &report.token;
    let now = report.now;
    let _ = writeln!(
        out,
        "header: alg {}, kid {}, typ {}",
        t.alg,
        t.kid.as_deref().unwrap_or("(none)"),
        t.typ.as_deref().unwrap_or("(none)")
    );
    let _ = writeln!(out, "iss: {}", t.iss.as_deref().unwrap_or("(none)"));
    let _ = writeln!(out, "aud: {}", t.aud.as_ref().map_or_else(|| "(none)".to_owned(), Value::to_string));
    for (name, at) in [("exp", t.exp), ("iat", t.iat), ("nbf", t.nbf)] {
        if let Some(at) = at {
            let _ = writeln!(out, "{name}: {} ({})", timestamp(at), relative(at, now));
        }
    }
    let _ = writeln!(
        out,
        "sub: {}",
        t.sub_chars.map_or_else(|| "(none)".to_owned(), |n| format!("{n} characters (value not shown)"))
    );
    if !t.other_claims.is_empty() {
        let _ = writeln!(out, "other claims: {}", t.other_claims.join(", "));
    }
    let _ =
        writeln!(out, "JWKS: {} ({} keys, {} bytes)", report.jwks_uri, report.jwks_keys, report.jwks_bytes);
    match &report.rejected {
        None => {
            let _ = writeln!(
                out,
                "{}",
                style.paint(Tone::Good, &format!("signature and claims valid for issuer {}", report.issuer))
            );
        }
        Some(why) => {
            let _ = writeln!(out, "{}", style.paint(Tone::Bad, &format!("rejected: {why}")));
        }
    }
    out.push('\n');
    for v in &report.verifiers {
        let mark =
            if v.accepts { style.paint(Tone::Good, "accepts") } else { style.paint(Tone::Bad, "refuses") };
        let _ = writeln!(out, "{mark}  {}", v.verifier);
        for r in &v.reasons {
            let _ = writeln!(out, "         {r}");
        }
    }
    out
}

pub async fn run(
    issuer: Option<&str>,
    token: &str,
    audience: Option<&str>,
    json: bool,
    style: Style,
) -> Result<Outcome, CliError> {
    let token = token.trim();
    let shape = shape(token)?;
    let issuer = match issuer.map(str::to_owned).or_else(|| shape.iss.clone()) {
        Some(issuer) => issuer,
        None => return Err(CliError::BadInput("the token has no iss: pass --issuer".into())),
    };
    let docs = fetch_documents(&issuer).await?;
    let rejected = check_token(token, &docs, &issuer, audience).err();
    let keys = docs.jwks_keys().len();
    let verifiers =
        verdicts(&shape.alg, rejected.as_deref(), keys, docs.jwks_text.len(), &docs.jwks_uri, &issuer);
    let report = VerifyReport {
        now: kms_jwt::unix_now(),
        jwks_uri: docs.jwks_uri.clone(),
        jwks_keys: keys,
        jwks_bytes: docs.jwks_text.len(),
        issuer,
        token: shape,
        rejected,
        verifiers,
    };
    emit(json, &report, |style| render(&report, style), style)?;
    Ok(if report.rejected.is_none() { Outcome::Fine } else { Outcome::NeedsAttention })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn the_shape_shows_standard_claims_and_hides_the_subject() {
        let token = format!(
            "{}.{}.sig",
            b64(&serde_json::json!({"alg":"RS256","kid":"k1","typ":"JWT"})),
            b64(&serde_json::json!({"iss":"https://i","sub":"alice@example.com","exp":1,"role":"admin"}))
        );
        let shape = shape(&token).unwrap();
        assert_eq!(shape.alg, "RS256");
        assert_eq!(shape.sub_chars, Some(17));
        assert_eq!(shape.other_claims, vec!["role".to_owned()]);
        let report = VerifyReport {
            now: 0,
            issuer: "https://i".into(),
            jwks_uri: "https://i/jwks".into(),
            jwks_keys: 2,
            jwks_bytes: 900,
            token: shape,
            rejected: None,
            verifiers: verdicts("RS256", None, 2, 900, "https://i/jwks", "https://i"),
        };
        let text = render(&report, Style::plain());
        assert!(!text.contains("alice"), "{text}");
        assert!(!text.contains("admin"), "{text}");
        assert!(text.contains("sub: 17 characters (value not shown)"), "{text}");
        assert_eq!(text.matches("accepts  ").count(), 4, "{text}");
    }

    #[test]
    fn malformed_tokens_are_bad_input() {
        for bad in ["", "a.b", "not-base64!.e30.x", &format!("{}.e30.x", URL_SAFE_NO_PAD.encode("[1]"))] {
            let err = shape(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}: {err}");
            assert!(err.to_string().starts_with("malformed token"), "{err}");
        }
    }

    #[test]
    fn verdicts_follow_the_compatibility_table() {
        let es = verdicts("ES256", None, 3, 900, "https://i/jwks", "https://i");
        let accepts: Vec<bool> = es.iter().map(|v| v.accepts).collect();
        assert_eq!(accepts, vec![false, true, false, true]);
        let local = verdicts("RS256", None, 3, 900, "http://127.0.0.1/jwks", "http://127.0.0.1");
        assert!(!local[0].accepts && local[3].accepts);
        let bad = verdicts("RS256", Some("InvalidSignature"), 3, 900, "https://i/jwks", "https://i");
        assert!(bad.iter().all(|v| !v.accepts));
    }
}

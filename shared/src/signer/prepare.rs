//! The checks a request passes before any key or clock is involved: no reserved claim, `aud`
//! and `sub` given once, the claims' size and the lifetime within bounds. What passes is kept
//! compact ([`Prepared`]) until it is signed.

use serde_json::{Map, Value};

use super::request::{Audience, SignRequest, MAX_CLAIMS_BYTES, RESERVED_CLAIMS};
use super::{SignError, TokenType};
use crate::minting::{Asked, Caller, MintingPolicy};

/// Token lifetimes: what a request gets without `ttl_seconds`, and the most it may ask for.
#[derive(Debug, Clone, Copy)]
pub(super) struct TtlBounds {
    pub(super) default: u64,
    pub(super) max: u64,
}

/// What a request is checked against: the signer's lifetimes and, when it has one, the
/// minting policy for this invocation's caller.
#[derive(Debug, Clone, Copy)]
pub(super) struct Checks<'a> {
    pub(super) bounds: TtlBounds,
    pub(super) minting: Option<&'a MintingPolicy>,
    pub(super) caller: &'a Caller,
}

/// A request that passed every check that needs neither a key nor the clock. The caller's
/// claims are kept serialized: a batch holds up to [`MAX_BATCH`](super::MAX_BATCH) of these at
/// once, and a JSON tree can take twenty times the memory of its text.
#[derive(Debug)]
pub(super) struct Prepared {
    /// The caller's claims with `aud` and `sub` from the request fields: a JSON object.
    pub(super) claims: String,
    pub(super) ttl: u64,
    pub(super) typ: TokenType,
    /// `sub` and `aud` as the audit line shows them.
    pub(super) audit: AuditedClaims,
    /// The minting rule that admitted the request (none without a policy).
    pub(super) rule: Option<String>,
}

/// Longest `sub` or `aud` the audit line carries; longer values are cut (and marked).
const MAX_AUDITED_CHARS: usize = 256;

/// The only claim values an audit line carries: who the token is for, and where it goes.
#[derive(Debug, Default)]
pub(super) struct AuditedClaims {
    pub(super) sub: Option<String>,
    pub(super) aud: Option<String>,
}

impl AuditedClaims {
    fn of(claims: &Map<String, Value>) -> Self {
        let shown = |value: &Value| {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match text.char_indices().nth(MAX_AUDITED_CHARS) {
                Some((cut, _)) => format!("{}…", &text[..cut]),
                None => text,
            }
        };
        AuditedClaims { sub: claims.get("sub").map(shown), aud: claims.get("aud").map(shown) }
    }
}

/// Check `request` against the claim rules, the lifetimes and the minting policy, and keep its
/// claims serialized.
pub(super) fn prepare(request: SignRequest, checks: Checks<'_>) -> Result<Prepared, SignError> {
    let bounds = checks.bounds;
    let SignRequest { mut claims, ttl_seconds, audience, subject, typ } = request;
    if let Some(reserved) = RESERVED_CLAIMS.iter().find(|c| claims.contains_key(**c)) {
        return Err(SignError::ReservedClaim((*reserved).to_owned()));
    }
    if let Some(audience) = audience {
        if claims.contains_key("aud") {
            return Err(SignError::AmbiguousClaim("aud".into()));
        }
        let aud = match audience {
            Audience::One(one) => Value::String(one),
            Audience::Many(many) => many.into_iter().map(Value::String).collect(),
        };
        claims.insert("aud".into(), aud);
    }
    if let Some(subject) = subject {
        if claims.contains_key("sub") {
            return Err(SignError::AmbiguousClaim("sub".into()));
        }
        claims.insert("sub".into(), Value::String(subject));
    }
    if ttl_seconds.is_some_and(|ttl| ttl == 0 || ttl > bounds.max) {
        return Err(SignError::InvalidTtl { max: bounds.max });
    }
    let typ = typ.unwrap_or_default();
    // The policy may complete the claims (`sub` it chooses, `act`), so it decides before they
    // are audited and serialized; a request without a lifetime gets at most the rule's.
    let (rule, default_ttl) = match checks.minting {
        None => (None, bounds.default),
        Some(policy) => {
            let admission = policy
                .admit(checks.caller, &mut claims, Asked { ttl_seconds, typ })
                .map_err(SignError::NotAllowed)?;
            (Some(admission.rule), bounds.default.min(admission.max_ttl_seconds))
        }
    };
    let audit = AuditedClaims::of(&claims);
    let claims = serde_json::to_string(&claims)?;
    if claims.len() > MAX_CLAIMS_BYTES {
        return Err(SignError::ClaimsTooLarge { size: claims.len() });
    }
    let ttl = ttl_seconds.unwrap_or(default_ttl);
    if ttl == 0 || ttl > bounds.max {
        return Err(SignError::InvalidTtl { max: bounds.max });
    }
    Ok(Prepared { claims, ttl, typ, audit, rule })
}

//! The signing service: [`TokenSigner`] joins a prepared request's claims with the registered
//! ones, signs the JWS inside KMS with the keyring's current key and logs the audit line.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::Value;

use super::invocation::{parse_invocation, parse_single, Parsed};
use super::prepare::{prepare, Checks, Prepared, TtlBounds};
use super::{SignError, SignRequest};
use crate::cache::KeyringCache;
use crate::jose::alg::SigningAlg;
use crate::jose::jws::{self, Header};
use crate::jose::signing_input::InputPlan;
use crate::keyring::{Keyring, UnixTime};
use crate::minting::{Caller, MintingPolicy, PolicySource};
use crate::ports::{KeySigner, KeyringStore, KmsError};

/// KMS calls in flight per batch.
const BATCH_CONCURRENCY: usize = 16;
/// The `tracing` target of the one line logged per issued token (see docs/functions.md, "Audit: who minted a token").
pub const AUDIT_TARGET: &str = "kms_jwt::audit";

/// A signed token and what a caller needs to know about it without decoding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedToken {
    /// The compact JWS.
    pub token: String,
    /// The kid of the key that signed it.
    pub kid: String,
    /// Its `exp`, in Unix seconds.
    pub expires_at: UnixTime,
}

/// The outcome of an invocation that was read: the token of a single request, or a batch's
/// verdicts in request order. How it goes on the wire is the function's business.
#[derive(Debug)]
pub enum SignAnswer {
    /// The token of a single request.
    Single(SignedToken),
    /// A token or an error per request, in request order.
    Batch(Vec<Result<SignedToken, SignError>>),
}

/// What the signer needs from the keyring: the current key, resolved once per version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    /// The key's thumbprint, the header's `kid`.
    pub kid: String,
    /// Full ARN of the KMS key that signs.
    pub kms_key_arn: String,
    /// The algorithm the key signs with.
    pub alg: SigningAlg,
    /// What KMS is given to sign (digest, raw input, ML-DSA μ), fixed per key.
    pub plan: InputPlan,
}

/// The current key as a signer in `region` uses it: a multi-Region key through its replica
/// in that region (see [`crate::arn::local_key_arn`]), anything else as recorded.
pub fn signing_key_in(
    region: Option<String>,
) -> impl Fn(&Keyring) -> Option<SigningKey> + Send + Sync + 'static {
    move |ring| {
        current_signing_key(ring).map(|key| SigningKey {
            kms_key_arn: crate::arn::local_key_arn(&key.kms_key_arn, region.as_deref()),
            ..key
        })
    }
}

/// The keyring's current key as the signer uses it, `None` before the first rotation.
pub fn current_signing_key(ring: &Keyring) -> Option<SigningKey> {
    ring.current().map(|k| SigningKey {
        kid: k.kid.clone(),
        kms_key_arn: k.kms_key_arn.clone(),
        alg: k.alg,
        plan: InputPlan::for_key(k.alg, &k.public_jwk),
    })
}

/// The registered claims the service adds to every token.
#[derive(Serialize)]
struct Registered<'a> {
    iss: &'a str,
    iat: UnixTime,
    exp: UnixTime,
    jti: String,
}

/// The JWT payload: the caller's claims object joined with ours. Both are serde_json output
/// of an object (`{...}`, no whitespace) and share no member (reserved claims are refused).
fn token_payload(claims: &str, registered: &Registered<'_>) -> Result<Vec<u8>, SignError> {
    let ours = serde_json::to_string(registered)?;
    let (Some(theirs), Some(ours)) = (claims.strip_suffix('}'), ours.strip_prefix('{')) else {
        let error = <serde_json::Error as serde::ser::Error>::custom("claims are not a JSON object");
        return Err(SignError::Encoding(error));
    };
    let mut payload = String::with_capacity(theirs.len() + 1 + ours.len());
    payload.push_str(theirs);
    if theirs != "{" {
        payload.push(',');
    }
    payload.push_str(ours);
    Ok(payload.into_bytes())
}

/// Signs tokens with the keyring's current key, through a [`KeySigner`].
pub struct TokenSigner<K, S> {
    kms: K,
    keyring: KeyringCache<S, Option<SigningKey>>,
    issuer: String,
    bounds: TtlBounds,
    /// `None`: every request that passes the claim checks is signed (a library default; the
    /// sign function always has a policy, see [`crate::config::SignConfig`]).
    minting: Option<PolicySource>,
}

impl<K: KeySigner, S: KeyringStore> TokenSigner<K, S> {
    /// A signer issuing tokens as `issuer`, `default_ttl` long unless a request asks for up to
    /// `max_ttl`.
    pub fn new(
        kms: K,
        keyring: KeyringCache<S, Option<SigningKey>>,
        issuer: String,
        default_ttl: Duration,
        max_ttl: Duration,
    ) -> Self {
        TokenSigner {
            kms,
            keyring,
            issuer,
            bounds: TtlBounds { default: default_ttl.as_secs(), max: max_ttl.as_secs() },
            minting: None,
        }
    }

    /// Sign only what `policy` allows each caller.
    pub fn with_minting_policy(self, policy: MintingPolicy) -> Self {
        self.with_policy_source(PolicySource::fixed(policy))
    }

    /// Sign only what the policy `source` holds at the time of each request allows.
    pub fn with_policy_source(mut self, source: PolicySource) -> Self {
        self.minting = Some(source);
        self
    }

    /// The policy in force for this invocation, read before anything else is (a stored one
    /// at most once per cache TTL).
    async fn policy(&self) -> Result<Option<Arc<MintingPolicy>>, SignError> {
        match &self.minting {
            None => Ok(None),
            Some(source) => source.current().await.map(Some).map_err(SignError::MintingPolicy),
        }
    }

    fn checks<'a>(&self, caller: &'a Caller, policy: &'a Option<Arc<MintingPolicy>>) -> Checks<'a> {
        Checks { bounds: self.bounds, minting: policy.as_deref(), caller }
    }

    /// Sign one request given as JSON text (`{"claims": {...}, "ttl_seconds": 900}`); a batch
    /// is refused. Text over [`MAX_REQUEST_BYTES`](super::MAX_REQUEST_BYTES) is refused
    /// unread.
    /// The caller is a direct invoker (see [`Self::invoke_json_as`]).
    pub async fn sign_json(&self, text: &str, now: UnixTime) -> Result<SignedToken, SignError> {
        self.sign_json_as(&Caller::DirectInvoke, text, now).await
    }

    /// [`Self::sign_json`] for `caller`, whose minting rules decide.
    pub async fn sign_json_as(
        &self,
        caller: &Caller,
        text: &str,
        now: UnixTime,
    ) -> Result<SignedToken, SignError> {
        let policy = self.policy().await?;
        self.sign_prepared(parse_single(text, self.checks(caller, &policy))?, now).await
    }

    /// [`Self::sign_json`] for a request already in memory (Rust callers and tests): it is
    /// serialized and read like text, so it meets the same limits.
    pub async fn sign_event(&self, event: Value, now: UnixTime) -> Result<SignedToken, SignError> {
        self.sign_json(&event.to_string(), now).await
    }

    /// Answer an invocation given as JSON text: a single request gives its token; a batch
    /// gives a token or an error per request, in request order. Size, duplicate members and
    /// out-of-range integers refuse the whole invocation, before any KMS call or keyring read.
    /// The caller is a direct invoker: see [`Self::invoke_json_as`].
    pub async fn invoke_json(&self, text: &str, now: UnixTime) -> Result<SignAnswer, SignError> {
        self.invoke_json_as(&Caller::DirectInvoke, text, now).await
    }

    /// [`Self::invoke_json`] for `caller`, whose minting rules decide each request (before
    /// any KMS call or keyring read).
    pub async fn invoke_json_as(
        &self,
        caller: &Caller,
        text: &str,
        now: UnixTime,
    ) -> Result<SignAnswer, SignError> {
        let policy = self.policy().await?;
        match parse_invocation(text, self.checks(caller, &policy))? {
            Parsed::Single(request) => Ok(SignAnswer::Single(self.sign_prepared(request, now).await?)),
            Parsed::Batch(requests) => {
                let results = stream::iter(requests)
                    .map(|request| async move {
                        let signed = match request {
                            Ok(request) => self.sign_prepared(request, now).await,
                            Err(e) => Err(e),
                        };
                        // A refused item is the caller's to read in the answer; a service
                        // fault is ours to see in the logs too.
                        if let Err(e) = &signed {
                            if !e.is_client_error() {
                                tracing::error!(code = e.code(), error = %e, "batch item failed");
                            }
                        }
                        signed
                    })
                    .buffered(BATCH_CONCURRENCY)
                    .collect()
                    .await;
                Ok(SignAnswer::Batch(results))
            }
        }
    }

    /// [`Self::invoke_json`] for a payload already in memory: serialized and read like text.
    pub async fn invoke(&self, payload: Value, now: UnixTime) -> Result<SignAnswer, SignError> {
        self.invoke_json(&payload.to_string(), now).await
    }

    /// The algorithm the current key signs with (identity exchange checks the one asked for).
    pub async fn current_alg(&self) -> Result<SigningAlg, SignError> {
        let key = self.keyring.get().await?;
        key.as_ref().as_ref().map(|key| key.alg).ok_or(SignError::NoCurrentKey)
    }

    /// Sign a request of a direct invoker: the caller's claims plus `iss`, `iat` = `now`, `exp` and a random `jti`.
    ///
    /// No `nbf`: it would equal `iat`, and a verifier that checks `nbf` with no leeway on a
    /// clock running behind ours would refuse a fresh token. RFC 7519 makes it optional.
    pub async fn sign(&self, request: SignRequest, now: UnixTime) -> Result<SignedToken, SignError> {
        let policy = self.policy().await?;
        self.sign_prepared(prepare(request, self.checks(&Caller::DirectInvoke, &policy))?, now).await
    }

    async fn sign_prepared(&self, request: Prepared, now: UnixTime) -> Result<SignedToken, SignError> {
        let Prepared { claims, ttl, typ, audit, rule } = request;
        let expires_at = now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
        let registered = Registered {
            iss: &self.issuer,
            iat: now,
            exp: expires_at,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let payload = token_payload(&claims, &registered)?;
        drop(claims);
        let typ = typ.as_str();

        let key = self.keyring.get().await?;
        let key = key.as_ref().as_ref().ok_or(SignError::NoCurrentKey)?;
        let (token, alg) = match self.sign_with(key, typ, &payload).await {
            // The cached key was revoked or retired under us: re-read the keyring once and
            // sign with whatever is current now. Never fall back to a non-current key.
            Err(SignError::Kms(KmsError::InvalidState(_) | KmsError::NotFound(_))) => {
                let fresh = self.keyring.refresh().await?;
                let fresh = fresh.as_ref().as_ref().ok_or(SignError::NoCurrentKey)?;
                (self.sign_with(fresh, typ, &payload).await?, fresh.alg)
            }
            other => (other?, key.alg),
        };
        // The audit line: one per token, the registered claims plus `sub` and `aud`, never the
        // token or other claim values. The caller (IAM principal, Lambda request id) comes
        // from the span the function opens around the invocation.
        tracing::info!(
            target: AUDIT_TARGET,
            jti = %registered.jti,
            sub = audit.sub.as_deref(),
            aud = audit.aud.as_deref(),
            kid = %token.kid,
            alg = %alg,
            iat = registered.iat,
            exp = registered.exp,
            typ,
            rule = rule.as_deref(),
            "token issued"
        );
        Ok(SignedToken { expires_at, ..token })
    }

    async fn sign_with(&self, key: &SigningKey, typ: &str, payload: &[u8]) -> Result<SignedToken, SignError> {
        let header = Header { alg: key.alg, kid: &key.kid, typ };
        let input = jws::signing_input(&header, payload)?;
        let message = key.plan.prepare(key.alg, input.as_bytes())?;
        let raw = self.kms.sign(&key.kms_key_arn, key.alg, &message).await?;
        let signature = jws::jose_signature(key.alg, &raw)?;
        Ok(SignedToken { token: jws::compact(input, &signature), kid: key.kid.clone(), expires_at: 0 })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use p256::ecdsa::signature::Verifier;
    use serde_json::json;

    use super::*;
    use crate::ports::KeyAdmin;
    use crate::rotate::Rotator;
    use crate::signer::fixtures::*;
    use crate::signer::MAX_BATCH;

    #[tokio::test]
    async fn signs_a_verifiable_token_with_one_kms_call_and_no_store_read_when_warm() {
        let (shared, signer) = setup().await;
        let first = signer
            .sign_event(json!({"claims": {"sub": "alice", "scope": "read"}, "ttl_seconds": 300}), 1_000)
            .await
            .unwrap();
        let reads = shared.1.reads();
        let second = signer.sign_event(json!({"claims": {"sub": "bob"}}), 1_001).await.unwrap();
        assert_eq!(shared.1.reads(), reads, "a warm signer does not read the keyring");
        assert_eq!(shared.0.calls("Sign"), 2, "one KMS call per token");
        assert_eq!(first.expires_at, 1_300);
        assert_eq!(second.expires_at, 1_001 + 900);

        let parts: Vec<&str> = first.token.split('.').collect();
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "ES256", "kid": first.kid, "typ": "JWT"}));
        let claims = payload_of(&first.token);
        assert_eq!(claims["iss"], "https://issuer.test");
        assert_eq!((claims["iat"].as_i64(), claims["exp"].as_i64()), (Some(1_000), Some(1_300)));
        assert_eq!(claims.get("nbf"), None, "no nbf: a verifier whose clock lags must accept a fresh token");
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["jti"].as_str().map(str::len), Some(36));
        assert_eq!(claims.as_object().unwrap().len(), 6, "{claims}");

        // Verify R||S against the public key in the keyring, as a consumer would.
        let ring = Keyring::from_json(&shared.1.current_text().unwrap()).unwrap();
        let crate::jose::jwk::PublicJwk::Ec { x, y, .. } = &ring.find(&first.kid).unwrap().public_jwk else {
            panic!("EC key")
        };
        let jwk = format!(r#"{{"kty":"EC","crv":"P-256","x":"{x}","y":"{y}"}}"#);
        let key = p256::ecdsa::VerifyingKey::from(p256::PublicKey::from_jwk_str(&jwk).unwrap());
        let sig = p256::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
        key.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig).unwrap();

        // Empty claims join the registered ones without a stray comma.
        let empty = signer.sign_event(json!({"claims": {}}), 5).await.unwrap();
        assert_eq!(payload_of(&empty.token).as_object().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn a_batch_answers_in_order_with_an_error_per_bad_item() {
        let (shared, signer) = setup().await;
        let mut requests: Vec<Value> = (0..40).map(|i| json!({"claims": {"n": i}})).collect();
        requests[7] = json!({"claims": {"exp": 1}});
        requests[30] = json!({"claims": []});
        requests[31] = json!({"claims": {}, "alg": "none"});
        let answer = signer.invoke(json!({ "requests": requests }), 100).await.unwrap();
        let results = verdicts(answer);
        assert_eq!(results.len(), 40);
        for (i, result) in results.iter().enumerate() {
            match i {
                7 => assert_eq!(result.as_ref().unwrap_err().code(), "ReservedClaim"),
                30 => assert_eq!(result.as_ref().unwrap_err().code(), "ClaimsNotObject"),
                31 => assert_eq!(result.as_ref().unwrap_err().code(), "HeaderNotAllowed"),
                _ => assert_eq!(payload_of(&result.as_ref().unwrap().token)["n"], i, "request order"),
            }
        }
        assert_eq!(shared.0.calls("Sign"), 37, "exactly one KMS call per token, none for refused items");
        for (payload, code) in [
            (json!({"requests": []}), "InvalidBatchSize"),
            (json!({"requests": vec![json!({"claims": {}}); MAX_BATCH + 1]}), "InvalidBatchSize"),
            (json!({"requests": {}}), "InvalidRequest"),
            (json!({"requests": [], "claims": {}}), "InvalidRequest"),
        ] {
            assert_eq!(signer.invoke(payload, 0).await.unwrap_err().code(), code);
        }
        let extra = r#"{"requests": [{"claims": {}}], "ttl_seconds": 5}"#;
        assert_eq!(refused(&shared, &signer, extra).await, "InvalidRequest");
        let err = signer.invoke(json!({"requests": vec![json!({"claims": {}}); 250]}), 0).await.unwrap_err();
        assert_eq!(err.to_string(), "a batch holds 1 to 100 requests, not 250");
    }

    #[tokio::test]
    async fn the_minting_policy_decides_before_any_kms_call_and_act_names_the_caller() {
        use crate::minting::{parse_policy, Caller, PrincipalArn};
        let (shared, signer) = setup().await;
        let policy = parse_policy(
            r#"{"version": 1, "rules": [{"id": "orders", "callers": ["arn:aws:iam::123456789012:role/orders"],
                "audiences": ["https://api.test"], "subject": {"pattern": "user-*"},
                "claims": {"scope": {"space_delimited": ["orders:read"]}}, "max_ttl_seconds": 300, "act": true}]}"#,
        )
        .unwrap();
        let signer = signer.with_minting_policy(policy);
        let orders = Caller::Iam(PrincipalArn::new("arn:aws:sts::123456789012:assumed-role/orders/s1"));
        let signs = shared.0.calls("Sign");
        for (caller, request, code) in [
            (
                &Caller::DirectInvoke,
                r#"{"claims": {"sub": "user-1"}, "audience": "https://api.test"}"#,
                "NotAllowed",
            ),
            (&orders, r#"{"claims": {"sub": "admin"}, "audience": "https://api.test"}"#, "NotAllowed"),
            (
                &orders,
                r#"{"claims": {"sub": "user-1", "scope": "orders:write"}, "audience": "https://api.test"}"#,
                "NotAllowed",
            ),
            (
                &orders,
                r#"{"claims": {"sub": "user-1"}, "audience": "https://api.test", "ttl_seconds": 301}"#,
                "NotAllowed",
            ),
        ] {
            let err = signer.invoke_json_as(caller, request, 0).await.unwrap_err();
            assert_eq!(err.code(), code, "{request}");
            assert!(err.is_client_error() && !err.public_message().contains("orders:read"), "{err}");
        }
        assert_eq!(shared.0.calls("Sign"), signs, "a refusal never reaches KMS");

        let request =
            r#"{"claims": {"sub": "user-1", "scope": "orders:read"}, "audience": "https://api.test"}"#;
        let SignAnswer::Single(token) = signer.invoke_json_as(&orders, request, 1_000).await.unwrap() else {
            panic!("single")
        };
        let claims = payload_of(&token.token);
        assert_eq!(claims["act"], json!({"sub": "arn:aws:iam::123456789012:role/orders"}));
        assert_eq!(token.expires_at, 1_300, "no ttl_seconds: at most the rule's lifetime");
        let batch = json!({"requests": [{"claims": {"sub": "user-2"}, "audience": "https://api.test"}, {"claims": {"sub": "x"}}]});
        let results = verdicts(signer.invoke_json_as(&orders, &batch.to_string(), 0).await.unwrap());
        assert!(results[0].is_ok());
        assert_eq!(
            results[1].as_ref().unwrap_err().to_string(),
            "not allowed by minting rule \"orders\": the audience is missing or not allowed"
        );
    }

    #[tokio::test]
    async fn a_disabled_cached_key_triggers_one_refresh_and_the_new_current_key() {
        let (shared, signer) = setup().await;
        let before = signer.sign_event(json!({"claims": {}}), 10).await.unwrap();
        // Rotate behind the signer's back, then disable the key it has cached.
        let rotator = Rotator::new(
            Arc::clone(&shared.0),
            Arc::clone(&shared.1),
            policy(),
            crate::test_stacks::single_region_keyring(),
        );
        rotator.run(crate::rotate::Command::Rotate { force: true }, 20).await.unwrap();
        let ring = Keyring::from_json(&shared.1.current_text().unwrap()).unwrap();
        shared.0.disable_key(&ring.find(&before.kid).unwrap().kms_key_arn).await.unwrap();

        let after = signer.sign_event(json!({"claims": {}}), 30).await.unwrap();
        assert_eq!(after.kid, ring.current().unwrap().kid);
        assert_ne!(after.kid, before.kid);
    }
}

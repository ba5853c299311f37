//! The sign service: claims in, a compact JWS out, signed by the current key inside KMS.
//!
//! Per token: one KMS `Sign` call, no keyring read (the keyring comes from [`KeyringCache`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::alg::SigningAlg;
use crate::cache::{CacheError, KeyringCache};
use crate::config::secs;
use crate::jws::{self, Header, SignatureError};
use crate::keyring::{Keyring, UnixTime};
use crate::ports::{KeySigner, KeyringStore, KmsError};

/// Claims only the service sets.
pub const RESERVED_CLAIMS: [&str; 5] = ["iss", "iat", "nbf", "exp", "jti"];

/// A direct-invocation request.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    pub claims: Map<String, Value>,
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedToken {
    pub token: String,
    pub kid: String,
    pub expires_at: UnixTime,
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("claim {0:?} is set by the service and may not be supplied")]
    ReservedClaim(String),
    #[error("ttl_seconds must be between 1 and {max}")]
    InvalidTtl { max: u64 },
    #[error("the keyring has no current key yet; run rotate first")]
    NoCurrentKey,
    #[error("keyring unavailable: {0}")]
    Keyring(#[from] CacheError),
    #[error(transparent)]
    Kms(#[from] KmsError),
    #[error("KMS returned an unusable signature: {0}")]
    Signature(#[from] SignatureError),
    #[error("could not encode the token: {0}")]
    Encoding(#[from] serde_json::Error),
}

impl SignError {
    /// A stable, machine-readable code (and Lambda `errorType`).
    pub fn code(&self) -> &'static str {
        match self {
            SignError::InvalidRequest(_) => "InvalidRequest",
            SignError::ReservedClaim(_) => "ReservedClaim",
            SignError::InvalidTtl { .. } => "InvalidTtl",
            SignError::NoCurrentKey => "NoCurrentKey",
            SignError::Keyring(_) => "KeyringUnavailable",
            SignError::Kms(KmsError::Throttled) => "KmsThrottled",
            SignError::Kms(_) => "KmsError",
            SignError::Signature(_) => "SignatureInvalid",
            SignError::Encoding(_) => "EncodingError",
        }
    }

    /// True when the caller did something wrong (HTTP 400), false for service faults.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            SignError::InvalidRequest(_) | SignError::ReservedClaim(_) | SignError::InvalidTtl { .. }
        )
    }
}

/// What the signer needs from the keyring: the current key, resolved once per version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub kid: String,
    pub kms_key_arn: String,
    pub alg: SigningAlg,
}

pub fn current_signing_key(ring: &Keyring) -> Option<SigningKey> {
    ring.current().map(|k| SigningKey { kid: k.kid.clone(), kms_key_arn: k.kms_key_arn.clone(), alg: k.alg })
}

pub struct TokenSigner<K, S> {
    kms: K,
    keyring: KeyringCache<S, Option<SigningKey>>,
    issuer: String,
    default_ttl: u64,
    max_ttl: u64,
}

impl<K: KeySigner, S: KeyringStore> TokenSigner<K, S> {
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
            default_ttl: secs(default_ttl).max(0) as u64,
            max_ttl: secs(max_ttl).max(0) as u64,
        }
    }

    pub fn kms(&self) -> &K {
        &self.kms
    }

    pub fn keyring(&self) -> &KeyringCache<S, Option<SigningKey>> {
        &self.keyring
    }

    /// Sign a direct-invocation payload (`{"claims": {...}, "ttl_seconds": 900}`).
    pub async fn sign_event(&self, event: Value, now: UnixTime) -> Result<SignedToken, SignError> {
        let request: SignRequest =
            serde_json::from_value(event).map_err(|e| SignError::InvalidRequest(e.to_string()))?;
        self.sign(request, now).await
    }

    pub async fn sign(&self, request: SignRequest, now: UnixTime) -> Result<SignedToken, SignError> {
        if let Some(reserved) = RESERVED_CLAIMS.iter().find(|c| request.claims.contains_key(**c)) {
            return Err(SignError::ReservedClaim((*reserved).to_owned()));
        }
        let ttl = request.ttl_seconds.unwrap_or(self.default_ttl);
        if ttl == 0 || ttl > self.max_ttl {
            return Err(SignError::InvalidTtl { max: self.max_ttl });
        }
        let expires_at = now.saturating_add(ttl as i64);
        let mut claims = request.claims;
        claims.insert("iss".into(), Value::String(self.issuer.clone()));
        claims.insert("iat".into(), now.into());
        claims.insert("nbf".into(), now.into());
        claims.insert("exp".into(), expires_at.into());
        claims.insert("jti".into(), Value::String(uuid::Uuid::new_v4().to_string()));
        let payload = serde_json::to_vec(&claims)?;

        let key = self.keyring.get().await?;
        let key = key.as_ref().as_ref().ok_or(SignError::NoCurrentKey)?;
        match self.sign_with(key, &payload).await {
            // The cached key was revoked or retired under us: re-read the keyring once and
            // sign with whatever is current now. Never fall back to a non-current key.
            Err(SignError::Kms(KmsError::InvalidState(_) | KmsError::NotFound(_))) => {
                let fresh = self.keyring.refresh().await?;
                let fresh = fresh.as_ref().as_ref().ok_or(SignError::NoCurrentKey)?;
                self.sign_with(fresh, &payload).await.map(|token| SignedToken { expires_at, ..token })
            }
            other => other.map(|token| SignedToken { expires_at, ..token }),
        }
    }

    async fn sign_with(&self, key: &SigningKey, payload: &[u8]) -> Result<SignedToken, SignError> {
        let header = Header { alg: key.alg, kid: &key.kid, typ: "JWT" };
        let input = jws::signing_input(&header, payload)?;
        let digest = key.alg.hash().digest(input.as_bytes());
        let raw = self.kms.sign_digest(&key.kms_key_arn, key.alg, &digest).await?;
        let signature = jws::jose_signature(key.alg, &raw)?;
        Ok(SignedToken { token: jws::compact(input, &signature), kid: key.kid.clone(), expires_at: 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CachePolicy;
    use crate::memory::{MemoryKms, MemoryStore};
    use crate::ports::KeyAdmin;
    use crate::rotate::{RotationPolicy, Rotator};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use p256::ecdsa::signature::Verifier;
    use serde_json::json;
    use std::sync::Arc;

    /// A KMS and a store shared between a rotator and a signer, like two Lambda functions.
    #[derive(Clone)]
    struct Shared(Arc<MemoryKms>, Arc<MemoryStore>);

    async fn setup() -> (Shared, TokenSigner<Arc<MemoryKms>, Arc<MemoryStore>>) {
        let shared = Shared(Arc::new(MemoryKms::new()), Arc::new(MemoryStore::new()));
        let policy = RotationPolicy {
            alg: SigningAlg::ES256,
            rotation_period: 86_400,
            prepublication: 600,
            retirement_grace: 7_200,
            deletion_window_days: 7,
        };
        Rotator::new(Arc::clone(&shared.0), Arc::clone(&shared.1), policy, "kr").reconcile(0).await.unwrap();
        let cache = KeyringCache::new(
            Arc::clone(&shared.1),
            CachePolicy { ttl: Duration::from_secs(60), max_staleness: Duration::from_secs(600) },
            current_signing_key,
        );
        let signer = TokenSigner::new(
            Arc::clone(&shared.0),
            cache,
            "https://issuer.test".into(),
            Duration::from_secs(900),
            Duration::from_secs(3_600),
        );
        (shared, signer)
    }

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
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], "https://issuer.test");
        assert_eq!(
            (claims["iat"].as_i64(), claims["nbf"].as_i64(), claims["exp"].as_i64()),
            (Some(1_000), Some(1_000), Some(1_300))
        );
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["jti"].as_str().map(str::len), Some(36));

        // Verify R||S against the public key in the keyring, as a consumer would.
        let ring = Keyring::from_json(&shared.1.current_text().unwrap()).unwrap();
        let crate::jwk::PublicJwk::Ec { x, y, .. } = &ring.find(&first.kid).unwrap().public_jwk else {
            panic!("EC key")
        };
        let jwk = format!(r#"{{"kty":"EC","crv":"P-256","x":"{x}","y":"{y}"}}"#);
        let key = p256::ecdsa::VerifyingKey::from(p256::PublicKey::from_jwk_str(&jwk).unwrap());
        let sig = p256::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
        key.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig).unwrap();
    }

    #[tokio::test]
    async fn bad_requests_get_typed_errors() {
        let (shared, signer) = setup().await;
        let cases = [
            (json!({"claims": {"exp": 1}}), "ReservedClaim"),
            (json!({"claims": {"iss": "evil"}}), "ReservedClaim"),
            (json!({"claims": {}, "ttl_seconds": 0}), "InvalidTtl"),
            (json!({"claims": {}, "ttl_seconds": 3_601}), "InvalidTtl"),
            (json!({"claims": []}), "InvalidRequest"),
            (json!({"claims": {}, "header": {"alg": "none"}}), "InvalidRequest"),
            (json!("just a string"), "InvalidRequest"),
        ];
        for (event, code) in cases {
            let err = signer.sign_event(event.clone(), 0).await.unwrap_err();
            assert_eq!(err.code(), code, "{event}");
            assert!(err.is_client_error());
        }
        assert_eq!(shared.0.calls("Sign"), 0, "nothing reaches KMS for a refused request");
    }

    #[tokio::test]
    async fn a_disabled_cached_key_triggers_one_refresh_and_the_new_current_key() {
        let (shared, signer) = setup().await;
        let before = signer.sign_event(json!({"claims": {}}), 10).await.unwrap();
        // Rotate behind the signer's back, then disable the key it has cached.
        let policy = RotationPolicy {
            alg: SigningAlg::ES256,
            rotation_period: 86_400,
            prepublication: 600,
            retirement_grace: 7_200,
            deletion_window_days: 7,
        };
        let rotator = Rotator::new(Arc::clone(&shared.0), Arc::clone(&shared.1), policy, "kr");
        rotator.run(crate::rotate::Command::Rotate { force: true }, 20).await.unwrap();
        let ring = Keyring::from_json(&shared.1.current_text().unwrap()).unwrap();
        shared.0.disable_key(&ring.find(&before.kid).unwrap().kms_key_arn).await.unwrap();

        let after = signer.sign_event(json!({"claims": {}}), 30).await.unwrap();
        assert_eq!(after.kid, ring.current().unwrap().kid);
        assert_ne!(after.kid, before.kid);
    }
}

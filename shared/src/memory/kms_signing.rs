//! The KMS twin's `Sign`, authorized before it signs: the [`KeySigner`] port as the sign role
//! of the key's region, and [`MemoryKms::sign_as`] any principal.

use super::*;

#[async_trait]
impl KeySigner for MemoryKms {
    async fn sign(&self, key_arn: &str, alg: SigningAlg, input: &SigningInput) -> Result<Vec<u8>, KmsError> {
        self.sign_as(&self.sign_role_for(key_arn), key_arn, alg, input)
    }
}

impl MemoryKms {
    /// `Sign` as `caller`.
    pub fn sign_as(
        &self,
        caller: &str,
        key_arn: &str,
        alg: SigningAlg,
        input: &SigningInput,
    ) -> Result<Vec<u8>, KmsError> {
        self.count("Sign");
        self.reachable_arn(key_arn, "Sign")?;
        let request = Request::new(caller, "kms:Sign", key_arn)
            .with("kms:SigningAlgorithm", alg.kms_signing_algorithm());
        self.authorize("Sign", request, Some(key_arn))?;
        self.count(match input {
            SigningInput::Digest(_) => "Sign/DIGEST",
            SigningInput::Raw(_) => "Sign/RAW",
            SigningInput::ExternalMu(_) => "Sign/EXTERNAL_MU",
        });
        lock(&self.sign_message_sizes).push(input.message().len());
        let keys = lock(&self.keys);
        let key = keys.get(key_arn).ok_or_else(|| KmsError::NotFound(key_arn.to_owned()))?;
        if key.state != FakeKeyState::Enabled {
            return Err(KmsError::InvalidState(key_arn.to_owned()));
        }
        let refused = |message: String| KmsError::other("Sign", message);
        check_sign_request(key.key_spec, alg, input).map_err(refused)?;
        let kms_alg = alg.kms_signing_algorithm();
        let failed = |e: &dyn std::fmt::Display| refused(format!("{kms_alg}: {e}"));
        let digest = match (key.private.as_ref(), input) {
            (PrivateKey::Extra(k), input) => return k.sign(input).map_err(refused),
            (_, SigningInput::Digest(digest)) => digest.clone(),
            // ECDSA and RSASSA with RAW: KMS hashes the message itself.
            (_, input) => alg.hash().map(|h| h.digest(input.message())).unwrap_or_default(),
        };
        let digest = digest.as_slice();
        // `check_sign_request` saw the digest is exactly the hash's length: PSS salts are that long.
        let hash_len = digest.len();
        match key.private.as_ref() {
            PrivateKey::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign_prehash(digest).map_err(|e| failed(&e))?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            PrivateKey::P384(k) => {
                let sig: p384::ecdsa::Signature = k.sign_prehash(digest).map_err(|e| failed(&e))?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            PrivateKey::P521(k) => {
                let sig: p521::ecdsa::Signature = k.sign_prehash(digest).map_err(|e| failed(&e))?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            PrivateKey::Rsa(k) => {
                use SigningAlg::*;
                let signed = match alg {
                    RS256 => k.sign(Pkcs1v15Sign::new::<Sha256>(), digest),
                    RS384 => k.sign(Pkcs1v15Sign::new::<Sha384>(), digest),
                    RS512 => k.sign(Pkcs1v15Sign::new::<Sha512>(), digest),
                    PS256 => k.sign_with_rng(&mut OsRng, Pss::new_with_salt::<Sha256>(hash_len), digest),
                    PS384 => k.sign_with_rng(&mut OsRng, Pss::new_with_salt::<Sha384>(hash_len), digest),
                    PS512 => k.sign_with_rng(&mut OsRng, Pss::new_with_salt::<Sha512>(hash_len), digest),
                    _ => return Err(failed(&"not an RSA algorithm")),
                };
                signed.map_err(|e| failed(&e))
            }
            PrivateKey::Extra(_) => Err(failed(&"extra keys sign above")),
        }
    }
}

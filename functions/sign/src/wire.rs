//! The sign contract's JSON: what a direct invocation returns and what a `POST /sign` answer's
//! body holds. The signer answers in types ([`SignAnswer`]); this is their one encoding.

use kms_jwt::signer::{SignAnswer, SignError, SignedToken};
use serde_json::{json, Value};

/// A single request's token, `{"token", "kid", "expires_at"}`; or a batch's
/// `{"results": [...]}` in request order, each a token or `{"error": {...}}`.
pub fn answer_json(answer: SignAnswer) -> Value {
    match answer {
        SignAnswer::Single(token) => token_json(token),
        SignAnswer::Batch(results) => {
            let results: Vec<Value> = results
                .into_iter()
                .map(|result| match result {
                    Ok(token) => token_json(token),
                    Err(e) => json!({ "error": error_json(&e) }),
                })
                .collect();
            json!({ "results": results })
        }
    }
}

/// The error object of an answer: `{"code", "message", "retryable"}`, with the message
/// callers may see (AWS error texts, which name ARNs, stay in our logs).
pub fn error_json(error: &SignError) -> Value {
    json!({ "code": error.code(), "message": error.public_message(), "retryable": error.is_retryable() })
}

fn token_json(token: SignedToken) -> Value {
    let SignedToken { token, kid, expires_at } = token;
    json!({ "token": token, "kid": kid, "expires_at": expires_at })
}

#[cfg(test)]
mod tests {
    use kms_jwt::ports::KmsError;

    use super::*;

    fn token(n: i64) -> SignedToken {
        SignedToken { token: format!("h.p{n}.s"), kid: "k1".into(), expires_at: 1_700_000_000 + n }
    }

    #[test]
    fn answers_keep_their_wire_format() {
        assert_eq!(
            answer_json(SignAnswer::Single(token(0))).to_string(),
            r#"{"expires_at":1700000000,"kid":"k1","token":"h.p0.s"}"#
        );
        let kms = SignError::Kms(KmsError::NotFound("arn:aws:kms:eu-west-1:123456789012:key/x".into()));
        let batch =
            SignAnswer::Batch(vec![Ok(token(1)), Err(SignError::ReservedClaim("exp".into())), Err(kms)]);
        assert_eq!(
            answer_json(batch).to_string(),
            concat!(
                r#"{"results":[{"expires_at":1700000001,"kid":"k1","token":"h.p1.s"},"#,
                r#"{"error":{"code":"ReservedClaim","message":"claim \"exp\" is set by the service and may not be supplied","retryable":false}},"#,
                r#"{"error":{"code":"KmsError","message":"the signing key is disabled, pending deletion or gone; retry after the next rotation","retryable":false}}]}"#,
            )
        );
    }

    #[test]
    fn error_objects_carry_the_public_message_only() {
        let error = SignError::Kms(KmsError::Throttled);
        assert_eq!(
            error_json(&error),
            json!({"code": "KmsThrottled", "message": error.public_message(), "retryable": true})
        );
    }
}

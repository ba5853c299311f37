//! `parse_policy` on arbitrary text (the minting policy comes from configuration an operator
//! writes). It must never panic; a policy it accepts must decide requests without panicking,
//! and never admit a caller no rule applies to.
#![no_main]

use kms_jwt::minting::{parse_policy, Asked, Caller, Check, PrincipalArn};
use kms_jwt::signer::TokenType;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(policy) = parse_policy(text) else { return };
    let callers = [
        Caller::DirectInvoke,
        Caller::Iam(PrincipalArn::new("arn:aws:sts::123456789012:assumed-role/orders/s")),
        Caller::Iam(PrincipalArn::new("arn:aws:iam::123456789012:user/alice")),
    ];
    let requests = [
        json!({}),
        json!({"sub": "user-1", "aud": "https://api.example.com", "scope": "a b"}),
        json!({"aud": ["x", "y"], "act": {"sub": "me"}, "n": 1}),
    ];
    for caller in &callers {
        for request in &requests {
            let Value::Object(claims) = request.clone() else { continue };
            let mut claims: Map<String, Value> = claims;
            for typ in [TokenType::Jwt, TokenType::AccessToken] {
                let asked = Asked { ttl_seconds: Some(60), typ };
                if let Err(denial) = policy.admit(caller, &mut claims.clone(), asked) {
                    if denial.rule.is_none() {
                        assert_eq!(denial.check, Check::NoRuleForCaller);
                    }
                }
            }
            let _ = policy.admit(caller, &mut claims, Asked { ttl_seconds: None, typ: TokenType::Jwt });
        }
    }
});

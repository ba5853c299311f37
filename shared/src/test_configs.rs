//! The functions' configurations as tests start from them (`test-util` only), as
//! `RotationPolicy::for_tests` is for rotation. Tests build their signers from these with the
//! code the deployed function runs (`SignConfig::token_signer`), so a test signer is wired
//! like the deployed one.

use crate::config::SignConfig;

impl SignConfig {
    /// The sign function's configuration with `ISSUER` = `issuer`, the single-Region test
    /// stack's keyring and every other setting at its default: tokens 15 minutes long unless a
    /// request asks for up to an hour, the keyring cached 60 s and never served stale, no
    /// region. Tests override one value with struct update syntax where they are about it
    /// (`keyring_cache_ttl: Duration::ZERO` reads the keyring afresh for every token).
    ///
    /// Panics if the sign function would refuse `issuer`: a mistake in the test.
    #[allow(clippy::expect_used)]
    pub fn for_tests(issuer: &str) -> SignConfig {
        let keyring = crate::test_stacks::single_region_keyring();
        SignConfig::from_lookup(|name| match name {
            "KEYRING_SECRET_ID" => Some(keyring.clone()),
            "ISSUER" => Some(issuer.to_owned()),
            _ => None,
        })
        .expect("an ISSUER the sign function accepts")
    }
}

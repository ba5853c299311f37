//! `Keyring::from_json` on arbitrary text (the stored keyring document is read back from
//! Secrets Manager). It must never panic; what it accepts round-trips through `to_json`: the
//! same keyring, and the same text when written again.
#![no_main]

use kms_jwt::Keyring;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(keyring) = Keyring::from_json(text) else { return };
    let written = keyring.to_json();
    let reread = Keyring::from_json(&written)
        .unwrap_or_else(|e| panic!("an accepted keyring must read back from to_json: {e}\n{written}"));
    assert_eq!(reread, keyring, "to_json/from_json changed the keyring");
    assert_eq!(reread.to_json(), written, "to_json is not stable");
});

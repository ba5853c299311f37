//! Shared plumbing of the tests on the in-memory twins.

use kms_jwt::memory::MemoryStore;
use kms_jwt::Keyring;

/// The keyring `store` holds, empty before the first rotation: a look at the twin's state,
/// not a read (neither counted in `reads()` nor authorized).
pub fn stored(store: &MemoryStore) -> Keyring {
    store.current_text().map(|text| Keyring::from_json(&text).unwrap()).unwrap_or_default()
}

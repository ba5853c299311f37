//! Writes real keyring documents into a directory, the seed corpus of the `keyring_json` fuzz
//! target: what rotate stores after a bootstrap, a rotation and a revocation, made by the
//! `Rotator` on the in-memory KMS and store.
//!
//!     cd fuzz && cargo run --locked --example keyring_seeds -- seeds/keyring_json

use std::path::PathBuf;
use std::sync::Arc;

use kms_jwt::memory::{MemoryKms, MemoryStore};
use kms_jwt::rotate::{Command, RotationPolicy, Rotator};
use kms_jwt::{Keyring, SigningAlg};

/// A fixed clock: the seeds are the same on every run but for the keys themselves.
const T0: i64 = 1_795_608_000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: keyring_seeds <dir>")?);
    std::fs::create_dir_all(&dir)?;
    let write = |name: &str, text: String| std::fs::write(dir.join(name), text);

    write("empty.json", Keyring::empty().to_json())?;
    for alg in [SigningAlg::ES256, SigningAlg::ES384] {
        let store = Arc::new(MemoryStore::new());
        let policy = RotationPolicy::for_tests(alg);
        let period = policy.rotation_period;
        let rotator = Rotator::new(Arc::new(MemoryKms::new()), Arc::clone(&store), policy, "seeds");
        let current = || Keyring::from_json(&store.current_text().unwrap_or_default());
        let lower = alg.as_str().to_lowercase();

        rotator.reconcile(T0).await?;
        write(&format!("bootstrap-{lower}.json"), current()?.to_json())?;
        rotator.reconcile(T0 + period).await?;
        rotator.reconcile(T0 + 2 * period).await?;
        let rotated = current()?;
        write(&format!("rotated-twice-{lower}.json"), rotated.to_json())?;
        let previous = rotated.previous().next().ok_or("a previous key after two rotations")?.kid.clone();
        rotator.run(Command::Revoke { kid: previous }, T0 + 2 * period + 60).await?;
        write(&format!("revoked-{lower}.json"), current()?.to_json())?;
    }
    Ok(())
}

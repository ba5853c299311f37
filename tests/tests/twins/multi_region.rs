//! Multi-region active-active on the in-memory twins: rotate in `us-east-1` with replicas in
//! `eu-west-1` and `ap-southeast-2`. KMS multi-Region keys share key material across regions;
//! Secrets Manager replicas receive the keyring only when the test replicates them
//! ([`MemoryReplica::sync`]): real replication is eventual, LocalStack's is instant, so lag
//! and regional outages are modelled here.
//!
//! Checked: each region signs through its own replica key, and every token verifies against
//! every region's JWKS (an independent verifier, `jsonwebtoken`); a next key becomes current
//! only once every region has it; a region that is down holds rotation back without stopping
//! signing elsewhere; retirement and revocation reach every region; a take-over fences the old
//! home; a region added later gets replicas of the keys in use; and a year of rotations with
//! random lag and outages keeps every live token verifiable in every region.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use kms_jwt::arn::{regional_arn, same_kms_key};
use kms_jwt::config::SignConfig;
use kms_jwt::keyring::{Keyring, UnixTime};
use kms_jwt::memory::{FakeKeyState, MemoryKms, MemoryReplica, MemoryStore};
use kms_jwt::ports::{KeyTags, KeyringStore, KmsError};
use kms_jwt::regions::{Regions, ReplicaRegion};
use kms_jwt::rotate::{Command, RotationPolicy, RotationReport, Rotator, Transition};
use kms_jwt::signer::TokenSigner;
use kms_jwt::test_stacks::Deployment;
use kms_jwt::SigningAlg;
use kms_jwt_tests::verify;
use serde_json::json;

const HOME: &str = "us-east-1";
const EU: &str = "eu-west-1";
const AP: &str = "ap-southeast-2";
const ISSUER: &str = "https://issuer.multi-region.test";
const HOUR: i64 = 3_600;

type MultiRotator = Rotator<Arc<MemoryKms>, Arc<dyn KeyringStore>>;

/// Three regions' KMS (one twin: multi-Region keys live in all), the home secret and its two
/// replicas.
struct World {
    kms: Arc<MemoryKms>,
    home_store: Arc<MemoryStore>,
    eu: Arc<MemoryReplica>,
    ap: Arc<MemoryReplica>,
    policy: RotationPolicy,
}

impl World {
    fn new() -> World {
        let kms = Arc::new(MemoryKms::new());
        kms.create_multi_region_keys();
        let home_store = Arc::new(MemoryStore::new());
        let eu = Arc::new(MemoryReplica::new(home_store.clone()));
        let ap = Arc::new(MemoryReplica::new(home_store.clone()));
        World { kms, home_store, eu, ap, policy: RotationPolicy::for_tests(SigningAlg::ES256) }
    }

    fn region(&self, name: &str, store: Arc<dyn KeyringStore>) -> ReplicaRegion {
        ReplicaRegion { name: name.to_owned(), kms: Arc::new(self.kms.in_region(name)), keyring: store }
    }

    /// The rotate function of `own`, writing `store`, with `replicas` as its other regions.
    fn rotator(&self, own: &str, store: Arc<dyn KeyringStore>, replicas: Vec<ReplicaRegion>) -> MultiRotator {
        self.configured_rotator(own, None, store, replicas)
    }

    /// [`Self::rotator`] of a deployment whose `HOME_REGION` is `home`.
    fn configured_rotator(
        &self,
        own: &str,
        home: Option<&str>,
        store: Arc<dyn KeyringStore>,
        replicas: Vec<ReplicaRegion>,
    ) -> MultiRotator {
        let regions = Regions::new(own, replicas).with_configured_home(home.map(str::to_owned));
        Rotator::new(self.kms.clone(), store, self.policy.clone(), Deployment::multi_region().keyring_name())
            .with_regions(regions)
    }

    fn home_rotator(&self) -> MultiRotator {
        self.rotator(
            HOME,
            self.home_store.clone(),
            vec![self.region(EU, self.eu.clone()), self.region(AP, self.ap.clone())],
        )
    }

    fn sync(&self) {
        self.eu.sync();
        self.ap.sync();
    }

    /// Each region's (name, keyring store): what its sign and jwks functions read.
    fn stores(&self) -> Vec<(&'static str, Arc<dyn KeyringStore>)> {
        vec![(HOME, self.home_store.clone()), (EU, self.eu.clone()), (AP, self.ap.clone())]
    }
}

/// The sign function of `region`, reading `store` afresh each time.
fn signer(
    kms: Arc<MemoryKms>,
    region: &str,
    store: Arc<dyn KeyringStore>,
) -> TokenSigner<Arc<MemoryKms>, Arc<dyn KeyringStore>> {
    SignConfig {
        keyring_cache_ttl: Duration::ZERO,
        max_token_ttl: Duration::from_secs(900),
        region: Some(region.to_owned()),
        ..SignConfig::for_tests(ISSUER)
    }
    .token_signer(kms, store)
}

async fn keyring(store: &dyn KeyringStore) -> Keyring {
    match store.load().await.unwrap() {
        Some(doc) => Keyring::from_json(&doc.text).unwrap(),
        None => Keyring::empty(),
    }
}

/// Every region's JWKS, as its jwks function serves it.
async fn jwks_of_every_region(world: &World) -> Vec<(&'static str, String)> {
    let mut sets = Vec::new();
    for (region, store) in world.stores() {
        sets.push((region, serde_json::to_string(&keyring(&*store).await.jwks()).unwrap()));
    }
    sets
}

/// Sign in every region and verify each token against every region's JWKS.
async fn sign_everywhere_and_verify_everywhere(world: &World, now: UnixTime) -> Vec<String> {
    let jwks = jwks_of_every_region(world).await;
    let mut kids = Vec::new();
    for (region, store) in world.stores() {
        let signed = signer(world.kms.clone(), region, store)
            .sign_event(json!({"claims": {"sub": region}}), now)
            .await
            .unwrap_or_else(|e| panic!("{region} signs: {e}"));
        for (verifier_region, set) in &jwks {
            let claims = verify(&signed.token, set, ISSUER)
                .unwrap_or_else(|e| panic!("a token of {region} fails in {verifier_region}: {e}"));
            assert_eq!(claims["sub"], region);
        }
        kids.push(signed.kid);
    }
    kids
}

/// Bootstrap at `t0` (now), replicate, and let a run at `t0 + 60` see the next key everywhere;
/// every region then has the keyring. Returns `t0`.
async fn bootstrap_everywhere(world: &World, rotate: &MultiRotator) -> UnixTime {
    let t0 = kms_jwt::unix_now();
    rotate.reconcile(t0).await.unwrap();
    world.sync();
    let report = rotate.reconcile(t0 + 60).await.unwrap();
    assert_eq!(report.transitions, [Transition::Replicated], "{report:?}");
    world.sync();
    t0
}

fn transitions(report: &RotationReport) -> &[Transition] {
    &report.transitions
}

#[tokio::test]
async fn each_region_signs_with_its_replica_and_every_region_verifies_every_token() {
    let world = World::new();
    let rotate = world.home_rotator();
    let t0 = kms_jwt::unix_now();
    let report = rotate.reconcile(t0).await.unwrap();
    assert_eq!(transitions(&report), [Transition::Bootstrap]);

    // Both keys are multi-Region keys with an enabled replica in every region.
    let home = keyring(&*world.home_store).await;
    assert_eq!(home.home.as_ref().map(|h| (h.region.as_str(), h.epoch)), Some((HOME, 0)));
    for key in &home.keys {
        let copies = world.kms.replicas_of(&key.kms_key_arn);
        assert_eq!(copies.len(), 3, "{copies:?}");
        assert!(copies.iter().all(|(_, state)| *state == FakeKeyState::Enabled));
    }

    // Before replication reaches them, the replica regions cannot sign: no keyring yet.
    let eu_signer = signer(world.kms.clone(), EU, world.eu.clone());
    assert_eq!(eu_signer.sign_event(json!({"claims": {}}), t0).await.unwrap_err().code(), "NoCurrentKey");

    world.sync();
    let signs_before = world.kms.calls("Sign");
    let kids = sign_everywhere_and_verify_everywhere(&world, t0 + 1).await;
    assert_eq!(world.kms.calls("Sign") - signs_before, 3, "one KMS call per token");
    // Same key material everywhere: the same kid from every region.
    assert!(kids.iter().all(|kid| kid == &kids[0]), "{kids:?}");

    // The next key is not counted as published until every region has it.
    let next = home.next().unwrap().clone();
    assert_eq!(next.replicated_at, None);
    let report = rotate.reconcile(t0 + 60).await.unwrap();
    assert_eq!(transitions(&report), [Transition::Replicated]);
    assert_eq!(keyring(&*world.home_store).await.next().unwrap().replicated_at, Some(t0 + 60));
}

#[tokio::test]
async fn a_next_key_waits_for_every_region_and_a_region_down_holds_rotation_not_signing() {
    let world = World::new();
    let rotate = world.home_rotator();
    let t0 = bootstrap_everywhere(&world, &rotate).await;
    let first_current = keyring(&*world.home_store).await.current().unwrap().kid.clone();

    // A rotation is due; the new next key reaches the home keyring only.
    let t1 = t0 + world.policy.rotation_period;
    let report = rotate.reconcile(t1).await.unwrap();
    assert_eq!(transitions(&report), [Transition::Rotate]);
    let ring = keyring(&*world.home_store).await;
    let newest = ring.next().unwrap().kid.clone();
    // The promoted key was in every region's JWKS before it signed: tokens verify everywhere,
    // even in regions whose keyring replica still has the old current key.
    sign_everywhere_and_verify_everywhere(&world, t1 + 1).await;

    // eu-west-1's Secrets Manager goes down before it sees the new next key.
    world.ap.sync();
    world.eu.set_unavailable(true);
    let t2 = t1 + world.policy.rotation_period;
    // Fencing fails closed: eu-west-1's copy could hold a later take-over, so nothing changes.
    let untouched = world.home_store.current_text();
    let err = rotate.reconcile(t2).await.unwrap_err();
    assert_eq!(err.code(), "HomeUnconfirmed", "{err}");
    assert!(err.to_string().contains(EU), "{err}");
    assert_eq!(world.home_store.current_text(), untouched);
    let ring = keyring(&*world.home_store).await;
    assert_eq!(ring.next().unwrap().kid, newest, "the next key waits");
    assert_eq!(ring.next().unwrap().replicated_at, None);
    assert_ne!(ring.current().unwrap().kid, first_current);
    // Signing goes on in the regions that are up, with the current key; their tokens verify
    // against the JWKS eu-west-1 served before its outage.
    let stale_eu_jwks = serde_json::to_string(&Keyring::from_json(&world.eu_text()).unwrap().jwks()).unwrap();
    for (region, store) in [(HOME, world.home_store.clone() as Arc<dyn KeyringStore>), (AP, world.ap.clone())]
    {
        let signed =
            signer(world.kms.clone(), region, store).sign_event(json!({"claims": {}}), t2).await.unwrap();
        assert_eq!(signed.kid, ring.current().unwrap().kid);
        verify(&signed.token, &stale_eu_jwks, ISSUER).unwrap();
    }

    // The region returns: the key is seen everywhere, waits its pre-publication, then signs.
    world.eu.set_unavailable(false);
    world.sync();
    let report = rotate.reconcile(t2 + 60).await.unwrap();
    assert_eq!(transitions(&report), [Transition::Replicated]);
    let report = rotate.reconcile(t2 + 120).await.unwrap();
    assert!(transitions(&report).is_empty(), "pre-publication counts from replication");
    let report = rotate.reconcile(t2 + 60 + world.policy.prepublication).await.unwrap();
    assert_eq!(transitions(&report), [Transition::Rotate]);
    assert_eq!(keyring(&*world.home_store).await.current().unwrap().kid, newest);
    world.sync();
    sign_everywhere_and_verify_everywhere(&world, t2 + 2 * HOUR).await;
}

impl World {
    fn eu_text(&self) -> String {
        kms_jwt::memory::ReplicationSource::current_text(&*self.eu).unwrap()
    }
}

#[tokio::test]
async fn a_key_is_not_created_while_a_replica_kms_is_down_and_its_orphan_is_swept_everywhere() {
    let world = World::new();
    let rotate = world.home_rotator();
    let t0 = bootstrap_everywhere(&world, &rotate).await;
    let before = keyring(&*world.home_store).await;

    world.kms.set_region_down(AP, true);
    let t1 = t0 + world.policy.rotation_period;
    let err = rotate.reconcile(t1).await.unwrap_err();
    assert_eq!(err.code(), "KmsError", "{err}");
    let after = keyring(&*world.home_store).await;
    assert_eq!(after.current(), before.current(), "the current key keeps signing");
    assert_eq!(after.pending.len(), 1, "the creation intent stays for the sweep");
    // The primary made before replication failed, not in any keyring.
    let orphan = world
        .kms
        .key_arns()
        .into_iter()
        .find(|arn| arn.contains(HOME) && !after.holds_arn(arn))
        .expect("an orphaned primary");

    // The region returns; a run after the intent went stale rotates and sweeps the orphan
    // (and any replica of it) in every region.
    world.kms.set_region_down(AP, false);
    let later = t1 + kms_jwt::rotate::STALE_INTENT_SECS;
    let report = rotate.reconcile(later).await.unwrap();
    assert_eq!(transitions(&report), [Transition::Rotate], "{report:?}");
    assert!(report.orphans_deleted.contains(&orphan), "{report:?}");
    for (_, state) in world.kms.replicas_of(&orphan) {
        assert!(matches!(state, FakeKeyState::PendingDeletion { .. }), "{state:?}");
    }
}

#[tokio::test]
async fn revocation_disables_the_key_in_every_region_and_retries_a_region_that_was_down() {
    let world = World::new();
    let rotate = world.home_rotator();
    let t0 = bootstrap_everywhere(&world, &rotate).await;
    let current = keyring(&*world.home_store).await.current().unwrap().clone();

    world.kms.set_region_down(EU, true);
    let report = rotate.run(Command::Revoke { kid: current.kid.clone() }, t0 + 120).await.unwrap();
    assert_eq!(transitions(&report)[0], Transition::Revoke);
    let states = world.kms.replicas_of(&current.kms_key_arn);
    let eu_arn = regional_arn(&current.kms_key_arn, EU).unwrap();
    for (arn, state) in &states {
        if *arn == eu_arn {
            assert_eq!(*state, FakeKeyState::Enabled, "unreachable: retried later");
        } else {
            // Disabled at once; the deletion is scheduled once every region is done.
            assert_ne!(*state, FakeKeyState::Enabled, "{arn}: it can no longer sign");
        }
    }
    let ring = keyring(&*world.home_store).await;
    assert!(ring.retiring.iter().any(|k| k.kid == current.kid), "stays queued until every region is done");

    world.kms.set_region_down(EU, false);
    let report = rotate.reconcile(t0 + 180).await.unwrap();
    assert!(report.retired.contains(&current.kid), "{report:?}");
    assert!(world
        .kms
        .replicas_of(&current.kms_key_arn)
        .iter()
        .all(|(_, state)| matches!(state, FakeKeyState::PendingDeletion { .. })));
    assert!(keyring(&*world.home_store).await.retiring.is_empty());
}

#[tokio::test]
async fn a_region_added_later_gets_replicas_of_the_keys_in_use_and_the_next_key_waits_for_it() {
    let world = World::new();
    // The stacks are deployed with eu-west-1 as the only replica Region.
    world.kms.redeploy(Deployment::multi_region().with_regions(HOME, &[EU]));
    let eu_only = world.rotator(HOME, world.home_store.clone(), vec![world.region(EU, world.eu.clone())]);
    let t0 = bootstrap_everywhere(&world, &eu_only).await;
    let ring = keyring(&*world.home_store).await;
    let (current, next) = (ring.current().unwrap().clone(), ring.next().unwrap().clone());
    assert_eq!(next.replicated_at, Some(t0 + 60));
    assert_eq!(world.kms.replicas_of(&current.kms_key_arn).len(), 2, "home and eu-west-1");

    // Until the stacks name it, rotate's IAM refuses replication to ap-southeast-2.
    let err =
        world.kms.replicate_key_as(&world.kms.rotate_role(), &current.kms_key_arn, AP, current.alg, &tags());
    assert_eq!(err, Err(KmsError::AccessDenied { operation: "ReplicateKey" }));

    // ap-southeast-2 joins: a stack update names it (IAM changes; the keys' policies, fixed at
    // their creation, do not); its keyring replica arrives, but it has no replica of the keys.
    world.kms.redeploy(Deployment::multi_region().with_regions(HOME, &[EU, AP]));
    world.sync();
    let ap_signer = signer(world.kms.clone(), AP, world.ap.clone());
    assert!(ap_signer.sign_event(json!({"claims": {}}), t0 + 90).await.is_err());
    let rotate = world.home_rotator();
    rotate.reconcile(t0 + 120).await.unwrap();
    for key in [&current, &next] {
        let copies = world.kms.replicas_of(&key.kms_key_arn);
        assert_eq!(copies.len(), 3, "{copies:?}");
    }
    assert_eq!(
        keyring(&*world.home_store).await.next().unwrap().replicated_at,
        None,
        "the next key waits again"
    );
    let report = rotate.reconcile(t0 + 180).await.unwrap();
    assert_eq!(transitions(&report), [Transition::Replicated]);
    assert_eq!(keyring(&*world.home_store).await.next().unwrap().replicated_at, Some(t0 + 180));
    world.sync();
    sign_everywhere_and_verify_everywhere(&world, t0 + 200).await;
    assert_eq!(world.kms.denials().len(), 1, "only the replication before the stack update was refused");
}

fn tags() -> KeyTags {
    KeyTags { keyring: Deployment::multi_region().keyring_name(), request_id: "test".into() }
}

#[tokio::test]
async fn fail_over_moves_the_home_and_fences_the_old_one() {
    let world = World::new();
    let old_home = world.home_rotator();
    let t0 = bootstrap_everywhere(&world, &old_home).await;

    // us-east-1 goes down: KMS and Secrets Manager. The other regions keep signing and
    // serving the JWKS from their replicas.
    world.kms.set_region_down(HOME, true);
    world.home_store.set_unavailable(true);
    let replica_jwks: Vec<String> = {
        let mut sets = Vec::new();
        for store in [world.eu.clone() as Arc<dyn KeyringStore>, world.ap.clone()] {
            sets.push(serde_json::to_string(&keyring(&*store).await.jwks()).unwrap());
        }
        sets
    };
    for (region, store) in [(EU, world.eu.clone() as Arc<dyn KeyringStore>), (AP, world.ap.clone())] {
        let signed = signer(world.kms.clone(), region, store)
            .sign_event(json!({"claims": {}}), t0 + 120)
            .await
            .unwrap();
        for set in &replica_jwks {
            verify(&signed.token, set, ISSUER).unwrap();
        }
    }
    // A rotate in eu-west-1 without a take-over refuses: the keyring names us-east-1.
    let bus = Arc::new(kms_jwt::memory::MemoryEventBus::new());
    let eu_rotate = world
        .rotator(EU, world.eu.clone(), vec![world.region(AP, world.ap.clone())])
        .with_lifecycle_events(bus.clone(), Some(EU.to_owned()));
    assert_eq!(eu_rotate.reconcile(t0 + 180).await.unwrap_err().code(), "NotHome");
    assert!(bus.events().is_empty(), "a refused run tells nothing");

    // Fail-over: promote eu-west-1's replica secret, point ap-southeast-2's replication at it,
    // create keys in eu-west-1 from now on, and take over.
    world.eu.promote();
    world.ap.repoint(world.eu.clone());
    world.kms.set_home_region(EU);
    let report = eu_rotate.run(Command::TakeOver, t0 + 240).await.unwrap();
    assert_eq!(transitions(&report), [Transition::TakeOver]);
    let ring = keyring(&*world.eu).await;
    assert_eq!(ring.home.as_ref().map(|h| (h.region.as_str(), h.epoch)), Some((EU, 1)));
    // Operators hear of it: one "Keyring Taken Over" event naming the new home and epoch.
    let told = bus.events();
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].detail_type(), "Keyring Taken Over");
    assert_eq!((told[0].detail.region.as_deref(), told[0].detail.home_epoch), (Some(EU), Some(1)));
    world.ap.sync();

    // The new home rotates: new keys are eu-west-1 primaries, replicated to ap-southeast-2.
    let t1 = t0 + world.policy.rotation_period;
    let report = eu_rotate.reconcile(t1).await.unwrap();
    assert_eq!(transitions(&report), [Transition::Rotate], "{report:?}");
    let ring = keyring(&*world.eu).await;
    assert!(ring.next().unwrap().kms_key_arn.contains(EU));
    world.ap.sync();
    for (region, store) in [(EU, world.eu.clone() as Arc<dyn KeyringStore>), (AP, world.ap.clone())] {
        let signed =
            signer(world.kms.clone(), region, store).sign_event(json!({"claims": {}}), t1 + 1).await.unwrap();
        assert_eq!(signed.kid, ring.current().unwrap().kid);
    }

    // us-east-1 comes back. Its rotate reads the other regions, sees epoch 1 and writes
    // nothing: never two writers.
    world.kms.set_region_down(HOME, false);
    world.home_store.set_unavailable(false);
    let untouched = world.home_store.current_text();
    let old_region_view = vec![world.region(EU, world.eu.clone()), world.region(AP, world.ap.clone())];
    let fenced = world.rotator(HOME, world.home_store.clone(), old_region_view);
    let err = fenced.reconcile(t1 + world.policy.rotation_period).await.unwrap_err();
    assert_eq!(err.code(), "NotHome", "{err}");
    assert_eq!(world.home_store.current_text(), untouched, "the old home wrote nothing");
    // Nor does a rotate of the old home configured without regions: a multi-region keyring is
    // refused, not planned as single-region.
    let single = Rotator::new(
        world.kms.clone(),
        world.home_store.clone(),
        world.policy.clone(),
        Deployment::multi_region().keyring_name(),
    );
    let err = single.reconcile(t1 + world.policy.rotation_period).await.unwrap_err();
    assert_eq!(err.code(), "MultiRegionKeyring", "{err}");
    assert_eq!(world.home_store.current_text(), untouched);
    drop(old_home);
    assert_eq!(world.kms.denials(), Vec::<String>::new(), "every call of the fail-over is allowed");
}

/// A year, in three-hour ticks: rotate runs at home (sometimes asked to rotate now); every tick
/// each region's replica catches up with some probability; regions lose KMS or Secrets Manager for a while. Each tick every
/// reachable region signs; every live token's key must be in every region's JWKS, whichever
/// copy of the keyring that region holds.
#[tokio::test]
async fn a_year_across_three_regions_with_lag_and_outages_never_breaks_a_verifier() {
    let world = World::new();
    let rotate = world.home_rotator();
    let t0 = 1_700_000_000;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 10_000) as f64 / 10_000.0
    };
    // (kid, expires_at) of every token signed.
    let mut live: Vec<(String, UnixTime, &'static str)> = Vec::new();
    let mut outage_until: [(UnixTime, UnixTime); 2] = [(0, 0), (0, 0)]; // (kms, secrets) per replica
    let (mut rotations, mut held_ticks, mut signed) = (0, 0, 0);
    for tick in 0..(365 * 8) {
        let now = t0 + tick * 3 * HOUR;
        for (i, (region, replica)) in [(EU, &world.eu), (AP, &world.ap)].into_iter().enumerate() {
            if random() < 0.01 {
                outage_until[i].0 = now + (1 + (random() * 16.0) as i64) * 3 * HOUR;
            }
            if random() < 0.01 {
                outage_until[i].1 = now + (1 + (random() * 16.0) as i64) * 3 * HOUR;
            }
            world.kms.set_region_down(region, now < outage_until[i].0);
            replica.set_unavailable(now < outage_until[i].1);
            if random() < 0.6 {
                replica.sync();
            }
        }
        // Now and then an operator asks for a rotation as soon as the next key is
        // pre-published: the next key is then young, and lag matters.
        let command = if random() < 0.1 { Command::Rotate { force: false } } else { Command::Reconcile };
        match rotate.run(command, now).await {
            Ok(report) => {
                rotations += report.transitions.iter().filter(|t| **t == Transition::Rotate).count();
                if report.incomplete.iter().any(|line| line.contains("awaits replication")) {
                    held_ticks += 1;
                }
            }
            Err(e) => {
                // Only an unreachable region fails a run: its KMS, or its keyring copy (then
                // fencing fails closed and the run changes nothing).
                assert!(["KmsError", "HomeUnconfirmed"].contains(&e.code()), "t={now}: {e}");
                held_ticks += 1;
            }
        }
        let home = keyring(&*world.home_store).await;
        home.validate().unwrap();

        // Every region that can reach its KMS and its keyring signs.
        for (i, (region, store)) in world.stores().into_iter().enumerate() {
            let up = i == 0 || (now >= outage_until[i - 1].0 && now >= outage_until[i - 1].1);
            if !up {
                continue;
            }
            match signer(world.kms.clone(), region, store).sign_event(json!({"claims": {}}), now).await {
                Ok(token) => {
                    live.push((token.kid, now + 900, region));
                    signed += 1;
                }
                Err(e) => assert_eq!(e.code(), "NoCurrentKey", "t={now} {region}: {e}"),
            }
        }
        // What each region's verifiers accept: its own copy of the keyring, even stale, even
        // while its Secrets Manager is down (the jwks function serves its last good copy).
        let mut published: Vec<HashSet<String>> = vec![home.keys.iter().map(|k| k.kid.clone()).collect()];
        for replica in [&world.eu, &world.ap] {
            let text = kms_jwt::memory::ReplicationSource::current_text(&**replica);
            let ring = text.map(|t| Keyring::from_json(&t).unwrap()).unwrap_or_default();
            published.push(ring.keys.iter().map(|k| k.kid.clone()).collect());
        }
        live.retain(|(_, exp, _)| *exp > now);
        for (kid, exp, region) in &live {
            for (set, verifier) in published.iter().zip([HOME, EU, AP]) {
                // A region that has not received its first keyring serves nothing yet.
                if set.is_empty() {
                    continue;
                }
                assert!(
                    set.contains(kid),
                    "t={now}: a token of {region} (exp {exp}) is refused in {verifier}"
                );
            }
        }
    }
    // Weekly rotation, delayed by outages but never stalled for good.
    assert!(rotations >= 40, "{rotations} rotations in a year");
    assert!(held_ticks > 0, "some rotations had to wait for a region");
    assert!(signed > 365 * 8 * 2, "{signed} tokens");
    assert_eq!(world.kms.denials(), Vec::<String>::new(), "a year of real call sequences, all allowed");
    eprintln!("a year across three regions: {rotations} rotations, {held_ticks} ticks waiting for replication, {signed} tokens");
}

/// Write `ring` as `replica`'s copy (promoting it: the test stands in for replication from a
/// region that took over).
async fn set_copy(replica: &MemoryReplica, ring: &Keyring) {
    replica.promote();
    let version = replica.load().await.unwrap().map(|doc| doc.version_id);
    replica.compare_and_swap(version.as_deref(), &ring.to_json()).await.unwrap();
}

fn claimed(ring: &Keyring, region: &str, epoch: u64) -> Keyring {
    let mut claimed = ring.clone();
    claimed.home = Some(kms_jwt::keyring::Home { region: region.to_owned(), epoch });
    claimed
}

/// Review finding 3: fencing fails closed. A rival claim at the same epoch fences; a fenced
/// run does no housekeeping (no KMS retirement in any region, no write); take-over happens
/// only where HOME_REGION names the region, one epoch above every copy it can read.
#[tokio::test]
async fn a_fenced_region_changes_nothing_and_take_over_outranks_every_copy() {
    let world = World::new();
    let rotate = world.home_rotator();
    let t0 = bootstrap_everywhere(&world, &rotate).await;
    // A revocation whose KMS retirement in eu-west-1 is still queued.
    let current = keyring(&*world.home_store).await.current().unwrap().clone();
    world.kms.set_region_down(EU, true);
    rotate.run(Command::Revoke { kid: current.kid.clone() }, t0 + 120).await.unwrap();
    world.kms.set_region_down(EU, false);
    world.sync();
    let eu_copy = regional_arn(&current.kms_key_arn, EU).unwrap();
    assert_eq!(world.kms.key_state(&eu_copy), Some(FakeKeyState::Enabled));

    // ap-southeast-2's copy shows a rival home at the same epoch (two take-overs from one base).
    let ring = keyring(&*world.home_store).await;
    set_copy(&world.ap, &claimed(&ring, AP, 0)).await;
    let untouched = world.home_store.current_text();
    let err = rotate.reconcile(t0 + 180).await.unwrap_err();
    assert_eq!(err.code(), "NotHome", "{err}");
    assert_eq!(world.home_store.current_text(), untouched, "no write");
    assert_eq!(world.kms.key_state(&eu_copy), Some(FakeKeyState::Enabled), "no housekeeping either");
    // A revocation still withdraws (never blocked), and does nothing else.
    let published = ring.keys[0].clone();
    let report = rotate.run(Command::Revoke { kid: published.kid.clone() }, t0 + 200).await.unwrap();
    assert_eq!(report.transitions, [Transition::Revoke]);
    assert_eq!(world.kms.key_state(&eu_copy), Some(FakeKeyState::Enabled), "no housekeeping");
    for (arn, state) in world.kms.replicas_of(&published.kms_key_arn) {
        assert_eq!(state, FakeKeyState::Disabled, "the revoked key stops signing at once: {arn}");
    }

    // Take-over: refused where the deployment does not name the region home...
    let eu_rotate =
        world.configured_rotator(EU, Some(HOME), world.eu.clone(), vec![world.region(AP, world.ap.clone())]);
    assert_eq!(eu_rotate.run(Command::TakeOver, t0 + 240).await.unwrap_err().code(), "NotConfiguredHome");
    // ...and, where it does, one epoch above the rival's copy, though its own copy says 0.
    world.eu.promote();
    let eu_rotate =
        world.configured_rotator(EU, Some(EU), world.eu.clone(), vec![world.region(AP, world.ap.clone())]);
    set_copy(&world.ap, &claimed(&ring, AP, 3)).await;
    eu_rotate.run(Command::TakeOver, t0 + 300).await.unwrap();
    assert_eq!(
        keyring(&*world.eu).await.home,
        Some(kms_jwt::keyring::Home { region: EU.to_owned(), epoch: 4 })
    );
}

/// Review finding 7: a run of the old home that crashed before replicating its new key left a
/// primary in the old home's region alone. After a fail-over, the new home's sweep of that
/// run's intent searches every region by tag and retires it.
#[tokio::test]
async fn after_a_fail_over_the_sweep_retires_an_old_home_primary_that_never_left_its_region() {
    let world = World::new();
    let old_home = world.home_rotator();
    let t0 = bootstrap_everywhere(&world, &old_home).await;
    // eu-west-1's KMS is down when the old home rotates: the new primary is made in us-east-1
    // and replicated nowhere; the run's intent stays.
    world.kms.set_region_down(EU, true);
    let t1 = t0 + world.policy.rotation_period;
    assert_eq!(old_home.reconcile(t1).await.unwrap_err().code(), "KmsError");
    world.kms.set_region_down(EU, false);
    world.sync();
    let before = keyring(&*world.home_store).await;
    assert_eq!(before.pending.len(), 1);
    let orphan =
        world.kms.key_arns().into_iter().find(|arn| !before.holds_arn(arn)).expect("an orphaned primary");
    assert_eq!(world.kms.replicas_of(&orphan).len(), 1, "in us-east-1 only");

    // Fail-over to eu-west-1; us-east-1 stays as a replica region.
    world.eu.promote();
    world.ap.repoint(world.eu.clone());
    world.kms.set_home_region(EU);
    let new_home = world.rotator(
        EU,
        world.eu.clone(),
        vec![world.region(AP, world.ap.clone()), world.region(HOME, world.home_store.clone())],
    );
    // The stacks are updated first (HomeRegion eu-west-1, us-east-1 a replica), then the
    // take-over.
    world.kms.redeploy(Deployment::multi_region().with_regions(EU, &[AP, HOME]));
    new_home.run(Command::TakeOver, t1 + 60).await.unwrap();
    world.ap.sync();
    let report = new_home.reconcile(t1 + kms_jwt::rotate::STALE_INTENT_SECS + 120).await;
    let report = report.unwrap_or_else(|e| panic!("{e}"));
    assert!(report.orphans_deleted.iter().any(|arn| same_kms_key(arn, &orphan)), "{report:?}");
    assert!(matches!(world.kms.key_state(&orphan), Some(FakeKeyState::PendingDeletion { .. })));
    assert!(keyring(&*world.eu).await.pending.is_empty(), "the intent is settled");
}

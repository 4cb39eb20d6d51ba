//! Unit tests of `revocation`.

use super::*;

const MINUTE: Duration = Duration::from_secs(60);

impl Revocations {
    fn len(&self) -> usize {
        self.tombstones
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[test]
fn a_revocation_bumps_the_epoch_and_is_final() {
    let revocations = Revocations::new(MINUTE, 16);
    let fingerprint = Fingerprint::of("k");
    let before = revocations.epoch();
    assert_eq!(
        revocations.vet(fingerprint, "key_1", before),
        Verdict::Clear(before)
    );
    revocations.revoke(None, Some("key_1"));
    assert!(revocations.epoch() > before);
    assert_eq!(
        revocations.vet(fingerprint, "key_1", revocations.epoch()),
        Verdict::Revoked
    );
    revocations.revoke(Some(fingerprint), None);
    assert_eq!(revocations.vet(fingerprint, "key_2", 0), Verdict::Revoked);
}

#[test]
fn a_flush_makes_older_entries_unverifiable() {
    let revocations = Revocations::new(MINUTE, 16);
    let fingerprint = Fingerprint::of("k");
    let vetted = revocations.epoch();
    revocations.flush();
    assert_eq!(
        revocations.vet(fingerprint, "key_1", vetted),
        Verdict::Unverifiable
    );
    let now = revocations.epoch();
    assert_eq!(
        revocations.vet(fingerprint, "key_1", now),
        Verdict::Clear(now)
    );
}

#[test]
fn a_repeated_revocation_adds_nothing_and_keeps_the_epoch() {
    let revocations = Revocations::new(MINUTE, 16);
    revocations.revoke(Some(Fingerprint::of("k")), Some("key_1"));
    let epoch = revocations.epoch();
    for _ in 0..1000 {
        revocations.revoke(None, Some("key_1"));
        revocations.revoke(Some(Fingerprint::of("k")), None);
    }
    assert_eq!(revocations.len(), 2);
    assert_eq!(revocations.epoch(), epoch, "hits stay on the fast path");
}

#[test]
fn expired_tombstones_are_forgotten_and_raise_the_floor() {
    let revocations = Revocations::new(Duration::ZERO, 1 << 20);
    for i in 0..5000 {
        revocations.revoke(None, Some(&format!("key_{i}")));
        // Each revocation forgets the expired ones before it.
        assert!(revocations.len() <= 1);
    }
    // On read too, once due.
    let vetted = revocations.epoch();
    let _ = revocations.vet(Fingerprint::of("k"), "key_x", vetted);
    assert_eq!(revocations.len(), 0);
    assert_eq!(
        revocations.vet(Fingerprint::of("k"), "key_x", vetted - 1),
        Verdict::Forgotten
    );
    assert_eq!(revocations.counts(), (0, 0), "expiry is not eviction");
}

#[test]
fn a_full_set_forgets_the_oldest_and_refuses_what_it_guarded() {
    let capacity = 100;
    let revocations = Revocations::new(MINUTE, capacity);
    let victim = Fingerprint::of("victim");
    // An entry of the victim, vetted now; then the victim is revoked.
    let vetted = revocations.epoch();
    revocations.revoke(Some(victim), Some("key_victim"));
    assert_eq!(
        revocations.vet(victim, "key_victim", vetted),
        Verdict::Revoked
    );
    // A flood of revocations of other keys: the victim's tombstones go first.
    for i in 0..10 * capacity {
        revocations.revoke(
            Some(Fingerprint::of(&format!("k{i}"))),
            Some(&format!("key_{i}")),
        );
        assert!(revocations.len() <= capacity);
    }
    assert!(!revocations.is_revoked(victim), "its tombstone is gone");
    // But neither its cached entry nor a validation in flight since then can be used.
    assert_eq!(
        revocations.vet(victim, "key_victim", vetted),
        Verdict::Forgotten
    );
    let (kept, evicted) = revocations.counts();
    assert_eq!(kept, capacity as u64);
    assert_eq!(evicted, (2 + 20 * capacity - capacity) as u64);
    // Entries vetted after the flood are fine; recent tombstones still refuse.
    let now = revocations.epoch();
    assert_eq!(
        revocations.vet(victim, "key_victim", now),
        Verdict::Clear(now)
    );
    let last = 10 * capacity - 1;
    assert_eq!(
        revocations.vet(Fingerprint::of("x"), &format!("key_{last}"), now),
        Verdict::Revoked
    );
}

#[test]
fn token_ids_cost_the_same_however_long() {
    let revocations = Revocations::new(MINUTE, 4);
    let long = "key_".to_owned() + &"x".repeat(1 << 16);
    revocations.revoke(None, Some(&long));
    assert_eq!(
        revocations.vet(Fingerprint::of("k"), &long, 0),
        Verdict::Revoked
    );
    assert_eq!(revocations.len(), 1);
}

#[test]
fn the_derived_capacity_is_bounded_both_ways() {
    assert_eq!(Revocations::derived_capacity(1), MIN_TOMBSTONES);
    assert_eq!(Revocations::derived_capacity(10_000), 20_000);
    assert_eq!(
        Revocations::derived_capacity(u64::MAX),
        MAX_DERIVED_TOMBSTONES
    );
}

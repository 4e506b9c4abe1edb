//! Remembers the `uuid`s of recently collected events.
//!
//! Okta's polling request can, rarely, return an event again on a later page (docs/contracts.md
//! §1.9). Log Analytics does not de-duplicate, so the collector drops an event whose `uuid` it
//! stored recently. "Recently" is a bounded window (docs/design.md §2 step 5: the last ~10k), kept as a
//! ring buffer of insertion order plus a hash map for O(1) look-ups, so memory stays flat no
//! matter how long the collector runs.
//!
//! The window is saved in the checkpoint with every page (as short hashes, `recent`), so a
//! restarted or new leader drops the same repeats; `collector reset` clears it.

use std::collections::{HashMap, VecDeque};

/// Default window: the last 10,000 events (ten full pages).
pub const DEFAULT_CAPACITY: usize = 10_000;

/// A bounded set of recently seen event `uuid`s; the oldest is forgotten first.
///
/// Entries are the uuids' 64-bit hashes ([`uuid_hash`]), the same form the checkpoint saves,
/// so the window restored after a restart or a change of leader is the same ordered window
/// that was saved: one insertion order for every entry, restored or new, and the oldest is
/// always the one trimmed (a set of restored hashes beside it would trim in random order and
/// let a recent repeat through after two leader changes). Two different uuids share a hash
/// with probability about n²/2⁶⁵ (3·10⁻¹² for a 10k window); such an event would be dropped
/// as a repeat, which is accepted for a window that must survive restarts compactly.
#[derive(Debug, Clone)]
pub struct RecentUuids {
    capacity: usize,
    /// Insertion order with the generation of each insertion, so that an entry re-inserted
    /// after [`RecentUuids::forget`] is not evicted by its stale, older slot.
    order: VecDeque<(u64, u64)>,
    /// hash → generation of its live insertion.
    live: HashMap<u64, u64>,
    generation: u64,
}

/// A stable 64-bit hash of a uuid (first 8 bytes of its sha256), used to carry the window
/// across restarts in the checkpoint compactly.
pub fn uuid_hash(uuid: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(uuid.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

impl RecentUuids {
    /// A window remembering at most `capacity` uuids (`0` remembers nothing).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            order: VecDeque::with_capacity(capacity.min(DEFAULT_CAPACITY)),
            live: HashMap::with_capacity(capacity.min(DEFAULT_CAPACITY)),
            generation: 0,
        }
    }

    /// Records `uuid`; returns `true` if it was not in the window (keep the event), `false` if
    /// it was (drop it as a repeat).
    pub fn insert_if_new(&mut self, uuid: &str) -> bool {
        self.insert_hash(uuid_hash(uuid))
    }

    fn insert_hash(&mut self, hash: u64) -> bool {
        if self.live.contains_key(&hash) {
            return false;
        }
        if self.capacity == 0 {
            return true;
        }
        while self.live.len() >= self.capacity {
            self.evict_oldest();
        }
        // Stale slots (left by `forget`) are skipped by eviction; keep the deque from growing
        // without bound when many entries are forgotten.
        if self.order.len() >= self.capacity.saturating_mul(2) {
            self.compact();
        }
        self.generation += 1;
        self.order.push_back((self.generation, hash));
        self.live.insert(hash, self.generation);
        true
    }

    /// Hashes of the uuids in the window, oldest first (saved in the checkpoint).
    pub fn snapshot(&self) -> Vec<u64> {
        // Every live hash has exactly one slot in `order`; the other slots are stale (left by
        // `forget`). With none (the steady state: nothing is forgotten unless storing a page
        // failed), every slot is live and the window is `order` as it is: no look-up per
        // entry. Looking up the 10k entries of a full window for every page was ≈ 4.5 % of the
        // collector's CPU (BENCHMARKS.md, issue 14).
        if self.order.len() == self.live.len() {
            return self.order.iter().map(|&(_, hash)| hash).collect();
        }
        self.order
            .iter()
            .filter(|(generation, hash)| self.live.get(hash) == Some(generation))
            .map(|(_, hash)| *hash)
            .collect()
    }

    /// Replaces the window with hashes saved before a restart, oldest first (as
    /// [`RecentUuids::snapshot`] wrote them); beyond the capacity the oldest are dropped.
    pub fn restore(&mut self, hashes: &[u64]) {
        self.order.clear();
        self.live.clear();
        let skip = hashes.len().saturating_sub(self.capacity);
        for h in &hashes[skip..] {
            self.insert_hash(*h);
        }
    }

    /// Whether `uuid` is in the window.
    pub fn contains(&self, uuid: &str) -> bool {
        self.live.contains_key(&uuid_hash(uuid))
    }

    /// Removes uuids again. The collector calls this when a prepared page could not be stored:
    /// the same events come back when the page is fetched again and must not then be mistaken
    /// for repeats (that would lose them).
    pub fn forget<'a>(&mut self, uuids: impl IntoIterator<Item = &'a str>) {
        for u in uuids {
            self.live.remove(&uuid_hash(u));
        }
    }

    /// Number of uuids in the window.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    fn evict_oldest(&mut self) {
        while let Some((generation, hash)) = self.order.pop_front() {
            if self.live.get(&hash) == Some(&generation) {
                self.live.remove(&hash);
                return;
            }
        }
    }

    fn compact(&mut self) {
        let live = &self.live;
        self.order
            .retain(|(generation, hash)| live.get(hash) == Some(generation));
    }
}

impl Default for RecentUuids {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_survives_a_restart_through_its_snapshot() {
        let mut a = RecentUuids::new(100);
        assert!(a.insert_if_new("u1"));
        assert!(a.insert_if_new("u2"));
        let mut b = RecentUuids::new(100);
        b.restore(&a.snapshot());
        assert!(!b.insert_if_new("u1"));
        assert!(b.insert_if_new("u3"));
        assert_eq!(b.snapshot().len(), 3);
    }

    /// Two changes of leader within a few pages, with a window that trims: each new leader
    /// restores the saved window, collects more pages, and saves it again. The newest
    /// `capacity` uuids must survive every hand-over, in order, so a repeat of any of them is
    /// still caught, and only the oldest are forgotten.
    #[test]
    fn the_restored_window_keeps_insertion_order_and_trims_the_oldest() {
        const CAP: usize = 100;
        let uuid = |i: usize| format!("00000000-0000-4000-8000-{i:012}");
        let mut first = RecentUuids::new(CAP);
        for i in 0..CAP {
            assert!(first.insert_if_new(&uuid(i)));
        }
        // Leader 2: restores, collects 50 more (the window trims 50), saves.
        let mut second = RecentUuids::new(CAP);
        second.restore(&first.snapshot());
        for i in CAP..CAP + 50 {
            assert!(second.insert_if_new(&uuid(i)));
        }
        assert_eq!(second.len(), CAP);
        // Leader 3: restores, collects 30 more, and then sees repeats.
        let mut third = RecentUuids::new(CAP);
        third.restore(&second.snapshot());
        for i in CAP + 50..CAP + 80 {
            assert!(third.insert_if_new(&uuid(i)));
        }
        let saved = third.snapshot();
        assert_eq!(saved.len(), CAP);
        let expected: Vec<u64> = (80..CAP + 80).map(|i| uuid_hash(&uuid(i))).collect();
        assert_eq!(saved, expected, "not the newest {CAP}, oldest first");
        for i in 80..CAP + 80 {
            assert!(!third.insert_if_new(&uuid(i)), "recent repeat {i} passed");
        }
        // The oldest were forgotten: those are new again.
        for i in 0..80 {
            assert!(!third.contains(&uuid(i)), "{i} should be trimmed");
        }
    }

    #[test]
    fn restoring_more_than_the_capacity_keeps_the_newest() {
        let hashes: Vec<u64> = (0..10).collect();
        let mut d = RecentUuids::new(4);
        d.restore(&hashes);
        assert_eq!(d.snapshot(), vec![6, 7, 8, 9]);
    }

    #[test]
    fn drops_a_repeat_within_capacity() {
        let mut d = RecentUuids::new(3);
        assert!(d.insert_if_new("a"));
        assert!(d.insert_if_new("b"));
        assert!(!d.insert_if_new("a"));
        assert!(d.insert_if_new("c"));
        assert!(!d.insert_if_new("b"));
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn forgets_the_oldest_beyond_capacity() {
        let mut d = RecentUuids::new(2);
        assert!(d.insert_if_new("a"));
        assert!(d.insert_if_new("b"));
        assert!(d.insert_if_new("c")); // evicts a
        assert!(!d.contains("a"));
        assert!(d.insert_if_new("a")); // evicts b
        assert!(!d.insert_if_new("c"));
        assert!(d.insert_if_new("b"));
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let mut d = RecentUuids::new(0);
        assert!(d.insert_if_new("a"));
        assert!(d.insert_if_new("a"));
        assert!(d.is_empty());
    }

    #[test]
    fn forget_then_reinsert_keeps_the_new_entry_alive() {
        let mut d = RecentUuids::new(2);
        assert!(d.insert_if_new("a"));
        d.forget(["a"]);
        assert!(!d.contains("a"));
        assert!(d.insert_if_new("b"));
        assert!(d.insert_if_new("a")); // re-inserted; the stale slot of the first "a" is older
        assert!(d.insert_if_new("c")); // evicts b (the oldest live one), not the new "a"
        assert!(d.contains("a"));
        assert!(!d.contains("b"));
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn a_forgotten_uuid_is_left_out_of_the_snapshot_and_the_order_is_kept() {
        let mut d = RecentUuids::new(10);
        for u in ["a", "b", "c"] {
            assert!(d.insert_if_new(u));
        }
        let h = |u: &str| uuid_hash(u);
        assert_eq!(d.snapshot(), vec![h("a"), h("b"), h("c")]);
        d.forget(["b"]);
        assert_eq!(d.snapshot(), vec![h("a"), h("c")]);
        // Inserted again, it is the newest; its stale older slot stays out.
        assert!(d.insert_if_new("b"));
        assert_eq!(d.snapshot(), vec![h("a"), h("c"), h("b")]);
    }

    #[test]
    fn many_forgets_do_not_grow_memory_without_bound() {
        let mut d = RecentUuids::new(4);
        for i in 0..1000 {
            let u = format!("u{i}");
            assert!(d.insert_if_new(&u));
            d.forget([u.as_str()]);
        }
        assert!(d.order.len() <= 8);
        assert!(d.is_empty());
    }
}

//! A byte-bounded least-recently-used cache, shared by the renderings the API keeps in
//! memory (output tiles, finished jobs' footprints).

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Mutex;

#[derive(Debug)]
struct Lru<K, V> {
    /// Entry, its charge and its last use.
    entries: HashMap<K, (V, usize, u64)>,
    /// Keys by last use, oldest first.
    by_use: BTreeMap<u64, K>,
    clock: u64,
    used_bytes: usize,
}

/// Values kept in memory, least recently used first out, bounded by what each is charged.
#[derive(Debug)]
pub struct ByteLru<K, V> {
    budget_bytes: usize,
    lru: Mutex<Lru<K, V>>,
}

impl<K: Hash + Eq + Clone, V: Clone> ByteLru<K, V> {
    /// A cache holding entries charged at most `budget_bytes` in all.
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            budget_bytes,
            lru: Mutex::new(Lru {
                entries: HashMap::new(),
                by_use: BTreeMap::new(),
                clock: 0,
                used_bytes: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru<K, V>> {
        // A panic while holding the lock leaves consistent maps (every update is complete
        // before the next starts), so a poisoned lock is still usable.
        self.lru
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The value kept for `key`, marking it recently used.
    pub fn get(&self, key: &K) -> Option<V> {
        let mut lru = self.lock();
        lru.clock += 1;
        let now = lru.clock;
        let (value, last) = {
            let entry = lru.entries.get_mut(key)?;
            let last = std::mem::replace(&mut entry.2, now);
            (entry.0.clone(), last)
        };
        if let Some(k) = lru.by_use.remove(&last) {
            lru.by_use.insert(now, k);
        }
        Some(value)
    }

    /// Keeps `value` charged `cost_bytes`, evicting the least recently used until it fits.
    /// A value charged more than the whole budget is not kept.
    pub fn insert(&self, key: K, value: V, cost_bytes: usize) {
        if cost_bytes > self.budget_bytes {
            return;
        }
        let mut lru = self.lock();
        if let Some((_, old_cost, last)) = lru.entries.remove(&key) {
            lru.by_use.remove(&last);
            lru.used_bytes -= old_cost;
        }
        while lru.used_bytes + cost_bytes > self.budget_bytes {
            let Some((_, oldest)) = lru.by_use.pop_first() else {
                break;
            };
            if let Some((_, old_cost, _)) = lru.entries.remove(&oldest) {
                lru.used_bytes -= old_cost;
            }
        }
        lru.clock += 1;
        let now = lru.clock;
        lru.by_use.insert(now, key.clone());
        lru.entries.insert(key, (value, cost_bytes, now));
        lru.used_bytes += cost_bytes;
    }

    /// Bytes charged for what is held now.
    pub fn used_bytes(&self) -> usize {
        self.lock().used_bytes
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_leave_first_within_the_budget() {
        let cache = ByteLru::new(3000);
        for k in 0..3 {
            cache.insert(k, k * 10, 1000);
        }
        assert_eq!((cache.len(), cache.used_bytes()), (3, 3000));
        // Touch 0, so 1 is the oldest when 3 needs room.
        assert_eq!(cache.get(&0), Some(0));
        cache.insert(3, 30, 1000);
        assert_eq!(cache.get(&1), None);
        assert_eq!((cache.get(&0), cache.get(&3)), (Some(0), Some(30)));
        // Something bigger than the budget is not kept; replacing an entry charges it once.
        cache.insert(5, 50, 3001);
        assert_eq!(cache.get(&5), None);
        cache.insert(3, 31, 500);
        assert_eq!((cache.get(&3), cache.used_bytes()), (Some(31), 2500));
        // Several evictions make room for one large entry.
        cache.insert(6, 60, 3000);
        assert_eq!((cache.len(), cache.used_bytes()), (1, 3000));
    }
}

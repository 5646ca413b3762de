//! Per-robot backoff for replacing Failed pods, so a pod that keeps failing (evicted, cannot
//! start) is not replaced in a tight loop: the n-th replacement in a row waits
//! `min(BASE · 2^(n-1), MAX)`; a pod that stayed up for `RESET` starts over.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Delay before the first replacement.
pub const BASE: Duration = Duration::from_secs(5);
/// Longest delay.
pub const MAX: Duration = Duration::from_secs(300);
/// A pod replaced longer ago than this without failing again starts from `BASE`.
pub const RESET: Duration = Duration::from_secs(600);

/// The wait before the `n`-th replacement in a row (`n` ≥ 1; 0 means none).
pub fn delay(n: u32) -> Duration {
    if n == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32.checked_shl(n - 1).unwrap_or(u32::MAX);
    BASE.saturating_mul(factor).min(MAX)
}

/// Replacements per pod name: (replacements in a row, when the last one happened).
#[derive(Debug, Default)]
pub struct Backoff {
    entries: HashMap<String, (u32, Instant)>,
}

impl Backoff {
    /// Whether the Failed pod `key` may be replaced `now`; if so, records the replacement.
    pub fn try_replace(&mut self, key: &str, now: Instant) -> bool {
        self.entries
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < RESET + MAX);
        let (n, last) = self
            .entries
            .get(key)
            .copied()
            .filter(|(_, at)| now.saturating_duration_since(*at) < RESET)
            .unwrap_or((0, now));
        if n > 0 && now.saturating_duration_since(last) < delay(n) {
            return false;
        }
        self.entries.insert(key.to_owned(), (n + 1, now));
        true
    }

    /// Entries held (bounded by the pods that failed in the last `RESET + MAX`).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no pod is backing off.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Requeue of a resource that is still converging (pods unconfirmed, updates in flight): the
/// first re-check comes after `BUSY_BASE`, and while nothing the reconcile sees changes (same
/// pods at the same resourceVersions, same decision) each further one waits twice as long, up to
/// `BUSY_MAX`. Pod changes trigger reconciles through the watch anyway; this only bounds polling
/// for what no watch reports (a sidecar that has not confirmed its model, an unreachable robot).
pub const BUSY_BASE: Duration = Duration::from_secs(2);
/// Longest wait between re-checks of an unchanged converging resource.
pub const BUSY_MAX: Duration = Duration::from_secs(30);

/// Busy streaks per resource: (fingerprint of what the reconcile saw, re-checks in a row).
#[derive(Debug, Default)]
pub struct BusyRequeue {
    entries: HashMap<String, (u64, u32)>,
}

impl BusyRequeue {
    /// The requeue for `key` after a busy reconcile that saw `fingerprint`: `BUSY_BASE` when it
    /// changed since the last one, doubled for each unchanged one in a row, at most `BUSY_MAX`.
    pub fn next(&mut self, key: &str, fingerprint: u64) -> Duration {
        let streak = match self.entries.get(key) {
            Some((f, n)) if *f == fingerprint => n.saturating_add(1),
            _ => 0,
        };
        self.entries.insert(key.to_owned(), (fingerprint, streak));
        let factor = 1u32.checked_shl(streak).unwrap_or(u32::MAX);
        BUSY_BASE.saturating_mul(factor).min(BUSY_MAX)
    }

    /// The resource settled (or went): its streak is forgotten, so the map holds only
    /// converging resources.
    pub fn settled(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Resources with a streak.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is converging.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        assert_eq!(delay(0), Duration::ZERO);
        assert_eq!(delay(1), Duration::from_secs(5));
        assert_eq!(delay(2), Duration::from_secs(10));
        assert_eq!(delay(4), Duration::from_secs(40));
        assert_eq!(delay(7), Duration::from_secs(300));
        assert_eq!(delay(60), MAX, "no overflow");
    }

    #[test]
    fn the_first_replacement_is_immediate_then_each_waits_longer() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert!(b.try_replace("ns/p", t0), "first failure: replace at once");
        assert!(!b.try_replace("ns/p", t0 + Duration::from_secs(4)));
        assert!(b.try_replace("ns/p", t0 + Duration::from_secs(5)));
        // second in a row: 10 s after the last one
        assert!(!b.try_replace("ns/p", t0 + Duration::from_secs(14)));
        assert!(b.try_replace("ns/p", t0 + Duration::from_secs(15)));
        // another pod is independent
        assert!(b.try_replace("ns/q", t0 + Duration::from_secs(15)));
    }

    #[test]
    fn a_pod_that_stayed_up_starts_over_and_old_entries_are_dropped() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        for i in 0..5 {
            let _ = b.try_replace("ns/p", t0 + Duration::from_secs(i * 400));
        }
        let later = t0 + Duration::from_secs(5000);
        assert!(
            b.try_replace("ns/p", later),
            "after RESET it is immediate again"
        );
        assert!(!b.try_replace("ns/p", later + Duration::from_secs(1)));
        assert!(b.try_replace("ns/r", later + RESET + MAX + Duration::from_secs(1)));
        assert_eq!(b.len(), 1, "ns/p was pruned");
    }

    #[test]
    fn busy_requeue_doubles_while_nothing_changes_and_restarts_on_change() {
        let mut b = BusyRequeue::default();
        let waits: Vec<u64> = (0..7).map(|_| b.next("ns/a", 1).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(b.next("ns/a", 2), BUSY_BASE, "a change starts over");
        assert_eq!(b.next("ns/b", 2), BUSY_BASE, "per resource");
        assert_eq!(b.next("ns/a", 2).as_secs(), 4);
        b.settled("ns/a");
        assert_eq!(b.len(), 1);
        assert_eq!(b.next("ns/a", 2), BUSY_BASE, "settled forgets the streak");
        for _ in 0..100 {
            assert!(b.next("ns/c", 9) <= BUSY_MAX, "no overflow on long streaks");
        }
    }
}

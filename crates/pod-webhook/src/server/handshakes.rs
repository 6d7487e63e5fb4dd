// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The connections still in their TLS handshake, oldest first. When every slot is taken and a
//! new client waits, the oldest of them goes at once: an honest client finishes its handshake
//! within a few round trips, so the one that has waited longest is the likeliest to be a
//! connection that will never finish it, and a flood of silent connects cannot keep a waiting
//! client out for longer than it takes to accept the ones queued before it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// A handshake younger than this is never cut short: it may be an honest client's, a round
/// trip or two from done.
pub(super) const HANDSHAKE_GRACE: Duration = Duration::from_millis(100);

/// The handshakes under way, by the order they began.
#[derive(Debug, Default)]
pub(super) struct Handshakes {
    inner: Mutex<Queue>,
}

#[derive(Debug, Default)]
struct Queue {
    next: u64,
    waiting: BTreeMap<u64, Entry>,
}

#[derive(Debug)]
struct Entry {
    began: Instant,
    go: Arc<Notify>,
}

/// A connection's place in the queue, left when dropped (its handshake ended either way).
#[derive(Debug)]
pub(super) struct Place {
    handshakes: Arc<Handshakes>,
    key: u64,
    go: Arc<Notify>,
}

impl Place {
    /// Resolves once the connection is asked to give up its slot.
    pub(super) async fn asked_to_go(&self) {
        self.go.notified().await;
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.handshakes.lock().waiting.remove(&self.key);
    }
}

impl Handshakes {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // The queue holds no invariant a panic elsewhere could break.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Enters a connection whose handshake begins now.
    pub(super) fn join(self: &Arc<Self>) -> Place {
        let go = Arc::new(Notify::new());
        let mut queue = self.lock();
        let key = queue.next;
        queue.next += 1;
        queue.waiting.insert(
            key,
            Entry {
                began: Instant::now(),
                go: go.clone(),
            },
        );
        Place {
            handshakes: self.clone(),
            key,
            go,
        }
    }

    /// Asks the oldest handshake to go if it is past [`HANDSHAKE_GRACE`] at `now`; whether one
    /// was asked.
    pub(super) fn evict_oldest(&self, now: Instant) -> bool {
        let mut queue = self.lock();
        let Some(key) = oldest_past_grace(
            queue.waiting.iter().map(|(key, entry)| (*key, entry.began)),
            now,
        ) else {
            return false;
        };
        if let Some(entry) = queue.waiting.remove(&key) {
            entry.go.notify_one();
        }
        true
    }
}

/// Of the handshakes in the order they began, the first if it began at least
/// [`HANDSHAKE_GRACE`] before `now`.
fn oldest_past_grace(
    mut by_age: impl Iterator<Item = (u64, Instant)>,
    now: Instant,
) -> Option<u64> {
    let (key, began) = by_age.next()?;
    (now.saturating_duration_since(began) >= HANDSHAKE_GRACE).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_oldest_past_its_grace_is_asked_to_go() {
        let now = Instant::now();
        let ago = |ms: u64| now.checked_sub(Duration::from_millis(ms)).unwrap_or(now);
        type Case = (&'static str, Vec<(u64, Instant)>, Option<u64>);
        let cases: &[Case] = &[
            ("none under way", vec![], None),
            (
                "the oldest is young",
                vec![(1, ago(50)), (2, ago(10))],
                None,
            ),
            (
                "the oldest is past its grace",
                vec![(1, ago(400)), (2, ago(300))],
                Some(1),
            ),
            ("exactly at the grace", vec![(7, ago(100))], Some(7)),
        ];
        for (what, queue, want) in cases {
            assert_eq!(
                oldest_past_grace(queue.iter().copied(), now),
                *want,
                "{what}"
            );
        }
    }

    #[tokio::test]
    async fn an_evicted_handshake_is_told_and_leaves_the_queue() {
        let handshakes = Arc::new(Handshakes::default());
        let first = handshakes.join();
        let second = handshakes.join();
        let later = Instant::now() + HANDSHAKE_GRACE;
        assert!(handshakes.evict_oldest(later));
        tokio::time::timeout(Duration::from_secs(1), first.asked_to_go())
            .await
            .expect("the oldest is told to go");
        drop(second);
        assert!(!handshakes.evict_oldest(later), "the second left on drop");
        drop(first);
        assert!(handshakes.lock().waiting.is_empty());
    }
}

// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The memory request bodies and their answers may hold, in three pools taken in one order,
//! so that no cycle of waits can form. The first two are the body budget split in two
//! (`Limits::body_pools`): the bytes of bodies in flight are bounded by the budget in total.
//!
//! 1. **arrival**: a body's bytes as they arrive, frame by frame, up to a per-body allowance;
//!    never waited for. A client holds only what it has sent: one that declares a large body
//!    and stalls holds the few bytes it sent, and ordinary reviews never queue behind it.
//! 2. **reserved**: a body that outgrows its allowance, or finds the arrival pool full, waits
//!    its turn (first come, first served) for a share of its whole declared length, still
//!    holding its arrived bytes; once granted, the arrived bytes are released (the share covers
//!    them). Holders wait for nothing but their client, within the fill timeout.
//! 3. **growth**: an answer larger than the share its request holds waits here for the
//!    difference; holders wait for nothing but their client, within the write timeout.
//!
//! Once the answer is built the request keeps only the answer's size.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The three pools.
#[derive(Debug)]
pub(super) struct Budget {
    arrival: Pool,
    reserved: Pool,
    growth: Pool,
    /// The most a body takes from the arrival pool before it needs a reservation.
    per_body: usize,
}

#[derive(Debug)]
struct Pool {
    permits: Arc<Semaphore>,
    size: u32,
}

impl Pool {
    fn new(bytes: usize) -> Self {
        let size = u32::try_from(bytes)
            .unwrap_or(u32::MAX)
            .clamp(1, u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        Pool {
            permits: Arc::new(Semaphore::new(size as usize)),
            size,
        }
    }

    /// Waits for `bytes`, at most the whole pool.
    async fn take(&self, bytes: u64) -> Result<OwnedSemaphorePermit, Closed> {
        self.permits
            .clone()
            .acquire_many_owned(clamp(bytes, self.size))
            .await
            .map_err(|_| Closed)
    }

    /// `bytes` now, if the pool has them.
    fn try_take(&self, bytes: u64) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(bytes).ok()?;
        self.permits.clone().try_acquire_many_owned(n).ok()
    }

    #[cfg(test)]
    fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

/// `bytes` as permits of a pool of `size`: at least one, at most the whole pool.
fn clamp(bytes: u64, size: u32) -> u32 {
    u32::try_from(bytes.max(1)).unwrap_or(u32::MAX).min(size)
}

/// A pool was closed (never happens; refuse rather than read unbounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("memory budget closed")]
pub(super) struct Closed;

/// How a body's bytes were taken into the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Taken {
    /// From the arrival pool, or already covered by the body's reservation.
    Covered,
    /// A reservation was just granted: the rest of the body must now arrive in time.
    Reserved,
}

/// The memory one request holds, released when dropped.
#[derive(Debug, Default)]
pub(super) struct Share {
    arrived: Option<OwnedSemaphorePermit>,
    reserved: Option<OwnedSemaphorePermit>,
    growth: Option<OwnedSemaphorePermit>,
}

impl Budget {
    /// Pools of `arrival`, `reserved` and `growth` bytes; a body takes at most `per_body` of
    /// the arrival pool.
    pub(super) fn new(arrival: usize, per_body: usize, reserved: usize, growth: usize) -> Self {
        Budget {
            arrival: Pool::new(arrival),
            reserved: Pool::new(reserved),
            growth: Pool::new(growth),
            per_body,
        }
    }

    /// Whether a body of `declared` length (`None`: not declared) will need a reservation:
    /// it is larger than the per-body allowance.
    pub(super) fn will_reserve(&self, declared: Option<u64>) -> bool {
        declared.is_none_or(|d| d > self.per_body as u64)
    }

    /// Bytes free in the arrival, reserved and growth pools.
    #[cfg(test)]
    fn free(&self) -> (usize, usize, usize) {
        (
            self.arrival.available(),
            self.reserved.available(),
            self.growth.available(),
        )
    }
}

impl Share {
    /// The body now holds `len` bytes (of `declared`, if it said). Covered from the arrival
    /// pool while that can be done without waiting and within the per-body allowance; else
    /// waits for a reservation of the whole declared length (of the whole pool if undeclared
    /// or larger), keeping what arrived until it is granted.
    pub(super) async fn body_grew(
        &mut self,
        budget: &Budget,
        len: usize,
        declared: Option<u64>,
    ) -> Result<Taken, Closed> {
        if self.reserved.is_some() {
            return Ok(Taken::Covered);
        }
        let held = self
            .arrived
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits);
        if len <= held {
            return Ok(Taken::Covered);
        }
        if len <= budget.per_body
            && let Some(more) = budget.arrival.try_take((len - held) as u64)
        {
            match &mut self.arrived {
                Some(arrived) => arrived.merge(more),
                None => self.arrived = Some(more),
            }
            return Ok(Taken::Covered);
        }
        let whole = declared.map_or(u64::MAX, |d| d.max(len as u64));
        self.reserved = Some(budget.reserved.take(whole).await?);
        self.arrived = None;
        Ok(Taken::Reserved)
    }

    /// Before the answer is built: waits for `most` bytes of the growth pool, what the answer
    /// may need beyond the body's share (none when the share is the whole reserved pool, which
    /// covers any answer: one request at a time can hold that much).
    pub(super) async fn before_answer(
        &mut self,
        budget: &Budget,
        most: usize,
    ) -> Result<(), Closed> {
        let whole = self
            .reserved
            .as_ref()
            .is_some_and(|r| r.num_permits() >= budget.reserved.size as usize);
        if !whole && most > 0 {
            self.growth = Some(budget.growth.take(most as u64).await?);
        }
        Ok(())
    }

    /// The answer of `len` bytes replaces the body: the request keeps the answer's size (the
    /// whole reserved pool at most), from its share first, then from the growth it took.
    pub(super) fn answer_built(&mut self, len: usize) {
        let mut need = len.max(1);
        for permit in [&mut self.reserved, &mut self.arrived, &mut self.growth] {
            if let Some(held) = permit {
                let keep = held.num_permits().min(need);
                need -= keep;
                if keep == 0 {
                    *permit = None;
                } else if held.num_permits() > keep {
                    drop(held.split(held.num_permits() - keep));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: usize = 1024;

    fn budget() -> Budget {
        Budget::new(64 * KIB, 16 * KIB, 100 * KIB, 10 * KIB)
    }

    #[tokio::test]
    async fn bytes_are_taken_as_they_arrive_up_to_the_allowance() {
        let budget = budget();
        let mut share = Share::default();
        assert_eq!(
            share.body_grew(&budget, 4 * KIB, Some(100_000)).await,
            Ok(Taken::Covered)
        );
        assert_eq!(budget.free().0, 60 * KIB, "only what arrived is held");
        assert_eq!(
            share.body_grew(&budget, 16 * KIB, Some(100_000)).await,
            Ok(Taken::Covered)
        );
        assert_eq!(budget.free().0, 48 * KIB);
        // Past the allowance: a reservation of the whole declared length, the arrived bytes
        // released.
        assert_eq!(
            share.body_grew(&budget, 20 * KIB, Some(100_000)).await,
            Ok(Taken::Reserved)
        );
        assert_eq!(budget.free(), (64 * KIB, 100 * KIB - 100_000, 10 * KIB));
        assert_eq!(
            share.body_grew(&budget, 90_000, Some(100_000)).await,
            Ok(Taken::Covered)
        );
        drop(share);
        assert_eq!(budget.free(), (64 * KIB, 100 * KIB, 10 * KIB));
    }

    #[tokio::test]
    async fn stalled_bodies_hold_what_they_sent_and_others_still_pass() {
        let budget = budget();
        // Stalled clients that each declared a large body and sent a few KiB.
        let mut stalled = Vec::new();
        for _ in 0..3 {
            let mut share = Share::default();
            share
                .body_grew(&budget, 5 * KIB, Some(1 << 20))
                .await
                .expect("open");
            stalled.push(share);
        }
        assert_eq!(budget.free().0, 49 * KIB);
        // An ordinary body passes without waiting.
        let mut honest = Share::default();
        let taken = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            honest.body_grew(&budget, 12 * KIB, Some(12 * KIB as u64)),
        )
        .await
        .expect("no wait");
        assert_eq!(taken, Ok(Taken::Covered));
    }

    #[tokio::test]
    async fn a_full_arrival_pool_sends_bodies_to_the_reservation_queue() {
        let budget = Budget::new(8 * KIB, 16 * KIB, 100 * KIB, 10 * KIB);
        let mut first = Share::default();
        first.body_grew(&budget, 8 * KIB, None).await.expect("open");
        let mut second = Share::default();
        // Undeclared: the whole reserved pool.
        assert_eq!(
            second.body_grew(&budget, KIB, None).await,
            Ok(Taken::Reserved)
        );
        assert_eq!(budget.free(), (0, 0, 10 * KIB));
        // A third waits for the reservation, holding its arrived bytes; no deadlock: the
        // holder of the reservation finishes.
        let mut third = Share::default();
        let waiting = third.body_grew(&budget, KIB, Some(2 * KIB as u64));
        let mut waiting = std::pin::pin!(waiting);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), waiting.as_mut())
                .await
                .is_err()
        );
        drop(second);
        assert_eq!(waiting.await, Ok(Taken::Reserved));
    }

    #[tokio::test]
    async fn the_answer_keeps_its_own_size() {
        let budget = budget();
        // Reserved 100,000 bytes; a 3,000-byte answer keeps 3,000, no growth.
        let mut share = Share::default();
        share
            .body_grew(&budget, 20 * KIB, Some(100_000))
            .await
            .expect("reserve");
        share.before_answer(&budget, 4 * KIB).await.expect("growth");
        assert_eq!(budget.free(), (64 * KIB, 100 * KIB - 100_000, 6 * KIB));
        share.answer_built(3000);
        assert_eq!(budget.free(), (64 * KIB, 100 * KIB - 3000, 10 * KIB));
        drop(share);
        // Arrived 10 KiB; a 12 KiB answer keeps the 10 KiB and 2 KiB of growth.
        let mut share = Share::default();
        share
            .body_grew(&budget, 10 * KIB, Some(10 * KIB as u64))
            .await
            .expect("open");
        share.before_answer(&budget, 4 * KIB).await.expect("growth");
        share.answer_built(12 * KIB);
        assert_eq!(budget.free(), (54 * KIB, 100 * KIB, 8 * KIB));
        drop(share);
        // A body larger than the reserved pool holds all of it; so does its answer, without
        // growth.
        let mut share = Share::default();
        share
            .body_grew(&budget, 200 * KIB, Some(6 << 20))
            .await
            .expect("reserve");
        share.before_answer(&budget, 4 * KIB).await.expect("growth");
        share.answer_built(6 << 20);
        assert_eq!(budget.free(), (64 * KIB, 0, 10 * KIB));
        drop(share);
        assert_eq!(budget.free(), (64 * KIB, 100 * KIB, 10 * KIB));
    }
}

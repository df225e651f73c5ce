//! Handing compiled state to the workers, and learning when they run it.
//!
//! [`StateCell`] holds the current `Arc<State>` and its generation in an atomic. A worker keeps a
//! [`StateReader`] and calls [`StateReader::refresh`] between batches: one relaxed-cost atomic
//! load when nothing changed (the hot-path cost), and only on a new generation a short read-lock
//! to clone the `Arc`. The control thread is the only writer. No lock is ever held across a batch.
//!
//! [`Realised`] is the other direction: each worker stores the generation it runs in its own
//! atomic ([`Realised::report`]) and wakes the control server's event loop, which then answers
//! pending `wait` requests and records the publish → realised latency (a histogram in the
//! counters). Workers only touch atomics and the waker (an eventfd write, once per generation).
//! Both types are `Send + Sync` and meant to be shared in an `Arc`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use podswitch_datapath::State;

use crate::proto::Histogram;

/// The current compiled state; see the module docs.
#[derive(Debug)]
pub struct StateCell {
    generation: AtomicU64,
    state: RwLock<Arc<State>>,
}

impl StateCell {
    /// A cell holding `state`.
    pub fn new(state: Arc<State>) -> Arc<Self> {
        Arc::new(Self {
            generation: AtomicU64::new(state.generation()),
            state: RwLock::new(state),
        })
    }

    /// Publishes a new state (the control thread only). Its generation must exceed the current
    /// one; the builder's contract ([`podswitch_datapath::StateBuilder::new`]) already requires it.
    pub fn publish(&self, state: Arc<State>) {
        let g = state.generation();
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = state;
        // Release: a reader that sees the new generation also sees the new state.
        self.generation.store(g, Ordering::Release);
    }

    /// The generation of the current state.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current state.
    pub fn load(&self) -> Arc<State> {
        Arc::clone(&self.state.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// A reader for one worker, which has seen nothing yet.
    pub fn reader(self: &Arc<Self>) -> StateReader {
        StateReader {
            cell: Arc::clone(self),
            seen: None,
        }
    }
}

/// A worker's handle on a [`StateCell`].
#[derive(Debug)]
pub struct StateReader {
    cell: Arc<StateCell>,
    seen: Option<u64>,
}

impl StateReader {
    /// The new state if one was published since the last call (the first call always returns
    /// the current one). Call between batches, then `Worker::set_state` and [`Realised::report`].
    #[inline]
    pub fn refresh(&mut self) -> Option<Arc<State>> {
        let g = self.cell.generation();
        if self.seen == Some(g) {
            return None;
        }
        let s = self.cell.load();
        self.seen = Some(s.generation());
        Some(s)
    }
}

/// Upper bounds (µs) of the realisation-latency histogram buckets.
const BOUNDS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

#[derive(Debug, Default)]
struct Latency {
    /// Published generations not yet realised by every worker, oldest first.
    pending: VecDeque<(u64, Instant)>,
    histogram: Histogram,
}

/// Per-worker realised generations; see the module docs.
#[derive(Debug)]
pub struct Realised {
    workers: Box<[AtomicU64]>,
    waker: OnceLock<Arc<mio::Waker>>,
    latency: Mutex<Latency>,
}

impl Realised {
    /// A tracker for `workers` workers (zero: every published generation counts as realised).
    pub fn new(workers: usize) -> Arc<Self> {
        Arc::new(Self {
            workers: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            waker: OnceLock::new(),
            latency: Mutex::new(Latency {
                pending: VecDeque::new(),
                histogram: Histogram {
                    bounds_us: BOUNDS_US.to_vec(),
                    counts: vec![0; BOUNDS_US.len() + 1],
                    ..Histogram::default()
                },
            }),
        })
    }

    /// Number of workers tracked.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Worker `worker` now runs `generation`. Out-of-range workers are ignored.
    pub fn report(&self, worker: usize, generation: u64) {
        let Some(slot) = self.workers.get(worker) else {
            return;
        };
        let old = slot.fetch_max(generation, Ordering::AcqRel);
        if old < generation
            && let Some(w) = self.waker.get()
        {
            // A failed wake only delays answers until the loop's next timeout.
            let _ = w.wake();
        }
    }

    /// The generation every worker runs (`u64::MAX` without workers).
    pub fn realised(&self) -> u64 {
        self.workers
            .iter()
            .map(|w| w.load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX)
    }

    pub(crate) fn set_waker(&self, waker: Arc<mio::Waker>) {
        let _ = self.waker.set(waker);
    }

    /// Notes when `generation` was published (the control thread).
    pub(crate) fn published(&self, generation: u64, at: Instant) {
        if self.workers.is_empty() {
            return;
        }
        let mut l = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        l.pending.push_back((generation, at));
        // Bounded: if workers stall, old entries are dropped rather than growing without end.
        if l.pending.len() > 4096 {
            l.pending.pop_front();
        }
    }

    /// Records the latency of every pending generation realised by `now`.
    pub(crate) fn observe(&self, now: Instant) {
        let r = self.realised();
        let mut l = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(&(g, at)) = l.pending.front() {
            if g > r {
                break;
            }
            l.pending.pop_front();
            let us =
                u64::try_from(now.saturating_duration_since(at).as_micros()).unwrap_or(u64::MAX);
            let h = &mut l.histogram;
            let i = BOUNDS_US
                .iter()
                .position(|&b| us <= b)
                .unwrap_or(BOUNDS_US.len());
            h.counts[i] += 1;
            h.samples += 1;
            h.sum_us = h.sum_us.saturating_add(us);
            h.max_us = h.max_us.max(us);
        }
    }

    /// The realisation-latency histogram so far.
    pub fn histogram(&self) -> Histogram {
        self.latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .histogram
            .clone()
    }
}

/// The bucket bound at or above the `q` quantile (`0.0..=1.0`) of a histogram, in µs; `None` when
/// empty or in the overflow bucket.
pub fn quantile_bound(h: &Histogram, q: f64) -> Option<Duration> {
    let want = ((h.samples as f64) * q).ceil().max(1.0) as u64;
    let mut acc = 0;
    for (i, c) in h.counts.iter().enumerate() {
        acc += c;
        if acc >= want && h.samples > 0 {
            return h.bounds_us.get(i).map(|&us| Duration::from_micros(us));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Controller;

    #[test]
    fn realised_is_the_slowest_worker() {
        let r = Realised::new(3);
        assert_eq!(r.realised(), 0);
        r.report(0, 5);
        r.report(1, 7);
        assert_eq!(r.realised(), 0);
        r.report(2, 6);
        assert_eq!(r.realised(), 5);
        // Reports never go backwards; unknown workers are ignored.
        r.report(0, 3);
        r.report(9, 100);
        assert_eq!(r.realised(), 5);
        r.report(0, 8);
        assert_eq!(r.realised(), 6);
        assert_eq!(Realised::new(0).realised(), u64::MAX);
    }

    #[test]
    fn latency_histogram_counts_realised_generations() {
        let r = Realised::new(1);
        let t0 = Instant::now();
        r.published(1, t0);
        r.published(2, t0);
        r.report(0, 1);
        r.observe(t0 + Duration::from_micros(300));
        let h = r.histogram();
        assert_eq!((h.samples, h.max_us), (1, 300));
        assert_eq!(h.counts[2], 1, "300 µs falls in the (250, 500] bucket");
        r.report(0, 2);
        r.observe(t0 + Duration::from_secs(2));
        let h = r.histogram();
        assert_eq!(h.samples, 2);
        assert_eq!(*h.counts.last().unwrap(), 1, "overflow bucket");
        assert_eq!(quantile_bound(&h, 0.5), Some(Duration::from_micros(500)));
        assert_eq!(quantile_bound(&h, 1.0), None);
        assert_eq!(quantile_bound(&Histogram::default(), 0.5), None);
    }

    #[test]
    fn reader_sees_each_new_state_once() {
        let mut c = Controller::in_memory(None).unwrap();
        let cell = c.cell();
        let mut reader = cell.reader();
        assert_eq!(reader.refresh().map(|s| s.generation()), Some(0));
        assert!(reader.refresh().is_none());
        c.handle(crate::Request::NamespaceCreate {
            name: "a".into(),
            labels: crate::proto::Labels::new(),
            subnet_v4: None,
            subnet_v6: None,
        })
        .unwrap();
        assert_eq!(cell.generation(), 1);
        assert_eq!(reader.refresh().map(|s| s.generation()), Some(1));
        assert!(reader.refresh().is_none());
        assert_eq!(cell.load().generation(), 1);
    }
}

//! Per-zone limits and occupancy counters, sized by the configuration rather than by the zone
//! space: a zone needs a counter only when it has a finite limit. With the default (no default
//! zone limit) only the zones listed in `Config::zone_limits` get an atomic counter (a sorted
//! slice, binary-searched), so creating a table costs nothing per possible zone; with a finite
//! default limit every zone is limited and a dense 65 536-counter array is allocated.
//!
//! Invariant: a tracked zone's counter equals its number of entries whenever no call is in
//! flight (the table reserves before writing an entry and releases after removing it).
//! Untracked zones are unlimited; their occupancy is counted by the table on demand.
//! Thread-safety: counters are atomics; limits are immutable after creation.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::config::Config;

const ZONES: usize = 1 << 16;

#[derive(Debug)]
enum Counters {
    /// Only the listed zones are limited: `(zone, limit, occupancy)` sorted by zone.
    Listed(Box<[(u16, u32, AtomicU32)]>),
    /// Every zone is limited: limits and occupancy indexed by zone.
    Dense {
        limit: Box<[u32]>,
        occupancy: Box<[AtomicU32]>,
    },
}

#[derive(Debug)]
pub(crate) struct Zones {
    counters: Counters,
}

impl Zones {
    pub(crate) fn new(config: &Config) -> Zones {
        let counters = if config.default_zone_limit == u32::MAX {
            // Later entries for the same zone override earlier ones.
            let mut listed: Vec<(u16, u32)> = Vec::new();
            for &(z, l) in &config.zone_limits {
                match listed.iter_mut().find(|(lz, _)| *lz == z) {
                    Some(e) => e.1 = l,
                    None => listed.push((z, l)),
                }
            }
            listed.sort_unstable_by_key(|&(z, _)| z);
            Counters::Listed(
                listed
                    .into_iter()
                    .map(|(z, l)| (z, l, AtomicU32::new(0)))
                    .collect(),
            )
        } else {
            let mut limit = vec![config.default_zone_limit; ZONES].into_boxed_slice();
            for &(z, l) in &config.zone_limits {
                limit[usize::from(z)] = l;
            }
            Counters::Dense {
                limit,
                occupancy: (0..ZONES).map(|_| AtomicU32::new(0)).collect(),
            }
        };
        Zones { counters }
    }

    /// The limit and counter of `zone`; `None` when the zone is unlimited and untracked.
    #[inline]
    pub(crate) fn get(&self, zone: u16) -> Option<(u32, &AtomicU32)> {
        match &self.counters {
            Counters::Listed(l) => {
                if l.is_empty() {
                    return None;
                }
                let i = l.binary_search_by_key(&zone, |&(z, _, _)| z).ok()?;
                let (_, limit, ref c) = l[i];
                Some((limit, c))
            }
            Counters::Dense { limit, occupancy } => {
                let z = usize::from(zone);
                Some((limit[z], &occupancy[z]))
            }
        }
    }

    /// Gives back one entry's reservation in `zone`.
    #[inline]
    pub(crate) fn release(&self, zone: u16) {
        if let Some((_, c)) = self.get(zone) {
            c.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The tracked zones with their limits and occupancy.
    pub(crate) fn tracked(&self) -> Vec<(u16, u32, u32)> {
        match &self.counters {
            Counters::Listed(l) => l
                .iter()
                .map(|(z, lim, c)| (*z, *lim, c.load(Ordering::Relaxed)))
                .collect(),
            Counters::Dense { limit, occupancy } => (0..ZONES)
                .filter_map(|z| {
                    let n = occupancy[z].load(Ordering::Relaxed);
                    (n != 0).then(|| (z as u16, limit[z], n))
                })
                .collect(),
        }
    }

    /// Whether every zone is tracked (so the counters sum to the table's occupancy).
    pub(crate) fn dense(&self) -> bool {
        matches!(self.counters, Counters::Dense { .. })
    }
}

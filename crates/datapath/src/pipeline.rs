//! [`Worker`]: one polling thread's pipeline — parse, flow-cache lookup, conntrack, and on a miss
//! the slow path (anti-spoofing, ARP/ND answers, routing, TTL and MTU rules, policy, conntrack
//! commit, cache install) — over a [`Batch`], with `now` passed in (sans-IO).
//!
//! Tiers, as Open vSwitch's dpif-netdev: a per-worker exact-match [`Cache`] of decisions keyed by
//! the full [`FlowKey`] (input port, MACs, addresses, ports) whose hit applies cached actions and
//! only does conntrack's fast update by handle; a miss runs the slow path and installs its
//! decision. ARP, neighbour discovery, ICMP errors and conntrack-related packets always take the
//! slow path (they are rare and produce packets). Conntrack zone: 0 for every connection
//! ([`meta::ZONE`]).
//!
//! **Revocation guarantee.** Every cached decision carries the generation of the [`State`] it came
//! from. A new state (a policy change) has a new generation, so after [`Worker::set_state`] the
//! next packet of every connection misses the cache; the slow path re-evaluates the connection's
//! *original* direction against the new policy and, if it is no longer allowed, removes the
//! conntrack entry and drops the packet (counted as [`DropReason::Revoked`]). Hence no packet of a
//! revoked connection passes once the worker has picked up the new state. Idle connections are
//! removed by [`Worker::revalidate`], which the runner drives on a budget, or at the latest by
//! their conntrack timeout.
//!
//! A batch runs in three stages, VPP-style: parse (and decapsulate) every frame and compute its
//! flow key; touch every packet's cache bucket in a bare loop so their memory misses overlap
//! (about 1.7x at a million flows; the touch also starts each hit's conntrack entry loading),
//! look them up and give all the hits' conntrack updates to one
//! [`Table::update_batch_prefetched`] (a shard's lock is kept while consecutive packets name it,
//! so a burst of one flow takes it once per batch rather than once per packet: 5–10 % less CPU
//! per packet on a quiet machine, +35–65 % packets/s under contention); then, per packet in
//! order, the cached actions or the slow path. Every lookup precedes the batch's slow paths, so
//! a second packet of a flow first seen in the same batch takes the slow path too (conntrack
//! then knows the connection); per-connection order is kept. Each packet's
//! record (headers, flow key, plan) and its conntrack batch item live in preallocated arrays that
//! every stage writes in place: building a record and moving it by value made the next stage read
//! it back before the stores had drained, and those loads stalled on store forwarding (together a
//! fifth of the per-packet time).
//!
//! Order of checks for IP (as Linux's ip_forward): anti-spoofing, router MAC, route, TTL and MTU
//! (with ICMP errors, rate-limited by a per-worker token bucket), then conntrack and policy — so a
//! packet that cannot be forwarded never creates conntrack state.
//!
//! Thread-safety: a `Worker` is owned by one thread (`Send`); it shares only the conntrack
//! [`Table`] (internally sharded) and the immutable `Arc<State>`. Its counters are plain integers,
//! read with [`Worker::stats`] and merged across workers with [`Stats::merge`]. No allocation per
//! packet on the established path (a test counts them); the slow path may allocate when a new
//! rule or group pair is first counted.

use core::hint::black_box;
use core::net::IpAddr;
use std::sync::Arc;

use hashbrown::HashMap;
use podswitch_conntrack::{
    CommitError, EntryInfo, Filter, Handle, Instant, Lookup, Nat, PacketMeta, Table,
    Verdict as CtVerdict,
};
use podswitch_flow::{Action, Actions, Cache, CacheError, FlowKey};
use podswitch_overlay::DecapMemo;
use podswitch_policy::{Decision, PolicyId, RuleRef, Verdict};
use podswitch_wire::arp::{self, Operation};
use podswitch_wire::frame::{Fragment, Headers, L3, L4};
use podswitch_wire::{icmpv6, parse_frame_into};

use crate::batch::{BATCH_SIZE, Batch, Disposition, HEADROOM};
use crate::icmp::{self, IcmpError, RateLimiter};
use crate::meta::{self, ip_len, packet_meta_into, placeholder_meta, policy_key};
use crate::neighbor;
use crate::state::{PortKind, Route, State};
use crate::stats::{DropReason, GroupLabel, PortStats, Stats, Traffic};

const NONE: u32 = u32::MAX;

/// Flow-cache footprint (bytes) above which a batch prefetches in stages before its lookups:
/// half a core's L2 here. Measured (CPU per packet, `examples/pps`): at 1 000 flows (240 KB) the
/// plain touch pass is faster (151 vs 159 ns), at 10 000 flows (3.8 MB) the stages are (161 vs
/// 192 ns), and at a million by far (387 vs 485 ns).
const STAGED_PREFETCH_ABOVE: usize = 1 << 20;

/// A cached decision: the actions, the conntrack entry, and the counter slots to bump.
///
/// Kept to 32 bytes so a cache slot (a 64-byte key and this) spans exactly two cache lines, which
/// at a million flows are two misses per packet: the action list is interned per state (few
/// distinct lists: one per output port or remote endpoint) and the entry holds its index.
#[derive(Debug, Clone, Copy)]
struct Cached {
    /// Index into `Counters::actions` (valid for the state the entry's generation names).
    actions: u32,
    /// The conntrack entry (`None` only for related packets, which are never cached).
    handle: Option<Handle>,
    /// Dense index of the output port (tx counters).
    out_port: u16,
    /// Largest IP packet the egress takes.
    mtu: u16,
    /// Rule counter slots (egress rule, ingress rule), `NONE` when no rule applied.
    rules: [u32; 2],
    /// Group-pair counter slot.
    pair: u32,
}

const _: () = assert!(core::mem::size_of::<Cached>() == 32);

/// Per-state dense counters (indices are valid for one state).
#[derive(Debug, Default)]
struct Counters {
    ports: Vec<PortStats>,
    rule_index: HashMap<RuleRef, u32>,
    rules: Vec<(RuleRef, Traffic)>,
    pair_index: HashMap<(u32, u32), u32>,
    pairs: Vec<((u32, u32), Traffic)>,
    /// Interned action lists of this state's decisions.
    action_index: HashMap<Actions, u32>,
    actions: Vec<Actions>,
}

impl Counters {
    fn for_state(st: &State) -> Counters {
        Counters {
            ports: vec![PortStats::default(); st.ports.len()],
            ..Counters::default()
        }
    }

    #[inline]
    fn rule(&mut self, r: RuleRef) -> u32 {
        if let Some(i) = self.rule_index.get(&r) {
            return *i;
        }
        let i = self.rules.len() as u32;
        self.rules.push((r, Traffic::default()));
        self.rule_index.insert(r, i);
        i
    }

    fn intern(&mut self, a: Actions) -> u32 {
        if let Some(i) = self.action_index.get(&a) {
            return *i;
        }
        let i = self.actions.len() as u32;
        self.actions.push(a);
        self.action_index.insert(a, i);
        i
    }

    #[inline]
    fn pair(&mut self, k: (u32, u32)) -> u32 {
        if let Some(i) = self.pair_index.get(&k) {
            return *i;
        }
        let i = self.pairs.len() as u32;
        self.pairs.push((k, Traffic::default()));
        self.pair_index.insert(k, i);
        i
    }

    /// Packets of a forwarded flow: rule and pair counters.
    #[inline]
    fn traffic(&mut self, c: &Cached, bytes: usize, new_connection: bool) {
        let conn = u64::from(new_connection);
        for r in c.rules {
            if let Some((_, t)) = self.rules.get_mut(r as usize) {
                t.packets += 1;
                t.bytes += bytes as u64;
                t.connections += conn;
            }
        }
        if let Some((_, t)) = self.pairs.get_mut(c.pair as usize) {
            t.packets += 1;
            t.bytes += bytes as u64;
            t.connections += conn;
        }
    }

    #[inline]
    fn tx(&mut self, port: u16, bytes: usize) {
        if let Some(p) = self.ports.get_mut(usize::from(port)) {
            p.tx_packets += 1;
            p.tx_bytes += bytes as u64;
        }
    }

    /// Folds into `out` with the labels of `st` (the state these indices belong to).
    fn fold_into(&self, st: &State, out: &mut Stats) {
        for (i, p) in self.ports.iter().enumerate() {
            if let Some(port) = st.ports.get(i)
                && (p.rx_packets | p.tx_packets | p.drops_total()) != 0
            {
                let mut one = Stats::default();
                one.ports.insert(port.id, *p);
                out.merge(&one);
            }
        }
        for (r, t) in &self.rules {
            let e = out.rules_allowed.entry(*r).or_default();
            e.packets += t.packets;
            e.bytes += t.bytes;
            e.connections += t.connections;
        }
        let label = |g: u32| {
            st.groups
                .get(g as usize)
                .cloned()
                .unwrap_or(GroupLabel::External)
        };
        for ((s, d), t) in &self.pairs {
            let e = out.groups.entry((label(*s), label(*d))).or_default();
            e.packets += t.packets;
            e.bytes += t.bytes;
            e.connections += t.connections;
        }
    }
}

/// One received frame's record through the stages: its headers, input, flow key and plan.
/// The worker keeps `BATCH_SIZE` of them and every stage writes its part in place: moving a
/// freshly written record by value reads it back in wide loads that stall on store forwarding.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The parsed headers (the inner frame's after decapsulation); valid unless `plan` is
    /// `Done`.
    h: Headers,
    ing: Ingress,
    key: FlowKey,
    hash: u32,
    plan: Plan,
}

impl Default for Slot {
    fn default() -> Slot {
        Slot {
            h: Headers::default(),
            ing: Ingress {
                idx: 0,
                id: 0,
                kind: PortKind::Endpoint,
            },
            key: FlowKey::default(),
            hash: 0,
            plan: Plan::Slow,
        }
    }
}

/// Where a frame came from after decapsulation.
#[derive(Debug, Clone, Copy)]
struct Ingress {
    /// Dense index of the (possibly tunnel) input port.
    idx: u16,
    /// Its id.
    id: u32,
    kind: PortKind,
}

/// One worker's pipeline; see the module docs.
#[derive(Debug)]
pub struct Worker {
    state: Arc<State>,
    conntrack: Arc<Table>,
    cache: Cache<Cached>,
    limiter: RateLimiter,
    counters: Counters,
    /// Counters of earlier states, and every counter not indexed densely.
    folded: Stats,
    /// Revalidation pass: whether one is due (a state arrived since the last completed), the
    /// next conntrack shard to list, and the listed entries of the current shard with the
    /// position reached in them.
    reval_due: bool,
    reval_shard: usize,
    reval_entries: Vec<EntryInfo>,
    reval_pos: usize,
    /// Per-packet records of the current batch (`BATCH_SIZE` of them, reused).
    slots: Vec<Slot>,
    /// Cache hits queued for one conntrack `update_batch`: the packet, its cached decision, and
    /// the conntrack call's input and output (all capacity `BATCH_SIZE`, reused).
    hits: Vec<(usize, Cached)>,
    /// `BATCH_SIZE` preallocated items written in place; the first `queued` are this batch's.
    ct_in: Vec<(Handle, PacketMeta)>,
    ct_out: Vec<Option<Lookup>>,
    /// The last tunnel decapsulation found (valid for `state`'s overlay; reset with it).
    decap_memo: DecapMemo,
}

/// What stage 3 does with a packet.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// Already decided in stage 1 (dropped before its flow key).
    Done(Disposition),
    /// Keyed, and (after stage 2) no usable cache hit: the slow path.
    Slow,
    /// Dropped by the fast path's checks.
    Drop(DropReason),
    /// A cache hit whose conntrack update is queued at this index of `hits`.
    Fast(usize),
}

impl Worker {
    /// A worker on `state` sharing `conntrack`, with a flow cache of `cache_capacity` entries.
    pub fn new(
        state: Arc<State>,
        conntrack: Arc<Table>,
        cache_capacity: usize,
    ) -> Result<Worker, CacheError> {
        let r = state.router;
        Ok(Worker {
            counters: Counters::for_state(&state),
            limiter: RateLimiter::new(r.icmp_burst, r.icmp_per_second),
            state,
            conntrack,
            cache: Cache::new(cache_capacity)?,
            folded: Stats::default(),
            reval_due: false,
            reval_shard: 0,
            reval_entries: Vec::new(),
            reval_pos: 0,
            slots: vec![Slot::default(); BATCH_SIZE],
            hits: Vec::with_capacity(BATCH_SIZE),
            ct_in: vec![(Handle::STALE, placeholder_meta()); BATCH_SIZE],
            ct_out: Vec::with_capacity(BATCH_SIZE),
            decap_memo: DecapMemo::default(),
        })
    }

    /// Swaps in a new state between batches. Cached decisions of other generations become misses
    /// (see the revocation guarantee in the module docs).
    pub fn set_state(&mut self, state: Arc<State>) {
        self.counters.fold_into(&self.state, &mut self.folded);
        self.counters = Counters::for_state(&state);
        let r = state.router;
        if r.icmp_burst != self.state.router.icmp_burst
            || r.icmp_per_second != self.state.router.icmp_per_second
        {
            self.limiter = RateLimiter::new(r.icmp_burst, r.icmp_per_second);
        }
        self.state = state;
        self.decap_memo = DecapMemo::default();
        // A new pass re-checks every connection against the new policy.
        self.reval_due = true;
        self.reval_shard = 0;
        self.reval_entries.clear();
        self.reval_pos = 0;
    }

    /// The state in use.
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// The worker's counters (a copy, merged over the states it ran).
    pub fn stats(&self) -> Stats {
        let mut s = self.folded.clone();
        self.counters.fold_into(&self.state, &mut s);
        let c = self.cache.stats();
        s.cache_hits = c.hits;
        s.cache_misses = c.misses;
        s
    }

    /// Entries in the flow cache (stale ones not yet reclaimed included).
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    /// Re-checks up to `max` conntrack entries against the current policy (original direction)
    /// and removes those it no longer allows; returns how many were removed. After each
    /// [`set_state`](Self::set_state) one pass walks the table over successive calls, listing
    /// one conntrack shard at a time (one lock, a reused buffer); between states there is
    /// nothing to re-check, so no pass runs: a connection is committed only under the state of
    /// the worker committing it, and that worker's own pass covers it when its state changes.
    /// Expiry is not its business: the caller drives [`Table::sweep`] on its own budget (the
    /// runner's housekeeping does both; this used to sweep too, doubling the sweep budget
    /// without counting it).
    pub fn revalidate(&mut self, max: usize) -> usize {
        let mut removed = 0;
        let mut budget = max;
        while self.reval_due && budget > 0 {
            if self.reval_pos >= self.reval_entries.len() {
                if self.reval_shard >= self.conntrack.shards() {
                    // Pass complete: release the listing (a shard's worth at most).
                    self.reval_due = false;
                    self.reval_entries = Vec::new();
                    self.reval_pos = 0;
                    break;
                }
                self.reval_entries.clear();
                self.conntrack.entries_in(
                    self.reval_shard,
                    &Filter::Zone(meta::ZONE),
                    &mut self.reval_entries,
                );
                self.reval_shard += 1;
                self.reval_pos = 0;
                continue;
            }
            let end = (self.reval_pos + budget).min(self.reval_entries.len());
            for e in &self.reval_entries[self.reval_pos..end] {
                let o = e.original;
                let (proto, port) = policy_key(o.protocol, o.dst_port);
                if !self
                    .state
                    .policy
                    .verdict(o.src, o.dst, proto, port)
                    .is_allowed()
                {
                    // By tuple: found through the index, no scan.
                    removed += self.conntrack.flush(&Filter::Tuple {
                        zone: e.zone,
                        tuple: o,
                    });
                }
            }
            budget -= end - self.reval_pos;
            self.reval_pos = end;
        }
        self.folded.revoked_connections += removed as u64;
        removed
    }

    /// Whether a revalidation pass is under way (a state arrived and not every conntrack shard
    /// has been re-checked against it yet).
    pub fn revalidating(&self) -> bool {
        self.reval_due
    }

    /// Processes every received frame of `batch` and collects the outputs per port.
    ///
    /// Stages: parse and key every packet; look them all up in the flow cache (prefetching
    /// first when the cache is large); one conntrack `update_batch` for the hits; then per
    /// packet the cached actions or the slow path.
    pub fn process(&mut self, batch: &mut Batch, now: Instant) {
        batch.reset_generated();
        let st = Arc::clone(&self.state);
        let n = batch.rx_count().min(BATCH_SIZE);
        // Stage 1: parse (and decapsulate) the whole vector, compute keys and hashes.
        let mut slots = core::mem::take(&mut self.slots);
        for (i, s) in slots[..n].iter_mut().enumerate() {
            self.classify(&st, batch, i, s);
        }
        let slots_n = &slots[..n];
        // Stage 2: look every packet up in the flow cache back to back (at many flows their
        // memory misses overlap instead of serialising behind each packet's work: VPP's prefetch
        // of the next packets, done with plain loads), and queue the hits' conntrack updates so
        // that one `update_batch` takes each conntrack shard lock once for many packets instead
        // of once per packet (a burst of one flow).
        if self.cache.footprint() > STAGED_PREFETCH_ABOVE {
            // A cache too large to stay cached: staged prefetches (VPP's pattern): every
            // packet's cache bucket, then the slot its signature names, then the conntrack
            // entry that slot's handle names. Each pass only issues loads that nothing waits
            // for, so a batch's misses are in flight together and the lookups below find their
            // lines cached (at a million flows a packet needs three dependent misses).
            for s in slots_n.iter().filter(|s| keyed(s)) {
                self.cache.prefetch_bucket(s.hash);
            }
            for s in slots_n.iter().filter(|s| keyed(s)) {
                self.cache.prefetch_slot(s.hash);
            }
            let mut last = None;
            for s in slots_n.iter().filter(|s| keyed(s)) {
                if last != Some(s.hash) {
                    last = Some(s.hash);
                    if let Some(c) = self.cache.peek(&s.key, s.hash, st.generation)
                        && let Some(h) = c.handle
                    {
                        self.conntrack.prefetch_handles([h]);
                    }
                }
            }
        } else {
            // A bare pass touching every distinct flow's bucket: a loop this small keeps many
            // misses in flight at once; the lookups below then hit cached lines. A hit's
            // conntrack entry starts loading too (a prefetch: conntrack skips it when its own
            // table is small), so that miss overlaps the lookups instead of stalling
            // `update_batch` (100 000 flows: 2.7 -> 3.1 Mpps).
            let mut last = None;
            for s in slots_n.iter().filter(|s| keyed(s)) {
                if last != Some(s.hash) {
                    last = Some(s.hash);
                    if let Some(c) = black_box(self.cache.peek(&s.key, s.hash, st.generation))
                        && let Some(h) = c.handle
                    {
                        self.conntrack.prefetch_handles([h]);
                    }
                }
            }
        }
        let mut hits = core::mem::take(&mut self.hits);
        let mut ct_in = core::mem::take(&mut self.ct_in);
        let mut ct_out = core::mem::take(&mut self.ct_out);
        hits.clear();
        let mut queued = 0;
        for (i, s) in slots[..n].iter_mut().enumerate() {
            if !keyed(s) {
                continue;
            }
            s.plan = match self.cache.lookup(&s.key, s.hash, st.generation) {
                None => {
                    // Probably a new connection: start the slow path's misses now
                    // (conntrack index slots, the cache slot it will fill) so they
                    // overlap with the rest of the batch instead of stalling each
                    // packet's slow path in turn.
                    // Built in place, not returned: see `packet_meta_into`.
                    let mut m = placeholder_meta();
                    if packet_meta_into(&s.h, batch.packet_mut(i).frame(), &mut m) {
                        self.conntrack.prefetch_lookup(&m);
                    }
                    self.cache.prefetch_insert(s.hash);
                    Plan::Slow
                }
                Some(c) => match queue_fast(batch, i, &s.h, c, &mut ct_in[queued]) {
                    Err(r) => Plan::Drop(r),
                    Ok(false) => Plan::Slow,
                    Ok(true) => {
                        queued += 1;
                        hits.push((i, *c));
                        Plan::Fast(hits.len() - 1)
                    }
                },
            };
        }
        ct_out.clear();
        ct_out.resize(queued, None);
        // Every hit's entry started loading in the stage-2 pass above.
        self.conntrack
            .update_batch_prefetched(&ct_in[..queued], now, &mut ct_out);
        // Stage 3: per packet, in order: the cached actions, or the slow path.
        for (i, s) in slots[..n].iter().enumerate() {
            let d = match s.plan {
                Plan::Done(d) => d,
                Plan::Drop(r) => self.drop_at(s.ing.idx, r),
                Plan::Fast(k) => {
                    let c = hits[k].1;
                    match ct_out[k].map(|l| l.verdict) {
                        Some(CtVerdict::Established | CtVerdict::Reply) => {
                            match apply(&mut self.counters, &st, batch, i, &s.h, &c, s.hash, false)
                            {
                                Ok(d) => d,
                                Err(r) => self.drop_at(s.ing.idx, r),
                            }
                        }
                        Some(CtVerdict::Invalid(_)) => {
                            self.drop_at(s.ing.idx, DropReason::ConntrackInvalid)
                        }
                        // The conntrack entry is gone or changed: decide again.
                        Some(CtVerdict::New | CtVerdict::Related) | None => {
                            self.slow_or_drop(&st, batch, i, s, now)
                        }
                    }
                }
                Plan::Slow => self.slow_or_drop(&st, batch, i, s, now),
            };
            batch.packet_mut(i).disposition = d;
        }
        self.hits = hits;
        self.ct_in = ct_in;
        self.ct_out = ct_out;
        self.slots = slots;
        batch.collect_outputs();
    }

    #[inline]
    fn drop_at(&mut self, port: u16, r: DropReason) -> Disposition {
        if let Some(p) = self.counters.ports.get_mut(usize::from(port)) {
            p.drops[r.index()] += 1;
        }
        Disposition::Drop(r)
    }

    /// Stage 1 for packet `i`: input port, parse, decapsulation, flow key, written into `s`
    /// (its plan is `Done` when the packet was dropped here, `Slow` when it is keyed).
    #[inline]
    fn classify(&mut self, st: &State, batch: &mut Batch, i: usize, s: &mut Slot) {
        let (in_id, len) = {
            let p = batch.packet_mut(i);
            (p.in_port, p.len)
        };
        let Some((idx, port)) = st.port(in_id) else {
            let p = self.folded.ports.entry(in_id).or_default();
            p.rx_packets += 1;
            p.rx_bytes += len as u64;
            p.drops[DropReason::UnknownInputPort.index()] += 1;
            s.plan = Plan::Done(Disposition::Drop(DropReason::UnknownInputPort));
            return;
        };
        let kind = port.kind;
        {
            let c = &mut self.counters.ports[usize::from(idx)];
            c.rx_packets += 1;
            c.rx_bytes += len as u64;
        }
        s.ing = Ingress {
            idx,
            id: in_id,
            kind,
        };
        if parse_frame_into(batch.packet_mut(i).frame(), &mut s.h).is_err() {
            s.plan = Plan::Done(self.drop_at(idx, DropReason::Malformed));
            return;
        }
        match kind {
            PortKind::Endpoint => {}
            PortKind::Uplink => {
                if let Err(r) = self.decap(st, batch, i, s) {
                    s.plan = Plan::Done(self.drop_at(s.ing.idx, r));
                    return;
                }
            }
            // Tunnel ports are virtual: frames reach them only by decapsulation.
            PortKind::Tunnel { .. } => {
                s.plan = Plan::Done(self.drop_at(idx, DropReason::UnknownInputPort));
                return;
            }
        }
        if s.h.vlan_count != 0 {
            s.plan = Plan::Done(self.drop_at(s.ing.idx, DropReason::Vlan));
            return;
        }
        // Hashed before it is stored: reading the stored key back at once would wait on the
        // stores.
        let key = FlowKey::from_headers(s.ing.id, &s.h);
        s.hash = key.hash();
        s.key = key;
        s.plan = Plan::Slow;
    }

    /// The slow path for packet `i`, its error counted as a drop.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn slow_or_drop(
        &mut self,
        st: &State,
        batch: &mut Batch,
        i: usize,
        s: &Slot,
        now: Instant,
    ) -> Disposition {
        match self.slow(st, batch, i, s.ing, &s.h, s.key, s.hash, now) {
            Ok(d) => d,
            Err(r) => self.drop_at(s.ing.idx, r),
        }
    }

    /// Decapsulates a frame from the uplink in place; on success the packet is the inner frame,
    /// `s.h` its headers and `s.ing` the tunnel port of the sending VTEP.
    fn decap(
        &mut self,
        st: &State,
        batch: &mut Batch,
        i: usize,
        s: &mut Slot,
    ) -> Result<(), DropReason> {
        if s.h.vxlan.is_none() {
            return Err(DropReason::UplinkNotVxlan);
        }
        let p = batch.packet_mut(i);
        let d = st
            .overlay
            .decap_memo(p.frame(), &s.h, &mut self.decap_memo)
            .map_err(|e| match e {
                podswitch_overlay::DecapError::UnknownVtep => DropReason::VxlanUnknownVtep,
                podswitch_overlay::DecapError::NotLocal => DropReason::VxlanNotLocal,
                _ => DropReason::VxlanBadOuter,
            })?;
        let tunnel = st.router.tunnel_port_base.wrapping_add(d.vtep);
        let Some((tidx, _)) = st.port(tunnel) else {
            return Err(DropReason::VxlanUnknownVtep);
        };
        p.start += d.inner_offset;
        p.len = d.inner_len;
        s.ing = Ingress {
            idx: tidx,
            id: tunnel,
            kind: PortKind::Tunnel { vtep: d.vtep },
        };
        let c = &mut self.counters.ports[usize::from(tidx)];
        c.rx_packets += 1;
        c.rx_bytes += p.len as u64;
        parse_frame_into(p.frame(), &mut s.h).map_err(|_| DropReason::VxlanBadInner)
    }

    /// The slow path for one frame.
    #[allow(clippy::too_many_arguments)]
    fn slow(
        &mut self,
        st: &State,
        batch: &mut Batch,
        i: usize,
        ing: Ingress,
        h: &Headers,
        key: FlowKey,
        hash: u32,
        now: Instant,
    ) -> Result<Disposition, DropReason> {
        let ip = match h.l3 {
            L3::Arp(a) => return self.arp(st, batch, i, ing, h, &a),
            L3::None => return Err(DropReason::UnsupportedEthertype),
            L3::Ip(ip) => ip,
        };
        let port = &st.ports[usize::from(ing.idx)];
        // Anti-spoofing: a pod's frames carry its MAC and one of its addresses; a tunnel's inner
        // source must be an endpoint its VTEP owns.
        match ing.kind {
            PortKind::Endpoint => {
                if h.src_mac != port.mac {
                    return Err(DropReason::SpoofedMac);
                }
                if let L4::Icmpv6(m) = h.l4
                    && (130..=143).contains(&m.ty)
                {
                    return if m.ty == 135 {
                        self.neighbor_solicit(st, batch, i, ing, h)
                    } else {
                        // RS, RA, NA, redirect, MLD: the router neither relays nor answers them.
                        Err(DropReason::Icmpv6Control)
                    };
                }
                if !port.addrs.contains(&ip.src) {
                    return Err(DropReason::SpoofedIp);
                }
                if h.dst_mac != st.router.mac {
                    return Err(if h.dst_mac.is_multicast() {
                        DropReason::Multicast
                    } else {
                        DropReason::NotRouterMac
                    });
                }
            }
            PortKind::Tunnel { vtep } => {
                if !st.overlay.owns(vtep, ip.src) {
                    return Err(DropReason::VxlanSpoofed);
                }
            }
            PortKind::Uplink => return Err(DropReason::UplinkNotVxlan),
        }
        if is_multicast(ip.dst) {
            return Err(DropReason::Multicast);
        }
        if st.is_gateway(ip.dst) {
            return Err(DropReason::ToRouter);
        }
        // We neither reassemble nor track fragments; pods use PMTU discovery.
        if ip.fragment != Fragment::None {
            return Err(DropReason::Fragment);
        }
        let route = st.route(ip.dst).ok_or(DropReason::UnknownDestination)?;
        let (out_idx, out_id, dst_mac, mtu, vtep) = match route {
            Route::Local { port } => {
                let p = &st.ports[usize::from(port)];
                (port, p.id, p.mac, p.mtu, None)
            }
            Route::Remote { vtep, mac } => {
                let (uidx, _) = st
                    .port(st.router.uplink_port)
                    .ok_or(DropReason::UnknownDestination)?;
                (uidx, st.router.uplink_port, mac, st.tunnel_mtu, Some(vtep))
            }
        };
        let frame = batch.packet_mut(i).frame();
        let mut m = placeholder_meta();
        if !packet_meta_into(h, frame, &mut m) {
            return Err(DropReason::Malformed);
        }
        // RFC 1812 §5.3.1: a router that would decrement the TTL to zero discards the packet
        // and sends time exceeded.
        if ip.ttl <= 1 {
            self.icmp_error(st, batch, i, h, IcmpError::TimeExceeded, now);
            return Err(DropReason::TtlExpired);
        }
        if m.len > u32::from(mtu) {
            let df = frame
                .get(usize::from(h.l3_offset) + 6)
                .is_some_and(|b| b & 0x40 != 0);
            if ip.src.is_ipv4() && !df {
                return Err(DropReason::TooBigNoDf);
            }
            self.icmp_error(
                st,
                batch,
                i,
                h,
                IcmpError::TooBig {
                    mtu: u32::from(mtu),
                },
                now,
            );
            return Err(DropReason::TooBig);
        }
        let l = self.conntrack.lookup(&m, now);
        let (handle, verdict, new_connection) = match l.verdict {
            CtVerdict::New => {
                let (proto, _, dport) = meta::meta_ports(&m);
                let (pp, pport) = policy_key(proto, dport);
                let v = st.policy.verdict(ip.src, ip.dst, pp, pport);
                if !v.is_allowed() {
                    self.count_denied(&v, m.len, true);
                    return Err(DropReason::PolicyDenied);
                }
                let c = self
                    .conntrack
                    .commit(&m, Nat::NONE, now)
                    .map_err(|e| match e {
                        CommitError::Refused(_) => DropReason::ConntrackFull,
                        CommitError::NotNew(_) | CommitError::NatFamily => {
                            DropReason::ConntrackInvalid
                        }
                    })?;
                if let CtVerdict::Invalid(_) = c.verdict {
                    return Err(DropReason::ConntrackInvalid);
                }
                (c.handle, v, true)
            }
            CtVerdict::Established | CtVerdict::Reply => {
                // Revocation: judge the connection's original direction under this state.
                let (proto, sport, dport) = meta::meta_ports(&m);
                let (osrc, odst, oport) = if l.verdict == CtVerdict::Reply {
                    (ip.dst, ip.src, sport)
                } else {
                    (ip.src, ip.dst, dport)
                };
                let (pp, pport) = policy_key(proto, oport);
                let v = st.policy.verdict(osrc, odst, pp, pport);
                if !v.is_allowed() {
                    if let Some(hd) = l.handle
                        && self.conntrack.remove(hd)
                    {
                        self.folded.revoked_connections += 1;
                    }
                    self.count_denied(&v, m.len, false);
                    return Err(DropReason::Revoked);
                }
                (l.handle, v, false)
            }
            CtVerdict::Related => (None, NO_VERDICT, false),
            CtVerdict::Invalid(_) => return Err(DropReason::ConntrackInvalid),
        };
        let mut actions = Actions::new();
        let src_mac = st.router.mac;
        // Capacity is 6; three or four actions always fit.
        let _ = actions.push(Action::SetMacs {
            src: src_mac,
            dst: dst_mac,
        });
        let _ = actions.push(Action::DecTtl);
        if let Some(v) = vtep {
            let _ = actions.push(Action::Encap { vtep: v });
        }
        let _ = actions.push(Action::Output { port: out_id });
        let (osrc, odst) = match l.direction {
            podswitch_conntrack::Direction::Reply => (ip.dst, ip.src),
            podswitch_conntrack::Direction::Original => (ip.src, ip.dst),
        };
        let pair = self.counters.pair((st.group_of(osrc), st.group_of(odst)));
        let mut rules = [NONE; 2];
        for (slot, d) in rules.iter_mut().zip([verdict.egress, verdict.ingress]) {
            if let Decision::Allowed(r) = d {
                *slot = self.counters.rule(r);
            }
        }
        let cached = Cached {
            actions: self.counters.intern(actions),
            handle,
            out_port: out_idx,
            mtu,
            rules,
            pair,
        };
        if handle.is_some() {
            self.cache.insert(key, hash, st.generation, cached);
        }
        apply(
            &mut self.counters,
            st,
            batch,
            i,
            h,
            &cached,
            hash,
            new_connection,
        )
    }

    fn count_denied(&mut self, v: &Verdict, len: u32, new_connection: bool) {
        for d in [v.egress, v.ingress] {
            if let Decision::Denied { isolated_by } = d {
                let t = self.denied(isolated_by);
                t.packets += 1;
                t.bytes += u64::from(len);
                t.connections += u64::from(new_connection);
            }
        }
    }

    fn denied(&mut self, p: PolicyId) -> &mut Traffic {
        self.folded.policies_denied.entry(p).or_default()
    }

    /// Proxy ARP: answer requests for the gateway and every known endpoint with the router MAC.
    fn arp(
        &mut self,
        st: &State,
        batch: &mut Batch,
        i: usize,
        ing: Ingress,
        h: &Headers,
        a: &arp::Repr,
    ) -> Result<Disposition, DropReason> {
        if ing.kind != PortKind::Endpoint {
            return Err(DropReason::ArpNotRequest);
        }
        let port = &st.ports[usize::from(ing.idx)];
        // RFC 5227 probes (sender 0.0.0.0) are the pod checking its own address: never answer.
        if a.operation != Operation::Request || a.source_protocol_addr.is_unspecified() {
            return Err(DropReason::ArpNotRequest);
        }
        if h.src_mac != port.mac
            || a.source_hardware_addr != port.mac
            || !port.addrs.contains(&IpAddr::V4(a.source_protocol_addr))
        {
            return Err(DropReason::SpoofedArp);
        }
        let target = IpAddr::V4(a.target_protocol_addr);
        if a.target_protocol_addr == a.source_protocol_addr || !st.answers_for(target) {
            return Err(DropReason::ArpUnknownTarget);
        }
        let (port_id, mac) = (port.id, port.mac);
        let Some((_, out)) = batch.spare(i) else {
            return Err(DropReason::NoBuffer);
        };
        let n = neighbor::build_arp_reply(
            &mut out.buffer_mut()[HEADROOM..],
            st.router.mac,
            a.target_protocol_addr,
            mac,
            a.source_protocol_addr,
        );
        let Some(n) = n else {
            batch.unspare();
            return Err(DropReason::NoBuffer);
        };
        let g = batch.packet_mut(batch.last_generated());
        g.len = n;
        g.disposition = Disposition::Output(port_id);
        self.counters.tx(ing.idx, n);
        self.folded.neighbor_replies += 1;
        Ok(Disposition::Consumed)
    }

    /// Proxy neighbour discovery: answer solicitations for the gateway and known endpoints.
    fn neighbor_solicit(
        &mut self,
        st: &State,
        batch: &mut Batch,
        i: usize,
        ing: Ingress,
        h: &Headers,
    ) -> Result<Disposition, DropReason> {
        let port = &st.ports[usize::from(ing.idx)];
        let (port_id, mac) = (port.id, port.mac);
        let Some(ip) = h.ip() else {
            return Err(DropReason::Malformed);
        };
        let (IpAddr::V6(src), IpAddr::V6(dst)) = (ip.src, ip.dst) else {
            return Err(DropReason::NdInvalid);
        };
        // RFC 4861 §7.1.1: hop limit 255 proves the sender is on-link.
        if ip.ttl != 255 {
            return Err(DropReason::NdInvalid);
        }
        let frame = batch.packet_mut(i).frame();
        let end = ip_len(h, frame).ok_or(DropReason::Malformed)? + usize::from(h.l3_offset);
        let msg = frame
            .get(usize::from(h.l4_offset)..end)
            .ok_or(DropReason::Malformed)?;
        let pkt = icmpv6::Packet::new_checked(msg).map_err(|_| DropReason::NdInvalid)?;
        let Ok(icmpv6::Repr::NeighborSolicit {
            target_addr,
            lladdr,
        }) = icmpv6::Repr::parse(&pkt, src, dst)
        else {
            return Err(DropReason::NdInvalid);
        };
        // Duplicate address detection (unspecified source) is the pod probing its own address:
        // answering would make it give the address up (RFC 4862 §5.4.3).
        if src.is_unspecified() {
            return Err(DropReason::NdUnknownTarget);
        }
        let link_local = (src.segments()[0] & 0xffc0) == 0xfe80;
        if !(link_local || port.addrs.contains(&IpAddr::V6(src))) {
            return Err(DropReason::SpoofedIp);
        }
        if lladdr.is_some_and(|l| l != mac.0) {
            return Err(DropReason::SpoofedMac);
        }
        if !st.answers_for(IpAddr::V6(target_addr)) {
            return Err(DropReason::NdUnknownTarget);
        }
        let router = st.router.gateway_v6 == Some(target_addr);
        let Some((_, out)) = batch.spare(i) else {
            return Err(DropReason::NoBuffer);
        };
        let n = neighbor::build_neighbor_advert(
            &mut out.buffer_mut()[HEADROOM..],
            st.router.mac,
            target_addr,
            mac,
            src,
            router,
        );
        let Some(n) = n else {
            batch.unspare();
            return Err(DropReason::NoBuffer);
        };
        let g = batch.packet_mut(batch.last_generated());
        g.len = n;
        g.disposition = Disposition::Output(port_id);
        self.counters.tx(ing.idx, n);
        self.folded.neighbor_replies += 1;
        Ok(Disposition::Consumed)
    }

    /// Sends an ICMP error about packet `i` back to its source (routed like any packet: to the
    /// local port, or encapsulated to the source's VTEP), if allowed and not rate-limited.
    fn icmp_error(
        &mut self,
        st: &State,
        batch: &mut Batch,
        i: usize,
        h: &Headers,
        err: IcmpError,
        now: Instant,
    ) {
        let Some(ip) = h.ip() else { return };
        if !icmp::may_send_error(h) {
            return;
        }
        let gateway = match ip.src {
            IpAddr::V4(_) => st.router.gateway_v4.map(IpAddr::V4),
            IpAddr::V6(_) => st.router.gateway_v6.map(IpAddr::V6),
        };
        let (Some(gw), Some(route)) = (gateway, st.route(ip.src)) else {
            return;
        };
        if !self.limiter.allow(now) {
            self.folded.icmp_rate_limited += 1;
            return;
        }
        let Some((rx, out)) = batch.spare(i) else {
            return;
        };
        let invoking = &rx.frame()[usize::from(h.l3_offset)..];
        let invoking = &invoking[..ip_len(h, rx.frame()).unwrap_or(invoking.len())];
        let body = &mut out.buffer_mut()[HEADROOM + 14..];
        let n = match gw {
            IpAddr::V4(g) => icmp::build_v4(body, g, invoking, err),
            IpAddr::V6(g) => icmp::build_v6(body, g, invoking, err),
        };
        let Some(n) = n else {
            batch.unspare();
            return;
        };
        let (dst_mac, out_id, out_idx, vtep) = match route {
            Route::Local { port } => {
                let p = &st.ports[usize::from(port)];
                (p.mac, p.id, port, None)
            }
            Route::Remote { vtep, mac } => {
                let Some((u, _)) = st.port(st.router.uplink_port) else {
                    batch.unspare();
                    return;
                };
                (mac, st.router.uplink_port, u, Some(vtep))
            }
        };
        let gi = batch.last_generated();
        let g = batch.packet_mut(gi);
        let ethertype: u16 = if gw.is_ipv4() { 0x0800 } else { 0x86dd };
        {
            let f = &mut g.buffer_mut()[HEADROOM..HEADROOM + 14];
            f[0..6].copy_from_slice(&dst_mac.0);
            f[6..12].copy_from_slice(&st.router.mac.0);
            f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        }
        g.start = HEADROOM;
        g.len = 14 + n;
        if let Some(v) = vtep {
            let (buf, start, len) = g.parts_mut();
            let Ok(s) = st.overlay.encap(v, buf, start, len, 0, 0, None) else {
                batch.unspare();
                return;
            };
            g.len += start - s;
            g.start = s;
        }
        g.disposition = Disposition::Output(out_id);
        let tx = g.len;
        self.counters.tx(out_idx, tx);
        self.folded.icmp_errors += 1;
    }
}

/// The verdict recorded for related packets (ICMP errors of tracked connections): no rule.
const NO_VERDICT: Verdict = Verdict {
    egress: Decision::NotAnEndpoint,
    ingress: Decision::NotAnEndpoint,
};

/// The cache-hit path's checks for packet `i`; `Ok(true)` when its conntrack update was written
/// to `item` (the caller then counts it queued), `Ok(false)` when the slow path must decide (TTL
/// expiry and oversize frames get their ICMP errors there; related packets are never cached, so
/// a hit without a handle is decided again). The metadata is built in place in the batch's
/// preallocated item: it is large, and moving it there from a return value stalled on store
/// forwarding (a tenth of the fast path).
#[inline]
fn queue_fast(
    batch: &mut Batch,
    i: usize,
    h: &Headers,
    c: &Cached,
    item: &mut (Handle, PacketMeta),
) -> Result<bool, DropReason> {
    let frame = batch.packet_mut(i).frame();
    let Some(ip) = h.ip() else {
        return Err(DropReason::Malformed);
    };
    if !packet_meta_into(h, frame, &mut item.1) {
        return Err(DropReason::Malformed);
    }
    let Some(hd) = c.handle else {
        return Ok(false);
    };
    if ip.ttl <= 1 || item.1.len > u32::from(c.mtu) {
        return Ok(false);
    }
    item.0 = hd;
    Ok(true)
}

/// Executes a decision's actions on packet `i` in place.
#[allow(clippy::too_many_arguments)]
#[inline]
fn apply(
    counters: &mut Counters,
    st: &State,
    batch: &mut Batch,
    i: usize,
    h: &Headers,
    c: &Cached,
    hash: u32,
    new_connection: bool,
) -> Result<Disposition, DropReason> {
    let p = batch.packet_mut(i);
    let inner_len = p.len;
    let mut out = None;
    let Some(actions) = counters.actions.get(c.actions as usize) else {
        return Err(DropReason::UnknownDestination);
    };
    for a in actions {
        match *a {
            Action::SetMacs { src, dst } => {
                let f = p.frame_mut();
                f[0..6].copy_from_slice(&dst.0);
                f[6..12].copy_from_slice(&src.0);
            }
            Action::DecTtl => dec_ttl(p.frame_mut(), h),
            Action::Encap { vtep } => {
                let dscp = h.ip().map_or(0, |ip| ip.dscp);
                let (buf, start, len) = p.parts_mut();
                let new_start = st
                    .overlay
                    .encap(vtep, buf, start, len, hash, dscp, None)
                    .map_err(|e| match e {
                        podswitch_overlay::EncapError::NoHeadroom => DropReason::NoHeadroom,
                        podswitch_overlay::EncapError::MtuExceeded => DropReason::TooBig,
                        _ => DropReason::UnknownDestination,
                    })?;
                p.len += start - new_start;
                p.start = new_start;
            }
            Action::Output { port } => out = Some(port),
            Action::Drop { .. } => return Err(DropReason::UnknownDestination),
            Action::Decap | Action::Nat | Action::ToSlowPath => {}
        }
    }
    let Some(port) = out else {
        return Err(DropReason::UnknownDestination);
    };
    let tx_len = p.len;
    counters.tx(c.out_port, tx_len);
    counters.traffic(c, inner_len, new_connection);
    Ok(Disposition::Output(port))
}

/// Whether stage 1 keyed the packet (it was not decided there).
#[inline(always)]
fn keyed(s: &Slot) -> bool {
    !matches!(s.plan, Plan::Done(_))
}

fn is_multicast(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => v.is_multicast() || v.is_broadcast(),
        IpAddr::V6(v) => v.is_multicast(),
    }
}

/// Decrements the TTL (IPv4, with the RFC 1624 incremental header checksum update) or the hop
/// limit (IPv6, no header checksum). The caller checked `ttl > 1`.
#[inline]
fn dec_ttl(frame: &mut [u8], h: &Headers) {
    let l3 = usize::from(h.l3_offset);
    match h.ip().map(|ip| ip.src) {
        Some(IpAddr::V4(_)) => {
            let (Some(&ttl), Some(&proto)) = (frame.get(l3 + 8), frame.get(l3 + 9)) else {
                return;
            };
            let Some(c) = frame.get(l3 + 10..l3 + 12) else {
                return;
            };
            let old = u16::from_be_bytes([ttl, proto]);
            let new = u16::from_be_bytes([ttl.wrapping_sub(1), proto]);
            let sum = podswitch_wire::checksum::update(u16::from_be_bytes([c[0], c[1]]), old, new);
            frame[l3 + 8] = ttl.wrapping_sub(1);
            frame[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
        }
        Some(IpAddr::V6(_)) => {
            if let Some(hl) = frame.get_mut(l3 + 7) {
                *hl = hl.wrapping_sub(1);
            }
        }
        None => {}
    }
}

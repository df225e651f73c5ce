//! The connection table: sharded storage, lookup, commit, fast update through a [`Handle`],
//! expiry (lazy and swept), capacity limits with eviction, NAT redirects, listing, flushing,
//! counters and an invariant checker.
//!
//! Layout: `shards` (a power of two) `Mutex`-protected shards, each with a slab of entries sized
//! at creation, a free list, a compact open-addressing [`Index`] mapping both tuples of each
//! entry to `slot << 1 | direction` (one cache line per probe, then the entry), and two
//! intrusive FIFO lists of evictable entries (unassured, closing). A connection lives in the
//! shard chosen by the symmetric hash of its original tuple, so both directions meet there.
//! When NAT makes the reply tuple hash to another shard, that shard holds a *redirect* (reply
//! tuple → owning shard). Every operation holds at most one shard lock at a time, so no
//! lock-order cycle can form. A redirect is added before its entry and removed after it, so a
//! lookup racing with either sees a miss at worst. The index slots are atomics so that batches
//! can read them without the lock, as prefetch hints only.
//!
//! Memory: an entry is 256 bytes (four lines; an update by handle touches the first two, see
//! `Entry`) and the index 8-byte slots at about 20 bytes per key, so a 1 M-entry table spans
//! ~380 MB. Visited at random, every packet then misses the caches, and on 4 KiB pages the TLB
//! (`examples/memfloor.rs`: ~240 ns per entry read when each read waits for the previous one,
//! as behind a per-packet mutex; ~30 ns when 16 are in flight). The batch calls exist to put
//! those misses in flight together: each packet's lines are prefetched a few packets ahead of
//! its turn, without locks; a caller can start them earlier still
//! ([`Table::prefetch_handles`], [`Table::prefetch_lookup`]). Slabs are sized in whole 2 MiB
//! pages when large, and all shards' index slots are one array, for an allocator that backs
//! large blocks with huge pages (the daemon's).
//!
//! Invariants (exact when no call is in flight, checked by [`Table::check_invariants`]): every
//! used slot has its tuples in its shard's index and nothing else is indexed; the global and
//! per-zone occupancy counters equal the number of entries; they never exceed the limits (the
//! counters are reserved atomically before an entry is written); assured entries are in no
//! eviction list. Thread-safety: `Table` is `Send + Sync`; every method takes `&self`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use hashbrown::HashTable;
use prefetch_index::prefetch_index;

use crate::config::Config;
use crate::hash::hashes;
use crate::index::{Index, IndexView};
use crate::meta::{L4, PacketMeta};
use crate::nat::{Nat, Rewrite, same_family};
use crate::proto::{Class, Outcome, Proto, Resolved};
use crate::tuple::{Key, Tuple, addr_bits};
use crate::zones::Zones;
use crate::{ConnState, Direction, Instant};

const NIL: u32 = u32::MAX;

/// Why a packet was classified invalid. Each reason has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvalidReason {
    /// Addresses of different families, or an ICMP type with no echo pairing.
    Malformed,
    /// A TCP flag combination no valid segment carries (e.g. SYN+FIN, none at all).
    TcpFlags,
    /// A TCP segment other than a SYN for which no connection exists (pickup is off).
    TcpNoConnection,
    /// A TCP segment the state machine forbids in the connection's state.
    TcpState,
    /// Sequence number beyond the receiver's window (check I).
    TcpSeqAboveWindow,
    /// Segment ends before the window (old data, check II).
    TcpSeqBelowWindow,
    /// Acknowledges data never sent (check III).
    TcpAckAboveWindow,
    /// Acknowledgment too far in the past (check IV).
    TcpAckBelowWindow,
    /// A RST whose sequence number the peer already acknowledged past.
    TcpRst,
    /// An ICMP echo reply with no request.
    IcmpNoConnection,
    /// An ICMP error quoting a packet of no tracked connection.
    IcmpUnrelated,
    /// An ICMP error not addressed to the sender of the packet it quotes.
    IcmpOuterMismatch,
    /// An SCTP packet other than an INIT with no association.
    SctpNoInit,
    /// An SCTP verification tag that does not match the association.
    SctpVtag,
    /// An SCTP chunk the association's state forbids.
    SctpState,
}

impl InvalidReason {
    /// Number of reasons (size of the counter array).
    pub const COUNT: usize = 15;
    /// Every reason, in counter order.
    pub const ALL: [InvalidReason; Self::COUNT] = [
        InvalidReason::Malformed,
        InvalidReason::TcpFlags,
        InvalidReason::TcpNoConnection,
        InvalidReason::TcpState,
        InvalidReason::TcpSeqAboveWindow,
        InvalidReason::TcpSeqBelowWindow,
        InvalidReason::TcpAckAboveWindow,
        InvalidReason::TcpAckBelowWindow,
        InvalidReason::TcpRst,
        InvalidReason::IcmpNoConnection,
        InvalidReason::IcmpUnrelated,
        InvalidReason::IcmpOuterMismatch,
        InvalidReason::SctpNoInit,
        InvalidReason::SctpVtag,
        InvalidReason::SctpState,
    ];

    /// Index of this reason's counter.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Why a commit was refused. Each reason has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// The table is at its total limit and nothing evictable was found.
    TableFull,
    /// The zone is at its limit and nothing evictable in it was found.
    ZoneFull,
    /// The connection's shard slab (or redirect table) is full.
    ShardFull,
    /// The reply tuple (after NAT) is already used by another connection.
    TupleConflict,
}

impl RefusalReason {
    /// Number of reasons.
    pub const COUNT: usize = 4;
}

/// Per-packet classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// No connection: evaluate policy, then [`Table::commit`]. Returned by `commit` too, for the
    /// packet that created the entry.
    New,
    /// A packet of a tracked connection in its original direction.
    Established,
    /// A packet of a tracked connection in its reply direction.
    Reply,
    /// An ICMP error quoting a packet of a tracked connection.
    Related,
    /// Rejected; drop it.
    Invalid(InvalidReason),
}

/// Reference to an entry, for a flow cache: [`Table::update`] goes straight to the slot. A
/// handle goes stale when its entry is removed; `update` then returns `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handle {
    /// 16 bits (shards are at most 2^15, so `u16::MAX` names none): a handle is 12 bytes, and
    /// a flow cache entry holding one fits its slot in two cache lines.
    shard: u16,
    slot: u32,
    generation: u32,
    direction: Direction,
}

impl Handle {
    /// A handle that names no entry (its shard is out of range): [`Table::update`] returns
    /// `None` for it. For preallocated buffers of handles.
    pub const STALE: Handle = Handle {
        shard: u16::MAX,
        slot: u32::MAX,
        generation: 0,
        direction: Direction::Original,
    };

    /// Direction of the packets this handle was returned for.
    pub fn direction(&self) -> Direction {
        self.direction
    }
}

/// The result of classifying a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup {
    /// What to do with the packet.
    pub verdict: Verdict,
    /// Direction of the packet within its connection (`Original` for `New`).
    pub direction: Direction,
    /// The entry, when there is one.
    pub handle: Option<Handle>,
    /// Address/port rewrite to apply (NAT), when the entry translates.
    pub rewrite: Option<Rewrite>,
}

impl Lookup {
    fn verdict(verdict: Verdict) -> Lookup {
        Lookup {
            verdict,
            direction: Direction::Original,
            handle: None,
            rewrite: None,
        }
    }
}

/// Why [`Table::commit`] created nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum CommitError {
    /// The packet cannot start a connection (e.g. a TCP ACK with pickup off).
    #[error("packet cannot start a connection: {0:?}")]
    NotNew(InvalidReason),
    /// The table refused the entry (counted).
    #[error("connection refused: {0:?}")]
    Refused(RefusalReason),
    /// A NAT address is not of the connection's family.
    #[error("NAT address family differs from the connection's")]
    NatFamily,
}

/// An invariant violation found by [`Table::check_invariants`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("conntrack invariant violated: {0}")]
pub struct InvariantError(pub String);

/// Selects entries to list or flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Every entry.
    All,
    /// Entries of one zone.
    Zone(u16),
    /// Entries with this address in either tuple (either side, before or after NAT).
    Address(IpAddr),
    /// The entry with this tuple in either direction.
    Tuple {
        /// Zone.
        zone: u16,
        /// Tuple.
        tuple: Tuple,
    },
}

/// A snapshot of one entry, for the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryInfo {
    /// Zone.
    pub zone: u16,
    /// Tuple of original-direction packets.
    pub original: Tuple,
    /// Tuple of reply-direction packets (differs from the inverse of `original` under NAT).
    pub reply: Tuple,
    /// Protocol state.
    pub state: ConnState,
    /// A reply-direction packet was seen.
    pub replied: bool,
    /// The connection is assured (never evicted).
    pub assured: bool,
    /// When it expires unless another packet arrives.
    pub expires: Instant,
    /// Packets seen, per direction.
    pub packets: [u64; 2],
    /// Bytes seen, per direction.
    pub bytes: [u64; 2],
}

/// Counters, merged over shards when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Packets classified (lookup and update).
    pub lookups: u64,
    /// Packets that found an entry.
    pub hits: u64,
    /// `New` verdicts.
    pub new: u64,
    /// `Related` verdicts.
    pub related: u64,
    /// Entries created.
    pub commits: u64,
    /// Invalid packets per [`InvalidReason::index`].
    pub invalid: [u64; InvalidReason::COUNT],
    /// Entries evicted to make room.
    pub evictions: u64,
    /// Commits refused, per [`RefusalReason`].
    pub refusals: [u64; RefusalReason::COUNT],
    /// Entries that timed out (found expired on lookup, or by sweep).
    pub expirations: u64,
    /// Entries removed by the control plane or by protocol (RST, reopen).
    pub removals: u64,
    /// Current number of entries.
    pub occupancy: u64,
}

impl Stats {
    /// Invalid packets counted for `r`.
    pub fn invalid(&self, r: InvalidReason) -> u64 {
        self.invalid[r.index()]
    }

    /// Refusals counted for `r`.
    pub fn refused(&self, r: RefusalReason) -> u64 {
        self.refusals[r as usize]
    }

    /// Total invalid packets.
    pub fn invalid_total(&self) -> u64 {
        self.invalid.iter().sum()
    }
}

/// Per-shard counters, written under the shard's lock. `lookups` and `hits` first: see
/// `Shard`.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
struct ShardStats {
    lookups: u64,
    hits: u64,
    new: u64,
    related: u64,
    commits: u64,
    invalid: [u64; InvalidReason::COUNT],
    expirations: u64,
    removals: u64,
}

/// One connection. Laid out in field order and aligned to a cache line so an entry occupies
/// exactly four lines (256 bytes) and never straddles a fifth. Ordered by what a packet reads:
/// line 0 holds everything a packet of a known connection updates except the protocol state
/// (expiry, counters, generation, flags, and a fingerprint of each direction's key), then comes
/// the protocol state to the end of line 1, and lines 2–3 hold the two keys and the cold list
/// links. An update by handle (the flow cache's fast path) therefore reads and writes two lines,
/// a hash lookup three: at a million entries, where every line is a miss, the lines a packet
/// touches set its cost.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
struct Entry {
    expires: u64,
    packets: [u64; 2],
    bytes: [u64; 2],
    generation: u32,
    /// [`Key::fingerprint`] of `keys[0]` and `keys[1]`.
    fingerprints: [u32; 2],
    in_use: bool,
    replied: bool,
    assured: bool,
    nat: bool,
    class: Class,
    proto: Proto,
    keys: [Key; 2],
    prev: u32,
    next: u32,
    /// Shard holding a redirect for `keys[1]`, or `NIL`.
    redirect: u32,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 256);
// The lookup ring holds a packet from its index stage to its turn.
const _: () = assert!(
    Table::RING >= Table::INDEX_AHEAD + Table::STRIDE && Table::INDEX_AHEAD > Table::ENTRY_AHEAD
);
const ENTRY_BYTES: u64 = std::mem::size_of::<Entry>() as u64;
// The hot fields in line 0, the protocol state ending with line 1 (it is 68 bytes and starts
// in line 0's tail), the keys from line 2 (see `Entry`, `prefetch_entry`, `prefetch_found`).
const _: () = assert!(
    std::mem::offset_of!(Entry, class) < 64
        && std::mem::offset_of!(Entry, proto) + std::mem::size_of::<Proto>() <= 128
        && std::mem::offset_of!(Entry, keys) == 128
);

impl Entry {
    fn vacant() -> Entry {
        Entry {
            keys: [Key::default(); 2],
            fingerprints: [0; 2],
            expires: 0,
            proto: Proto::Other,
            packets: [0; 2],
            bytes: [0; 2],
            generation: 0,
            prev: NIL,
            next: NIL,
            redirect: NIL,
            in_use: false,
            replied: false,
            assured: false,
            nat: false,
            class: Class::Assured,
        }
    }

    /// Whether a packet with `key` belongs to this entry in direction `d` and generation
    /// `generation`, from the hot line only: the key is compared by fingerprint (a packet of
    /// another connection passes with probability 2^-32; a handle comes from a full-key match
    /// of the same flow, and the generation rules out a reused slot).
    #[inline(always)]
    fn holds(&self, generation: u32, d: usize, key: &Key) -> bool {
        self.in_use && self.generation == generation && self.fingerprints[d] == key.fingerprint()
    }

    fn key_count(&self) -> usize {
        if self.keys[0] == self.keys[1] { 1 } else { 2 }
    }
}

#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    len: u32,
}

/// One shard's state, behind its mutex. Laid out so that a packet of an established
/// connection writes a single line of it: the mutex's word and the counters every packet
/// bumps share the first line, and what a packet only reads (index, slab) follows the
/// counters. When two workers take turns on a shard, the written lines move between their
/// cores; the read-only ones stay shared.
#[derive(Debug)]
#[repr(C)]
struct Shard {
    stats: ShardStats,
    index: Index,
    entries: Vec<Entry>,
    redirects: HashTable<(Key, u32)>,
    redirect_cap: usize,
    free: Vec<u32>,
    lists: [List; 2],
}

/// Starts loading the cache line at `addr` (a prefetch hint). `prefetch_index` accepts any
/// index, in bounds or not, and never dereferences: it is used here with a one-byte origin
/// only to name an address that is not borrowed (a shard's slab behind a lock not held).
#[inline(always)]
fn prefetch_addr(addr: usize) {
    static ORIGIN: u8 = 0;
    let origin = std::ptr::addr_of!(ORIGIN) as usize;
    prefetch_index(std::slice::from_ref(&ORIGIN), addr.wrapping_sub(origin));
}

#[inline]
fn code(slot: u32, dir: usize) -> u32 {
    slot << 1 | dir as u32
}

impl Shard {
    /// A shard of `cap` entries, with `index` sized for two keys per entry.
    fn new(cap: u32, index: Index) -> Shard {
        let cap_us = cap as usize;
        Shard {
            index,
            redirects: HashTable::with_capacity(cap_us.div_ceil(2) * 2),
            redirect_cap: cap_us.div_ceil(2),
            entries: vec![Entry::vacant(); cap_us],
            free: (0..cap).rev().collect(),
            lists: [List {
                head: NIL,
                tail: NIL,
                len: 0,
            }; 2],
            stats: ShardStats::default(),
        }
    }

    #[inline]
    fn find(&self, t: u64, key: &Key) -> Option<(u32, usize)> {
        let entries = &self.entries;
        self.index
            .find(t, |v| {
                entries
                    .get((v >> 1) as usize)
                    .is_some_and(|e| e.keys[(v & 1) as usize] == *key)
            })
            .map(|v| (v >> 1, (v & 1) as usize))
    }

    fn find_redirect(&self, t: u64, key: &Key) -> Option<u32> {
        if self.redirects.is_empty() {
            return None;
        }
        self.redirects.find(t, |(k, _)| k == key).map(|&(_, p)| p)
    }

    fn link(&mut self, slot: u32, class: Class) {
        self.entries[slot as usize].class = class;
        let li = match class {
            Class::Assured => return,
            Class::Unassured => 0,
            Class::Closing => 1,
        };
        let tail = self.lists[li].tail;
        {
            let e = &mut self.entries[slot as usize];
            e.prev = tail;
            e.next = NIL;
        }
        if tail == NIL {
            self.lists[li].head = slot;
        } else {
            self.entries[tail as usize].next = slot;
        }
        self.lists[li].tail = slot;
        self.lists[li].len += 1;
    }

    fn unlink(&mut self, slot: u32) {
        let (class, prev, next) = {
            let e = &self.entries[slot as usize];
            (e.class, e.prev, e.next)
        };
        let li = match class {
            Class::Assured => return,
            Class::Unassured => 0,
            Class::Closing => 1,
        };
        if prev == NIL {
            self.lists[li].head = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next == NIL {
            self.lists[li].tail = prev;
        } else {
            self.entries[next as usize].prev = prev;
        }
        self.lists[li].len -= 1;
        let e = &mut self.entries[slot as usize];
        e.prev = NIL;
        e.next = NIL;
        e.class = Class::Assured;
    }
}

#[derive(Debug)]
#[repr(align(128))]
struct Padded(Mutex<Shard>);

/// Redirects to remove once the current shard lock is released. The first one is held inline
/// (a packet removes at most one entry, so the packet path never allocates); only bulk removals
/// (sweep, flush, eviction bursts) spill into the vector.
#[derive(Debug, Default)]
struct Pending {
    first: Option<(u32, Key, u32)>,
    rest: Vec<(u32, Key, u32)>,
}

impl Pending {
    #[inline]
    fn push(&mut self, shard: u32, key: Key, primary: u32) {
        if self.first.is_none() {
            self.first = Some((shard, key, primary));
        } else {
            self.rest.push((shard, key, primary));
        }
    }

    fn is_full(&self) -> bool {
        self.rest.len() >= 64
    }
}

enum Step {
    Done(Lookup),
    Redirect(u32),
}

/// The connection tracking table: sharded storage, see the [crate documentation](crate).
#[derive(Debug)]
pub struct Table {
    shards: Box<[Padded]>,
    mask: usize,
    seed: u64,
    loose: bool,
    timeouts: Resolved,
    max_entries: u32,
    shard_cap: u32,
    occupancy: AtomicU32,
    zones: Zones,
    refusals: [AtomicU64; RefusalReason::COUNT],
    evictions: AtomicU64,
    sweep_cursor: AtomicU64,
    /// Whether batches start their loads ahead: only when the slab is too large to stay cached
    /// (a cached table gains nothing and would pay the extra loops).
    prefetch: bool,
    /// Address of each shard's entry slab (allocated once in `new`, never resized), so a batch
    /// can prefetch the entries of packets ahead without taking their locks. Only ever used as a
    /// prefetch hint: a stale address would cost a wasted load, never a wrong result.
    slabs: Box<[usize]>,
    /// A lock-free view of each shard's index, for the same purpose: what it reads is a hint.
    views: Box<[IndexView]>,
    /// Per shard, the slot its next commit will take (the top of its free list, `NIL` when
    /// empty), kept current under the shard's lock and read without it by
    /// [`prefetch_lookup`](Self::prefetch_lookup): a fresh entry's first store is otherwise a
    /// cache miss that stalls the commit. A hint only: a stale value costs a wasted load.
    free_hint: Box<[AtomicU32]>,
}

impl Table {
    /// Creates a table, allocating every shard's slab and index now.
    pub fn new(config: &Config) -> Table {
        // Shards are bounded so an index fits the handle's 16 bits with `u16::MAX` to spare
        // (`Handle::STALE`).
        let n = config.shards.clamp(1, 1 << 15).next_power_of_two();
        let per = config.max_entries.div_ceil(n);
        // Slack for hash imbalance between shards: +25 % and a few slots (the total limit is
        // enforced separately, exactly).
        // Index values are `slot << 1 | direction`, so a shard holds fewer than 2^31 slots.
        let shard_cap = (per.saturating_add(per / 4).saturating_add(8))
            .min(config.max_entries.max(1))
            .min(1 << 30);
        // A slab of 1 MiB or more is rounded up to whole 2 MiB pages, so that an allocator
        // placing large blocks on transparent huge pages (the daemon's) can back all of it:
        // at a million entries a packet's entry read then costs no page walk (the total limit
        // stays exact; the extra slots are slack, untouched until used).
        let shard_cap = if u64::from(shard_cap) * ENTRY_BYTES >= 1 << 20 {
            let per_page = ((2u64 << 20) / ENTRY_BYTES) as u32;
            shard_cap
                .div_ceil(per_page)
                .saturating_mul(per_page)
                .min(1 << 30)
        } else {
            shard_cap
        };
        // Two keys per entry.
        let shards: Box<[Padded]> = Index::many(n as usize, shard_cap as usize * 2)
            .into_iter()
            .map(|index| Padded(Mutex::new(Shard::new(shard_cap, index))))
            .collect();
        // Each shard's slab address, index layout and first free slot, under one lock.
        let places: Vec<(usize, IndexView, u32)> = shards
            .iter()
            .map(|p| {
                let g =
                    p.0.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                (
                    g.entries.as_ptr() as usize,
                    g.index.view(),
                    g.free.last().copied().unwrap_or(NIL),
                )
            })
            .collect();
        let slabs: Vec<usize> = places.iter().map(|p| p.0).collect();
        let views: Vec<IndexView> = places.iter().map(|p| p.1.clone()).collect();
        let free_hint: Vec<AtomicU32> = places.iter().map(|p| AtomicU32::new(p.2)).collect();
        Table {
            shards,
            mask: n as usize - 1,
            seed: config.hash_seed,
            loose: config.tcp_loose,
            timeouts: Resolved::new(config),
            max_entries: config.max_entries,
            shard_cap,
            occupancy: AtomicU32::new(0),
            zones: Zones::new(config),
            refusals: Default::default(),
            evictions: AtomicU64::new(0),
            sweep_cursor: AtomicU64::new(0),
            prefetch: u64::from(shard_cap) * u64::from(n) * std::mem::size_of::<Entry>() as u64
                > Self::PREFETCH_ABOVE,
            slabs: slabs.into_boxed_slice(),
            views: views.into_boxed_slice(),
            free_hint: free_hint.into_boxed_slice(),
        }
    }

    /// Publishes shard `si`'s next free slot (see `free_hint`); the caller holds its lock.
    #[inline(always)]
    fn publish_free(&self, g: &Shard, si: usize) {
        if let Some(h) = self.free_hint.get(si) {
            h.store(g.free.last().copied().unwrap_or(NIL), Ordering::Relaxed);
        }
    }

    fn lock(&self, si: usize) -> MutexGuard<'_, Shard> {
        // A panic while a shard was locked leaves plain data (no broken invariant is relied on
        // for memory safety); keep serving rather than cascading the panic.
        self.shards[si]
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[inline]
    fn shard_index(&self, shard_hash: u64) -> usize {
        (shard_hash as usize) & self.mask
    }

    /// Number of entries.
    pub fn occupancy(&self) -> u32 {
        self.occupancy.load(Ordering::Relaxed)
    }

    /// Number of entries in `zone`.
    ///
    /// A zone with a limit has a counter (one atomic load); an unlimited zone is counted by
    /// visiting every shard, one lock at a time (a control-plane query, not for the packet path).
    pub fn zone_occupancy(&self, zone: u16) -> u32 {
        if let Some((_, c)) = self.zones.get(zone) {
            return c.load(Ordering::Relaxed);
        }
        (0..=self.mask)
            .map(|si| {
                let g = self.lock(si);
                g.entries
                    .iter()
                    .filter(|e| e.in_use && e.keys[0].zone == zone)
                    .count() as u32
            })
            .sum()
    }

    /// The total limit.
    pub fn capacity(&self) -> u32 {
        self.max_entries
    }

    /// Classifies a packet and, for a tracked connection, updates its state, counters and
    /// timeout. Expired entries found on the way are removed (lazy expiry).
    pub fn lookup(&self, meta: &PacketMeta, now: Instant) -> Lookup {
        let key = match meta.key() {
            Ok(k) => k,
            Err(r) => return self.count_invalid_keyless(r),
        };
        let (s, t) = hashes(self.seed, &key);
        let si = self.shard_index(s);
        let mut pending = Pending::default();
        let mut g = self.lock(si);
        g.stats.lookups += 1;
        if let Some((slot, d)) = g.find(t, &key) {
            // The common case, kept apart so the verdict is built in place, not moved through
            // a `Step`.
            let l = self.hit(&mut g, si, slot, d, meta, now, &mut pending);
            drop(g);
            self.flush_pending(&pending);
            return l;
        }
        let step = match g.find_redirect(t, &key) {
            Some(p) => Step::Redirect(p),
            None => Step::Done(self.miss(&mut g, meta)),
        };
        drop(g);
        let out = match step {
            Step::Done(l) => l,
            Step::Redirect(p) => {
                let p = p as usize & self.mask;
                let mut g = self.lock(p);
                match self.step(&mut g, p, &key, t, meta, now, false, &mut pending) {
                    Step::Done(l) => l,
                    Step::Redirect(_) => self.miss(&mut g, meta),
                }
            }
        };
        self.flush_pending(&pending);
        out
    }

    /// The fast path for a flow cache: processes `meta` against the entry `handle` refers to
    /// without hashing. `None` when the handle is stale (entry gone) or `meta` is not a packet
    /// of that entry in the handle's direction; the caller then calls [`lookup`](Self::lookup).
    /// The handle's generation identifies the entry; the packet's key is checked against a
    /// 32-bit fingerprint kept beside it (reading the keys would cost two more cache lines per
    /// packet), so a caller must not pass handles of unrelated flows: a flow cache, which found
    /// the handle by the packet's full key, never does.
    pub fn update(&self, handle: Handle, meta: &PacketMeta, now: Instant) -> Option<Lookup> {
        let si = handle.shard as usize;
        if si > self.mask || matches!(meta.l4, L4::IcmpError { .. }) {
            return None;
        }
        let key = meta.key().ok()?;
        let mut pending = Pending::default();
        let out = {
            let mut g = self.lock(si);
            let e = g.entries.get(handle.slot as usize)?;
            let d = handle.direction.index();
            if !e.holds(handle.generation, d, &key) {
                return None;
            }
            g.stats.lookups += 1;
            self.hit(&mut g, si, handle.slot, d, meta, now, &mut pending)
        };
        self.flush_pending(&pending);
        Some(out)
    }

    /// [`lookup`](Self::lookup) for many packets: `out[i]` receives the classification of
    /// `metas[i]`, exactly as `lookup` would have returned it (`min(len)` packets are processed).
    ///
    /// Faster than one `lookup` per packet: packets are processed in order, one shard lock at a
    /// time, kept while consecutive packets hash to its shard (a burst of one flow). On a table
    /// too large to stay cached, each packet's index slot and then its entry start loading a
    /// few packets ahead of its turn, without locks (what is read ahead is only a hint; the
    /// lookup itself happens under the lock), so the misses of a batch overlap each other and
    /// the processing. Never allocates unless a batch removes several NAT-redirected entries.
    pub fn lookup_batch(&self, metas: &[PacketMeta], now: Instant, out: &mut [Lookup]) {
        let n = metas.len().min(out.len());
        if !self.prefetch {
            self.lookup_run(&metas[..n], now, &mut out[..n]);
            return;
        }
        self.lookup_ahead(&metas[..n], now, &mut out[..n]);
    }

    /// [`update`](Self::update) for many packets: `out[i]` receives what
    /// `update(packets[i].0, &packets[i].1, now)` would have returned (`None`: stale handle or
    /// foreign packet; call [`lookup`](Self::lookup) for it).
    ///
    /// Faster than one `update` per packet: packets are processed in order, one shard lock at a
    /// time, kept while consecutive handles name its shard. On a table too large to stay
    /// cached, each packet's entry starts loading a few packets ahead of its turn (a prefetch,
    /// which needs no lock), so the misses of a batch overlap each other and the processing.
    pub fn update_batch(
        &self,
        packets: &[(Handle, PacketMeta)],
        now: Instant,
        out: &mut [Option<Lookup>],
    ) {
        let n = packets.len().min(out.len());
        // One shard for the whole batch (a burst of one connection, the common case of a
        // polled ring): its entry is loaded by the first packet, so the others' prefetches
        // would be pure cost.
        let one_shard = packets[..n]
            .split_first()
            .is_some_and(|((f, _), rest)| rest.iter().all(|(h, _)| h.shard == f.shard));
        // Software pipelining: the entries of the packets AHEAD on start loading (no lock
        // needed) as packet i is processed, so each packet's misses overlap the work of the
        // ones before it. A cached table, or a burst of one connection, has nothing to overlap.
        if self.prefetch && !one_shard {
            self.update_run::<{ Self::AHEAD }>(&packets[..n], now, &mut out[..n]);
        } else {
            self.update_run::<0>(&packets[..n], now, &mut out[..n]);
        }
    }

    /// [`update_batch`](Self::update_batch) for a caller that started the loads of every
    /// handle's entry ([`prefetch_handles`](Self::prefetch_handles)) some work ago, as a
    /// datapath does before its flow-cache lookups: the same in-order run without prefetching
    /// again.
    pub fn update_batch_prefetched(
        &self,
        packets: &[(Handle, PacketMeta)],
        now: Instant,
        out: &mut [Option<Lookup>],
    ) {
        let n = packets.len().min(out.len());
        self.update_run::<0>(&packets[..n], now, &mut out[..n]);
    }

    /// Starts loading the entries `handles` name, without locking or waiting: a hint for a
    /// caller that will pass them to
    /// [`update_batch_prefetched`](Self::update_batch_prefetched) after some other work (a
    /// datapath does this before its flow-cache stage), so the misses overlap with that work. Stale or foreign handles cost a wasted load. A no-op on a table small enough to
    /// stay cached.
    pub fn prefetch_handles(&self, handles: impl IntoIterator<Item = Handle>) {
        if !self.prefetch {
            return;
        }
        for h in handles {
            self.prefetch_entry(h);
        }
    }

    /// Starts loading the index slots a [`lookup`](Self::lookup) of `meta` and then a
    /// [`commit`](Self::commit) of it without NAT read first (its key's home slot and its reply
    /// key's), without locking or waiting: for a caller holding a batch of probable new
    /// connections (flow-cache misses) with other work to do before their lookups, so their
    /// misses overlap. A no-op on a table small enough to stay cached.
    pub fn prefetch_lookup(&self, meta: &PacketMeta) {
        if !self.prefetch {
            return;
        }
        let Ok(key) = meta.key() else { return };
        let (s, t) = hashes(self.seed, &key);
        let si = self.shard_index(s);
        self.prefetch_home(si, t);
        // The entry a commit in this shard would fill: every line of it is written.
        if let Some(h) = self.free_hint.get(si)
            && let Some(at) = self.entry_addr(si, h.load(Ordering::Relaxed))
        {
            for line in (0..std::mem::size_of::<Entry>()).step_by(64) {
                prefetch_addr(at + line);
            }
        }
        if let Some(reply) = key.invert() {
            let (rs, rt) = hashes(self.seed, &reply);
            self.prefetch_home(self.shard_index(rs), rt);
        }
    }

    #[inline(always)]
    fn prefetch_home(&self, si: usize, t: u64) {
        if let Some(v) = self.views.get(si) {
            v.prefetch_home(t);
        }
    }

    /// Starts loading what a lookup reads of entry `slot` of shard `si` found in direction `d`:
    /// the hot and protocol lines, and the line(s) of key `d`.
    #[inline(always)]
    fn prefetch_found(&self, si: usize, slot: u32, d: usize) {
        let Some(at) = self.entry_addr(si, slot) else {
            return;
        };
        prefetch_addr(at);
        prefetch_addr(at + 64);
        let key = at + std::mem::offset_of!(Entry, keys) + d * std::mem::size_of::<Key>();
        prefetch_addr(key);
        prefetch_addr(key + std::mem::size_of::<Key>() - 1);
    }

    #[inline(always)]
    fn prefetch_entry(&self, h: Handle) {
        // The hot and protocol lines: what an update by handle reads.
        if let Some(at) = self.entry_addr(h.shard as usize, h.slot) {
            prefetch_addr(at);
            prefetch_addr(at + 64);
        }
    }

    /// Address of entry `slot` of shard `si`, for a prefetch only (the slab is not borrowed:
    /// its lock is not held); `None` when either is out of range (a stale hint or handle).
    #[inline(always)]
    fn entry_addr(&self, si: usize, slot: u32) -> Option<usize> {
        let &base = self.slabs.get(si)?;
        (slot < self.shard_cap).then(|| base + slot as usize * std::mem::size_of::<Entry>())
    }

    /// `lookup` packet by packet, keeping a shard's lock while consecutive packets hash to it.
    /// One lock at a time, like every non-batch operation.
    fn lookup_run(&self, metas: &[PacketMeta], now: Instant, out: &mut [Lookup]) {
        let mut pending = Pending::default();
        let mut held: Option<(usize, MutexGuard<'_, Shard>)> = None;
        for (meta, o) in metas.iter().zip(out.iter_mut()) {
            let keyed = self.keyed(meta);
            self.lookup_held(&mut held, &keyed, meta, now, &mut pending, o);
        }
        drop(held);
        self.flush_pending(&pending);
    }

    /// A packet's key, shard and index hash: what a lookup computes before locking.
    #[inline(always)]
    fn keyed(&self, meta: &PacketMeta) -> Result<(Key, usize, u64), InvalidReason> {
        meta.key().map(|k| {
            let (s, t) = hashes(self.seed, &k);
            (k, self.shard_index(s), t)
        })
    }

    /// One packet of a batched lookup, given [`keyed`](Self::keyed): takes its shard's lock
    /// unless `held` already has it, and leaves it there for the next packet.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn lookup_held<'a>(
        &'a self,
        held: &mut Option<(usize, MutexGuard<'a, Shard>)>,
        keyed: &Result<(Key, usize, u64), InvalidReason>,
        meta: &PacketMeta,
        now: Instant,
        pending: &mut Pending,
        o: &mut Lookup,
    ) {
        let (key, si, t) = match keyed {
            Ok((k, si, t)) => (k, *si, *t),
            Err(r) => {
                drop(held.take());
                *o = self.count_invalid_keyless(*r);
                return;
            }
        };
        let g = match held {
            Some((h, g)) if *h == si => g,
            _ => {
                drop(held.take());
                &mut held.insert((si, self.lock(si))).1
            }
        };
        g.stats.lookups += 1;
        if let Some((slot, d)) = g.find(t, key) {
            // The common case first, as in `lookup`.
            self.hit_into(g, si, slot, d, meta, now, pending, o);
            return;
        }
        match g.find_redirect(t, key) {
            None => *o = self.miss(g, meta),
            Some(r) => {
                drop(held.take());
                let ri = r as usize & self.mask;
                let mut g = self.lock(ri);
                *o = match self.step(&mut g, ri, key, t, meta, now, false, pending) {
                    Step::Done(l) => l,
                    Step::Redirect(_) => self.miss(&mut g, meta),
                };
            }
        }
    }

    /// `lookup_run` with each packet's loads started ahead of its turn, without locks (see
    /// [`IndexView`]): `INDEX_AHEAD` packets on, its key is hashed and its index slot starts
    /// loading; `ENTRY_AHEAD` packets on, that slot (arrived by then) names the entry that most
    /// likely holds the key, whose lines start loading. Only hints are read before the lock:
    /// the packet's turn looks it up exactly as `lookup_run` does.
    fn lookup_ahead(&self, metas: &[PacketMeta], now: Instant, out: &mut [Lookup]) {
        let n = metas.len().min(out.len());
        // Packet j's key and hashes, from its index stage to its turn.
        let mut ring = [Err(InvalidReason::ALL[0]); Self::RING];
        let start =
            |j: usize, ring: &mut [Result<(Key, usize, u64), InvalidReason>; Self::RING]| {
                ring[j % Self::RING] = metas[j].key().map(|k| {
                    let (s, t) = hashes(self.seed, &k);
                    let si = self.shard_index(s);
                    self.prefetch_home(si, t);
                    (k, si, t)
                });
            };
        let entry = |j: usize, ring: &[Result<(Key, usize, u64), InvalidReason>; Self::RING]| {
            if let Ok((_, si, t)) = ring[j % Self::RING]
                && let Some(c) = self.views.get(si).and_then(|v| v.first_tagged(t))
            {
                self.prefetch_found(si, c >> 1, (c & 1) as usize);
            }
        };
        for j in 0..n.min(Self::INDEX_AHEAD) {
            start(j, &mut ring);
        }
        for j in 0..n.min(Self::ENTRY_AHEAD) {
            entry(j, &ring);
        }
        let mut pending = Pending::default();
        let mut held: Option<(usize, MutexGuard<'_, Shard>)> = None;
        for i in 0..n {
            if i % Self::STRIDE == 0 {
                for j in (i + Self::INDEX_AHEAD..i + Self::INDEX_AHEAD + Self::STRIDE)
                    .take_while(|&j| j < n)
                {
                    start(j, &mut ring);
                }
                for j in (i + Self::ENTRY_AHEAD..i + Self::ENTRY_AHEAD + Self::STRIDE)
                    .take_while(|&j| j < n)
                {
                    entry(j, &ring);
                }
            }
            let keyed = &ring[i % Self::RING];
            self.lookup_held(&mut held, keyed, &metas[i], now, &mut pending, &mut out[i]);
        }
        drop(held);
        self.flush_pending(&pending);
    }

    /// Packets ahead of its turn at which `lookup_batch` hashes a packet and starts loading
    /// its index slot, and at which it reads that slot and starts loading the entry's lines
    /// (both every [`STRIDE`](Self::STRIDE) packets, for that many). A lookup reads four or
    /// five lines (index slot, the entry's first two, its key), and a core tracks only a couple
    /// of dozen outstanding misses. Measured at a million entries (criterion, M lookups/s,
    /// index/entry/stride): 8/4/1 10.4, 8/4/2 11.1, 6/3/3 11.1, 9/5/3 10.8, 6/4/2 10.5.
    const INDEX_AHEAD: usize = 8;
    const ENTRY_AHEAD: usize = 4;
    /// Ring of per-packet keys between the stages: a packet enters it at most
    /// `INDEX_AHEAD + STRIDE - 1` packets before its turn.
    const RING: usize = 16;

    /// `update` packet by packet, keeping a shard's lock while consecutive handles name it,
    /// and starting the loads of the entries `AHEAD` packets on, [`STRIDE`](Self::STRIDE) at a
    /// time (none when `AHEAD` is 0; a constant, so the cached table's run carries no prefetch
    /// code).
    fn update_run<const AHEAD: usize>(
        &self,
        packets: &[(Handle, PacketMeta)],
        now: Instant,
        out: &mut [Option<Lookup>],
    ) {
        if AHEAD > 0 {
            for (h, _) in packets.iter().take(AHEAD) {
                self.prefetch_entry(*h);
            }
        }
        let mut pending = Pending::default();
        let mut held: Option<(usize, MutexGuard<'_, Shard>)> = None;
        for (i, ((h, meta), o)) in packets.iter().zip(out.iter_mut()).enumerate() {
            if AHEAD > 0 && i % Self::STRIDE == 0 {
                for (next, _) in packets.iter().skip(i + AHEAD).take(Self::STRIDE) {
                    self.prefetch_entry(*next);
                }
            }
            *o = None;
            let si = h.shard as usize;
            if si > self.mask || matches!(meta.l4, L4::IcmpError { .. }) {
                continue;
            }
            let Ok(key) = meta.key() else { continue };
            let g = match &mut held {
                Some((s, g)) if *s == si => g,
                _ => {
                    drop(held.take());
                    &mut held.insert((si, self.lock(si))).1
                }
            };
            let d = h.direction.index();
            match g.entries.get(h.slot as usize) {
                Some(e) if e.holds(h.generation, d, &key) => {}
                _ => continue,
            }
            g.stats.lookups += 1;
            let o = o.insert(Lookup::verdict(Verdict::New));
            self.hit_into(g, si, h.slot, d, meta, now, &mut pending, o);
        }
        drop(held);
        self.flush_pending(&pending);
    }

    /// Entry-slab size (bytes) above which batches start loads ahead: beyond a core's L2 and a
    /// good part of a shared L3, where the table's lines are mostly not cached.
    const PREFETCH_ABOVE: u64 = 8 << 20;

    /// How many packets ahead `update_batch` starts an entry's loads, and how many entries at a
    /// time. Each packet has two lines in flight, and a core tracks only a couple of dozen
    /// outstanding misses: further ahead, the prefetches themselves stall. Issuing them in
    /// pairs lets two entries' address translations (a TLB miss each, at this size) overlap.
    /// Measured at a million entries (criterion, M updates/s, ahead/stride): 4/1 17.8, 6/1
    /// 18.5, 8/1 18.2–19.4, 10/1 18.1, 12/1 15.9, 16/1 12.5; 6/2 19.7–20.2, 6/3 19.4–20.0,
    /// 5/5 18.2–19.9, 8/4 15.8–16.4.
    const AHEAD: usize = 6;
    /// Packets whose loads a batch starts together (see [`AHEAD`](Self::AHEAD)).
    const STRIDE: usize = 2;

    fn count_invalid_keyless(&self, r: InvalidReason) -> Lookup {
        let mut g = self.lock(0);
        g.stats.lookups += 1;
        g.stats.invalid[r.index()] += 1;
        Lookup::verdict(Verdict::Invalid(r))
    }

    /// One shard's part of a lookup.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn step(
        &self,
        g: &mut Shard,
        si: usize,
        key: &Key,
        t: u64,
        meta: &PacketMeta,
        now: Instant,
        follow: bool,
        pending: &mut Pending,
    ) -> Step {
        if let Some((slot, d)) = g.find(t, key) {
            return Step::Done(self.hit(g, si, slot, d, meta, now, pending));
        }
        if follow && let Some(p) = g.find_redirect(t, key) {
            return Step::Redirect(p);
        }
        Step::Done(self.miss(g, meta))
    }

    /// The verdict of a packet with no entry (counted in `g`).
    fn miss(&self, g: &mut Shard, meta: &PacketMeta) -> Lookup {
        match Proto::check_new(meta, self.loose) {
            Ok(()) => {
                g.stats.new += 1;
                Lookup::verdict(Verdict::New)
            }
            Err(r) => {
                g.stats.invalid[r.index()] += 1;
                Lookup::verdict(Verdict::Invalid(r))
            }
        }
    }

    fn rewrite_for(e: &Entry, d: usize) -> Option<Rewrite> {
        if !e.nat {
            return None;
        }
        // A packet is rewritten into what the far side expects: the inverse of the other
        // direction's tuple.
        let target = e.keys[1 - d].invert()?;
        Rewrite::between(&e.keys[d], &target)
    }

    /// Processes a packet against entry `slot` found in direction `d`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn hit(
        &self,
        g: &mut Shard,
        si: usize,
        slot: u32,
        d: usize,
        meta: &PacketMeta,
        now: Instant,
        pending: &mut Pending,
    ) -> Lookup {
        let mut out = Lookup::verdict(Verdict::New);
        self.hit_into(g, si, slot, d, meta, now, pending, &mut out);
        out
    }

    /// [`hit`](Self::hit) writing its result into `out`: the batch paths give it the caller's
    /// output slot, because copying a returned `Lookup` there read back, in wide loads, what
    /// `hit` had just written field by field, and stalled on store forwarding (two fifths of
    /// `update_batch`'s own time).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn hit_into(
        &self,
        g: &mut Shard,
        si: usize,
        slot: u32,
        d: usize,
        meta: &PacketMeta,
        now: Instant,
        pending: &mut Pending,
        out: &mut Lookup,
    ) {
        let e = &mut g.entries[slot as usize];
        if e.expires <= now.0 {
            g.stats.expirations += 1;
            self.remove_slot(g, si, slot, pending);
            *out = self.miss(g, meta);
            return;
        }
        let dir = Direction::from_index(d);
        let handle = Handle {
            shard: si as u16,
            slot,
            generation: e.generation,
            direction: dir,
        };
        if let L4::IcmpError { .. } = meta.l4 {
            // The error must be addressed to the sender of the quoted packet, i.e. to the
            // destination of the tuple it was matched as (nf_conntrack_inet_error).
            if addr_bits(meta.dst).0 != e.keys[d].dst {
                g.stats.invalid[InvalidReason::IcmpOuterMismatch.index()] += 1;
                *out = Lookup::verdict(Verdict::Invalid(InvalidReason::IcmpOuterMismatch));
                return;
            }
            let rewrite = Self::rewrite_for(e, d);
            g.stats.hits += 1;
            g.stats.related += 1;
            *out = Lookup {
                verdict: Verdict::Related,
                direction: dir,
                handle: Some(handle),
                rewrite,
            };
            return;
        }
        let (outcome, assured) = e.proto.packet(dir, meta, e.replied, e.assured);
        match outcome {
            Outcome::Accept | Outcome::Ignore | Outcome::AcceptAndRemove => {
                g.stats.hits += 1;
                e.packets[d] += 1;
                e.bytes[d] += u64::from(meta.len);
                // Tested here so the common case stores `None` directly: copying the callee's
                // returned `Option<Rewrite>` stalled on store forwarding (a third of this
                // function's time).
                out.rewrite = if e.nat { Self::rewrite_for(e, d) } else { None };
                out.verdict = if d == 0 {
                    Verdict::Established
                } else {
                    Verdict::Reply
                };
                out.direction = dir;
                if outcome == Outcome::AcceptAndRemove {
                    g.stats.removals += 1;
                    self.remove_slot(g, si, slot, pending);
                    out.handle = None;
                    return;
                }
                out.handle = Some(handle);
                if outcome == Outcome::Accept {
                    e.replied |= d == 1;
                    e.assured = assured;
                    e.expires = now
                        .0
                        .saturating_add(e.proto.timeout(e.replied, &self.timeouts));
                    let class = e.proto.class(e.assured);
                    if class != e.class {
                        g.unlink(slot);
                        g.link(slot, class);
                    }
                }
            }
            Outcome::Invalid(r) => {
                g.stats.invalid[r.index()] += 1;
                *out = Lookup {
                    verdict: Verdict::Invalid(r),
                    direction: dir,
                    handle: None,
                    rewrite: None,
                };
            }
            Outcome::Reopen => {
                g.stats.removals += 1;
                self.remove_slot(g, si, slot, pending);
                *out = self.miss(g, meta);
            }
        }
    }

    /// Removes entry `slot` of shard `si` (whose lock the caller holds).
    fn remove_slot(&self, g: &mut Shard, si: usize, slot: u32, pending: &mut Pending) {
        let (keys, n, redirect) = {
            let e = &g.entries[slot as usize];
            (e.keys, e.key_count(), e.redirect)
        };
        for (d, key) in keys.iter().enumerate().take(n) {
            let t = hashes(self.seed, key).1;
            g.index.remove(t, code(slot, d));
        }
        if redirect != NIL {
            pending.push(redirect, keys[1], si as u32);
        }
        g.unlink(slot);
        let e = &mut g.entries[slot as usize];
        e.in_use = false;
        e.redirect = NIL;
        e.generation = e.generation.wrapping_add(1);
        g.free.push(slot);
        self.publish_free(g, si);
        self.occupancy.fetch_sub(1, Ordering::Relaxed);
        self.zones.release(keys[0].zone);
    }

    #[inline]
    fn flush_pending(&self, pending: &Pending) {
        if pending.first.is_none() {
            return;
        }
        self.flush_redirects(pending);
    }

    #[cold]
    fn flush_redirects(&self, pending: &Pending) {
        for &(shard, key, primary) in pending.first.iter().chain(&pending.rest) {
            let t = hashes(self.seed, &key).1;
            let mut g = self.lock(shard as usize);
            if let Ok(o) = g
                .redirects
                .find_entry(t, |(k, p)| *k == key && *p == primary)
            {
                o.remove();
            }
        }
    }

    fn refuse(&self, r: RefusalReason) -> CommitError {
        self.refusals[r as usize].fetch_add(1, Ordering::Relaxed);
        CommitError::Refused(r)
    }

    /// Evicts the oldest evictable entry of shard `g` (unassured first, then closing), of
    /// `zone` if given. Scans a bounded number of list nodes.
    fn evict_one(
        &self,
        g: &mut Shard,
        si: usize,
        zone: Option<u16>,
        pending: &mut Pending,
    ) -> bool {
        for li in 0..2 {
            let mut cur = g.lists[li].head;
            let mut budget = 64;
            while cur != NIL && budget > 0 {
                let e = &g.entries[cur as usize];
                if zone.is_none_or(|z| e.keys[0].zone == z) {
                    self.remove_slot(g, si, cur, pending);
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                cur = e.next;
                budget -= 1;
            }
        }
        false
    }

    /// Reserves room for one entry of `zone` in shard `g`, evicting there if needed.
    /// `Err(reason)` when the shard has nothing evictable.
    fn reserve(
        &self,
        g: &mut Shard,
        si: usize,
        zone: u16,
        pending: &mut Pending,
    ) -> Result<(), RefusalReason> {
        let zc = self.zones.get(zone);
        for _ in 0..4 {
            if let Some((limit, c)) = zc
                && c.fetch_add(1, Ordering::Relaxed) >= limit
            {
                c.fetch_sub(1, Ordering::Relaxed);
                if !self.evict_one(g, si, Some(zone), pending) {
                    return Err(RefusalReason::ZoneFull);
                }
                continue;
            }
            if self.occupancy.fetch_add(1, Ordering::Relaxed) >= self.max_entries {
                self.occupancy.fetch_sub(1, Ordering::Relaxed);
                self.zones.release(zone);
                if !self.evict_one(g, si, None, pending) {
                    return Err(RefusalReason::TableFull);
                }
                continue;
            }
            if g.free.is_empty() {
                self.occupancy.fetch_sub(1, Ordering::Relaxed);
                self.zones.release(zone);
                if !self.evict_one(g, si, None, pending) {
                    return Err(RefusalReason::ShardFull);
                }
                continue;
            }
            return Ok(());
        }
        Err(RefusalReason::TableFull)
    }

    /// Frees room elsewhere: evicts one entry (of `zone` if given) from one of a few other
    /// shards, locking them one at a time.
    fn evict_elsewhere(&self, from: usize, zone: Option<u16>) -> bool {
        let mut pending = Pending::default();
        let n = self.mask + 1;
        let mut done = false;
        for i in 1..n.min(17) {
            let si = (from + i * 7) & self.mask;
            let mut g = self.lock(si);
            if self.evict_one(&mut g, si, zone, &mut pending) {
                done = true;
                break;
            }
        }
        self.flush_pending(&pending);
        done
    }

    /// Creates the entry for `meta` (whose lookup said [`Verdict::New`] and whose connection the
    /// policy allowed), with optional NAT, and processes `meta` as its first packet. If another
    /// worker committed the same connection meanwhile, the packet is processed against that
    /// entry instead (no duplicate is ever created).
    pub fn commit(&self, meta: &PacketMeta, nat: Nat, now: Instant) -> Result<Lookup, CommitError> {
        self.commit_inner(meta, nat, now, true)
    }

    fn commit_inner(
        &self,
        meta: &PacketMeta,
        nat: Nat,
        now: Instant,
        may_evict_elsewhere: bool,
    ) -> Result<Lookup, CommitError> {
        let key = meta.key().map_err(CommitError::NotNew)?;
        Proto::check_new(meta, self.loose).map_err(CommitError::NotNew)?;
        let mut translated = key;
        if let Some(ep) = nat.snat {
            if !same_family(ep.addr, meta.src) {
                return Err(CommitError::NatFamily);
            }
            translated.src = addr_bits(ep.addr).0;
            translated.sport = ep.port;
        }
        if let Some(ep) = nat.dnat {
            if !same_family(ep.addr, meta.dst) {
                return Err(CommitError::NatFamily);
            }
            translated.dst = addr_bits(ep.addr).0;
            if !key.is_icmp() {
                translated.dport = ep.port;
            }
        }
        let reply = translated
            .invert()
            .ok_or(CommitError::NotNew(InvalidReason::Malformed))?;
        let is_nat = translated != key;
        let (s, t) = hashes(self.seed, &key);
        let (rs, rt) = hashes(self.seed, &reply);
        let si = self.shard_index(s);
        let ri = self.shard_index(rs);
        let mut pending = Pending::default();

        // 1. Reserve the reply tuple in its own shard when NAT sends it elsewhere.
        let cross = ri != si;
        if cross {
            let mut g = self.lock(ri);
            if let Some((slot, _)) = g.find(rt, &reply) {
                if g.entries[slot as usize].expires <= now.0 {
                    g.stats.expirations += 1;
                    self.remove_slot(&mut g, ri, slot, &mut pending);
                } else {
                    drop(g);
                    self.flush_pending(&pending);
                    return self.conflict(meta, now, &key, t, si);
                }
            }
            if g.find_redirect(rt, &reply).is_some() {
                drop(g);
                self.flush_pending(&pending);
                return self.conflict(meta, now, &key, t, si);
            }
            if g.redirects.len() >= g.redirect_cap {
                drop(g);
                self.flush_pending(&pending);
                return Err(self.refuse(RefusalReason::ShardFull));
            }
            let entry = (reply, si as u32);
            let seed = self.seed;
            g.redirects
                .insert_unique(rt, entry, |(k, _)| hashes(seed, k).1);
        }

        // 2. Create the entry in its shard.
        let result = {
            let mut g = self.lock(si);
            self.create(
                &mut g,
                si,
                meta,
                &key,
                t,
                &reply,
                rt,
                cross,
                ri,
                is_nat,
                now,
                &mut pending,
            )
        };
        let undo_redirect = cross && !matches!(result, Ok(Created::New(_)));
        if undo_redirect {
            pending.push(ri as u32, reply, si as u32);
        }
        self.flush_pending(&pending);
        match result {
            Ok(Created::New(l) | Created::Existing(l)) => Ok(l),
            Ok(Created::ReplyOfOther) => Ok(self.lookup(meta, now)),
            Err(CommitError::Refused(r @ (RefusalReason::TableFull | RefusalReason::ZoneFull)))
                if may_evict_elsewhere =>
            {
                let zone = (r == RefusalReason::ZoneFull).then_some(key.zone);
                if self.evict_elsewhere(si, zone) {
                    self.commit_inner(meta, nat, now, false)
                } else {
                    Err(self.refuse(r))
                }
            }
            Err(CommitError::Refused(r)) => Err(self.refuse(r)),
            Err(e) => Err(e),
        }
    }

    /// The reply tuple is taken: if the original tuple is a known connection (a racing commit),
    /// process the packet there; otherwise refuse.
    fn conflict(
        &self,
        meta: &PacketMeta,
        now: Instant,
        key: &Key,
        t: u64,
        si: usize,
    ) -> Result<Lookup, CommitError> {
        let known = {
            let g = self.lock(si);
            g.find(t, key).is_some() || g.find_redirect(t, key).is_some()
        };
        if known {
            Ok(self.lookup(meta, now))
        } else {
            Err(self.refuse(RefusalReason::TupleConflict))
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &self,
        g: &mut Shard,
        si: usize,
        meta: &PacketMeta,
        key: &Key,
        t: u64,
        reply: &Key,
        rt: u64,
        cross: bool,
        ri: usize,
        is_nat: bool,
        now: Instant,
        pending: &mut Pending,
    ) -> Result<Created, CommitError> {
        if let Some((slot, d)) = g.find(t, key) {
            if g.entries[slot as usize].expires > now.0 {
                g.stats.lookups += 1;
                let l = self.hit(g, si, slot, d, meta, now, pending);
                if l.verdict != Verdict::New {
                    // Committed meanwhile by another worker (or a retransmitted first packet).
                    return Ok(Created::Existing(l));
                }
                // A SYN reopening a closed connection: the old entry is gone, create anew.
            } else {
                g.stats.expirations += 1;
                self.remove_slot(g, si, slot, pending);
            }
        }
        if g.find_redirect(t, key).is_some() {
            return Ok(Created::ReplyOfOther);
        }
        if !cross && reply != key {
            if let Some((slot, _)) = g.find(rt, reply) {
                if g.entries[slot as usize].expires > now.0 {
                    return Err(CommitError::Refused(RefusalReason::TupleConflict));
                }
                g.stats.expirations += 1;
                self.remove_slot(g, si, slot, pending);
            }
            if g.find_redirect(rt, reply).is_some() {
                return Err(CommitError::Refused(RefusalReason::TupleConflict));
            }
        }
        self.reserve(g, si, key.zone, pending)
            .map_err(CommitError::Refused)?;
        let popped = g.free.pop();
        self.publish_free(g, si);
        let Some(slot) = popped else {
            // `reserve` guaranteed a free slot; give the reservation back defensively.
            self.occupancy.fetch_sub(1, Ordering::Relaxed);
            self.zones.release(key.zone);
            return Err(CommitError::Refused(RefusalReason::ShardFull));
        };
        {
            let e = &mut g.entries[slot as usize];
            e.keys = [*key, *reply];
            e.fingerprints = [key.fingerprint(), reply.fingerprint()];
            e.proto.reset(meta);
            e.packets = [0; 2];
            e.bytes = [0; 2];
            e.in_use = true;
            e.replied = false;
            e.assured = false;
            e.nat = is_nat;
            e.redirect = if cross { ri as u32 } else { NIL };
            e.expires = u64::MAX;
            e.class = Class::Assured;
        }
        let n = g.entries[slot as usize].key_count();
        for (d, h) in [t, rt].into_iter().enumerate().take(n) {
            g.index.insert(h, code(slot, d));
        }
        g.link(slot, Class::Unassured);
        g.stats.commits += 1;
        let mut l = self.hit(g, si, slot, 0, meta, now, pending);
        match l.verdict {
            Verdict::Established => {
                l.verdict = Verdict::New;
                Ok(Created::New(l))
            }
            Verdict::Invalid(r) => {
                // The protocol rejected its own first packet (cannot happen after `check_new`,
                // but never keep an entry for an invalid packet).
                if g.entries[slot as usize].in_use {
                    self.remove_slot(g, si, slot, pending);
                }
                Err(CommitError::NotNew(r))
            }
            _ => Ok(Created::New(l)),
        }
    }

    /// Removes the entry `handle` refers to; `false` if it is already gone.
    pub fn remove(&self, handle: Handle) -> bool {
        let si = handle.shard as usize;
        if si > self.mask {
            return false;
        }
        let mut pending = Pending::default();
        let done = {
            let mut g = self.lock(si);
            match g.entries.get(handle.slot as usize) {
                Some(e) if e.in_use && e.generation == handle.generation => {
                    g.stats.removals += 1;
                    self.remove_slot(&mut g, si, handle.slot, &mut pending);
                    true
                }
                _ => false,
            }
        };
        self.flush_pending(&pending);
        done
    }

    fn matches(filter: &Filter, e: &Entry) -> bool {
        match filter {
            Filter::All => true,
            Filter::Zone(z) => e.keys[0].zone == *z,
            Filter::Address(a) => {
                let (bits, v6) = addr_bits(*a);
                e.keys[0].v6 == v6 && e.keys.iter().any(|k| k.src == bits || k.dst == bits)
            }
            Filter::Tuple { zone, tuple } => {
                Key::from_tuple(*zone, tuple).is_some_and(|k| e.keys[0] == k || e.keys[1] == k)
            }
        }
    }

    fn info(e: &Entry) -> EntryInfo {
        EntryInfo {
            zone: e.keys[0].zone,
            original: e.keys[0].tuple(),
            reply: e.keys[1].tuple(),
            state: e.proto.info(),
            replied: e.replied,
            assured: e.assured,
            expires: Instant(e.expires),
            packets: e.packets,
            bytes: e.bytes,
        }
    }

    /// Lists the entries matching `filter`, one shard lock at a time (workers keep running;
    /// the list is not an atomic snapshot of the whole table).
    pub fn entries(&self, filter: &Filter) -> Vec<EntryInfo> {
        let mut out = Vec::new();
        for si in 0..=self.mask {
            self.entries_in(si, filter, &mut out);
        }
        out
    }

    /// Number of shards (for [`entries_in`](Self::entries_in)).
    pub fn shards(&self) -> usize {
        self.mask + 1
    }

    /// Appends the entries of shard `shard` matching `filter` to `out`: a listing one shard at
    /// a time, for a caller that walks the table over many calls without holding more than one
    /// shard's lock or building a list of the whole table (reusing `out`, it allocates only to
    /// grow it). Nothing for a shard out of range.
    pub fn entries_in(&self, shard: usize, filter: &Filter, out: &mut Vec<EntryInfo>) {
        if shard > self.mask {
            return;
        }
        let g = self.lock(shard);
        out.extend(
            g.entries
                .iter()
                .filter(|e| e.in_use && Self::matches(filter, e))
                .map(Self::info),
        );
    }

    /// Removes the entries matching `filter` (e.g. on policy revocation); returns how many.
    /// A tuple names at most one entry, found through the index as a lookup finds it (no
    /// scan); the other filters visit every shard, one lock at a time.
    pub fn flush(&self, filter: &Filter) -> usize {
        if let Filter::Tuple { zone, tuple } = filter {
            return self.remove_key(*zone, tuple);
        }
        let mut removed = 0;
        for si in 0..=self.mask {
            loop {
                let mut pending = Pending::default();
                let more = {
                    let mut g = self.lock(si);
                    let mut more = false;
                    for slot in 0..g.entries.len() as u32 {
                        let e = &g.entries[slot as usize];
                        if e.in_use && Self::matches(filter, e) {
                            if pending.is_full() {
                                more = true;
                                break;
                            }
                            g.stats.removals += 1;
                            self.remove_slot(&mut g, si, slot, &mut pending);
                            removed += 1;
                        }
                    }
                    more
                };
                self.flush_pending(&pending);
                if !more {
                    break;
                }
            }
        }
        removed
    }

    /// `flush(&Filter::Tuple { .. })`: the entry having the tuple as either of its keys, found
    /// in the key's shard or, for a reply key that NAT moved, through its redirect.
    fn remove_key(&self, zone: u16, tuple: &Tuple) -> usize {
        let Some(key) = Key::from_tuple(zone, tuple) else {
            return 0;
        };
        let (s, t) = hashes(self.seed, &key);
        let mut si = self.shard_index(s);
        let mut pending = Pending::default();
        let mut removed = 0;
        // The key's own shard, then at most one redirect.
        for _ in 0..2 {
            let mut g = self.lock(si);
            if let Some((slot, _)) = g.find(t, &key) {
                g.stats.removals += 1;
                self.remove_slot(&mut g, si, slot, &mut pending);
                removed = 1;
                break;
            }
            match g.find_redirect(t, &key) {
                Some(p) => si = p as usize & self.mask,
                None => break,
            }
        }
        self.flush_pending(&pending);
        removed
    }

    /// Removes expired entries, examining at most `max_entries` slots from where the previous
    /// sweep stopped (round robin over all shards). Never a stop-the-world scan: at most one
    /// shard is locked at a time. Returns the number of entries removed.
    pub fn sweep(&self, now: Instant, max_entries: usize) -> usize {
        let per = self.shard_cap as u64;
        let total = per * (self.mask as u64 + 1);
        if total == 0 || max_entries == 0 {
            return 0;
        }
        let budget = (max_entries as u64).min(total);
        let mut pos = self.sweep_cursor.fetch_add(budget, Ordering::Relaxed) % total;
        let mut left = budget;
        let mut removed = 0;
        while left > 0 {
            let si = (pos / per) as usize;
            let start = pos % per;
            let n = (per - start).min(left);
            let mut pending = Pending::default();
            let mut n = n;
            {
                let mut g = self.lock(si);
                for slot in start..start + n {
                    let e = &g.entries[slot as usize];
                    if e.in_use && e.expires <= now.0 {
                        g.stats.expirations += 1;
                        self.remove_slot(&mut g, si, slot as u32, &mut pending);
                        removed += 1;
                        if pending.is_full() {
                            // Release the lock to clear redirects; resume after this slot.
                            n = slot - start + 1;
                            break;
                        }
                    }
                }
            }
            self.flush_pending(&pending);
            left -= n;
            pos = (pos + n) % total;
        }
        removed
    }

    /// Counters merged over all shards.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for si in 0..=self.mask {
            let g = self.lock(si);
            let x = &g.stats;
            s.lookups += x.lookups;
            s.hits += x.hits;
            s.new += x.new;
            s.related += x.related;
            s.commits += x.commits;
            s.expirations += x.expirations;
            s.removals += x.removals;
            for (a, b) in s.invalid.iter_mut().zip(x.invalid) {
                *a += b;
            }
        }
        for (a, b) in s.refusals.iter_mut().zip(&self.refusals) {
            *a = b.load(Ordering::Relaxed);
        }
        s.evictions = self.evictions.load(Ordering::Relaxed);
        s.occupancy = u64::from(self.occupancy());
        s
    }

    /// Checks the table's structural invariants (see the module documentation). Meant for
    /// tests and fuzzing: exact only while no other call is in flight.
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        let fail = |m: String| Err(InvariantError(m));
        let mut total = 0u64;
        let mut zones: hashbrown::HashMap<u16, u32> = hashbrown::HashMap::new();
        let mut redirects = Vec::new();
        let mut expect_redirects = Vec::new();
        for si in 0..=self.mask {
            let g = self.lock(si);
            let used = g.entries.iter().filter(|e| e.in_use).count();
            if used + g.free.len() != g.entries.len() {
                return fail(format!(
                    "shard {si}: {used} used + {} free != {}",
                    g.free.len(),
                    g.entries.len()
                ));
            }
            if g.free.iter().any(|&f| g.entries[f as usize].in_use) {
                return fail(format!("shard {si}: a free slot is in use"));
            }
            let mut keys = 0;
            let mut listed = [0u32; 2];
            for (slot, e) in g.entries.iter().enumerate().filter(|(_, e)| e.in_use) {
                total += 1;
                *zones.entry(e.keys[0].zone).or_default() += 1;
                for d in 0..e.key_count() {
                    keys += 1;
                    let t = hashes(self.seed, &e.keys[d]).1;
                    if g.find(t, &e.keys[d]) != Some((slot as u32, d)) {
                        return fail(format!("shard {si}: slot {slot} dir {d} not indexed"));
                    }
                }
                if d_shard(self, &e.keys[0]) != si {
                    return fail(format!("shard {si}: slot {slot} lives in the wrong shard"));
                }
                match e.class {
                    Class::Unassured => listed[0] += 1,
                    Class::Closing => listed[1] += 1,
                    Class::Assured => {}
                }
                if e.class != e.proto.class(e.assured) {
                    return fail(format!(
                        "shard {si}: slot {slot} in the wrong eviction class"
                    ));
                }
                if e.redirect != NIL {
                    expect_redirects.push((e.redirect as usize, e.keys[1], si as u32));
                }
            }
            if g.index.len() != keys {
                return fail(format!(
                    "shard {si}: index holds {} keys, entries {keys}",
                    g.index.len()
                ));
            }
            for (li, &expected) in listed.iter().enumerate() {
                let mut n = 0;
                let mut cur = g.lists[li].head;
                let mut prev = NIL;
                while cur != NIL {
                    let e = &g.entries[cur as usize];
                    if !e.in_use || e.prev != prev || e.class as usize != li {
                        return fail(format!("shard {si}: list {li} broken at {cur}"));
                    }
                    n += 1;
                    if n > g.entries.len() as u32 {
                        return fail(format!("shard {si}: list {li} loops"));
                    }
                    prev = cur;
                    cur = e.next;
                }
                if n != expected || n != g.lists[li].len || g.lists[li].tail != prev {
                    return fail(format!(
                        "shard {si}: list {li} has {n}, expected {expected}"
                    ));
                }
            }
            for &(k, p) in &g.redirects {
                redirects.push((si, k, p));
            }
        }
        if total != u64::from(self.occupancy()) {
            return fail(format!("occupancy {} != {total} entries", self.occupancy()));
        }
        if total > u64::from(self.max_entries) {
            return fail(format!(
                "{total} entries exceed the limit {}",
                self.max_entries
            ));
        }
        let tracked = self.zones.tracked();
        for &(z, limit, counted) in &tracked {
            let count = zones.get(&z).copied().unwrap_or(0);
            if counted != count {
                return fail(format!("zone {z}: occupancy {counted} != {count}"));
            }
            if count > limit {
                return fail(format!("zone {z}: {count} exceeds its limit"));
            }
        }
        for (z, &count) in &zones {
            if let Some((_, c)) = self.zones.get(*z)
                && c.load(Ordering::Relaxed) != count
            {
                return fail(format!(
                    "zone {z}: counter differs from its {count} entries"
                ));
            }
        }
        let zone_sum: u64 = tracked.iter().map(|&(_, _, n)| u64::from(n)).sum();
        if self.zones.dense() && zone_sum != total {
            return fail(format!(
                "per-zone occupancy sums to {zone_sum}, entries {total}"
            ));
        }
        if redirects.len() != expect_redirects.len() {
            return fail(format!(
                "{} redirects, {} expected",
                redirects.len(),
                expect_redirects.len()
            ));
        }
        for (shard, key, primary) in expect_redirects {
            if !redirects
                .iter()
                .any(|&(s, k, p)| s == shard && k == key && p == primary)
            {
                return fail(format!("missing redirect in shard {shard}"));
            }
            if d_shard(self, &key) != shard {
                return fail(format!("redirect stored in the wrong shard {shard}"));
            }
        }
        Ok(())
    }
}

fn d_shard(t: &Table, k: &Key) -> usize {
    t.shard_index(hashes(t.seed, k).0)
}

enum Created {
    New(Lookup),
    Existing(Lookup),
    ReplyOfOther,
}

// The table must be shareable between worker threads.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Table>();
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout `Shard` documents: the mutex word and the per-packet counters in one line,
    /// the packet path's read-only fields off it. (The mutex's own layout is the standard
    /// library's, so this is checked at run time.)
    #[test]
    fn a_packet_writes_one_line_of_its_shard() {
        let t = Table::new(&Config {
            max_entries: 64,
            shards: 2,
            ..Config::default()
        });
        let p = &t.shards[1];
        let line = |addr: usize| (addr - std::ptr::from_ref(p) as usize) / 64;
        let g = t.lock(1);
        assert_eq!(
            std::ptr::from_ref(p) as usize % 64,
            0,
            "shards start a line"
        );
        assert_eq!(
            line(std::ptr::from_ref(&p.0) as usize),
            0,
            "the mutex (its word is std's to place; the stats below are what we control)"
        );
        assert_eq!(line(std::ptr::from_ref(&g.stats.lookups) as usize), 0);
        assert_eq!(line(std::ptr::from_ref(&g.stats.hits) as usize), 0);
        assert!(line(std::ptr::from_ref(&g.index) as usize) > 0);
        assert!(line(std::ptr::from_ref(&g.entries) as usize) > 0);
    }
}

//! Connection tracking: the stateful firewall table of podswitch.
//!
//! This crate owns the per-connection state that lets policy be evaluated once, when a connection
//! starts: [`Table::lookup`] classifies every packet as [`Verdict::New`] (no entry: evaluate policy,
//! then [`Table::commit`]), [`Verdict::Established`] / [`Verdict::Reply`] (a packet of a tracked
//! connection, in its original or reply direction), [`Verdict::Related`] (an ICMP error quoting a
//! tracked connection) or [`Verdict::Invalid`] (with a [`InvalidReason`], counted). It tracks TCP
//! with the state machine and sequence-window checks of Linux `nf_conntrack_proto_tcp` (after
//! Guido van Rooij's "Real Stateful TCP Packet Filtering in IP Filter"), UDP, ICMP/ICMPv6 echo and
//! errors, basic SCTP and any other protocol generically, over IPv4 and IPv6, in zones. Entries
//! carry SNAT/DNAT tuples; [`nat::rewrite`] applies the translation to a packet with RFC 1624
//! incremental checksums.
//!
//! Invariants: the table never allocates after [`Table::new`] on the packet path (entry slabs and
//! hash indexes are sized up front); the number of entries never exceeds the total and per-zone
//! limits; an established (assured) connection is never evicted to make room.
//!
//! Sans-IO: no clock, thread or socket; every call takes `now` ([`Instant`]), so tests drive a
//! virtual clock. Thread-safety: [`Table`] is `Send + Sync` and used through `&self`; it is
//! sharded (a `Mutex` per shard, both directions of a connection hash to the same shard) so a
//! packet of an established connection takes one uncontended lock at most (a batch shares it
//! between the packets of a shard).
//!
//! Usage by the datapath: per packet, `lookup(&meta, now)` (or `update(handle, &meta, now)` when
//! the flow cache holds a [`Handle`]) — or, cheaper, one [`Table::update_batch`] /
//! [`Table::lookup_batch`] per receive batch, which shares shard locks between packets and
//! overlaps the cache misses of a large table; on `New`, evaluate policy and
//! `commit(&meta, nat, now)`;
//! apply `Lookup::rewrite` with [`nat::rewrite`]; drop `Invalid`. Housekeeping calls
//! `sweep(now, budget)` regularly; the control plane uses `entries`, `flush`, `stats`.
//! Not done here: reading SACK blocks (windows are checked with `sack == ack`, stricter),
//! rewriting the packet quoted inside a `Related` ICMP error, SCTP port NAT (CRC32c).
#![forbid(unsafe_code)]

mod config;
mod hash;
mod index;
pub mod meta;
pub mod nat;
mod proto;
mod sctp;
mod table;
pub mod tcp;
mod tuple;
mod zones;

pub use config::{Config, Timeouts};
pub use meta::{L4, PacketMeta, SctpMeta, TcpFlags, TcpMeta};
pub use nat::{Endpoint, Nat, Rewrite, RewriteError};
pub use proto::ConnState;
pub use sctp::SctpState;
pub use table::{
    CommitError, EntryInfo, Filter, Handle, InvalidReason, InvariantError, Lookup, RefusalReason,
    Stats, Table, Verdict,
};
pub use tcp::TcpState;
pub use tuple::Tuple;

/// A point on the caller's clock, in nanoseconds since an arbitrary epoch.
///
/// The table never reads a clock (our sans-IO rule); the datapath passes the time at which a batch
/// was received. Only differences matter, so a virtual clock starting at zero works in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(pub u64);

impl Instant {
    /// `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Instant(secs.saturating_mul(1_000_000_000))
    }

    /// This instant plus `d`, saturating at the end of time.
    #[must_use]
    pub fn after(self, d: std::time::Duration) -> Self {
        Instant(
            self.0
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
}

/// Which way a packet travels relative to the packet that created its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Same direction as the first packet of the connection (client to server).
    Original = 0,
    /// The opposite direction (server to client).
    Reply = 1,
}

impl Direction {
    /// The other direction.
    #[must_use]
    pub const fn flip(self) -> Self {
        match self {
            Direction::Original => Direction::Reply,
            Direction::Reply => Direction::Original,
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    pub(crate) const fn from_index(i: usize) -> Self {
        if i == 0 {
            Direction::Original
        } else {
            Direction::Reply
        }
    }
}

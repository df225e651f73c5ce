//! The podswitch pipeline over batches: forwarding, slow path, stats — sans-IO, tested in memory.
//!
//! The node's switch is every pod's gateway (a distributed router, Calico's model): it answers
//! ARP and neighbour solicitations for the gateway and for every known endpoint with the router
//! MAC, routes by destination address to a local port (MAC rewrite, TTL decrement with an RFC 1624
//! checksum update) or to a remote endpoint's VTEP (VXLAN), enforces NetworkPolicy statefully
//! (conntrack), and counts everything by name. [`Worker::process`] runs one [`Batch`]; the
//! forwarding state, policy snapshot and generation come as one immutable [`State`] swapped in
//! between batches ([`Worker::set_state`]). See [`pipeline`] for the tiers and the revocation
//! guarantee, [`testing`] for the in-memory harness.
//!
//! Sans-IO: no clock, thread or socket; `now` is an argument. `#![forbid(unsafe_code)]`.
//! Thread-safety: a [`Worker`] and its [`Batch`] belong to one thread; [`State`] is shared
//! read-only; the conntrack table is shared and internally sharded.
#![forbid(unsafe_code)]

pub mod batch;
pub mod icmp;
pub mod meta;
pub mod neighbor;
pub mod pipeline;
pub mod state;
pub mod stats;
pub mod testing;

pub use batch::{BATCH_SIZE, BUF_SIZE, Batch, Disposition, HEADROOM, MAX_FRAME, Packet};
pub use pipeline::Worker;
pub use state::{LocalEndpoint, RouterConfig, State, StateBuilder, StateError};
pub use stats::{DropReason, GroupLabel, PortStats, Stats, Traffic};

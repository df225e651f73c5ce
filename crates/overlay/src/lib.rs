//! VXLAN (RFC 7348) for podswitch: the local and remote VTEP tables, the remote endpoint table,
//! encapsulation with prebuilt outer headers, decapsulation checks, and the MTU rules.
//!
//! [`Overlay`] owns one node's overlay state: its [`LocalVtep`] (underlay address, MAC, MTU, the
//! VNIs it serves), the remote [`Vtep`]s — each with its outer Ethernet + IP + UDP + VXLAN header
//! built once with the wire crate's emitters — and the remote endpoints (inner IP → VTEP, MAC).
//! [`Overlay::encap`] copies the prebuilt header in front of the frame and patches only the
//! per-packet fields (lengths, checksums, UDP source port, DSCP, GBP), VPP's `vxlan/encap.c` way;
//! [`Overlay::decap`] checks an outer frame against the tables.
//!
//! Invariants: every VTEP's address family matches the local one; a VTEP id is below
//! [`MAX_VTEPS`] (VTEP ids index a dense array on the hot path); endpoints refer to existing
//! VTEPs. Per-packet errors are `Copy` enums that map onto named drop reasons. No per-packet
//! allocation, no I/O, no clock. Thread-safety: an `Overlay` is built by the control plane and
//! shared read-only (`&self`) by the workers as part of an immutable snapshot.

#![forbid(unsafe_code)]

mod fasthash;
mod tables;
mod tunnel;

pub use tables::{Endpoint, LocalVtep, MAX_VTEPS, Overlay, OverlayError, RemoteEndpoint, Vtep};
pub use tunnel::{
    DecapError, DecapMemo, Decapsulated, EncapError, OUTER_TTL, OVERHEAD_V4, OVERHEAD_V6, pod_mtu,
    source_port,
};

//! podswitch's link to the wire: AF_XDP sockets, their UMEM and rings, the XDP redirect program,
//! and the [`Port`] trait through which the datapath worker receives and transmits frames, with
//! an AF_XDP implementation ([`XskPort`]) and two test implementations ([`MemoryPort`],
//! [`PcapPort`]).
//!
//! This crate holds all of the project's unsafe code, fenced in thin wrappers (`sys`, `ring`);
//! every public item is safe. Usage: open an [`XskPort`] per interface (one per pod veth and one
//! for the uplink), drive it from one worker thread with `recv`/`send`/`flush`, and `poll` its
//! [`Port::poll_fd`] when idle. A port serves one RX queue: `XskPort::open` refuses an interface
//! with several active RX queues unless `XskConfig::allow_other_queues` is set. Pod veth ends
//! should have TX checksum/segmentation offloads off ([`disable_tx_offloads`], run inside the pod
//! namespace after [`enter_netns`]). Shutdown: dropping a port detaches its program (bpf_link),
//! closes the socket and unmaps its memory; the kernel does the same if the process dies.
//! [`HugePageAlloc`] is the global allocator of the daemon and the benches: large tables on
//! transparent huge pages. Thread-safety: ports are `Send`, driven by one thread at a time.

mod attached;
mod bpf;
mod hugepage;
mod memory;
mod netdev;
mod pcap;
mod port;
mod ring;
mod sys;
mod umem;
mod xsk;

#[cfg(test)]
mod nettest;

pub use attached::{AttachedProgram, attached_xdp_program, parse_ip_link};
pub use bpf::XdpMode;
pub use hugepage::{HUGE_PAGE_THRESHOLD, HugePageAlloc, transparent_huge_pages};
pub use memory::{DEFAULT_SLOT_SIZE, FrameQueue, MemoryPort, MemoryPortHandle};
pub use netdev::{TxOffloads, disable_tx_offloads, enter_netns, rx_queue_count, tx_offloads};
pub use pcap::{MAX_RECORD, PcapPort, PcapReader, PcapRecord, PcapWriter};
pub use port::{Port, PortError, PortStats, XdpStatistics};
pub use umem::{AccountingError, FrameAccounting, FrameState};
pub use xsk::{XskConfig, XskError, XskPort};

//! The podswitch daemon as a library: the TOML configuration ([`config`]), the polling workers
//! ([`runner`]), counter rendering ([`report`]) and the daemon's control loop ([`daemon`]: ports,
//! signals, reload, stats). The binary (`main.rs`) only parses the command line.
//!
//! Checksum offload (decided): the switch forwards frames as the pod emitted them and never
//! completes partial checksums, so the pod end of every veth runs with TX checksumming, TSO and
//! GSO off (`ethtool -K <pod-if> tx off tso off gso off`; the CNI plugin does it with
//! `podswitch_xdp::disable_tx_offloads`). With offloads on, frames reach AF_XDP with partial
//! checksums (and as 64 KiB super-frames) and TCP through the switch fails (shared/AFXDP.md).
//! The end-to-end tests and the demo set the pods up that way and move TCP data end to end.
//!
//! This crate may use threads, the clock and syscalls (through the xdp crate and nix, safely);
//! `unsafe` is forbidden. Thread-safety is documented per module.
#![forbid(unsafe_code)]

pub mod config;
pub mod control;
pub mod daemon;
pub mod report;
pub mod runner;

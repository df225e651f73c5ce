//! The podswitch daemon as a library: the TOML configuration ([`config`]), the polling workers
//! ([`runner`]), counter rendering ([`report`]) and the daemon's control loop ([`daemon`]: ports,
//! signals, reload, stats). The binary (`main.rs`) only parses the command line.
//!
//! This crate may use threads, the clock and syscalls (through the xdp crate and nix, safely);
//! `unsafe` is forbidden. Thread-safety is documented per module.
#![forbid(unsafe_code)]

pub mod config;
pub mod control;
pub mod daemon;
pub mod report;
pub mod runner;

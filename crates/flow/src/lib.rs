//! Flow keys, the per-worker exact-match flow cache and the actions it caches.
//!
//! This crate owns three things: [`FlowKey`] (the fixed-size summary of one frame that every
//! forwarding and policy decision depends on, with a fast non-cryptographic [`FlowKey::hash`]),
//! [`Action`]/[`Actions`] (a small inline list of what the datapath does with a frame, and the
//! [`DropReason`] table that names every drop counter), and [`Cache`] (a set-associative exact-match
//! cache in the style of Open vSwitch's per-PMD EMC, with lazy invalidation by generation).
//!
//! Invariants: nothing here allocates per packet (the cache allocates its slots once, at creation),
//! reads a clock or performs I/O; bad input never panics. Thread-safety: every type is `Send +
//! Sync`; a [`Cache`] is owned by one worker and mutated through `&mut self` without locks.
#![forbid(unsafe_code)]

mod action;
mod cache;
mod key;

pub use action::{Action, Actions, ActionsFull, DropReason};
pub use cache::{Cache, CacheError, CacheStats, Entry, WAYS};
pub use key::{FlowKey, Fragment};

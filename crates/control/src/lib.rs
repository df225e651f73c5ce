//! podswitch's control plane: the local-socket protocol and its server, the desired state and
//! its persistence, IPAM per namespace, and the compiled snapshots handed to the workers.
//!
//! The pieces, in the order a request meets them: [`frame`] (4-byte length + JSON), [`proto`]
//! (the versioned schema, documented in `PROTOCOL.md`), [`server`] (a mio event loop serving many
//! clients on a Unix socket, peers checked with SO_PEERCRED), [`controller`] (validate, persist,
//! compile, publish), [`desired`] + [`store`] (what was asked for, written atomically), [`ipam`],
//! [`publish`] ([`StateCell`] to the workers, [`Realised`] back from them), [`dataplane`] (what
//! the daemon lends for reads), and [`client`] (a blocking client for `podswitchctl` and the CNI
//! plugin). The daemon's side: build a [`Controller`], give its [`StateCell`] to the workers,
//! run a [`Server`] on the control thread.
//!
//! ```no_run
//! use std::sync::Arc;
//! use podswitch_control::{Controller, ControllerConfig, NoDataplane, Realised, Server, ServerConfig};
//!
//! let mut config = ControllerConfig::example(); // the daemon fills in its RouterConfig/LocalVtep
//! config.state_dir = Some("/var/lib/podswitch".into());
//! let realised = Realised::new(2); // one slot per worker
//! let controller = Controller::open(config, Arc::new(NoDataplane), Arc::clone(&realised))?;
//! let cell = controller.cell();
//! for w in 0..2 {
//!     let (mut reader, realised) = (cell.reader(), Arc::clone(&realised));
//!     std::thread::spawn(move || loop {
//!         // Between batches: pick up a new state, hand it to the worker, report it.
//!         if let Some(state) = reader.refresh() {
//!             realised.report(w, state.generation());
//!         }
//!         # break;
//!     });
//! }
//! let mut server = Server::bind(ServerConfig::default(), controller)?;
//! let stop = server.shutdown_handle(); // e.g. from a SIGTERM handler
//! server.run()?;
//! # drop(stop);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Thread-safety: the controller and server belong to one control thread; `StateCell`,
//! `Realised` and the `Dataplane` are shared. No `unsafe` (SO_PEERCRED goes through `nix`).

pub mod client;
pub mod controller;
pub mod dataplane;
pub mod desired;
pub mod error;
pub mod frame;
pub mod ipam;
pub mod proto;
pub mod publish;
pub mod server;
pub mod store;

pub use client::Client;
pub use controller::{Controller, ControllerConfig};
pub use dataplane::{Dataplane, NoDataplane};
pub use error::{ControlError, ErrorCode};
pub use ipam::Subnet;
pub use proto::{Reply, Request, VERSION};
pub use publish::{Realised, StateCell, StateReader};
pub use server::{Access, Server, ServerConfig, ShutdownHandle};
pub use store::{Store, StoreError};

//! The daemon's control loop: load the config, compile the first state, open one AF_XDP port per
//! static port (and the uplink), start the workers, then serve signals until told to stop.
//!
//! Signals (signal-hook flags, checked every 50 ms by the control thread, never in a handler):
//! SIGTERM/SIGINT stop the workers (each drops its ports: XDP programs detach, sockets close)
//! and exit 0; SIGHUP reloads the config — a new state with the next generation is compiled
//! first (an invalid file changes nothing), ports that disappeared are removed, new ones opened,
//! then the state is published; SIGUSR1 logs the counters as JSON. Every `file_interval_ms` the
//! counters are written to the stats file (write to a temporary, then rename: readers never see
//! a torn file); every `log_interval_secs` a one-line summary is logged.
//! Not reloadable (logged as such): worker count and poll mode, XDP and conntrack settings.
//! Thread-safety: everything here runs on the main thread; workers are reached through
//! [`Runner`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use hashbrown::HashMap;
use podswitch_conntrack::Table;
use podswitch_xdp::{Port, XdpMode, XskConfig, XskPort};

use crate::config::{Config, XdpModeConfig};
use crate::control::{self, ControlPlane, DaemonDataplane};
use crate::report;
use crate::runner::{Runner, Settings};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// podswitchd — userspace AF_XDP virtual switch for Kubernetes nodes.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Node configuration (TOML; see configs/node.toml).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Log format.
    #[arg(long, value_enum, default_value = "human")]
    pub log_format: LogFormat,
    /// Write the counters as JSON to this file periodically (overrides `stats.file`).
    #[arg(long)]
    pub stats_file: Option<PathBuf>,
    /// Validate the configuration (and policy files), print a summary and exit.
    #[arg(long)]
    pub check: bool,
}

/// Installs the tracing subscriber (`RUST_LOG` filters; default `info`).
pub fn init_logging(format: LogFormat) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let r = match format {
        LogFormat::Human => b.try_init(),
        LogFormat::Json => b.json().flatten_event(true).try_init(),
    };
    r.map_err(|e| anyhow::anyhow!("logging: {e}"))
}

fn xsk_config(c: &Config) -> XskConfig {
    XskConfig {
        frame_count: c.xdp.frame_count,
        rx_ring_size: c.xdp.ring_size,
        tx_ring_size: c.xdp.ring_size,
        fill_ring_size: c.xdp.ring_size,
        completion_ring_size: c.xdp.ring_size,
        mode: match c.xdp.mode {
            XdpModeConfig::Auto => XdpMode::Auto,
            XdpModeConfig::Skb => XdpMode::Generic,
            XdpModeConfig::Drv => XdpMode::Native,
        },
        ..XskConfig::default()
    }
}

fn settings(c: &Config) -> Settings {
    let w = &c.workers;
    Settings {
        workers: w.count,
        poll: w.poll,
        cpus: w.cpus.clone(),
        burst: w.burst,
        cache_capacity: w.cache_capacity,
        spin: Duration::from_micros(w.spin_us),
        housekeeping: Duration::from_millis(w.housekeeping_ms.max(1)),
        sweep_budget: w.sweep_budget,
        revalidate_budget: w.revalidate_budget,
        ring_slots: w.ring_slots,
        realised: None,
    }
}

fn open_port(c: &Config, ifname: &str) -> anyhow::Result<Box<dyn Port>> {
    let p = XskPort::open(ifname, &xsk_config(c))
        .with_context(|| format!("opening AF_XDP port on {ifname}"))?;
    Ok(Box::new(p))
}

struct Flags {
    term: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
    usr1: Arc<AtomicBool>,
}

impl Flags {
    fn register() -> anyhow::Result<Flags> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
        let f = Flags {
            term: Arc::new(AtomicBool::new(false)),
            hup: Arc::new(AtomicBool::new(false)),
            usr1: Arc::new(AtomicBool::new(false)),
        };
        for (sig, flag) in [
            (SIGTERM, &f.term),
            (SIGINT, &f.term),
            (SIGHUP, &f.hup),
            (SIGUSR1, &f.usr1),
        ] {
            signal_hook::flag::register(sig, Arc::clone(flag))
                .with_context(|| format!("installing handler for signal {sig}"))?;
        }
        Ok(f)
    }
}

/// The running daemon's control-thread state.
struct Daemon {
    path: PathBuf,
    config: Config,
    generation: u64,
    runner: Runner,
    control: Option<ControlPlane>,
    /// Port id → interface, for the ports currently open.
    open: HashMap<u32, String>,
    started: Instant,
    stats_file: Option<PathBuf>,
}

impl Daemon {
    fn write_stats(&self) {
        let Some(path) = &self.stats_file else { return };
        let v = self.json();
        let tmp = path.with_extension("tmp");
        let r = serde_json::to_vec_pretty(&v)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = r {
            tracing::warn!(file = %path.display(), error = %e, "cannot write the stats file");
        }
    }

    fn json(&self) -> serde_json::Value {
        report::to_json(
            &self.runner.merged(),
            &self.runner.state(),
            &self.runner.conntrack().stats(),
            self.started.elapsed().as_secs_f64(),
        )
    }

    /// Opens and closes ports so the open set matches `plan` (port id → interface, worker);
    /// returns the ids opened.
    fn sync_ports(&mut self, config: &Config, plan: &HashMap<u32, (String, usize)>) -> Vec<u32> {
        // Ports gone or moved to another interface: remove first (their endpoints are gone
        // from the new state; frames still routed to them are counted as having no port).
        let stale: Vec<u32> = self
            .open
            .iter()
            .filter(|(id, name)| plan.get(*id).is_none_or(|(n, _)| n != *name))
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(name) = self.open.remove(&id) {
                self.runner.remove_port(id);
                tracing::info!(port = id, interface = %name, "port removed");
            }
        }
        let mut added = Vec::new();
        for (id, (name, w)) in plan {
            if self.open.contains_key(id) {
                continue;
            }
            match open_port(config, name) {
                Ok(p) => {
                    self.runner.add_port(*id, p, *w);
                    self.open.insert(*id, name.clone());
                    added.push(*id);
                }
                Err(e) => tracing::error!(port = id, "{e:#}"),
            }
        }
        added
    }

    /// Control mode: follows the controller's newest state (ports first, then the state).
    fn follow_control(&mut self) {
        let Some(cp) = self.control.as_mut() else {
            return;
        };
        let Some(state) = cp.changed() else { return };
        let workers = self.runner.workers();
        let mut plan: HashMap<u32, (String, usize)> = self
            .config
            .uplink_plan()
            .into_iter()
            .map(|(id, name, w)| (id, (name, w)))
            .collect();
        match cp.endpoints() {
            Ok(eps) => {
                for e in eps {
                    plan.insert(e.port, (e.interface, e.port as usize % workers));
                }
                let config = self.config.clone();
                let added = self.sync_ports(&config, &plan);
                if !added.is_empty() {
                    tracing::info!(added = ?added, "ports opened for new endpoints");
                }
            }
            Err(e) => tracing::error!("cannot list endpoints; ports unchanged: {e:#}"),
        }
        self.generation = state.generation();
        self.runner.publish(state);
    }

    fn reload(&mut self) -> anyhow::Result<()> {
        if self.control.is_some() {
            anyhow::bail!(
                "in control mode the state comes from the control socket; restart to re-read the file"
            );
        }
        let new = Config::load(&self.path)?;
        if new.workers != self.config.workers {
            tracing::warn!("[workers] changed: takes effect after a restart");
        }
        if new.xdp != self.config.xdp || new.conntrack != self.config.conntrack {
            tracing::warn!("[xdp]/[conntrack] changed: take effect after a restart");
        }
        let generation = self.generation + 1;
        let state = Arc::new(new.build_state(generation)?);
        let plan = new
            .port_plan()
            .into_iter()
            .map(|(id, name, w)| (id, (name, w)))
            .collect();
        let added = self.sync_ports(&new, &plan);
        self.runner.publish(state);
        self.generation = generation;
        self.config = new;
        tracing::info!(generation, ports = self.open.len(), added = ?added, "configuration reloaded");
        Ok(())
    }
}

/// Runs the daemon until SIGTERM/SIGINT.
pub fn run(cli: &Cli) -> anyhow::Result<()> {
    let config = Config::load(&cli.config)?;
    if cli.check {
        config.build_state(1)?;
        println!(
            "{}: ok — {} ports, {} namespaces, {} policy files, {} workers ({:?})",
            cli.config.display(),
            config.ports.len(),
            config.namespaces.len(),
            config.policies.len(),
            config.workers.count,
            config.workers.poll,
        );
        return Ok(());
    }
    let flags = Flags::register()?;
    let conntrack = Arc::new(Table::new(&config.conntrack_config()));
    let mut settings = settings(&config);
    let workers = settings.workers;
    let (state, plan, seeded) = if config.control.is_some() {
        let dp = DaemonDataplane::new(Arc::clone(&conntrack));
        let seeded = control::seed(&config, Arc::clone(&dp), workers)?;
        let mut plan = config.uplink_plan();
        plan.extend(
            seeded
                .ports()
                .into_iter()
                .map(|(id, name)| (id, name, id as usize % workers)),
        );
        settings.realised = Some(Arc::clone(&seeded.realised));
        (seeded.state(), plan, Some((seeded, dp)))
    } else {
        (Arc::new(config.build_state(1)?), config.port_plan(), None)
    };
    let generation = state.generation();
    let mut ports = Vec::new();
    let mut open = HashMap::new();
    for (id, name, w) in plan {
        ports.push((id, open_port(&config, &name)?, w));
        open.insert(id, name);
    }
    let runner =
        Runner::start(&settings, state, conntrack, ports).context("starting the workers")?;
    let control = match (seeded, &config.control) {
        (Some((seeded, dp)), Some(c)) => {
            dp.attach(runner.counters());
            Some(seeded.serve(c.socket.clone())?)
        }
        _ => None,
    };
    tracing::info!(
        node = %config.node.name,
        ports = open.len(),
        workers = runner.workers(),
        poll = ?config.workers.poll,
        "podswitchd running"
    );
    let stats_file = cli.stats_file.clone().or_else(|| config.stats.file.clone());
    let mut d = Daemon {
        path: cli.config.clone(),
        generation,
        runner,
        control,
        open,
        started: Instant::now(),
        stats_file,
        config,
    };
    let mut next_file = Instant::now();
    let mut next_log =
        Instant::now() + Duration::from_secs(d.config.stats.log_interval_secs.max(1));
    while !flags.term.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(50));
        d.follow_control();
        if flags.hup.swap(false, Ordering::AcqRel) {
            tracing::info!("SIGHUP: reloading {}", d.path.display());
            if let Err(e) = d.reload() {
                tracing::error!("reload failed, keeping the running configuration: {e:#}");
            }
        }
        if flags.usr1.swap(false, Ordering::AcqRel) {
            tracing::info!(counters = %d.json(), "SIGUSR1: counters");
        }
        let now = Instant::now();
        if now >= next_file {
            next_file = now + Duration::from_millis(d.config.stats.file_interval_ms.max(50));
            d.write_stats();
        }
        let log_every = d.config.stats.log_interval_secs;
        if log_every > 0 && now >= next_log {
            next_log = now + Duration::from_secs(log_every);
            let m = d.runner.merged();
            tracing::info!(
                "stats: {}",
                report::summary(&m, &d.runner.conntrack().stats())
            );
        }
        if !d.runner.healthy() {
            anyhow::bail!("a worker thread exited unexpectedly");
        }
    }
    tracing::info!("stopping: workers first, then ports (XDP programs detach)");
    if let Some(cp) = d.control.as_mut() {
        cp.stop();
    }
    d.runner.stop();
    // Workers report once more on exit: the file holds the final counters.
    d.write_stats();
    let final_line = report::summary(&d.runner.merged(), &d.runner.conntrack().stats());
    tracing::info!("stopped: {final_line}");
    Ok(())
}

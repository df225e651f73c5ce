//! The polling workers: N threads, each owning a set of [`Port`]s, a datapath [`Worker`] (its
//! flow cache and counters) and one [`Batch`]; the loop is receive → `process(batch, now)` →
//! transmit each output on the owning port → flush.
//!
//! Ownership: a port belongs to exactly one worker; a frame whose output port belongs to another
//! worker crosses over a per-pair **lane** (two `ArrayQueue`s of preallocated frame slots, "full"
//! and "free": the sender pops a free slot, copies the frame in, pushes it full; the receiver
//! transmits it and returns the slot), so the hot path takes no lock and allocates nothing.
//! The forwarding [`State`] is published by the control thread into an `ArcSwap` plus a
//! generation counter; a worker compares the counter once per loop and swaps its state between
//! batches. Commands (add/remove a port, new port-ownership map) arrive on a channel checked once
//! per loop. The monotonic clock is read once per loop and passed as `now`.
//!
//! Poll modes: `busy` spins; `adaptive` spins while frames flow and, after `spin` of idleness,
//! sleeps in `epoll` on the ports' fds and its [`Waker`] (other workers wake it when they hand it
//! frames and find its `sleeping` flag set; the control thread wakes it after a command or a new
//! state), bounded by the housekeeping period. Housekeeping (conntrack `sweep`, `revalidate`,
//! a counter report) runs on that period with fixed budgets.
//!
//! Thread-safety: [`Runner`] is driven by the control thread; workers share only [`Shared`]
//! (atomics, the `ArcSwap`, per-worker report mutexes taken once per report period) and the
//! lanes. Shutdown: [`Runner::stop`] raises `stop`, wakes and joins every worker; each worker
//! drops its ports on exit (their XDP programs detach).

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use crossbeam::channel::{Receiver, Sender, TryRecvError, unbounded};
use crossbeam::queue::ArrayQueue;
use hashbrown::HashMap;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use podswitch_conntrack::{Instant, Table};
use podswitch_datapath::{BATCH_SIZE, BUF_SIZE, Batch, State, Stats, Worker};
use podswitch_xdp::{Port, PortStats};
use serde::Serialize;

use crate::config::PollMode;

/// The waker's token; port tokens are their index + 1... never this value.
const WAKER: Token = Token(usize::MAX);
/// Shortest sleep of an idle adaptive worker (also its sleep while a port has frames the kernel
/// has not taken yet).
const MIN_SLEEP: Duration = Duration::from_micros(100);
/// Longest sleep of an idle adaptive worker, whatever the housekeeping period.
const MAX_SLEEP: Duration = Duration::from_millis(100);
/// How often a worker publishes its counters.
const REPORT_PERIOD: Duration = Duration::from_millis(200);
/// Frames taken from one inbound lane per loop (bounds the time a lane can hog the loop).
const LANE_BUDGET: usize = 256;

/// Settings of the worker pool.
#[derive(Debug, Clone)]
pub struct Settings {
    pub workers: usize,
    pub poll: PollMode,
    /// CPU for worker `i` (`cpus[i]`), or empty.
    pub cpus: Vec<usize>,
    pub burst: usize,
    pub cache_capacity: usize,
    pub spin: Duration,
    pub housekeeping: Duration,
    pub sweep_budget: usize,
    pub revalidate_budget: usize,
    pub ring_slots: usize,
    /// The control plane's realisation tracker, told each generation a worker picks up.
    pub realised: Option<Arc<podswitch_control::Realised>>,
}

/// A command for one worker, applied between batches.
pub enum Command {
    /// Take ownership of a port.
    AddPort { id: u32, port: Box<dyn Port> },
    /// Drop a port (detaching its program).
    RemovePort(u32),
    /// The new port → owning worker map.
    Routes(Arc<HashMap<u32, usize>>),
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::AddPort { id, port } => write!(f, "AddPort({id}, {})", port.name()),
            Command::RemovePort(id) => write!(f, "RemovePort({id})"),
            Command::Routes(r) => write!(f, "Routes({} ports)", r.len()),
        }
    }
}

/// The runner's own counters, per worker (summed on read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RunnerCounters {
    /// Batches processed.
    pub batches: u64,
    /// Frames received into batches.
    pub rx_frames: u64,
    /// Received frames longer than a batch buffer takes.
    pub rx_oversize: u64,
    /// Receive calls that failed.
    pub rx_errors: u64,
    /// Output frames for a port no worker owns.
    pub tx_no_port: u64,
    /// Output frames a port refused (TX ring full).
    pub tx_port_full: u64,
    /// Send or flush calls that failed.
    pub tx_errors: u64,
    /// Frames handed to another worker.
    pub lane_sent: u64,
    /// Frames received from other workers.
    pub lane_received: u64,
    /// Frames dropped because a lane had no free slot.
    pub lane_full: u64,
    /// Times an adaptive worker went to sleep.
    pub sleeps: u64,
    /// Housekeeping rounds.
    pub housekeeping: u64,
    /// Conntrack entries expired by sweeps.
    pub swept: u64,
    /// Connections removed by revalidation.
    pub revalidated: u64,
}

impl RunnerCounters {
    fn add(&mut self, o: &RunnerCounters) {
        self.batches += o.batches;
        self.rx_frames += o.rx_frames;
        self.rx_oversize += o.rx_oversize;
        self.rx_errors += o.rx_errors;
        self.tx_no_port += o.tx_no_port;
        self.tx_port_full += o.tx_port_full;
        self.tx_errors += o.tx_errors;
        self.lane_sent += o.lane_sent;
        self.lane_received += o.lane_received;
        self.lane_full += o.lane_full;
        self.sleeps += o.sleeps;
        self.housekeeping += o.housekeeping;
        self.swept += o.swept;
        self.revalidated += o.revalidated;
    }
}

/// One port's counters as its worker last reported them.
#[derive(Debug, Clone)]
pub struct PortReport {
    pub id: u32,
    pub name: String,
    pub worker: usize,
    pub stats: PortStats,
}

/// What a worker last reported.
#[derive(Debug, Clone, Default)]
pub struct WorkerReport {
    pub generation: u64,
    pub stats: Stats,
    pub ports: Vec<PortReport>,
    pub runner: RunnerCounters,
}

/// Counters of every worker, merged.
#[derive(Debug, Clone, Default)]
pub struct Merged {
    /// Datapath counters (ports, drops by reason, rules, groups).
    pub stats: Stats,
    /// Port-level counters (the `Port`'s own, XDP statistics included), sorted by port id.
    pub ports: Vec<PortReport>,
    pub runner: RunnerCounters,
    /// The generation each worker runs.
    pub realised: Vec<u64>,
}

/// What workers and the control thread share.
#[derive(Debug)]
pub struct Shared {
    state: ArcSwap<State>,
    generation: AtomicU64,
    stop: AtomicBool,
    origin: std::time::Instant,
    sleeping: Vec<AtomicBool>,
    realised: Vec<AtomicU64>,
    reports: Vec<Mutex<WorkerReport>>,
}

/// Reads the workers' counters from any thread (the control server's, for instance).
#[derive(Debug, Clone)]
pub struct Counters {
    shared: Arc<Shared>,
}

impl Counters {
    /// The merged counters (see [`Runner::merged`]).
    pub fn merged(&self) -> Merged {
        self.shared.merged()
    }

    /// The datapath clock, as the workers read it.
    pub fn now(&self) -> Instant {
        self.shared.now()
    }
}

impl Shared {
    fn merged(&self) -> Merged {
        let mut m = Merged {
            realised: self
                .realised
                .iter()
                .map(|g| g.load(Ordering::Acquire))
                .collect(),
            ..Merged::default()
        };
        for r in &self.reports {
            let r = r.lock().unwrap_or_else(PoisonError::into_inner);
            m.stats.merge(&r.stats);
            m.ports.extend(r.ports.iter().cloned());
            m.runner.add(&r.runner);
        }
        m.ports.sort_by_key(|p| p.id);
        m
    }

    /// The datapath clock: nanoseconds since the runner started, plus one second (so no
    /// timestamp is zero).
    fn now(&self) -> Instant {
        Instant(
            u64::try_from(self.origin.elapsed().as_nanos())
                .unwrap_or(u64::MAX)
                .saturating_add(1_000_000_000),
        )
    }
}

/// A preallocated frame slot crossing a lane.
#[derive(Debug)]
struct Slot {
    port: u32,
    len: usize,
    buf: Box<[u8]>,
}

/// One direction between two workers; see the module docs.
#[derive(Debug)]
struct Lane {
    full: ArrayQueue<Slot>,
    free: ArrayQueue<Slot>,
}

impl Lane {
    fn new(slots: usize) -> Lane {
        let free = ArrayQueue::new(slots);
        for _ in 0..slots {
            // The queue has exactly `slots` places: every push succeeds.
            let _ = free.push(Slot {
                port: 0,
                len: 0,
                buf: vec![0u8; BUF_SIZE].into_boxed_slice(),
            });
        }
        Lane {
            full: ArrayQueue::new(slots),
            free,
        }
    }
}

/// The pool of workers; see the module docs.
#[derive(Debug)]
pub struct Runner {
    shared: Arc<Shared>,
    commands: Vec<Sender<Command>>,
    wakers: Vec<Arc<Waker>>,
    threads: Vec<JoinHandle<()>>,
    owners: HashMap<u32, usize>,
    conntrack: Arc<Table>,
}

impl Runner {
    /// Starts `settings.workers` threads on `state`, sharing `conntrack`, with the given ports
    /// `(id, port, worker)`.
    pub fn start(
        settings: &Settings,
        state: Arc<State>,
        conntrack: Arc<Table>,
        ports: Vec<(u32, Box<dyn Port>, usize)>,
    ) -> io::Result<Runner> {
        let n = settings.workers.max(1);
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(state.generation()),
            state: ArcSwap::new(state),
            stop: AtomicBool::new(false),
            origin: std::time::Instant::now(),
            sleeping: (0..n).map(|_| AtomicBool::new(false)).collect(),
            realised: (0..n).map(|_| AtomicU64::new(0)).collect(),
            reports: (0..n)
                .map(|_| Mutex::new(WorkerReport::default()))
                .collect(),
        });
        // lanes[src][dst]
        let lanes: Vec<Vec<Option<Arc<Lane>>>> = (0..n)
            .map(|s| {
                (0..n)
                    .map(|d| (s != d).then(|| Arc::new(Lane::new(settings.ring_slots))))
                    .collect()
            })
            .collect();
        let mut polls = Vec::with_capacity(n);
        let mut wakers = Vec::with_capacity(n);
        for _ in 0..n {
            let poll = Poll::new()?;
            wakers.push(Arc::new(Waker::new(poll.registry(), WAKER)?));
            polls.push(poll);
        }
        let mut owners = HashMap::new();
        let mut per_worker: Vec<Vec<(u32, Box<dyn Port>)>> = (0..n).map(|_| Vec::new()).collect();
        for (id, port, w) in ports {
            let w = w.min(n - 1);
            owners.insert(id, w);
            per_worker[w].push((id, port));
        }
        let routes = Arc::new(owners.clone());
        let mut commands = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for (index, (poll, ports)) in polls.into_iter().zip(per_worker).enumerate() {
            let (tx, rx) = unbounded();
            commands.push(tx);
            let worker = Worker::new(
                shared.state.load_full(),
                Arc::clone(&conntrack),
                settings.cache_capacity,
            )
            .map_err(|e| io::Error::other(format!("flow cache: {e}")))?;
            let mut t = Thread {
                index,
                settings: settings.clone(),
                shared: Arc::clone(&shared),
                conntrack: Arc::clone(&conntrack),
                worker,
                batch: Batch::new(),
                io: Io {
                    ports: Vec::new(),
                    local: HashMap::new(),
                    routes: Arc::clone(&routes),
                    lanes_out: lanes[index].clone(),
                    wake: vec![false; n],
                    counters: RunnerCounters::default(),
                },
                lanes_in: (0..n).filter_map(|s| lanes[s][index].clone()).collect(),
                wakers: wakers.clone(),
                poll,
                commands: rx,
                seen_generation: 0,
            };
            for (id, port) in ports {
                t.add_port(id, port);
            }
            let name = format!("psw-worker-{index}");
            threads.push(
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || t.run())?,
            );
        }
        Ok(Runner {
            shared,
            commands,
            wakers,
            threads,
            owners,
            conntrack,
        })
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.commands.len()
    }

    /// Publishes a new state (its generation must exceed the current one) and wakes the workers.
    pub fn publish(&self, state: Arc<State>) {
        let g = state.generation();
        self.shared.state.store(state);
        self.shared.generation.store(g, Ordering::Release);
        self.wake_all();
    }

    /// The state workers are told to run.
    pub fn state(&self) -> Arc<State> {
        self.shared.state.load_full()
    }

    /// The generation each worker has picked up.
    pub fn realised(&self) -> Vec<u64> {
        self.shared
            .realised
            .iter()
            .map(|g| g.load(Ordering::Acquire))
            .collect()
    }

    /// Which worker owns port `id`.
    pub fn owner(&self, id: u32) -> Option<usize> {
        self.owners.get(&id).copied()
    }

    /// Ids of every port the workers own.
    pub fn port_ids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.owners.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Hands a port to worker `worker` and tells every worker the new ownership.
    pub fn add_port(&mut self, id: u32, port: Box<dyn Port>, worker: usize) {
        let w = worker.min(self.workers() - 1);
        self.owners.insert(id, w);
        self.send(w, Command::AddPort { id, port });
        self.broadcast_routes();
    }

    /// Removes a port (its worker drops it; its program detaches).
    pub fn remove_port(&mut self, id: u32) -> bool {
        let Some(w) = self.owners.remove(&id) else {
            return false;
        };
        self.broadcast_routes();
        self.send(w, Command::RemovePort(id));
        true
    }

    fn broadcast_routes(&self) {
        let routes = Arc::new(self.owners.clone());
        for w in 0..self.workers() {
            self.send(w, Command::Routes(Arc::clone(&routes)));
        }
    }

    fn send(&self, w: usize, c: Command) {
        if self.commands[w].send(c).is_err() {
            tracing::error!(worker = w, "worker is gone; command lost");
        }
        let _ = self.wakers[w].wake();
    }

    fn wake_all(&self) {
        for w in &self.wakers {
            let _ = w.wake();
        }
    }

    /// The shared conntrack table.
    pub fn conntrack(&self) -> &Arc<Table> {
        &self.conntrack
    }

    /// The counters every worker last reported (at most one report period old), merged.
    pub fn merged(&self) -> Merged {
        self.shared.merged()
    }

    /// A handle that reads the merged counters and the datapath clock from any thread.
    pub fn counters(&self) -> Counters {
        Counters {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Whether every worker thread is still running.
    pub fn healthy(&self) -> bool {
        self.threads.iter().all(|t| !t.is_finished())
    }

    /// Stops every worker and waits for them; the ports are dropped (detached) by then.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.wake_all();
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("a worker panicked");
            }
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port owned by a worker.
struct Local {
    id: u32,
    port: Box<dyn Port>,
    fd: Option<RawFd>,
    /// Frames were queued since the last flush.
    dirty: bool,
}

/// The transmit side of a worker, split from its `Worker` and `Batch` so both can be borrowed.
struct Io {
    ports: Vec<Local>,
    /// Port id → index in `ports`.
    local: HashMap<u32, usize>,
    routes: Arc<HashMap<u32, usize>>,
    /// Lane to worker `d` (`None` for ourselves).
    lanes_out: Vec<Option<Arc<Lane>>>,
    /// Workers handed frames since the last wake-up round.
    wake: Vec<bool>,
    counters: RunnerCounters,
}

/// Where an output frame goes.
#[derive(Clone, Copy)]
enum Target {
    Local(usize),
    Remote(usize),
    Nowhere,
}

impl Io {
    #[inline]
    fn target(&self, port: u32) -> Target {
        if let Some(&i) = self.local.get(&port) {
            return Target::Local(i);
        }
        match self.routes.get(&port) {
            Some(&w) if self.lanes_out.get(w).is_some_and(Option::is_some) => Target::Remote(w),
            _ => Target::Nowhere,
        }
    }

    #[inline]
    fn send_local(&mut self, i: usize, frame: &[u8]) {
        let p = &mut self.ports[i];
        match p.port.send(frame) {
            Ok(true) => p.dirty = true,
            Ok(false) => self.counters.tx_port_full += 1,
            Err(_) => self.counters.tx_errors += 1,
        }
    }

    fn send_remote(&mut self, w: usize, port: u32, frame: &[u8]) {
        let Some(Some(lane)) = self.lanes_out.get(w) else {
            self.counters.tx_no_port += 1;
            return;
        };
        let Some(mut slot) = lane.free.pop() else {
            self.counters.lane_full += 1;
            return;
        };
        if frame.len() > slot.buf.len() {
            self.counters.tx_errors += 1;
            let _ = lane.free.push(slot);
            return;
        }
        slot.buf[..frame.len()].copy_from_slice(frame);
        slot.len = frame.len();
        slot.port = port;
        match lane.full.push(slot) {
            Ok(()) => {
                self.counters.lane_sent += 1;
                self.wake[w] = true;
            }
            // Cannot happen (full + free hold exactly the lane's slots); keep the slot anyway.
            Err(slot) => {
                self.counters.lane_full += 1;
                let _ = lane.free.push(slot);
            }
        }
    }

    /// Transmits every output of a processed batch on its owning port.
    fn transmit(&mut self, batch: &Batch) {
        let mut last: Option<(u32, Target)> = None;
        for (port, frame) in batch.outputs() {
            let t = match last {
                Some((p, t)) if p == port => t,
                _ => {
                    let t = self.target(port);
                    last = Some((port, t));
                    t
                }
            };
            match t {
                Target::Local(i) => self.send_local(i, frame),
                Target::Remote(w) => self.send_remote(w, port, frame),
                Target::Nowhere => self.counters.tx_no_port += 1,
            }
        }
    }

    /// Flushes every port that queued frames; returns how many still hold frames the kernel
    /// has not taken (they stay dirty, so the next loop flushes them again).
    fn flush(&mut self) -> usize {
        let mut pending = 0;
        for p in &mut self.ports {
            if p.dirty {
                if p.port.flush().is_err() {
                    self.counters.tx_errors += 1;
                }
                p.dirty = p.port.tx_pending();
                pending += usize::from(p.dirty);
            }
        }
        pending
    }
}

/// One worker thread.
struct Thread {
    index: usize,
    settings: Settings,
    shared: Arc<Shared>,
    conntrack: Arc<Table>,
    worker: Worker,
    batch: Batch,
    io: Io,
    lanes_in: Vec<Arc<Lane>>,
    wakers: Vec<Arc<Waker>>,
    poll: Poll,
    commands: Receiver<Command>,
    seen_generation: u64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Thread {
    fn add_port(&mut self, id: u32, port: Box<dyn Port>) {
        if self.io.local.contains_key(&id) {
            self.remove_port(id);
        }
        let fd = port.poll_fd();
        if let Some(fd) = fd
            && let Err(e) = self.poll.registry().register(
                &mut SourceFd(&fd),
                Token(id as usize),
                Interest::READABLE,
            )
        {
            tracing::warn!(port = id, error = %e, "cannot wait on the port's fd; it is polled only");
        }
        tracing::debug!(
            worker = self.index,
            port = id,
            name = port.name(),
            "port added"
        );
        self.io.local.insert(id, self.io.ports.len());
        self.io.ports.push(Local {
            id,
            port,
            fd,
            dirty: false,
        });
    }

    fn remove_port(&mut self, id: u32) {
        let Some(i) = self.io.local.remove(&id) else {
            return;
        };
        let p = self.io.ports.swap_remove(i);
        if let Some(moved) = self.io.ports.get(i) {
            self.io.local.insert(moved.id, i);
        }
        if let Some(fd) = p.fd {
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
        tracing::debug!(
            worker = self.index,
            port = id,
            name = p.port.name(),
            "port removed"
        );
        drop(p);
    }

    fn commands(&mut self) {
        loop {
            match self.commands.try_recv() {
                Ok(Command::AddPort { id, port }) => self.add_port(id, port),
                Ok(Command::RemovePort(id)) => self.remove_port(id),
                Ok(Command::Routes(r)) => self.io.routes = r,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            }
        }
    }

    fn refresh_state(&mut self) {
        let g = self.shared.generation.load(Ordering::Acquire);
        if g != self.seen_generation {
            let st = self.shared.state.load_full();
            self.seen_generation = st.generation();
            self.worker.set_state(st);
            self.shared.realised[self.index].store(self.seen_generation, Ordering::Release);
            if let Some(r) = &self.settings.realised {
                r.report(self.index, self.seen_generation);
            }
        }
    }

    /// Receives from every port into batches, processes and transmits them; returns the
    /// number of frames received.
    fn receive(&mut self, now: Instant) -> usize {
        let mut total = 0;
        self.batch.clear();
        for i in 0..self.io.ports.len() {
            let room = BATCH_SIZE - self.batch.len();
            let want = self.settings.burst.min(room);
            let Local { id, port, .. } = &mut self.io.ports[i];
            let id = *id;
            let batch = &mut self.batch;
            let mut oversize = 0u64;
            match port.recv(want, &mut |frame| {
                if !batch.push(id, frame) {
                    oversize += 1;
                }
            }) {
                Ok(n) => total += n,
                Err(_) => self.io.counters.rx_errors += 1,
            }
            self.io.counters.rx_oversize += oversize;
            if self.batch.len() + self.settings.burst > BATCH_SIZE {
                self.run_batch(now);
            }
        }
        if !self.batch.is_empty() {
            self.run_batch(now);
        }
        total
    }

    fn run_batch(&mut self, now: Instant) {
        self.io.counters.batches += 1;
        self.io.counters.rx_frames += self.batch.len() as u64;
        self.worker.process(&mut self.batch, now);
        self.io.transmit(&self.batch);
        self.batch.clear();
    }

    /// Transmits frames other workers handed us; returns how many.
    fn drain_lanes(&mut self) -> usize {
        let mut n = 0;
        for li in 0..self.lanes_in.len() {
            let lane = Arc::clone(&self.lanes_in[li]);
            for _ in 0..LANE_BUDGET {
                let Some(slot) = lane.full.pop() else { break };
                match self.io.local.get(&slot.port) {
                    Some(&i) => self.io.send_local(i, &slot.buf[..slot.len]),
                    None => self.io.counters.tx_no_port += 1,
                }
                let _ = lane.free.push(slot);
                n += 1;
            }
        }
        self.io.counters.lane_received += n as u64;
        n
    }

    fn wake_peers(&mut self) {
        if !self.io.wake.contains(&true) {
            return;
        }
        // Store (the frames pushed) then load (the peer's flag), against the sleeper's store
        // (its flag) then load (its lanes): with a full fence on both sides at least one of us
        // sees the other's store, so a frame never waits for the sleep timeout.
        std::sync::atomic::fence(Ordering::SeqCst);
        for w in 0..self.io.wake.len() {
            if self.io.wake[w] {
                self.io.wake[w] = false;
                if self.shared.sleeping[w].load(Ordering::SeqCst) {
                    let _ = self.wakers[w].wake();
                }
            }
        }
    }

    fn housekeeping(&mut self, now: Instant) {
        let c = &mut self.io.counters;
        c.housekeeping += 1;
        c.revalidated += self.worker.revalidate(self.settings.revalidate_budget) as u64;
        let share = (self.settings.sweep_budget / self.settings.workers.max(1)).max(1);
        c.swept += self.conntrack.sweep(now, share) as u64;
    }

    fn report(&self) {
        let ports = self
            .io
            .ports
            .iter()
            .map(|p| PortReport {
                id: p.id,
                name: p.port.name().to_owned(),
                worker: self.index,
                stats: p.port.stats(),
            })
            .collect();
        let r = WorkerReport {
            generation: self.seen_generation,
            stats: self.worker.stats(),
            ports,
            runner: self.io.counters,
        };
        *self.shared.reports[self.index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = r;
    }

    /// Sleeps until a port is readable, a peer or the control thread wakes us, or `timeout`.
    fn sleep(&mut self, events: &mut Events, timeout: Duration) {
        let me = &self.shared.sleeping[self.index];
        me.store(true, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        // Re-check after announcing the sleep: a frame handed over before the flag was visible
        // would otherwise wait for the timeout.
        let pending = self.lanes_in.iter().any(|l| !l.full.is_empty())
            || !self.commands.is_empty()
            || self.shared.generation.load(Ordering::Acquire) != self.seen_generation
            || self.shared.stop.load(Ordering::Acquire);
        if !pending {
            self.io.counters.sleeps += 1;
            if let Err(e) = self.poll.poll(events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::warn!(worker = self.index, error = %e, "epoll failed");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        me.store(false, Ordering::SeqCst);
    }

    fn run(mut self) {
        if let Some(&cpu) = self.settings.cpus.get(self.index) {
            pin(self.index, cpu);
        }
        tracing::info!(
            worker = self.index,
            ports = self.io.ports.len(),
            poll = ?self.settings.poll,
            "worker started"
        );
        let mut events = Events::with_capacity(64);
        let hk_period = nanos(self.settings.housekeeping);
        let spin = nanos(self.settings.spin);
        let mut now = self.shared.now();
        let mut next_hk = now.0 + hk_period;
        let mut next_report = now.0;
        let mut last_work = now.0;
        while !self.shared.stop.load(Ordering::Acquire) {
            self.commands();
            self.refresh_state();
            now = self.shared.now();
            let mut work = self.receive(now);
            work += self.drain_lanes();
            // Frames the kernel did not take yet keep their port dirty and are flushed again next
            // loop; they do not count as work, so a port whose device never drains cannot keep
            // an adaptive worker from sleeping (it then sleeps the shortest time instead).
            let tx_pending = self.io.flush() > 0;
            self.wake_peers();
            if now.0 >= next_hk {
                next_hk = now.0 + hk_period;
                self.housekeeping(now);
            }
            if now.0 >= next_report {
                next_report = now.0 + nanos(REPORT_PERIOD);
                self.report();
            }
            if work > 0 {
                last_work = now.0;
                continue;
            }
            let idle = now.0.saturating_sub(last_work);
            if self.settings.poll == PollMode::Adaptive && idle >= spin {
                let until = next_hk.min(next_report).saturating_sub(now.0);
                let timeout = if tx_pending {
                    MIN_SLEEP
                } else {
                    Duration::from_nanos(until).clamp(MIN_SLEEP, MAX_SLEEP)
                };
                self.sleep(&mut events, timeout);
            } else {
                std::hint::spin_loop();
            }
        }
        self.report();
        let n = self.io.ports.len();
        self.io.ports.clear();
        tracing::info!(
            worker = self.index,
            ports = n,
            "worker stopped; ports closed"
        );
    }
}

fn pin(index: usize, cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    let r = set
        .set(cpu)
        .and_then(|()| nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set));
    match r {
        Ok(()) => tracing::info!(worker = index, cpu, "worker pinned"),
        Err(e) => {
            tracing::warn!(worker = index, cpu, error = %e, "CPU pinning failed; running unpinned");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use core::net::{IpAddr, Ipv4Addr};
    use podswitch_datapath::testing::frames::{IpFrame, arp_request};
    use podswitch_wire::ethernet::Address;
    use podswitch_xdp::{MemoryPort, MemoryPortHandle};

    const CONFIG: &str = r#"
[node]
router_mac = "02:00:00:00:00:01"
gateway_v4 = "10.9.0.1"

[workers]
count = 2

[[ports]]
interface = "mem-a"
port = 1
mac = "02:00:00:00:0a:01"
ips = ["10.9.0.2"]
namespace = "web"
pod = "a"
worker = 0

[[ports]]
interface = "mem-b"
port = 2
mac = "02:00:00:00:0a:02"
ips = ["10.9.0.3"]
namespace = "db"
pod = "b"
worker = 1
"#;

    const ROUTER: Address = Address([2, 0, 0, 0, 0, 1]);
    const MAC_A: Address = Address([2, 0, 0, 0, 0x0a, 1]);
    const A: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);
    const B: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 3);

    fn settings(poll: PollMode) -> Settings {
        Settings {
            workers: 2,
            poll,
            cpus: Vec::new(),
            burst: 32,
            cache_capacity: 1024,
            spin: Duration::from_micros(50),
            housekeeping: Duration::from_millis(20),
            sweep_budget: 64,
            revalidate_budget: 64,
            ring_slots: 8,
            realised: None,
        }
    }

    fn start(poll: PollMode) -> (Runner, MemoryPortHandle, MemoryPortHandle) {
        let c = Config::from_toml(CONFIG).expect("config");
        let st = Arc::new(c.build_state(1).expect("state"));
        let ct = Arc::new(Table::new(&c.conntrack_config()));
        let (pa, ha) = MemoryPort::new("mem-a", 64);
        let (pb, hb) = MemoryPort::new("mem-b", 64);
        let r = Runner::start(
            &settings(poll),
            st,
            ct,
            vec![(1, Box::new(pa), 0), (2, Box::new(pb), 1)],
        )
        .expect("runner");
        (r, ha, hb)
    }

    /// Waits (bounded) until `f` yields something.
    fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
        for _ in 0..400 {
            if let Some(v) = f() {
                return Some(v);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    fn take(h: &MemoryPortHandle, n: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        wait_for(|| {
            got.extend(h.take_sent().expect("sent"));
            (got.len() >= n).then_some(())
        });
        got
    }

    fn cross_worker_forwarding(poll: PollMode) {
        let (r, ha, hb) = start(poll);
        // ARP for the gateway is answered on the same port (worker 0's own port).
        ha.inject(&arp_request(MAC_A, A, Ipv4Addr::new(10, 9, 0, 1)))
            .expect("inject");
        let replies = take(&ha, 1);
        assert_eq!(replies.len(), 1);
        assert_eq!(
            &replies[0][6..12],
            &ROUTER.0,
            "ARP reply from the router MAC"
        );
        assert_eq!(&replies[0][12..14], &[0x08, 0x06]);
        // Echo requests from a (worker 0) to b (worker 1) cross a lane; more than the lane's
        // 8 slots, sent in bursts so slots are recycled.
        let mut delivered = Vec::new();
        for round in 0..5u16 {
            for i in 0..6u16 {
                let f = IpFrame::echo(
                    MAC_A,
                    ROUTER,
                    IpAddr::V4(A),
                    IpAddr::V4(B),
                    true,
                    round * 6 + i,
                )
                .build();
                ha.inject(&f).expect("inject");
            }
            delivered.extend(take(&hb, 6));
        }
        assert_eq!(delivered.len(), 30, "every echo crossed to worker 1's port");
        for f in &delivered {
            assert_eq!(&f[6..12], &ROUTER.0, "routed: source MAC rewritten");
            assert_eq!(f[22], 63, "TTL decremented");
        }
        let m = wait_for(|| {
            let m = r.merged();
            (m.runner.lane_sent >= 30 && m.runner.lane_received >= 30).then_some(m)
        })
        .expect("counters reported");
        assert_eq!(m.runner.lane_full, 0);
        assert_eq!(m.stats.port(1).rx_packets, 31);
        assert_eq!(m.realised, vec![1, 1]);
        drop(r);
    }

    #[test]
    fn adaptive_workers_forward_across_lanes() {
        cross_worker_forwarding(PollMode::Adaptive);
    }

    #[test]
    fn busy_workers_forward_across_lanes() {
        cross_worker_forwarding(PollMode::Busy);
    }

    /// A port whose "kernel" transmits at most one queued frame per `flush` (as a copy-mode
    /// AF_XDP socket stops after its TX budget), reporting the rest through `tx_pending`.
    struct StallPort {
        queued: std::collections::VecDeque<Vec<u8>>,
        wire: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    impl Port for StallPort {
        fn name(&self) -> &'static str {
            "stall"
        }
        fn recv(
            &mut self,
            _max: usize,
            _f: &mut dyn FnMut(&[u8]),
        ) -> Result<usize, podswitch_xdp::PortError> {
            Ok(0)
        }
        fn send(&mut self, frame: &[u8]) -> Result<bool, podswitch_xdp::PortError> {
            self.queued.push_back(frame.to_vec());
            Ok(true)
        }
        fn flush(&mut self) -> Result<(), podswitch_xdp::PortError> {
            if let Some(f) = self.queued.pop_front() {
                self.wire.lock().expect("wire").push(f);
            }
            Ok(())
        }
        fn tx_pending(&self) -> bool {
            !self.queued.is_empty()
        }
        fn poll_fd(&self) -> Option<RawFd> {
            None
        }
        fn stats(&self) -> PortStats {
            PortStats::default()
        }
    }

    /// Frames a port could not hand to its kernel in one flush go out on later loops without
    /// any new traffic to that port (they once waited for the next unrelated send).
    fn stalled_port_is_flushed_again(poll: PollMode) {
        let c = Config::from_toml(CONFIG).expect("config");
        let st = Arc::new(c.build_state(1).expect("state"));
        let ct = Arc::new(Table::new(&c.conntrack_config()));
        let (pa, ha) = MemoryPort::new("mem-a", 64);
        let wire = Arc::new(Mutex::new(Vec::new()));
        let pb = StallPort {
            queued: std::collections::VecDeque::new(),
            wire: Arc::clone(&wire),
        };
        let r = Runner::start(
            &settings(poll),
            st,
            ct,
            vec![(1, Box::new(pa), 0), (2, Box::new(pb), 0)],
        )
        .expect("runner");
        for i in 0..10u16 {
            let f = IpFrame::echo(MAC_A, ROUTER, IpAddr::V4(A), IpAddr::V4(B), true, i).build();
            ha.inject(&f).expect("inject");
        }
        let n = wait_for(|| {
            let n = wire.lock().expect("wire").len();
            (n == 10).then_some(n)
        });
        assert_eq!(n, Some(10), "every queued frame left, one per loop");
        let sent = wire.lock().expect("wire").clone();
        for (i, f) in sent.iter().enumerate() {
            assert_eq!(&f[6..12], &ROUTER.0, "frame {i} routed");
        }
        drop(r);
    }

    #[test]
    fn adaptive_worker_flushes_a_stalled_port_again() {
        stalled_port_is_flushed_again(PollMode::Adaptive);
    }

    #[test]
    fn busy_worker_flushes_a_stalled_port_again() {
        stalled_port_is_flushed_again(PollMode::Busy);
    }

    #[test]
    fn publish_reaches_every_worker_and_ports_come_and_go() {
        let (mut r, ha, hb) = start(PollMode::Adaptive);
        let c = Config::from_toml(CONFIG).expect("config");
        r.publish(Arc::new(c.build_state(5).expect("state")));
        assert!(
            wait_for(|| (r.realised() == vec![5, 5]).then_some(())).is_some(),
            "both workers realised generation 5: {:?}",
            r.realised()
        );
        // Remove b: frames to it are counted as having no port; then re-add it on worker 0.
        assert!(r.remove_port(2));
        assert!(!r.remove_port(2));
        let echo = IpFrame::echo(MAC_A, ROUTER, IpAddr::V4(A), IpAddr::V4(B), true, 1).build();
        ha.inject(&echo).expect("inject");
        assert!(
            wait_for(|| (r.merged().runner.tx_no_port >= 1).then_some(())).is_some(),
            "frame to a removed port counted"
        );
        let (pb, hb2) = MemoryPort::new("mem-b", 64);
        r.add_port(2, Box::new(pb), 0);
        assert_eq!(r.owner(2), Some(0));
        ha.inject(&echo).expect("inject");
        assert_eq!(take(&hb2, 1).len(), 1, "re-added port forwards");
        assert!(hb.take_sent().expect("old").is_empty());
        assert_eq!(r.port_ids(), vec![1, 2]);
        drop(r);
    }
}

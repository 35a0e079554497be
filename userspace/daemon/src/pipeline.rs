//! The bounded pipeline: sources push events through [`Emitter`]s into one bounded queue; a
//! dispatcher thread takes them out in batches, numbers them, hands each batch to every sink and
//! flushes the sinks once per batch.
//!
//! Backpressure is explicit ([`Policy`]): with `block` a producer waits for room; with `drop` the
//! event is discarded and counted against its source. Closing ([`Pipeline::close`]) refuses new
//! events, waits for pushes already in progress, writes out everything that was accepted, flushes
//! the sinks and returns the final counters: an accepted event is never lost.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::event::{mono_ns, Event, EventKind};
use crate::hist::{Histogram, LatencySummary};
use crate::queue::{self, PushError, Recv, Rx, Tx};

/// What a producer does when the queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Wait for room.
    Block,
    /// Discard the event and count it as dropped for its source.
    Drop,
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "block" => Ok(Policy::Block),
            "drop" => Ok(Policy::Drop),
            _ => Err(format!("unknown policy `{s}` (expected block or drop)")),
        }
    }
}

/// Pipeline settings. `policy`, `batch_max` and `batch_linger` can change while running
/// ([`Pipeline::set_runtime`]); `capacity` is fixed at start.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineConfig {
    pub capacity: usize,
    pub policy: Policy,
    pub batch_max: usize,
    pub batch_linger: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            capacity: 16_384,
            policy: Policy::Block,
            batch_max: 1024,
            batch_linger: Duration::ZERO,
        }
    }
}

/// Per-source counters.
#[derive(Debug)]
pub struct SourceStats {
    pub name: Arc<str>,
    pub accepted: AtomicU64,
    pub dropped: AtomicU64,
    inflight: AtomicU64,
}

/// Per-sink counters and write latency.
#[derive(Debug)]
pub struct SinkStats {
    pub name: String,
    pub written: AtomicU64,
    pub errors: AtomicU64,
    pub batches: AtomicU64,
    /// Time to write and flush one batch.
    pub write_ns: Histogram,
}

/// State shared between producers, the dispatcher and readers of statistics.
#[derive(Debug)]
pub struct Shared {
    policy: AtomicU8,
    batch_max: AtomicUsize,
    linger_ns: AtomicU64,
    capacity: usize,
    closed: AtomicBool,
    sources: Mutex<Vec<Arc<SourceStats>>>,
    sinks: Vec<Arc<SinkStats>>,
    depth: AtomicUsize,
    /// Enqueue to dequeue.
    pub queue_wait_ns: Histogram,
    /// Enqueue until every sink has written and flushed the event's batch.
    pub end_to_end_ns: Histogram,
    pub batches: AtomicU64,
    pub events_out: AtomicU64,
}

impl Shared {
    pub fn policy(&self) -> Policy {
        if self.policy.load(Ordering::Relaxed) == 0 {
            Policy::Block
        } else {
            Policy::Drop
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Queue depth as of the dispatcher's last batch.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    pub fn sources(&self) -> Vec<Arc<SourceStats>> {
        self.sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn sinks(&self) -> &[Arc<SinkStats>] {
        &self.sinks
    }

    fn source_stats(&self, name: &Arc<str>) -> Arc<SourceStats> {
        let mut v = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = v.iter().find(|s| s.name == *name) {
            return s.clone();
        }
        let s = Arc::new(SourceStats {
            name: name.clone(),
            accepted: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            inflight: AtomicU64::new(0),
        });
        v.push(s.clone());
        s
    }

    fn inflight(&self) -> u64 {
        self.sources()
            .iter()
            .map(|s| s.inflight.load(Ordering::SeqCst))
            .sum()
    }

    /// A serializable snapshot of every counter and latency summary.
    pub fn stats(&self) -> PipelineStats {
        PipelineStats {
            policy: self.policy(),
            capacity: self.capacity,
            queue_depth: self.depth(),
            batch_max: self.batch_max.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            events_out: self.events_out.load(Ordering::Relaxed),
            sources: self
                .sources()
                .iter()
                .map(|s| SourceCounters {
                    name: s.name.to_string(),
                    accepted: s.accepted.load(Ordering::Relaxed),
                    dropped: s.dropped.load(Ordering::Relaxed),
                })
                .collect(),
            sinks: self
                .sinks
                .iter()
                .map(|s| SinkCounters {
                    name: s.name.clone(),
                    written: s.written.load(Ordering::Relaxed),
                    errors: s.errors.load(Ordering::Relaxed),
                    batches: s.batches.load(Ordering::Relaxed),
                    write_latency: s.write_ns.snapshot().summary_ms(),
                })
                .collect(),
            queue_wait: self.queue_wait_ns.snapshot().summary_ms(),
            end_to_end: self.end_to_end_ns.snapshot().summary_ms(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SourceCounters {
    pub name: String,
    pub accepted: u64,
    pub dropped: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SinkCounters {
    pub name: String,
    pub written: u64,
    pub errors: u64,
    pub batches: u64,
    /// Per batch: write plus flush.
    pub write_latency: LatencySummary,
}

/// Counters and per-stage latency of the pipeline.
#[derive(Clone, Debug, Serialize)]
pub struct PipelineStats {
    pub policy: Policy,
    pub capacity: usize,
    pub queue_depth: usize,
    pub batch_max: usize,
    pub batches: u64,
    pub events_out: u64,
    pub sources: Vec<SourceCounters>,
    pub sinks: Vec<SinkCounters>,
    /// Per event: enqueue to dequeue.
    pub queue_wait: LatencySummary,
    /// Per event: enqueue to written and flushed by every sink.
    pub end_to_end: LatencySummary,
}

impl PipelineStats {
    pub fn accepted(&self) -> u64 {
        self.sources.iter().map(|s| s.accepted).sum()
    }
    pub fn dropped(&self) -> u64 {
        self.sources.iter().map(|s| s.dropped).sum()
    }
}

/// Result of a push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    Accepted,
    /// Queue full under the `drop` policy; counted.
    Dropped,
    /// The pipeline is closing or closed; not counted.
    Closed,
}

/// A source's handle for pushing events. Each clone shares the source's counters.
#[derive(Clone)]
pub struct Emitter {
    source: Arc<str>,
    stats: Arc<SourceStats>,
    tx: Tx,
    shared: Arc<Shared>,
}

impl Emitter {
    /// The source name events get.
    pub fn source(&self) -> &Arc<str> {
        &self.source
    }

    /// Builds an event for `device` stamped now, and pushes it.
    #[inline]
    pub fn emit(&self, device: &Arc<str>, kind: EventKind) -> Push {
        self.push(Event::new(self.source.clone(), device.clone(), kind))
    }

    /// Builds an event for `device` stamped now, and pushes it waiting for room whatever the
    /// policy (for the daemon's own rare events, which must not be dropped).
    pub fn emit_blocking(&self, device: &Arc<str>, kind: EventKind) -> Push {
        self.push_as(
            Event::new(self.source.clone(), device.clone(), kind),
            Policy::Block,
        )
    }

    /// Pushes an event according to the current policy.
    #[inline]
    pub fn push(&self, ev: Event) -> Push {
        self.push_as(ev, self.shared.policy())
    }

    #[inline]
    fn push_as(&self, mut ev: Event, policy: Policy) -> Push {
        let s = &*self.stats;
        s.inflight.fetch_add(1, Ordering::SeqCst);
        if self.shared.closed.load(Ordering::SeqCst) {
            s.inflight.fetch_sub(1, Ordering::SeqCst);
            return Push::Closed;
        }
        ev.enqueued_ns = mono_ns();
        let r = match policy {
            Policy::Block => self.tx.push_blocking(ev),
            Policy::Drop => self.tx.try_push(ev),
        };
        let out = match r {
            Ok(()) => {
                s.accepted.fetch_add(1, Ordering::Relaxed);
                Push::Accepted
            }
            Err(PushError::Full(_)) => {
                s.dropped.fetch_add(1, Ordering::Relaxed);
                Push::Dropped
            }
            Err(PushError::Disconnected(_)) => Push::Closed,
        };
        s.inflight.fetch_sub(1, Ordering::SeqCst);
        out
    }

    /// Counters of this emitter's source.
    pub fn stats(&self) -> &SourceStats {
        &self.stats
    }
}

/// A destination for events.
pub trait Sink: Send {
    /// Short name for statistics (`jsonl`, `prometheus`, ...).
    fn name(&self) -> &str;
    /// Takes a batch; may buffer.
    fn write_batch(&mut self, batch: &[Event]) -> io::Result<()>;
    /// Makes everything written so far durable/visible (called once per batch).
    fn flush(&mut self) -> io::Result<()>;
    /// Handles a control request; the default ignores it.
    fn control(&mut self, _req: &SinkControl) -> io::Result<()> {
        Ok(())
    }
}

/// Requests the dispatcher forwards to every sink between batches.
#[derive(Clone, Debug, PartialEq)]
pub enum SinkControl {
    /// Reopen output files (log rotation), at `path` when given.
    Reopen { path: Option<PathBuf> },
}

/// Each sink's answer to a control request.
pub type ControlAnswers = Vec<(String, io::Result<()>)>;

enum Control {
    Sinks(
        SinkControl,
        Option<crossbeam_channel::Sender<ControlAnswers>>,
    ),
    /// Look at `closed` again (sent on shutdown).
    Wake,
}

/// A running pipeline.
pub struct Pipeline {
    shared: Arc<Shared>,
    tx: Option<Tx>,
    ctl: crossbeam_channel::Sender<Control>,
    dispatcher: Option<JoinHandle<()>>,
}

/// How long the dispatcher waits for events: control requests and shutdown wake it, so an idle daemon does
/// not wake up periodically.
const IDLE: Duration = Duration::from_secs(3600);

impl Pipeline {
    /// Starts the dispatcher thread. `on_start` runs first on that thread (tuning, registration).
    pub fn start(
        cfg: &PipelineConfig,
        sinks: Vec<Box<dyn Sink>>,
        on_start: Box<dyn FnOnce() + Send>,
    ) -> io::Result<Pipeline> {
        if cfg.capacity == 0 || cfg.batch_max == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "capacity and batch_max must be > 0",
            ));
        }
        let (tx, rx) = queue::bounded(cfg.capacity);
        let sink_stats: Vec<Arc<SinkStats>> = sinks
            .iter()
            .map(|s| {
                Arc::new(SinkStats {
                    name: s.name().to_string(),
                    written: AtomicU64::new(0),
                    errors: AtomicU64::new(0),
                    batches: AtomicU64::new(0),
                    write_ns: Histogram::new(),
                })
            })
            .collect();
        let shared = Arc::new(Shared {
            policy: AtomicU8::new(0),
            batch_max: AtomicUsize::new(cfg.batch_max),
            linger_ns: AtomicU64::new(0),
            capacity: cfg.capacity,
            closed: AtomicBool::new(false),
            sources: Mutex::new(Vec::new()),
            sinks: sink_stats,
            depth: AtomicUsize::new(0),
            queue_wait_ns: Histogram::new(),
            end_to_end_ns: Histogram::new(),
            batches: AtomicU64::new(0),
            events_out: AtomicU64::new(0),
        });
        let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded();
        let mut p = Pipeline {
            shared: shared.clone(),
            tx: Some(tx),
            ctl: ctl_tx,
            dispatcher: None,
        };
        p.set_runtime(cfg);
        p.dispatcher = Some(
            std::thread::Builder::new()
                .name("dmremapd-sink".into())
                .spawn(move || {
                    on_start();
                    dispatch(rx, sinks, shared, ctl_rx);
                })?,
        );
        Ok(p)
    }

    /// Applies the run-time settings of `cfg` (policy, batch size, linger).
    pub fn set_runtime(&self, cfg: &PipelineConfig) {
        self.shared.policy.store(
            if cfg.policy == Policy::Block { 0 } else { 1 },
            Ordering::Relaxed,
        );
        self.shared
            .batch_max
            .store(cfg.batch_max.max(1), Ordering::Relaxed);
        self.shared
            .linger_ns
            .store(cfg.batch_linger.as_nanos() as u64, Ordering::Relaxed);
    }

    /// A handle for source `name`. Handles with the same name share counters.
    pub fn emitter(&self, name: &str) -> Emitter {
        let source: Arc<str> = Arc::from(name);
        let stats = self.shared.source_stats(&source);
        Emitter {
            source,
            stats,
            tx: self.tx.as_ref().expect("pipeline open").clone(),
            shared: self.shared.clone(),
        }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn stats(&self) -> PipelineStats {
        self.shared.stats()
    }

    /// Asks every sink to handle `req` between batches; waits for the answers when `wait`.
    pub fn control(&self, req: SinkControl, wait: bool) -> ControlAnswers {
        if wait {
            let (tx, rx) = crossbeam_channel::bounded(1);
            if self.ctl.send(Control::Sinks(req, Some(tx))).is_err() {
                return vec![];
            }
            rx.recv().unwrap_or_default()
        } else {
            let _ = self.ctl.send(Control::Sinks(req, None));
            vec![]
        }
    }

    /// Refuses new events, delivers and flushes everything accepted, stops the dispatcher and
    /// returns the final counters.
    pub fn close(mut self) -> PipelineStats {
        self.shutdown();
        self.shared.stats()
    }

    fn shutdown(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.tx = None;
        let _ = self.ctl.send(Control::Wake);
        if let Some(h) = self.dispatcher.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn dispatch(
    rx: Rx,
    mut sinks: Vec<Box<dyn Sink>>,
    shared: Arc<Shared>,
    ctl: crossbeam_channel::Receiver<Control>,
) {
    let mut batch: Vec<Event> = Vec::with_capacity(shared.batch_max.load(Ordering::Relaxed));
    let mut seq: u64 = 0;
    loop {
        if !ctl.is_empty() {
            // Events accepted before the request was sent are in the queue now (it is FIFO):
            // deliver exactly that many first, so that a reopen does not overtake them.
            let mut left = rx.len();
            while left > 0 {
                match rx.recv_batch(
                    &mut batch,
                    left.min(shared.batch_max.load(Ordering::Relaxed)),
                    Duration::ZERO,
                    Duration::ZERO,
                ) {
                    Recv::Got(n) => {
                        left = left.saturating_sub(n);
                        deliver(&mut batch, &mut sinks, &shared, &mut seq);
                    }
                    _ => break,
                }
            }
        }
        while let Ok(c) = ctl.try_recv() {
            let Control::Sinks(req, reply) = c else {
                continue;
            };
            let mut answers = Vec::new();
            for s in sinks.iter_mut() {
                answers.push((s.name().to_string(), s.control(&req)));
            }
            if let Some(r) = reply {
                let _ = r.send(answers);
            }
        }
        let max = shared.batch_max.load(Ordering::Relaxed);
        let linger = Duration::from_nanos(shared.linger_ns.load(Ordering::Relaxed));
        let closed = shared.closed.load(Ordering::SeqCst);
        // While closing, do not wait for more than a batch's worth of time.
        let wait = if closed {
            Duration::from_millis(1)
        } else {
            IDLE
        };
        match rx.recv_batch_or_wake(
            &mut batch,
            max,
            wait,
            if closed { Duration::ZERO } else { linger },
            &ctl,
        ) {
            Recv::Woken => {}
            Recv::Got(_) => {
                deliver(&mut batch, &mut sinks, &shared, &mut seq);
                shared.depth.store(rx.len(), Ordering::Relaxed);
            }
            Recv::Disconnected => break,
            Recv::Timeout => {
                shared.depth.store(0, Ordering::Relaxed);
                // Closed, no push in progress (a push that raced with close either landed in the
                // queue before inflight dropped to 0 or saw `closed` and backed out), queue empty.
                if closed && shared.inflight() == 0 && rx.is_empty() {
                    break;
                }
            }
        }
    }
    for (i, s) in sinks.iter_mut().enumerate() {
        if let Err(e) = s.flush() {
            shared.sinks[i].errors.fetch_add(1, Ordering::Relaxed);
            log::error!("sink {}: final flush failed: {e}", s.name());
        }
    }
}

fn deliver(batch: &mut Vec<Event>, sinks: &mut [Box<dyn Sink>], shared: &Shared, seq: &mut u64) {
    let dequeued = mono_ns();
    for ev in batch.iter_mut() {
        *seq += 1;
        ev.seq = *seq;
        shared
            .queue_wait_ns
            .record(dequeued.saturating_sub(ev.enqueued_ns));
    }
    for (i, s) in sinks.iter_mut().enumerate() {
        let st = &shared.sinks[i];
        let t0 = mono_ns();
        let r = s.write_batch(batch).and_then(|_| s.flush());
        st.write_ns.record(mono_ns().saturating_sub(t0));
        st.batches.fetch_add(1, Ordering::Relaxed);
        match r {
            Ok(()) => {
                st.written.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                let n = st.errors.fetch_add(1, Ordering::Relaxed);
                // The first error and then every 1000th, so a full disk does not flood the log.
                if n.is_multiple_of(1000) {
                    log::error!(
                        "sink {}: writing {} events failed: {e} ({} errors so far)",
                        s.name(),
                        batch.len(),
                        n + 1
                    );
                }
            }
        }
    }
    let done = mono_ns();
    for ev in batch.iter() {
        shared
            .end_to_end_ns
            .record(done.saturating_sub(ev.enqueued_ns));
    }
    shared.batches.fetch_add(1, Ordering::Relaxed);
    shared
        .events_out
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    batch.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Records what it gets; optionally sleeps per batch; with a gate, the first batch reports
    /// that it arrived and then waits to be released.
    struct Collect {
        got: Arc<Mutex<Vec<Event>>>,
        delay: Duration,
        gate: Option<Gate>,
        flushes: Arc<AtomicU64>,
    }

    struct Gate {
        entered: mpsc::Sender<()>,
        release: mpsc::Receiver<()>,
    }

    /// (gate for the sink, receiver of "entered", sender of "release")
    fn gate() -> (Gate, mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (etx, erx) = mpsc::channel();
        let (rtx, rrx) = mpsc::channel();
        (
            Gate {
                entered: etx,
                release: rrx,
            },
            erx,
            rtx,
        )
    }

    impl Sink for Collect {
        fn name(&self) -> &str {
            "collect"
        }
        fn write_batch(&mut self, batch: &[Event]) -> io::Result<()> {
            if let Some(g) = self.gate.take() {
                let _ = g.entered.send(());
                let _ = g.release.recv();
            }
            std::thread::sleep(self.delay);
            self.got.lock().unwrap().extend_from_slice(batch);
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.flushes.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    type Collected = (Box<dyn Sink>, Arc<Mutex<Vec<Event>>>, Arc<AtomicU64>);

    fn collect(delay: Duration, gate: Option<Gate>) -> Collected {
        let got = Arc::new(Mutex::new(Vec::new()));
        let flushes = Arc::new(AtomicU64::new(0));
        (
            Box::new(Collect {
                got: got.clone(),
                delay,
                gate,
                flushes: flushes.clone(),
            }),
            got,
            flushes,
        )
    }

    fn kind(i: u64) -> EventKind {
        EventKind::PendingMarked {
            sector: i,
            sectors: 1,
        }
    }

    fn cfg(cap: usize, policy: Policy) -> PipelineConfig {
        PipelineConfig {
            capacity: cap,
            policy,
            batch_max: 64,
            batch_linger: Duration::ZERO,
        }
    }

    #[test]
    fn drop_policy_counts_drops_per_source() {
        {
            let (g, entered, gate_tx) = gate();
            let (sink, got, _) = collect(Duration::ZERO, Some(g));
            let p = Pipeline::start(&cfg(8, Policy::Drop), vec![sink], Box::new(|| {})).unwrap();
            let a = p.emitter("a");
            let b = p.emitter("b");
            let dev: Arc<str> = "d".into();
            // The dispatcher takes the first event and then blocks in the sink on the gate, so
            // the queue (8) fills up and the rest is dropped.
            assert_eq!(a.emit(&dev, kind(0)), Push::Accepted);
            entered.recv().unwrap();
            let mut res_a = Vec::new();
            for i in 1..=20 {
                res_a.push(a.emit(&dev, kind(i)));
            }
            let res_b: Vec<Push> = (0..5).map(|i| b.emit(&dev, kind(100 + i))).collect();
            gate_tx.send(()).unwrap();
            let stats = p.close();
            let acc_a = 1 + res_a.iter().filter(|r| **r == Push::Accepted).count() as u64;
            let drop_a = res_a.iter().filter(|r| **r == Push::Dropped).count() as u64;
            let drop_b = res_b.iter().filter(|r| **r == Push::Dropped).count() as u64;
            assert_eq!(acc_a, 9, "1 in the sink + 8 queued");
            assert_eq!(drop_a, 12);
            assert_eq!(drop_b, 5);
            let sa = stats.sources.iter().find(|s| s.name == "a").unwrap();
            let sb = stats.sources.iter().find(|s| s.name == "b").unwrap();
            assert_eq!((sa.accepted, sa.dropped), (9, 12));
            assert_eq!((sb.accepted, sb.dropped), (0, 5));
            // Everything accepted was delivered, in order, numbered from 1.
            let got = got.lock().unwrap();
            assert_eq!(got.len(), 9);
            assert!(got.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1));
            assert_eq!(stats.sinks[0].written, 9);
        }
    }

    #[test]
    fn block_policy_waits_and_loses_nothing() {
        {
            let (sink, got, _) = collect(Duration::from_millis(2), None);
            let p = Pipeline::start(&cfg(4, Policy::Block), vec![sink], Box::new(|| {})).unwrap();
            let producers: Vec<_> = (0..3)
                .map(|t| {
                    let e = p.emitter(&format!("p{t}"));
                    std::thread::spawn(move || {
                        let dev: Arc<str> = "d".into();
                        let t0 = std::time::Instant::now();
                        for i in 0..200 {
                            assert_eq!(e.emit(&dev, kind(t * 1000 + i)), Push::Accepted);
                        }
                        t0.elapsed()
                    })
                })
                .collect();
            let waited: Vec<Duration> = producers.into_iter().map(|h| h.join().unwrap()).collect();
            let stats = p.close();
            assert_eq!(stats.accepted(), 600);
            assert_eq!(stats.dropped(), 0);
            assert_eq!(got.lock().unwrap().len(), 600);
            // 600 events through a 4-slot queue into a sink that takes 2 ms per batch: producers
            // had to wait for room.
            assert!(
                waited.iter().any(|w| *w >= Duration::from_millis(20)),
                "{waited:?}"
            );
            // Per-source order is preserved.
            for t in 0..3u64 {
                let mine: Vec<u64> = got
                    .lock()
                    .unwrap()
                    .iter()
                    .filter_map(|e| match e.kind {
                        EventKind::PendingMarked { sector, .. } if sector / 1000 == t => {
                            Some(sector)
                        }
                        _ => None,
                    })
                    .collect();
                assert!(mine.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }

    #[test]
    fn close_delivers_everything_accepted_while_producers_run() {
        {
            for policy in [Policy::Block, Policy::Drop] {
                let (sink, got, flushes) = collect(Duration::from_micros(200), None);
                let p = Pipeline::start(&cfg(32, policy), vec![sink], Box::new(|| {})).unwrap();
                let hs: Vec<_> = (0..2)
                    .map(|t| {
                        let e = p.emitter(&format!("s{t}"));
                        std::thread::spawn(move || {
                            let dev: Arc<str> = "d".into();
                            let mut n = 0u64;
                            loop {
                                match e.emit(&dev, kind(n)) {
                                    Push::Closed => return n,
                                    _ => n += 1,
                                }
                            }
                        })
                    })
                    .collect();
                // Close while both producers are still pushing: once each has had events
                // accepted (a fixed sleep alone is not enough on a loaded machine, where the
                // producer threads may not have run at all before the close), and not before
                // 100 ms.
                let t0 = std::time::Instant::now();
                while t0.elapsed() < Duration::from_millis(100)
                    || p.stats().sources.iter().any(|s| s.accepted == 0)
                {
                    assert!(
                        t0.elapsed() < Duration::from_secs(60),
                        "producers never ran"
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
                let stats = p.close();
                let pushed: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
                let delivered = got.lock().unwrap().len() as u64;
                assert!(stats.accepted() > 0);
                assert_eq!(
                    delivered,
                    stats.accepted(),
                    "{policy:?}: accepted events lost"
                );
                assert_eq!(stats.sinks[0].written, delivered);
                assert_eq!(
                    stats.accepted() + stats.dropped(),
                    pushed,
                    "every push was accounted"
                );
                if policy == Policy::Block {
                    assert_eq!(stats.dropped(), 0);
                }
                assert!(flushes.load(Ordering::Relaxed) >= stats.batches);
            }
        }
    }

    #[test]
    fn runtime_policy_switch() {
        let (g, entered, gate_tx) = gate();
        let (sink, _got, _) = collect(Duration::ZERO, Some(g));
        let mut c = cfg(2, Policy::Block);
        let p = Pipeline::start(&c, vec![sink], Box::new(|| {})).unwrap();
        c.policy = Policy::Drop;
        p.set_runtime(&c);
        let e = p.emitter("x");
        let dev: Arc<str> = "d".into();
        e.emit(&dev, kind(0));
        entered.recv().unwrap();
        let r: Vec<Push> = (0..5).map(|i| e.emit(&dev, kind(i))).collect();
        assert_eq!(
            r.iter().filter(|x| **x == Push::Dropped).count(),
            3,
            "{r:?}"
        );
        gate_tx.send(()).unwrap();
        let s = p.close();
        assert_eq!(s.dropped(), 3);
        assert_eq!(s.policy, Policy::Drop);
    }

    #[test]
    fn emit_after_close_is_refused() {
        let (sink, _got, _) = collect(Duration::ZERO, None);
        let p = Pipeline::start(&PipelineConfig::default(), vec![sink], Box::new(|| {})).unwrap();
        let e = p.emitter("late");
        let s = p.close();
        assert_eq!(e.emit(&"d".into(), kind(1)), Push::Closed);
        assert_eq!(s.accepted(), 0);
        assert_eq!(e.stats().accepted.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn latency_is_recorded_per_event() {
        let (sink, _got, _) = collect(Duration::from_millis(5), None);
        let p = Pipeline::start(&PipelineConfig::default(), vec![sink], Box::new(|| {})).unwrap();
        let e = p.emitter("x");
        for i in 0..10 {
            e.emit(&"d".into(), kind(i));
        }
        let s = p.close();
        assert_eq!(s.end_to_end.count, 10);
        assert!(s.end_to_end.max_ms >= 5.0, "{:?}", s.end_to_end);
        assert!(s.sinks[0].write_latency.max_ms >= 5.0);
    }
}

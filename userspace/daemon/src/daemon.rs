//! The daemon: wires configuration, sources, the pipeline, sinks and the HTTP endpoint together;
//! reloads on SIGHUP and drains on SIGTERM/SIGINT.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dmremap_lib::tune;
use serde::Serialize;

use crate::config::Config;
use crate::event::{EventKind, Phase};
use crate::http::{self, Handler, HttpServer, Response};
use crate::kernel::{KernelEvents, KernelSource, SysfsNames};
use crate::metrics::{self, DaemonCollector, DaemonCounters, EventMetrics, PromSink};
use crate::notify;
use crate::nvme::{HealthProbe, NvmeSettings, NvmeSource, NvmeStats};
use crate::pipeline::{Emitter, Pipeline, PipelineStats, Sink, SinkControl};
use crate::procfs;
use crate::scrub::{PendingMarker, ScrubOptions};
use crate::scrub_source::{ScrubSettings, ScrubSource};
use crate::sinks::{JsonlSink, JsonlTarget};
use crate::source::{Source, SourceContext, StopToken, WorkerRole};

/// Implementations the daemon cannot build from the configuration alone.
#[derive(Default)]
pub struct Backends {
    /// Reads NVMe health; without it the NVMe source is not started.
    pub nvme_probe: Option<Box<dyn HealthProbe>>,
    /// Reads kernel events; without it the kernel source is not started.
    pub kernel_events: Option<Box<dyn KernelEvents>>,
    /// Marks unreadable blocks pending; without it the scrubber only reports them.
    pub pending_marker: Option<Box<dyn PendingMarker>>,
    /// Further sources (tests, load generation).
    pub extra_sources: Vec<Box<dyn Source>>,
    /// Further sinks (tests).
    pub extra_sinks: Vec<Box<dyn Sink>>,
    /// Status of the remap devices for the per-device metrics; without it they are not exported.
    pub device_status: Option<Box<dyn crate::field::DeviceStatus>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Worker {
    pub tid: i32,
    pub name: String,
    #[serde(skip)]
    pub role: WorkerRole,
}

/// Tuning state shared by worker threads.
struct Tuning {
    cfg: Mutex<crate::config::TuneConfig>,
    workers: Mutex<Vec<Worker>>,
    warned: AtomicBool,
}

impl Tuning {
    fn profile(&self, role: WorkerRole) -> Option<tune::WorkerTuning> {
        let c = self.cfg.lock().unwrap_or_else(|e| e.into_inner());
        if !c.enabled {
            return None;
        }
        Some(match role {
            WorkerRole::Events => c.events.tuning(),
            WorkerRole::Scrub => c.scrub.tuning(),
        })
    }

    fn report(&self, name: &str, r: &tune::TuneReport) {
        if let Some(w) = r.warning() {
            if !self.warned.swap(true, Ordering::SeqCst) {
                log::warn!(
                    "tuning not fully applied ({name}: {w}); continuing. Grant CAP_SYS_NICE for full tuning \
                     (further tuning refusals are logged at debug level)"
                );
            } else {
                log::debug!("tuning {name}: {w}");
            }
        }
    }

    /// Registers the calling thread and applies its role's tuning.
    fn on_thread_start(self: &Arc<Self>, role: WorkerRole) -> Box<dyn FnOnce() + Send> {
        let me = self.clone();
        Box::new(move || {
            let tid = tune::current_tid();
            let name = std::thread::current().name().unwrap_or("?").to_string();
            // Tuned while the list is locked: a thread is listed only once its tuning is in
            // place, and a concurrent reapply sees it either before (and applies after) or not
            // at all (and the thread applies the profile current when it takes the lock).
            let mut workers = me.workers.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = me.profile(role) {
                let r = tune::apply_current_thread(&t);
                me.report(&name, &r);
            }
            workers.push(Worker {
                tid,
                name: name.clone(),
                role,
            });
        })
    }

    /// Applies the current profiles to every registered worker that is still alive.
    fn reapply(&self) {
        let workers = self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for w in workers {
            let Some(t) = self.profile(w.role) else {
                continue;
            };
            if !Path::new(&format!("/proc/self/task/{}", w.tid)).exists() {
                continue;
            }
            let mut failed = Vec::new();
            if !t.cpus.is_empty() {
                if let Err(e) = tune::set_affinity(w.tid, &t.cpus) {
                    failed.push(format!("affinity: {e}"));
                }
            }
            if let Some(n) = t.nice {
                if let Err(e) = tune::set_nice(w.tid, n) {
                    failed.push(format!("nice {n}: {e}"));
                }
            }
            if let Some(p) = t.ioprio {
                if let Err(e) = tune::set_ioprio(w.tid, p) {
                    failed.push(format!("ioprio {p}: {e}"));
                }
            }
            if !failed.is_empty() {
                log::warn!(
                    "re-tuning {} (tid {}): {}",
                    w.name,
                    w.tid,
                    failed.join("; ")
                );
            }
        }
    }
}

struct RunningSource {
    name: String,
    stop: StopToken,
    handle: JoinHandle<()>,
    done: crossbeam_channel::Receiver<()>,
}

/// What a configuration reload did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ReloadReport {
    /// Keys whose new values are in effect.
    pub applied: Vec<String>,
    /// Keys that changed but only take effect after a restart (old values kept).
    pub needs_restart: Vec<String>,
    /// Problems applying run-time changes.
    pub errors: Vec<String>,
}

/// Final counters after a drain.
#[derive(Clone, Debug, Serialize)]
pub struct ShutdownReport {
    pub pipeline: PipelineStats,
    /// Sources that did not stop within the grace period.
    pub stuck_sources: Vec<String>,
}

/// A running daemon.
pub struct Daemon {
    cfg: Config,
    pipeline: Option<Pipeline>,
    lifecycle: Option<Emitter>,
    sources: Vec<RunningSource>,
    http: Option<HttpServer>,
    nvme_settings: Arc<Mutex<NvmeSettings>>,
    nvme_stats: Option<Arc<NvmeStats>>,
    scrub_settings: Arc<Mutex<ScrubSettings>>,
    tuning: Arc<Tuning>,
    counters: Arc<DaemonCounters>,
    me: Arc<str>,
}

const STOP_GRACE: Duration = Duration::from_secs(10);

fn nvme_settings(c: &Config) -> NvmeSettings {
    NvmeSettings {
        interval: Duration::from_secs(c.sources.nvme.interval_s),
        devices: c.sources.nvme.devices.clone(),
    }
}

fn scrub_settings(c: &Config) -> ScrubSettings {
    ScrubSettings {
        rate: (c.scrub.rate_mb_s * 1e6) as u64,
        interval: Duration::from_secs_f64(c.scrub.interval_h * 3600.0),
    }
}

impl Daemon {
    /// Starts everything the configuration enables.
    pub fn start(cfg: Config, backends: Backends) -> io::Result<Daemon> {
        let errs = cfg.validate();
        if !errs.is_empty() {
            let msg: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            return Err(io::Error::new(io::ErrorKind::InvalidInput, msg.join("; ")));
        }
        log::set_max_level(cfg.log.level.to_filter());
        let tuning = Arc::new(Tuning {
            cfg: Mutex::new(cfg.tune.clone()),
            workers: Mutex::new(Vec::new()),
            warned: AtomicBool::new(false),
        });
        let mut counters = DaemonCounters::default();
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        if cfg.sinks.jsonl.enabled {
            let s = JsonlSink::open(
                JsonlTarget::from_config(&cfg.sinks.jsonl.path),
                cfg.sinks.jsonl.buffer_kb * 1024,
            )?;
            // The exported reopen counter is the sink's own.
            counters.jsonl_reopens = s.reopen_counter();
            sinks.push(Box::new(s));
        }
        Daemon::start_with(cfg, backends, tuning, Arc::new(counters), sinks)
    }

    fn start_with(
        cfg: Config,
        mut backends: Backends,
        tuning: Arc<Tuning>,
        counters: Arc<DaemonCounters>,
        mut sinks: Vec<Box<dyn Sink>>,
    ) -> io::Result<Daemon> {
        let metrics = if cfg.sinks.prometheus.enabled {
            let m = EventMetrics::default();
            sinks.push(Box::new(PromSink::new(m.clone())));
            Some(m)
        } else {
            None
        };
        sinks.append(&mut backends.extra_sinks);
        sinks.push(Box::new(crate::field::JournalSink));

        let pipeline = Pipeline::start(
            &cfg.queue.pipeline(),
            sinks,
            tuning.on_thread_start(WorkerRole::Events),
        )?;
        let me: Arc<str> = Arc::from("dmremapd");
        let lifecycle = pipeline.emitter("dmremapd");

        let nvme_settings = Arc::new(Mutex::new(nvme_settings(&cfg)));
        let scrub_settings = Arc::new(Mutex::new(scrub_settings(&cfg)));
        let mut d = Daemon {
            cfg,
            pipeline: Some(pipeline),
            lifecycle: Some(lifecycle),
            sources: Vec::new(),
            http: None,
            nvme_settings,
            nvme_stats: None,
            scrub_settings,
            tuning,
            counters,
            me,
        };

        // Sources.
        let mut to_start: Vec<Box<dyn Source>> = Vec::new();
        if d.cfg.sources.kernel.enabled {
            match backends.kernel_events.take() {
                Some(r) => {
                    let mut s = KernelSource::new(
                        r,
                        Box::new(SysfsNames::new()),
                        Duration::from_millis(d.cfg.sources.kernel.poll_timeout_ms),
                    );
                    if !d.cfg.sources.kernel.cursor_file.is_empty() {
                        s = s.with_cursor_file(PathBuf::from(&d.cfg.sources.kernel.cursor_file));
                    }
                    to_start.push(Box::new(s));
                }
                None => log::info!(
                    "kernel event source: no reader for {} given; not started",
                    d.cfg.sources.kernel.device
                ),
            }
        }
        if d.cfg.sources.nvme.enabled {
            match backends.nvme_probe.take() {
                Some(p) => {
                    let s = NvmeSource::new(p, d.nvme_settings.clone());
                    d.nvme_stats = Some(s.stats());
                    to_start.push(Box::new(s));
                }
                None => log::info!("nvme source: no health probe given; not started"),
            }
        }
        if d.cfg.scrub.enabled {
            let sc = &d.cfg.scrub;
            let opts = ScrubOptions {
                read_size: sc.read_kb * 1024,
                block_size: sc.block_size,
                ..Default::default()
            };
            if backends.pending_marker.is_none() {
                log::info!(
                    "scrub: no pending marker given; unreadable blocks are reported, not marked"
                );
            }
            to_start.push(Box::new(ScrubSource::new(
                sc.devices.iter().map(PathBuf::from).collect(),
                PathBuf::from(&sc.state_dir),
                opts,
                sc.direct,
                d.scrub_settings.clone(),
                backends.pending_marker.take(),
            )));
        }
        if let Some(m) = metrics {
            let p = d.pipeline.as_ref().expect("pipeline");
            let reg = Arc::new(metrics::registry(
                &m,
                DaemonCollector {
                    shared: p.shared().clone(),
                    counters: d.counters.clone(),
                    started: Instant::now(),
                    nvme: d.nvme_stats.clone(),
                },
                backends
                    .device_status
                    .take()
                    .map(|status| crate::field::DeviceCollector { status }),
            ));
            let shared = p.shared().clone();
            let nvme = d.nvme_stats.clone();
            let debug = d.cfg.sinks.prometheus.debug_stats;
            let handler: Handler = Arc::new(move |path: &str| match path {
                "/metrics" => Response::ok(metrics::CONTENT_TYPE, metrics::encode(&reg)),
                "/debug/stats" if debug => {
                    let body =
                        serde_json::to_vec_pretty(&debug_stats(&shared.stats(), nvme.as_deref()))
                            .unwrap_or_default();
                    Response::ok("application/json", body)
                }
                "/" => Response::ok(
                    "text/plain; charset=utf-8",
                    if debug {
                        "dmremapd: /metrics /debug/stats\n"
                    } else {
                        "dmremapd: /metrics\n"
                    },
                ),
                _ => Response::not_found(),
            });
            let addr: SocketAddr = d.cfg.sinks.prometheus.listen.parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "sinks.prometheus.listen: not an address",
                )
            })?;
            if debug && !addr.ip().is_loopback() {
                log::warn!(
                    "sinks.prometheus.listen = {addr} is reachable beyond this host and \
                     sinks.prometheus.debug_stats is on: /debug/stats shows thread, queue and \
                     device details to anyone who can connect (set debug_stats = false or \
                     listen on 127.0.0.1)"
                );
            }
            d.http = Some(HttpServer::start(
                addr,
                handler,
                d.tuning.on_thread_start(WorkerRole::Events),
            )?);
            log::info!(
                "metrics on http://{}/metrics",
                d.http.as_ref().map(|h| h.addr()).expect("http")
            );
        }

        to_start.append(&mut backends.extra_sources);
        // Announced before any source runs, so it is the first event of the stream.
        d.emit_lifecycle(Phase::Started, format!("pid {}", std::process::id()));
        for s in to_start {
            d.spawn_source(s)?;
        }
        Ok(d)
    }

    fn spawn_source(&mut self, mut s: Box<dyn Source>) -> io::Result<()> {
        let name = s.name().to_string();
        let stop = StopToken::new();
        let ctx = SourceContext {
            emitter: self.pipeline.as_ref().expect("pipeline").emitter(&name),
            stop: stop.clone(),
        };
        let hook = self.tuning.on_thread_start(s.role());
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let thread_name: String = format!("src-{name}").chars().take(15).collect();
        let n2 = name.clone();
        let handle = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                hook();
                if let Err(e) = s.run(&ctx) {
                    log::error!("source {n2} stopped: {e}");
                }
                drop(ctx);
                let _ = done_tx.send(());
            })?;
        self.sources.push(RunningSource {
            name,
            stop,
            handle,
            done,
        });
        Ok(())
    }

    /// The daemon's own events wait for room even under the `drop` policy: a dropped
    /// `reloaded` or `stopping` would hide what the daemon did.
    fn emit_lifecycle(&self, phase: Phase, detail: String) {
        if let Some(e) = &self.lifecycle {
            e.emit_blocking(
                &self.me,
                EventKind::Lifecycle {
                    phase,
                    detail: detail.into(),
                },
            );
        }
    }

    /// The configuration in effect.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The HTTP address, when the Prometheus endpoint is enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|h| h.addr())
    }

    pub fn stats(&self) -> PipelineStats {
        self.pipeline.as_ref().expect("pipeline").stats()
    }

    /// Threads registered for tuning.
    pub fn workers(&self) -> Vec<Worker> {
        self.tuning
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reopens the JSON-lines file (log rotation).
    pub fn reopen(&self) -> io::Result<()> {
        let p = self.pipeline.as_ref().expect("pipeline");
        for (sink, r) in p.control(SinkControl::Reopen { path: None }, true) {
            if let Err(e) = r {
                log::error!("sink {sink}: reopen failed: {e}; still writing to the previous file");
                return Err(e);
            }
        }
        Ok(())
    }

    /// Applies what can change at run time from `new`, keeps the rest, and says which is which.
    pub fn reload(&mut self, new: Config) -> ReloadReport {
        let mut rep = ReloadReport::default();
        let old = self.cfg.clone();
        let mut eff = new.clone();
        let changed = |key: &str, a: String, b: String, runtime: bool, rep: &mut ReloadReport| {
            if a != b {
                if runtime {
                    rep.applied.push(format!("{key}: {a} -> {b}"));
                } else {
                    rep.needs_restart
                        .push(format!("{key}: {a} -> {b} (restart to apply; keeping {a})"));
                }
            }
        };
        macro_rules! field {
            ($key:literal, $($f:ident).+, $rt:expr) => {{
                let a = format!("{:?}", old.$($f).+);
                let b = format!("{:?}", new.$($f).+);
                changed($key, a, b, $rt, &mut rep);
                if !$rt {
                    eff.$($f).+ = old.$($f).+.clone();
                }
            }};
        }
        field!("log.level", log.level, true);
        field!("queue.capacity", queue.capacity, false);
        field!("queue.policy", queue.policy, true);
        field!("queue.batch_max", queue.batch_max, true);
        field!("queue.batch_linger_us", queue.batch_linger_us, true);
        field!("sinks.jsonl.enabled", sinks.jsonl.enabled, false);
        field!("sinks.jsonl.path", sinks.jsonl.path, true);
        field!("sinks.jsonl.buffer_kb", sinks.jsonl.buffer_kb, false);
        field!("sinks.prometheus.enabled", sinks.prometheus.enabled, false);
        field!("sinks.prometheus.listen", sinks.prometheus.listen, false);
        field!(
            "sinks.prometheus.debug_stats",
            sinks.prometheus.debug_stats,
            false
        );
        field!("sources.kernel.enabled", sources.kernel.enabled, false);
        field!("sources.kernel.device", sources.kernel.device, false);
        field!(
            "sources.kernel.poll_timeout_ms",
            sources.kernel.poll_timeout_ms,
            false
        );
        field!("sources.nvme.enabled", sources.nvme.enabled, false);
        field!("sources.nvme.interval_s", sources.nvme.interval_s, true);
        field!("sources.nvme.devices", sources.nvme.devices, true);
        field!(
            "sources.kernel.cursor_file",
            sources.kernel.cursor_file,
            false
        );
        field!(
            "sources.nvme.error_log_state",
            sources.nvme.error_log_state,
            false
        );
        field!("scrub.enabled", scrub.enabled, false);
        field!("scrub.devices", scrub.devices, false);
        field!("scrub.rate_mb_s", scrub.rate_mb_s, true);
        field!("scrub.interval_h", scrub.interval_h, true);
        field!("scrub.read_kb", scrub.read_kb, false);
        field!("scrub.block_size", scrub.block_size, false);
        field!("scrub.state_dir", scrub.state_dir, false);
        field!("scrub.direct", scrub.direct, false);
        field!("tune.enabled", tune.enabled, false);
        field!("tune.events", tune.events, true);
        field!("tune.scrub", tune.scrub, true);

        // Apply.
        log::set_max_level(eff.log.level.to_filter());
        let p = self.pipeline.as_ref().expect("pipeline");
        p.set_runtime(&eff.queue.pipeline());
        if eff.sinks.jsonl.enabled {
            let path = (eff.sinks.jsonl.path != old.sinks.jsonl.path).then(|| eff.jsonl_path());
            for (sink, r) in p.control(SinkControl::Reopen { path }, true) {
                if let Err(e) = r {
                    rep.errors.push(format!("sink {sink}: reopen failed: {e}"));
                    if eff.sinks.jsonl.path != old.sinks.jsonl.path {
                        eff.sinks.jsonl.path = old.sinks.jsonl.path.clone();
                    }
                }
            }
        }
        *self.nvme_settings.lock().unwrap_or_else(|e| e.into_inner()) = nvme_settings(&eff);
        *self
            .scrub_settings
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = scrub_settings(&eff);
        let retune = eff.tune != old.tune;
        *self.tuning.cfg.lock().unwrap_or_else(|e| e.into_inner()) = eff.tune.clone();
        if retune {
            self.tuning.reapply();
        }
        self.cfg = eff;
        self.counters.reloads.fetch_add(1, Ordering::Relaxed);
        for a in &rep.applied {
            log::info!("reload: {a}");
        }
        for r in &rep.needs_restart {
            log::warn!("reload: {r}");
        }
        for e in &rep.errors {
            log::error!("reload: {e}");
        }
        self.emit_lifecycle(
            Phase::Reloaded,
            format!(
                "{} applied, {} need a restart, {} errors",
                rep.applied.len(),
                rep.needs_restart.len(),
                rep.errors.len()
            ),
        );
        rep
    }

    /// Counts a rejected reload (the caller logs the errors).
    pub fn reload_failed(&self) {
        self.counters.reload_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Stops the sources, delivers everything accepted to the sinks, flushes them, stops. The
    /// `stopping` event is emitted once the sources have stopped, so that it is the last event
    /// (unless a source does not stop within the grace period).
    pub fn shutdown(mut self) -> ShutdownReport {
        for s in &self.sources {
            s.stop.stop();
        }
        let deadline = Instant::now() + STOP_GRACE;
        let mut stuck = Vec::new();
        for s in std::mem::take(&mut self.sources) {
            let left = deadline.saturating_duration_since(Instant::now());
            if s.done.recv_timeout(left).is_ok() {
                let _ = s.handle.join();
            } else {
                log::warn!(
                    "source {} did not stop within {STOP_GRACE:?}; draining without it",
                    s.name
                );
                stuck.push(s.name);
            }
        }
        self.emit_lifecycle(Phase::Stopping, "draining".into());
        if let Some(h) = self.http.take() {
            h.stop();
        }
        self.lifecycle = None;
        let stats = self.pipeline.take().expect("pipeline").close();
        log::info!(
            "stopped: {} events accepted, {} dropped, {} delivered",
            stats.accepted(),
            stats.dropped(),
            stats.events_out
        );
        ShutdownReport {
            pipeline: stats,
            stuck_sources: stuck,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        for s in &self.sources {
            s.stop.stop();
        }
    }
}

/// The `/debug/stats` document.
#[derive(Serialize)]
pub struct DebugStats {
    pub process: procfs::ProcStatus,
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
    pub pipeline: PipelineStats,
    /// NVMe scrape cycles (when the NVMe source runs).
    pub nvme: Option<NvmeScrapeStats>,
    /// Per thread: CPU affinity, nice, I/O priority as the kernel reports them.
    pub threads: Option<tune::TuneCheck>,
}

#[derive(Serialize)]
pub struct NvmeScrapeStats {
    pub cycles: u64,
    pub snapshots: u64,
    pub errors: u64,
    /// Duration of one scrape of all controllers.
    pub cycle: crate::hist::LatencySummary,
}

pub fn debug_stats(p: &PipelineStats, nvme: Option<&NvmeStats>) -> DebugStats {
    let (u, s) = procfs::cpu_times();
    DebugStats {
        process: procfs::status(),
        cpu_user_s: u,
        cpu_system_s: s,
        pipeline: p.clone(),
        nvme: nvme.map(|n| NvmeScrapeStats {
            cycles: n.cycles.load(Ordering::Relaxed),
            snapshots: n.snapshots.load(Ordering::Relaxed),
            errors: n.errors.load(Ordering::Relaxed),
            cycle: n.cycle_ns.snapshot().summary_ms(),
        }),
        threads: tune::check(std::process::id() as i32).ok(),
    }
}

/// Runs until SIGTERM or SIGINT: SIGHUP reloads `config_path` (when given) and reopens the
/// JSON-lines file. Returns the drain report.
pub fn run(
    config_path: Option<PathBuf>,
    cfg: Config,
    backends: Backends,
) -> io::Result<ShutdownReport> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT])?;
    if let Some(q) = cfg.queue.queue_impl {
        log::warn!(
            "queue.impl = {q:?} is deprecated and ignored: there is one queue implementation \
             (a bounded crossbeam channel); remove the key"
        );
    }
    let mut d = Daemon::start(cfg, backends)?;
    log::info!("started (pid {})", std::process::id());
    notify::tell("READY=1\nSTATUS=running");
    for sig in signals.forever() {
        match sig {
            SIGHUP => {
                log::info!("SIGHUP: reloading configuration and reopening output");
                notify::tell(&format!(
                    "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
                    notify::monotonic_usec()
                ));
                if let Some(p) = &config_path {
                    match Config::load(p) {
                        Ok(new) => {
                            // reload() also reopens the JSON-lines file (at its new path if it changed).
                            let rep = d.reload(new);
                            notify::tell(&format!(
                                "READY=1\nSTATUS=running; reloaded: {} applied, {} need a restart, {} errors",
                                rep.applied.len(),
                                rep.needs_restart.len(),
                                rep.errors.len()
                            ));
                            continue;
                        }
                        Err(e) => {
                            d.reload_failed();
                            log::error!(
                                "reload of {} rejected, keeping the running configuration:\n{e}",
                                p.display()
                            );
                            let _ = d.reopen();
                            notify::tell(&format!(
                                "READY=1\nERRNO={}\nSTATUS={}",
                                libc::EINVAL,
                                notify::status_line(&format!(
                                    "running the previous configuration; reload rejected: {e}"
                                ))
                            ));
                            continue;
                        }
                    }
                }
                let _ = d.reopen();
                notify::tell("READY=1\nSTATUS=running; output reopened");
            }
            SIGTERM | SIGINT => {
                log::info!(
                    "{}: draining",
                    if sig == SIGTERM { "SIGTERM" } else { "SIGINT" }
                );
                notify::tell("STOPPING=1\nSTATUS=draining");
                break;
            }
            _ => {}
        }
    }
    signals.handle().close();
    Ok(d.shutdown())
}

/// Waits for the daemon's HTTP endpoint to answer (tests and scripts).
pub fn wait_http(addr: SocketAddr, timeout: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if http::get(addr, "/").is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

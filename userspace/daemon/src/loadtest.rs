//! `dmremapd loadtest`: drives the real pipeline and sinks with load generator threads and
//! reports achieved rate, drops, enqueue-to-sink latency, CPU time, memory and allocations per
//! event.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::hist::LatencySummary;
use crate::http::{self, HttpServer, Response};
use crate::loadgen::LoadGen;
use crate::metrics::{self, DaemonCollector, DaemonCounters, EventMetrics, PromSink};
use crate::pipeline::{Pipeline, PipelineConfig, Sink};
use crate::procfs;
use crate::sinks::{JsonlSink, JsonlTarget, NullSink};
use crate::source::{Source, SourceContext, StopToken};
use dmremap_lib::tune::{self, WorkerTuning};
use std::sync::Mutex;

/// Which sink the load goes into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    Jsonl,
    Null,
    Prometheus,
}

impl std::str::FromStr for SinkKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "jsonl" => Ok(SinkKind::Jsonl),
            "null" => Ok(SinkKind::Null),
            "prometheus" => Ok(SinkKind::Prometheus),
            _ => Err(format!(
                "unknown sink `{s}` (expected jsonl, null or prometheus)"
            )),
        }
    }
}

/// Reads a process-wide allocation counter (the binary's counting allocator).
pub type AllocCounter = fn() -> u64;

#[derive(Clone, Debug)]
pub struct LoadTestOptions {
    /// Total offered events per second over all workers; 0 = as fast as possible.
    pub rate: f64,
    pub duration: Duration,
    pub workers: usize,
    pub sink: SinkKind,
    /// JSON-lines output file (default `/dev/null`).
    pub out: Option<PathBuf>,
    pub pipeline: PipelineConfig,
    /// Distinct device names the generators rotate through.
    pub devices: usize,
    pub alloc_counter: Option<AllocCounter>,
    /// Applied to the dispatcher and generator threads, as the daemon applies `tune.events` to
    /// its event workers.
    pub tuning: Option<WorkerTuning>,
}

/// The daemon's default event-worker tuning (`tune.events`).
pub fn default_event_tuning() -> WorkerTuning {
    crate::config::Config::default().tune.events.tuning()
}

impl Default for LoadTestOptions {
    fn default() -> Self {
        LoadTestOptions {
            rate: 100_000.0,
            duration: Duration::from_secs(5),
            workers: 1,
            sink: SinkKind::Jsonl,
            out: None,
            pipeline: PipelineConfig::default(),
            devices: 4,
            alloc_counter: None,
            tuning: None,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct LoadTestResult {
    pub sink: SinkKind,
    pub out: Option<String>,
    pub policy: String,
    pub capacity: usize,
    pub workers: usize,
    pub duration_s: f64,
    /// Offered rate as configured (0 = unthrottled).
    pub offered_rate: f64,
    /// Events the generators tried to push.
    pub offered: u64,
    pub accepted: u64,
    pub dropped: u64,
    /// Events the sink wrote (equals `accepted`).
    pub delivered: u64,
    /// accepted / generation time.
    pub achieved_eps: f64,
    /// Time from the generators' end until the queue was drained and flushed.
    pub drain_ms: f64,
    /// How far the slowest generator fell behind its schedule (block policy holds it back).
    pub max_lag_ms: f64,
    /// Enqueue until written and flushed by the sink.
    pub latency: LatencySummary,
    /// Enqueue until dequeued by the dispatcher.
    pub queue_wait: LatencySummary,
    pub batches: u64,
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
    /// CPU time of the whole process over wall time (100 % = one core).
    pub cpu_percent: f64,
    /// Largest resident set size sampled during the run (every 50 ms), KiB.
    pub rss_max_kb: u64,
    pub rss_end_kb: u64,
    /// Heap allocations during the run divided by events delivered (when counting is on).
    pub allocs_per_event: Option<f64>,
    pub bytes_written: Option<u64>,
    /// Tuning of the dispatcher and generator threads as read back from the kernel, or `none`.
    pub tuning: String,
    /// For the prometheus sink: sum of dmremapd_events_total scraped over loopback at the end.
    pub scraped_events_total: Option<u64>,
}

/// Runs one load test.
pub fn run(o: &LoadTestOptions) -> io::Result<LoadTestResult> {
    if o.workers == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--workers must be > 0",
        ));
    }
    if o.rate < 0.0 || !o.rate.is_finite() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--rate must be >= 0",
        ));
    }
    let out_path = o.out.clone().unwrap_or_else(|| PathBuf::from("/dev/null"));
    let mut prom: Option<EventMetrics> = None;
    let sink: Box<dyn Sink> = match o.sink {
        SinkKind::Jsonl => Box::new(JsonlSink::open(
            JsonlTarget::File(out_path.clone()),
            256 * 1024,
        )?),
        SinkKind::Null => Box::new(NullSink::new()),
        SinkKind::Prometheus => {
            let m = EventMetrics::default();
            prom = Some(m.clone());
            Box::new(PromSink::new(m))
        }
    };
    // What the dispatcher thread really runs with, read back after tuning.
    let in_effect = Arc::new(Mutex::new(String::from("none")));
    let hook: Box<dyn FnOnce() + Send> = match o.tuning.clone() {
        Some(t) => {
            let in_effect = in_effect.clone();
            Box::new(move || {
                let r = tune::apply_current_thread(&t);
                let nice = tune::get_nice(0).map(|n| n.to_string()).unwrap_or_default();
                let io = tune::get_ioprio(0)
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                *in_effect.lock().unwrap_or_else(|e| e.into_inner()) = match r.warning() {
                    None => format!("nice {nice}, ioprio {io}"),
                    Some(w) => format!("nice {nice}, ioprio {io} ({w})"),
                };
            })
        }
        None => Box::new(|| {}),
    };
    let pipeline = Pipeline::start(&o.pipeline, vec![sink], hook)?;
    let server = match &prom {
        Some(m) => {
            let reg = Arc::new(metrics::registry(
                m,
                DaemonCollector {
                    shared: pipeline.shared().clone(),
                    counters: Arc::new(DaemonCounters::default()),
                    started: Instant::now(),
                    nvme: None,
                },
                None,
            ));
            let h: http::Handler = Arc::new(move |p: &str| match p {
                "/metrics" => Response::ok(metrics::CONTENT_TYPE, metrics::encode(&reg)),
                _ => Response::not_found(),
            });
            Some(HttpServer::start(
                "127.0.0.1:0".parse().expect("addr"),
                h,
                Box::new(|| {}),
            )?)
        }
        None => None,
    };

    let stop = StopToken::new();
    let (cpu_u0, cpu_s0) = procfs::cpu_times();
    let allocs0 = o.alloc_counter.map(|f| f());
    let t0 = Instant::now();
    let mut stats = Vec::new();
    let mut handles = Vec::new();
    for i in 0..o.workers {
        let name = format!("loadtest-{i}");
        let mut g = LoadGen::new(&name, o.rate / o.workers as f64, o.duration, o.devices);
        stats.push(g.stats());
        let ctx = SourceContext {
            emitter: pipeline.emitter(&name),
            stop: stop.clone(),
        };
        let t = o.tuning.clone();
        handles.push(std::thread::Builder::new().name(name).spawn(move || {
            if let Some(t) = t {
                tune::apply_current_thread(&t);
            }
            g.run(&ctx)
        })?);
    }
    // Sample RSS while the generators run.
    let mut rss_max = 0;
    while handles.iter().any(|h| !h.is_finished()) {
        rss_max = rss_max.max(procfs::status().rss_kb);
        std::thread::sleep(Duration::from_millis(50));
    }
    for h in handles {
        h.join()
            .map_err(|_| io::Error::other("generator thread panicked"))??;
    }
    let gen_time = t0.elapsed();
    let t_drain = Instant::now();
    let scraped = match &server {
        Some(s) => Some(scrape_events_total(s.addr(), &pipeline)?),
        None => None,
    };
    let ps = pipeline.close();
    let drain = t_drain.elapsed();
    let wall = t0.elapsed().as_secs_f64();
    let allocs = allocs0.and_then(|a0| o.alloc_counter.map(|f| f() - a0));
    let (cpu_u1, cpu_s1) = procfs::cpu_times();
    if let Some(s) = server {
        s.stop();
    }
    let end = procfs::status();
    rss_max = rss_max.max(end.rss_kb);

    let offered: u64 = stats
        .iter()
        .map(|s| s.offered.load(Ordering::Relaxed))
        .sum();
    let max_lag = stats
        .iter()
        .map(|s| s.max_lag_ns.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let delivered = ps.sinks.first().map(|s| s.written).unwrap_or(0);
    let bytes_written = if o.sink == SinkKind::Jsonl {
        std::fs::metadata(&out_path)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    } else {
        None
    };
    let tuning = in_effect.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(LoadTestResult {
        sink: o.sink,
        out: (o.sink == SinkKind::Jsonl).then(|| out_path.display().to_string()),
        policy: format!("{:?}", o.pipeline.policy).to_lowercase(),
        capacity: o.pipeline.capacity,
        workers: o.workers,
        duration_s: gen_time.as_secs_f64(),
        offered_rate: o.rate,
        offered,
        accepted: ps.accepted(),
        dropped: ps.dropped(),
        delivered,
        achieved_eps: ps.accepted() as f64 / gen_time.as_secs_f64(),
        drain_ms: drain.as_secs_f64() * 1e3,
        max_lag_ms: max_lag as f64 / 1e6,
        latency: ps.end_to_end.clone(),
        queue_wait: ps.queue_wait.clone(),
        batches: ps.batches,
        cpu_user_s: cpu_u1 - cpu_u0,
        cpu_system_s: cpu_s1 - cpu_s0,
        cpu_percent: 100.0 * ((cpu_u1 - cpu_u0) + (cpu_s1 - cpu_s0)) / wall,
        rss_max_kb: rss_max,
        rss_end_kb: end.rss_kb,
        allocs_per_event: allocs.map(|a| a as f64 / delivered.max(1) as f64),
        bytes_written,
        tuning,
        scraped_events_total: scraped,
    })
}

/// Waits until everything accepted so far was delivered, then scrapes `/metrics` once and sums
/// `dmremapd_events_total`.
fn scrape_events_total(addr: std::net::SocketAddr, p: &Pipeline) -> io::Result<u64> {
    let t = Instant::now();
    loop {
        let s = p.stats();
        if s.events_out >= s.accepted() || t.elapsed() > Duration::from_secs(10) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (status, body) = http::get(addr, "/metrics")?;
    if status != 200 {
        return Err(io::Error::other(format!("/metrics answered {status}")));
    }
    Ok(body
        .lines()
        .filter(|l| l.starts_with("dmremapd_events_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum())
}

/// Human-readable summary.
pub fn format_human(r: &LoadTestResult) -> String {
    let mut s = String::new();
    let rate = if r.offered_rate > 0.0 {
        format!("{:.0}/s", r.offered_rate)
    } else {
        "unthrottled".into()
    };
    s += &format!(
        "sink {:?}{} | queue cap {} policy {} | {} worker(s), offered {rate} for {:.1} s\n",
        r.sink,
        r.out
            .as_ref()
            .map(|o| format!(" -> {o}"))
            .unwrap_or_default(),
        r.capacity,
        r.policy,
        r.workers,
        r.duration_s
    );
    s += &format!(
        "achieved  {:.0} events/s ({} offered, {} accepted, {} dropped, {} delivered; drain {:.1} ms; max lag {:.1} ms)\n",
        r.achieved_eps, r.offered, r.accepted, r.dropped, r.delivered, r.drain_ms, r.max_lag_ms
    );
    s += &format!(
        "latency   enqueue->sink p50 {:.3} ms  p99 {:.3} ms  p999 {:.3} ms  max {:.3} ms ({} batches)\n",
        r.latency.p50_ms, r.latency.p99_ms, r.latency.p999_ms, r.latency.max_ms, r.batches
    );
    s += &format!(
        "cpu       user {:.2} s  system {:.2} s  ({:.0} % of one core)\n",
        r.cpu_user_s, r.cpu_system_s, r.cpu_percent
    );
    s += &format!("tuning    dispatcher and generators: {}\n", r.tuning);
    s += &format!(
        "memory    RSS max {:.1} MB, at end {:.1} MB\n",
        r.rss_max_kb as f64 / 1024.0,
        r.rss_end_kb as f64 / 1024.0
    );
    if let Some(a) = r.allocs_per_event {
        s += &format!("allocs    {a:.4} per event\n");
    }
    if let Some(b) = r.bytes_written {
        s += &format!(
            "output    {:.1} MB ({:.0} bytes/event)\n",
            b as f64 / 1e6,
            b as f64 / r.delivered.max(1) as f64
        );
    }
    if let Some(t) = r.scraped_events_total {
        s += &format!("scrape    dmremapd_events_total sums to {t}\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Policy;

    #[test]
    fn jsonl_load_is_delivered_completely() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o.jsonl");
        let r = run(&LoadTestOptions {
            rate: 50_000.0,
            duration: Duration::from_millis(300),
            workers: 2,
            out: Some(out.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(r.delivered, r.accepted);
        assert_eq!(r.dropped, 0);
        // How many the generator offers in 300 ms depends on the machine's load; that it
        // offered some and every accepted one arrived is what this test checks.
        assert!(r.offered > 0);
        let lines = std::fs::read_to_string(&out).unwrap().lines().count() as u64;
        assert_eq!(lines, r.delivered);
        assert_eq!(r.latency.count, r.delivered);
        assert!(r.bytes_written.unwrap() > 0);
    }

    #[test]
    fn prometheus_scrape_matches_deliveries() {
        let r = run(&LoadTestOptions {
            rate: 20_000.0,
            duration: Duration::from_millis(200),
            sink: SinkKind::Prometheus,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(r.scraped_events_total, Some(r.delivered));
    }

    #[test]
    fn drop_policy_with_tiny_queue_counts_drops() {
        let r = run(&LoadTestOptions {
            rate: 0.0,
            duration: Duration::from_millis(200),
            sink: SinkKind::Jsonl,
            pipeline: PipelineConfig {
                capacity: 4,
                batch_max: 4,
                policy: Policy::Drop,
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap();
        assert!(r.dropped > 0);
        assert_eq!(r.accepted + r.dropped, r.offered);
        assert_eq!(r.delivered, r.accepted);
    }
}

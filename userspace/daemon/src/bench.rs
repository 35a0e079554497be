//! `dmremapd bench pipeline` and `dmremapd bench jitter`.
//!
//! pipeline: JSON lines into a file on tmpfs (`/dev/shm`, or `/dev/null` when that is not
//! tmpfs), one generator thread and the dispatcher on this machine's cores.
//!  1. Unthrottled runs with the `block` policy, once per queue implementation: the capacity.
//!  2. A ladder of offered rates (250K, 500K, 1M, 1.5M, 2M, 3M/s) with the `drop` policy on the
//!     faster queue, up to the first rate above 500K/s that is not sustained; a rate is sustained
//!     when nothing was dropped and at least 99 % of the schedule was accepted. The highest
//!     sustained rate is `max_sustained_eps`.
//!  3. The 500K/s rung gives `p99_ms_at_500k`.
//!
//! jitter: a thread wakes every millisecond (absolute deadlines, `clock_nanosleep`, timer slack
//! 1 ns) and records how late it woke, without and with pinning and a nice of -20, while busy threads load every
//! CPU. Reported: mean, standard deviation and percentiles of the lateness in microseconds.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dmremap_lib::stats::percentile;
use dmremap_lib::tune;
use serde::Serialize;
use serde_json::{json, Value};

use crate::loadtest::{self, AllocCounter, LoadTestOptions, LoadTestResult, SinkKind};
use crate::pipeline::{PipelineConfig, Policy};

fn write_json(out: &Path, v: &Value) -> io::Result<()> {
    if let Some(d) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d)?;
    }
    let mut s = serde_json::to_string_pretty(v).map_err(io::Error::other)?;
    s.push('\n');
    std::fs::write(out, s).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", out.display())))
}

const TMPFS_MAGIC: i64 = 0x0102_1994;

fn is_tmpfs(p: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs fills the struct for a valid C path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers.
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == TMPFS_MAGIC }
}

/// Options of the pipeline benchmark.
pub struct PipelineBenchOptions {
    pub out: PathBuf,
    /// Shorter runs (for tests); the figures are then rougher.
    pub quick: bool,
    pub alloc_counter: Option<AllocCounter>,
    /// Tuning of the dispatcher and generator threads (the daemon's `tune.events` by default).
    pub tuning: Option<dmremap_lib::tune::WorkerTuning>,
}

fn case(name: &str, r: &LoadTestResult) -> Value {
    json!({
        "case": name,
        "offered_eps": r.offered_rate,
        "achieved_eps": r.achieved_eps.round(),
        "offered": r.offered,
        "accepted": r.accepted,
        "dropped": r.dropped,
        "p50": r.latency.p50_ms,
        "p99": r.latency.p99_ms,
        "p999": r.latency.p999_ms,
        "max": r.latency.max_ms,
        "cpu_percent": r.cpu_percent.round(),
        "rss_mb": (r.rss_max_kb as f64 / 1024.0 * 10.0).round() / 10.0,
        "allocs_per_event": r.allocs_per_event,
        "bytes_per_event": r.bytes_written.map(|b| (b as f64 / r.delivered.max(1) as f64).round()),
        "tuning": r.tuning,
    })
}

/// Runs the pipeline benchmark, prints a table and writes the JSON.
pub fn pipeline(o: &PipelineBenchOptions) -> io::Result<Value> {
    let shm = Path::new("/dev/shm");
    let (target, target_desc) = if is_tmpfs(shm) {
        let p = shm.join(format!("dmremapd-bench-{}.jsonl", std::process::id()));
        let d = format!("file on tmpfs ({})", p.display());
        (p, d)
    } else {
        (
            PathBuf::from("/dev/null"),
            "/dev/null (no tmpfs at /dev/shm)".to_string(),
        )
    };
    let secs = |full: f64| Duration::from_secs_f64(if o.quick { full / 10.0 } else { full });
    let run = |rate: f64, policy: Policy, dur: Duration| -> io::Result<LoadTestResult> {
        let r = loadtest::run(&LoadTestOptions {
            rate,
            duration: dur,
            workers: 1,
            sink: SinkKind::Jsonl,
            out: Some(target.clone()),
            pipeline: PipelineConfig {
                policy,
                ..Default::default()
            },
            devices: 4,
            alloc_counter: o.alloc_counter,
            tuning: o.tuning.clone(),
        });
        // Keep tmpfs from filling up between cases.
        if target.starts_with(shm) {
            let _ = std::fs::remove_file(&target);
        }
        r
    };

    let mut results = Vec::new();
    let mut rss_max_kb = 0;
    let line = |name: &str, r: &LoadTestResult, results: &mut Vec<Value>| {
        eprintln!(
            "{name:<28} offered {:>9} achieved {:>9.0}/s dropped {:>8} p50 {:>7.3} ms p99 {:>7.3} ms p999 {:>7.3} ms cpu {:>4.0}% rss {:>5.1} MB allocs/ev {}",
            if r.offered_rate > 0.0 { format!("{:.0}", r.offered_rate) } else { "max".into() },
            r.achieved_eps,
            r.dropped,
            r.latency.p50_ms,
            r.latency.p99_ms,
            r.latency.p999_ms,
            r.cpu_percent,
            r.rss_max_kb as f64 / 1024.0,
            r.allocs_per_event.map(|a| format!("{a:.4}")).unwrap_or("-".into())
        );
        results.push(case(name, r));
    };

    // 1. Capacity.
    let r = run(0.0, Policy::Block, secs(3.0))?;
    rss_max_kb = rss_max_kb.max(r.rss_max_kb);
    line("unthrottled/block", &r, &mut results);

    // 2. Ladder with the drop policy, upwards until the first rate above
    //    500K/s that is not sustained.
    let rates: [f64; 6] = [250e3, 500e3, 1e6, 1.5e6, 2e6, 3e6];
    let mut max_sustained = 0.0f64;
    let mut p99_500k = None;
    for rate in rates {
        let dur = if rate == 500e3 { secs(5.0) } else { secs(3.0) };
        let r = run(rate, Policy::Drop, dur)?;
        rss_max_kb = rss_max_kb.max(r.rss_max_kb);
        let sustained = r.dropped == 0
            && r.accepted as f64 >= 0.99 * rate * r.duration_s.min(dur.as_secs_f64());
        if sustained && rate > max_sustained {
            max_sustained = rate;
        }
        if rate == 500e3 {
            p99_500k = Some(r.latency.p99_ms);
        }
        let name = format!("{:.0}k/drop", rate / 1e3);
        line(&name, &r, &mut results);
        if let Some(last) = results.last_mut() {
            last["sustained"] = json!(sustained);
        }
        if !sustained && rate > 500e3 {
            break;
        }
    }
    let rss_mb = (rss_max_kb as f64 / 1024.0 * 10.0).round() / 10.0;
    let v = json!({
        "bench": "pipeline",
        "unit": "events/s",
        "latency_unit": "ms",
        "latency": "enqueue until the JSON-lines sink wrote and flushed the batch",
        "sink": target_desc,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "generator_threads": 1,
        "loadavg_at_end": std::fs::read_to_string("/proc/loadavg").ok().map(|s| s.trim().to_string()),
        "quick": o.quick,
        "results": results,
        "max_sustained_eps": max_sustained,
        "p99_ms_at_500k": p99_500k,
        "rss_mb": rss_mb,
        "ratio": { "max_sustained_over_goal": (max_sustained / 1e6 * 1000.0).round() / 1000.0 },
        "goals": {
            "sustained_1m_eps": max_sustained >= 1e6,
            "p99_at_500k_le_10ms": p99_500k.is_some_and(|p| p <= 10.0),
            "rss_le_20mb": rss_mb <= 20.0,
        },
    });
    eprintln!(
        "max sustained {max_sustained:.0} events/s | p99 at 500K/s {} ms | RSS {rss_mb} MB | sink: {target_desc}",
        p99_500k.map(|p| format!("{p:.3}")).unwrap_or("-".into())
    );
    write_json(&o.out, &v)?;
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// Jitter

#[derive(Clone, Debug, Serialize)]
pub struct JitterCase {
    pub case: String,
    pub samples: usize,
    pub mean: f64,
    pub stddev: f64,
    /// Standard deviation of the fastest 99 % of wake-ups (without the rare long stalls).
    pub stddev_p99: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    /// What the kernel reported for the worker thread during the case.
    pub worker_cpus: String,
    pub worker_nice: i32,
    pub tuning_warning: Option<String>,
}

fn sleep_until(deadline_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as i64,
        tv_nsec: (deadline_ns % 1_000_000_000) as i64,
    };
    // SAFETY: valid timespec; EINTR only shortens the sleep, which the caller measures.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    };
}

fn mono_now_ns() -> u64 {
    // SAFETY: clock_gettime fills the timespec.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Runs the periodic worker for `n` periods with `tuning`; returns lateness samples (µs).
fn periodic(
    n: usize,
    period: Duration,
    tuning: Option<tune::WorkerTuning>,
) -> (Vec<f64>, String, i32, Option<String>) {
    std::thread::spawn(move || {
        // The same 1 ns timer slack in every case (the default 50 us would dominate the figures).
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
        let warn = tuning
            .map(|t| tune::apply_current_thread(&t))
            .and_then(|r| r.warning());
        let cpus = tune::format_cpu_list(&tune::get_affinity(0).unwrap_or_default());
        let nice = tune::get_nice(0).unwrap_or(0);
        let p = period.as_nanos() as u64;
        let mut v = Vec::with_capacity(n);
        let mut next = mono_now_ns() + p;
        for _ in 0..n {
            sleep_until(next);
            let now = mono_now_ns();
            v.push(now.saturating_sub(next) as f64 / 1e3);
            next += p;
            if next < now {
                // Overran a whole period: restart the schedule instead of bursting.
                next = now + p;
            }
        }
        (v, cpus, nice, warn)
    })
    .join()
    .expect("periodic worker")
}

/// Busy threads that burn CPU until dropped.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(n: usize, pin: Option<Vec<usize>>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                let pin = pin.clone();
                std::thread::spawn(move || {
                    if let Some(c) = pin {
                        let _ = tune::set_affinity(0, &c);
                    }
                    let mut x: u64 = 1;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..10_000 {
                            x = x
                                .wrapping_mul(6364136223846793005)
                                .wrapping_add(1442695040888963407);
                        }
                        std::hint::black_box(x);
                    }
                })
            })
            .collect();
        Load { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn summarize(
    name: &str,
    mut v: Vec<f64>,
    cpus: String,
    nice: i32,
    warn: Option<String>,
) -> JitterCase {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let trimmed = &v[..((v.len() as f64 * 0.99).ceil() as usize).min(v.len())];
    let tn = trimmed.len().max(1) as f64;
    let tmean = trimmed.iter().sum::<f64>() / tn;
    let tsd = (trimmed.iter().map(|x| (x - tmean).powi(2)).sum::<f64>() / tn).sqrt();
    let r2 = |x: f64| (x * 100.0).round() / 100.0;
    JitterCase {
        case: name.to_string(),
        samples: v.len(),
        mean: r2(mean),
        stddev: r2(var.sqrt()),
        stddev_p99: r2(tsd),
        p50: r2(percentile(&v, 50)),
        p99: r2(percentile(&v, 99)),
        max: r2(v.last().copied().unwrap_or(0.0)),
        worker_cpus: cpus,
        worker_nice: nice,
        tuning_warning: warn,
    }
}

/// Runs the jitter benchmark and writes the JSON.
pub fn jitter(out: &Path, quick: bool) -> io::Result<Value> {
    let period = Duration::from_millis(1);
    let n = if quick { 300 } else { 3000 };
    let cpus = tune::get_affinity(0)?;
    let last = *cpus
        .last()
        .ok_or_else(|| io::Error::other("no CPU allowed"))?;
    let others: Vec<usize> = cpus.iter().copied().filter(|c| *c != last).collect();
    let nload = cpus.len().max(1);
    let tuned = |pin: bool| tune::WorkerTuning {
        cpus: if pin { vec![last] } else { vec![] },
        nice: Some(-20),
        ioprio: None,
    };

    let mut cases = Vec::new();
    let mut run = |name: &str, load: Option<Load>, t: Option<tune::WorkerTuning>| {
        let (v, c, nice, w) = periodic(n, period, t);
        drop(load);
        let s = summarize(name, v, c, nice, w);
        eprintln!(
            "{:<36} mean {:>7.2} us  stddev {:>8.2} us (fastest 99%: {:>6.2})  p50 {:>7.2}  p99 {:>8.2}  max {:>9.2}  (cpus {}, nice {})",
            s.case, s.mean, s.stddev, s.stddev_p99, s.p50, s.p99, s.max, s.worker_cpus, s.worker_nice
        );
        cases.push(s);
    };
    run("idle/untuned", None, None);
    run("load/untuned", Some(Load::start(nload, None)), None);
    run(
        "load/nice-20",
        Some(Load::start(nload, None)),
        Some(tuned(false)),
    );
    run(
        "load/pinned+nice-20",
        Some(Load::start(nload, None)),
        Some(tuned(true)),
    );
    if !others.is_empty() {
        run(
            "load-on-other-cpus/pinned+nice-20",
            Some(Load::start(nload, Some(others.clone()))),
            Some(tuned(true)),
        );
    }
    let sd = |name: &str| cases.iter().find(|c| c.case == name).map(|c| c.stddev);
    let p99 = |name: &str| cases.iter().find(|c| c.case == name).map(|c| c.p99);
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some((a / b * 100.0).round() / 100.0),
        _ => None,
    };
    let privileged = cases.iter().all(|c| c.tuning_warning.is_none());
    let v = json!({
        "bench": "jitter",
        "unit": "us",
        "measure": "wake-up lateness of a 1 ms periodic thread (clock_nanosleep, absolute deadlines)",
        "timer_slack_ns": 1,
        "period_us": period.as_micros() as u64,
        "samples_per_case": n,
        "load_threads": nload,
        "cpus": tune::format_cpu_list(&cpus),
        "tuning_permitted": privileged,
        "results": cases,
        "ratio": {
            "stddev_untuned_over_nice": ratio(sd("load/untuned"), sd("load/nice-20")),
            "stddev_untuned_over_pinned_nice": ratio(sd("load/untuned"), sd("load/pinned+nice-20")),
            "stddev_untuned_over_isolated": ratio(sd("load/untuned"), sd("load-on-other-cpus/pinned+nice-20")),
            "p99_untuned_over_nice": ratio(p99("load/untuned"), p99("load/nice-20")),
            "p99_untuned_over_pinned_nice": ratio(p99("load/untuned"), p99("load/pinned+nice-20")),
        },
    });
    write_json(out, &v)?;
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// Scrub buffers

/// `dmremapd bench scrub`: scrub throughput over a file on tmpfs with a buffer pool that keeps
/// its buffer (one allocation per pass) against one that keeps none (one allocation per read),
/// at two read sizes, three interleaved repetitions each; reports the median MB/s.
pub fn scrub(out: &Path, quick: bool) -> io::Result<Value> {
    use crate::scrub::{self as sc, FileReader, ScrubOptions};
    use crate::source::StopToken;
    use dmremap_lib::bufpool::BufferPool;
    use std::io::Write;

    let shm = Path::new("/dev/shm");
    let dir = if is_tmpfs(shm) {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let img = dir.join(format!("dmremapd-scrub-bench-{}.img", std::process::id()));
    let size: usize = if quick { 64 << 20 } else { 512 << 20 };
    {
        let mut f = std::fs::File::create(&img)?;
        let block = vec![0x5au8; 1 << 20];
        for _ in 0..size >> 20 {
            f.write_all(&block)?;
        }
    }
    let reps = if quick { 1 } else { 3 };
    let mut results = Vec::new();
    let res = (|| -> io::Result<()> {
        for read_kb in [1024usize, 4096] {
            let mut by_mode: Vec<(String, Vec<f64>, u64)> =
                vec![("pooled".into(), vec![], 0), ("unpooled".into(), vec![], 0)];
            for _ in 0..reps {
                for (i, keep) in [1usize, 0].into_iter().enumerate() {
                    let pool = BufferPool::new(read_kb * 1024, 4096, keep);
                    let mut r = FileReader::open(&img, true)?;
                    let opts = ScrubOptions {
                        read_size: read_kb * 1024,
                        ..Default::default()
                    };
                    let rep = sc::scrub(
                        &mut r,
                        "bench",
                        &opts,
                        None,
                        &pool,
                        &StopToken::new(),
                        &mut |_| {},
                    )?;
                    by_mode[i].1.push(rep.mb_per_s);
                    by_mode[i].2 = pool.stats().allocated;
                    by_mode[i].0 = format!(
                        "{}/{}KiB/{}",
                        if keep > 0 { "pooled" } else { "unpooled" },
                        read_kb,
                        rep.mode
                    );
                }
            }
            for (name, mut v, allocs) in by_mode {
                v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
                let med = v[v.len() / 2];
                eprintln!("{name:<28} median {med:>8.0} MB/s  runs {v:.0?}  buffer allocations per pass {allocs}");
                results.push(json!({ "case": name, "mb_per_s": med.round(), "runs": v, "allocations_per_pass": allocs }));
            }
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&img);
    res?;
    let get = |c: &str| {
        results
            .iter()
            .find(|r| r["case"].as_str().is_some_and(|n| n.starts_with(c)))
            .and_then(|r| r["mb_per_s"].as_f64())
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some((a / b * 100.0).round() / 100.0),
        _ => None,
    };
    let v = json!({
        "bench": "scrub",
        "unit": "MB/s",
        "file": format!("{} MiB on {}", size >> 20, if dir == shm { "tmpfs" } else { "the temp directory" }),
        "repetitions": reps,
        "results": results,
        "ratio": {
            "pooled_over_unpooled_1MiB": ratio(get("pooled/1024KiB"), get("unpooled/1024KiB")),
            "pooled_over_unpooled_4MiB": ratio(get("pooled/4096KiB"), get("unpooled/4096KiB")),
        },
    });
    write_json(out, &v)?;
    Ok(v)
}

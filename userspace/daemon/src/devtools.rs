//! Development tools of `dmremapd`, built only with the `devtools` cargo feature (the VM tests
//! and benchmarks use them; the production binary has none of them): `loadtest`, `bench`,
//! `testing-inject-error-log`, and the counting global allocator that load tests and benchmarks
//! switch on to report allocations per event.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use clap::Subcommand;
use dmremapd::backends::{mark_error_log, DmMarker};
use dmremapd::bench;
use dmremapd::loadtest::{self, LoadTestOptions, SinkKind};
use dmremapd::pipeline::{PipelineConfig, Policy};

/// Counts heap allocations while enabled (load tests and benchmarks turn it on).
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocs() -> u64 {
    ALLOCS.load(Ordering::Relaxed)
}

/// The development subcommands, flattened into `dmremapd`'s own.
#[derive(Subcommand)]
pub enum DevCmd {
    /// TEST ONLY: treat FILE as controller CONTROLLER's NVMe Error Information log (raw 64-byte
    /// entries, as `nvme error-log -b` writes them) and map its media errors onto the remap
    /// devices on that controller's namespaces, then mark them pending (the daemon does the same
    /// with the log it reads from the device; emulated controllers always have an empty log).
    TestingInjectErrorLog {
        /// Controller (`nvme0`).
        #[arg(long)]
        controller: String,
        /// Raw error log bytes.
        #[arg(long)]
        file: PathBuf,
        /// Only print where the entries land; send no message.
        #[arg(long)]
        dry_run: bool,
    },
    /// Push synthetic events through the real pipeline and report rate, drops and latency.
    Loadtest {
        /// Offered events per second over all workers (0 = as fast as possible).
        #[arg(long, default_value_t = 100_000.0)]
        rate: f64,
        /// Seconds.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Generator threads.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        #[arg(long, default_value = "jsonl")]
        sink: SinkKind,
        /// JSON-lines output file (jsonl sink; default /dev/null).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value = "drop")]
        policy: Policy,
        #[arg(long, default_value_t = PipelineConfig::default().capacity)]
        capacity: usize,
        #[arg(long, default_value_t = PipelineConfig::default().batch_max)]
        batch: usize,
        /// Run the dispatcher and generators untuned (default: the daemon's tune.events profile).
        #[arg(long)]
        no_tune: bool,
        #[arg(long)]
        json: bool,
    },
    /// Benchmarks writing target/bench/<name>.json.
    Bench {
        #[command(subcommand)]
        which: BenchCmd,
    },
}

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Maximum sustained events/s into JSON lines, latency at 500K/s, RSS.
    Pipeline {
        #[arg(long, default_value = "target/bench/pipeline.json")]
        out: PathBuf,
        /// Runs a tenth as long (rough figures).
        #[arg(long)]
        quick: bool,
        /// Run the dispatcher and generator untuned (default: the daemon's tune.events profile).
        #[arg(long)]
        no_tune: bool,
    },
    /// Wake-up jitter of a periodic worker with and without pinning/priority under CPU load.
    Jitter {
        #[arg(long, default_value = "target/bench/jitter.json")]
        out: PathBuf,
        #[arg(long)]
        quick: bool,
    },
    /// Scrub throughput with and without reusing the aligned read buffer.
    Scrub {
        #[arg(long, default_value = "target/bench/scrub.json")]
        out: PathBuf,
        #[arg(long)]
        quick: bool,
    },
}

/// Run one development subcommand.
pub fn run(cmd: DevCmd) -> ExitCode {
    match cmd {
        DevCmd::TestingInjectErrorLog {
            controller,
            file,
            dry_run,
        } => inject_error_log(&controller, &file, dry_run),
        DevCmd::Loadtest {
            rate,
            duration,
            workers,
            sink,
            out,
            policy,
            capacity,
            batch,
            no_tune,
            json,
        } => {
            if !(duration > 0.0 && duration <= 3600.0) {
                eprintln!("dmremapd: --duration must be in (0, 3600] seconds");
                return ExitCode::from(2);
            }
            if capacity == 0 || batch == 0 {
                eprintln!("dmremapd: --capacity and --batch must be > 0");
                return ExitCode::from(2);
            }
            COUNTING.store(true, Ordering::Relaxed);
            let o = LoadTestOptions {
                rate,
                duration: Duration::from_secs_f64(duration),
                workers,
                sink,
                out,
                pipeline: PipelineConfig {
                    capacity,
                    policy,
                    batch_max: batch,
                    ..Default::default()
                },
                devices: 4,
                alloc_counter: Some(allocs),
                tuning: (!no_tune).then(loadtest::default_event_tuning),
            };
            match loadtest::run(&o) {
                Ok(r) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
                    } else {
                        print!("{}", loadtest::format_human(&r));
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("dmremapd: loadtest: {e}");
                    if e.kind() == std::io::ErrorKind::InvalidInput {
                        ExitCode::from(2)
                    } else {
                        ExitCode::from(1)
                    }
                }
            }
        }
        DevCmd::Bench { which } => {
            COUNTING.store(true, Ordering::Relaxed);
            let r = match which {
                BenchCmd::Pipeline {
                    out,
                    quick,
                    no_tune,
                } => bench::pipeline(&bench::PipelineBenchOptions {
                    out: out.clone(),
                    quick,
                    alloc_counter: Some(allocs),
                    tuning: (!no_tune).then(loadtest::default_event_tuning),
                })
                .map(|v| (out, v)),
                BenchCmd::Jitter { out, quick } => bench::jitter(&out, quick).map(|v| (out, v)),
                BenchCmd::Scrub { out, quick } => bench::scrub(&out, quick).map(|v| (out, v)),
            };
            match r {
                Ok((out, v)) => {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                    eprintln!("wrote {}", out.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("dmremapd: bench: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn inject_error_log(controller: &str, file: &std::path::Path, dry_run: bool) -> ExitCode {
    use dmremap_core::nvme::error_log::ErrorLog;
    let sys = std::path::Path::new("/sys");
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("dmremapd: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let entries: Vec<_> = match ErrorLog::new(&bytes) {
        Ok(l) => l.non_empty().collect(),
        Err(e) => {
            eprintln!("dmremapd: {}: not an error log: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let c = match dmremap_lib::nvme::sysfs::read_controller(sys, controller) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dmremapd: {controller}: {e}");
            return ExitCode::from(3);
        }
    };
    let mut marker = DmMarker::new();
    let uses = match marker.uses() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("dmremapd: listing remap devices: {e}");
            return ExitCode::from(1);
        }
    };
    let o = mark_error_log(
        sys,
        controller,
        &c.namespaces,
        &entries,
        (!dry_run).then_some(&mut marker),
        &uses,
    );
    println!("{}", serde_json::to_string(&o).unwrap_or_default());
    if o.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

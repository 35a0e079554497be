//! `dmremapd`: run the daemon, check a configuration, scrub a device, load-test and benchmark
//! the pipeline.
//!
//! Exit codes: 0 success; 1 runtime failure; 2 bad usage or configuration; 3 (`scrub`) the pass
//! found unreadable blocks.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use dmremap_lib::tune;
use dmremapd::backends::{mark_error_log, ControlEvents, DmMarker, ScraperProbe};
use dmremapd::config::Config;
use dmremapd::daemon::{self, Backends};
use dmremapd::loadtest::{self, LoadTestOptions, SinkKind};
use dmremapd::pipeline::{PipelineConfig, Policy};
use dmremapd::queue::QueueImpl;
use dmremapd::scrub::{self, BlockReader, BufferPool, FileReader, ScrubEvent, ScrubOptions};
use dmremapd::source::StopToken;
use dmremapd::{bench, logging};

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

mod gen;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocs() -> u64 {
    ALLOCS.load(Ordering::Relaxed)
}

#[derive(Parser)]
#[command(name = "dmremapd", version, about = "dm-remap health daemon")]
struct Cli {
    /// Configuration file (TOML); without it every setting has its default.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Validate a configuration file and print the effective configuration.
    CheckConfig {
        path: PathBuf,
        /// Print the effective configuration as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the default configuration as TOML.
    PrintDefaultConfig,
    /// Print a shell completion script.
    Completions {
        /// Shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff, section 8), or write one page per command into a directory.
    Manpage {
        /// Write dmremapd.8, dmremapd-scrub.8, ... into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
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
        #[arg(long, default_value = "crossbeam")]
        queue: QueueImpl,
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
    /// Read a device or file end to end once, reporting unreadable blocks.
    Scrub {
        device: PathBuf,
        /// Rate limit, MB/s (10^6 bytes); default unlimited.
        #[arg(long)]
        rate: Option<f64>,
        /// Checkpoint file to resume from and update.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Bad-block granularity in bytes (the dm-remap block size).
        #[arg(long, default_value_t = 4096)]
        block_size: usize,
        /// Bytes per sequential read, KiB.
        #[arg(long, default_value_t = 1024)]
        read_kb: usize,
        /// Do not try O_DIRECT.
        #[arg(long)]
        no_direct: bool,
        /// Mark unreadable blocks pending (`pending` target message) on the remap device that
        /// DEVICE is, or whose main device DEVICE is.
        #[arg(long)]
        mark_pending: bool,
        /// Events and the final report as JSON lines on stdout.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(log::LevelFilter::Info);
    match cli.cmd {
        None => run_daemon(cli.config),
        Some(Cmd::CheckConfig { path, json }) => match Config::load(&path) {
            Ok(c) => {
                if json {
                    println!("{}", serde_json::to_string_pretty(&c).unwrap_or_default());
                } else {
                    println!("{}: ok", path.display());
                    print!("{}", toml::to_string_pretty(&c).unwrap_or_default());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: invalid configuration:\n{e}", path.display());
                ExitCode::from(2)
            }
        },
        Some(Cmd::TestingInjectErrorLog {
            controller,
            file,
            dry_run,
        }) => inject_error_log(&controller, &file, dry_run),
        Some(Cmd::Completions { shell }) => gen::completions(Cli::command(), shell),
        Some(Cmd::Manpage { dir }) => gen::manpage(Cli::command(), dir.as_deref()),
        Some(Cmd::PrintDefaultConfig) => {
            print!("{}", Config::default_toml());
            ExitCode::SUCCESS
        }
        Some(Cmd::Loadtest {
            rate,
            duration,
            workers,
            sink,
            out,
            policy,
            capacity,
            batch,
            queue,
            no_tune,
            json,
        }) => {
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
                    queue_impl: queue,
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
        Some(Cmd::Bench { which }) => {
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
        Some(Cmd::Scrub {
            device,
            rate,
            checkpoint,
            block_size,
            read_kb,
            no_direct,
            mark_pending,
            json,
        }) => scrub_cmd(
            device,
            rate,
            checkpoint,
            block_size,
            read_kb,
            !no_direct,
            mark_pending,
            json,
        ),
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

/// How often the kernel event ring is polled while it is empty.
const KERNEL_POLL: Duration = Duration::from_millis(20);

fn run_daemon(config: Option<PathBuf>) -> ExitCode {
    let cfg = match &config {
        Some(p) => match Config::load(p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{}: invalid configuration:\n{e}", p.display());
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    let mut backends = Backends::default();
    if cfg.sources.kernel.enabled {
        backends.kernel_events = Some(Box::new(ControlEvents::new(
            std::path::Path::new(&cfg.sources.kernel.device),
            KERNEL_POLL,
        )));
    }
    if cfg.sources.nvme.enabled {
        let mut probe = ScraperProbe::new(
            std::path::Path::new("/sys"),
            std::path::Path::new("/dev"),
            Some(DmMarker::new()),
        );
        if !cfg.sources.nvme.error_log_state.is_empty() {
            probe = probe.with_state(PathBuf::from(&cfg.sources.nvme.error_log_state));
        }
        backends.nvme_probe = Some(Box::new(probe));
    }
    backends.device_status = Some(Box::new(dmremapd::field::DmDeviceStatus::new()));
    if cfg.scrub.enabled {
        backends.pending_marker = Some(Box::new(DmMarker::new()));
    }
    match daemon::run(config, cfg, backends) {
        Ok(r) => {
            if !r.stuck_sources.is_empty() {
                log::warn!(
                    "sources that did not stop in time: {}",
                    r.stuck_sources.join(", ")
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("{e}");
            if e.kind() == std::io::ErrorKind::InvalidInput {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn scrub_cmd(
    device: PathBuf,
    rate: Option<f64>,
    checkpoint: Option<PathBuf>,
    block_size: usize,
    read_kb: usize,
    direct: bool,
    mark_pending: bool,
    json: bool,
) -> ExitCode {
    let mut marker = DmMarker::new();
    if let Some(r) = rate {
        if !(r > 0.0 && r.is_finite()) {
            eprintln!("dmremapd: scrub: --rate must be > 0 MB/s");
            return ExitCode::from(2);
        }
    }
    // Scrub I/O yields to everything else.
    let rep = tune::apply_current_thread(&tune::WorkerTuning {
        ioprio: Some(tune::Ioprio::IDLE),
        ..Default::default()
    });
    if let Some(w) = rep.warning() {
        log::warn!("scrub: {w}; continuing");
    }
    let stop = StopToken::new();
    {
        let stop = stop.clone();
        match signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ]) {
            Ok(mut s) => {
                std::thread::spawn(move || {
                    if s.forever().next().is_some() {
                        stop.stop();
                    }
                });
            }
            Err(e) => log::warn!("scrub: cannot handle signals: {e}"),
        }
    }
    let opts = ScrubOptions {
        read_size: read_kb * 1024,
        block_size,
        rate: rate.map(|r| (r * 1e6) as u64),
        checkpoint,
        ..Default::default()
    };
    let mut reader = match FileReader::open(&device, direct) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dmremapd: scrub: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = opts.validate(reader.alignment()) {
        eprintln!("dmremapd: scrub: {}: {e}", device.display());
        return ExitCode::from(2);
    }
    let pool = BufferPool::new(opts.read_size, 4096, 1);
    let name = device.display().to_string();
    let mut observe = |e: &ScrubEvent| {
        if json {
            println!("{}", serde_json::to_string(e).unwrap_or_default());
        } else {
            match e {
                ScrubEvent::Progress {
                    offset,
                    total,
                    bytes_per_sec,
                    unreadable,
                    ..
                } => eprintln!(
                    "{name}: {:.1}% ({} / {} MB) {:.1} MB/s, {unreadable} unreadable",
                    *offset as f64 * 100.0 / (*total).max(1) as f64,
                    offset / 1_000_000,
                    total / 1_000_000,
                    *bytes_per_sec as f64 / 1e6
                ),
                ScrubEvent::Unreadable { offset, len, .. } => {
                    eprintln!(
                        "{name}: unreadable block at byte {offset} (+{len}), sector {}",
                        offset / 512
                    )
                }
            }
        }
    };
    let marker: Option<&mut dyn scrub::PendingMarker> = if mark_pending {
        Some(&mut marker)
    } else {
        None
    };
    match scrub::scrub(
        &mut reader,
        &name,
        &opts,
        marker,
        &pool,
        &stop,
        &mut observe,
    ) {
        Ok(r) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&serde_json::json!({ "type": "report", "report": r }))
                        .unwrap_or_default()
                );
            } else {
                println!(
                    "{}: {} ({}), {} MB read in {:.1} s ({:.1} MB/s){}, {} unreadable block(s)",
                    r.device,
                    if r.complete {
                        "pass complete"
                    } else {
                        "stopped"
                    },
                    r.mode,
                    r.bytes_read / 1_000_000,
                    r.elapsed_s,
                    r.mb_per_s,
                    if r.resumed {
                        format!(", resumed at byte {}", r.start_offset)
                    } else {
                        String::new()
                    },
                    r.unreadable.len()
                );
                for (o, l) in &r.unreadable {
                    println!("  unreadable: byte {o} +{l} (sector {})", o / 512);
                }
                if mark_pending {
                    println!(
                        "  marked pending: {}, marking failed: {}",
                        r.marked_pending, r.mark_errors
                    );
                }
            }
            if r.unreadable.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }
        Err(e) => {
            eprintln!("dmremapd: scrub: {e}");
            ExitCode::from(1)
        }
    }
}

//! `dmremapd`: run the daemon, check a configuration, scrub a device (and, built with the
//! `devtools` feature, load-test and benchmark the pipeline: see `devtools.rs`).
//!
//! Exit codes: 0 success; 1 runtime failure; 2 bad usage or configuration; 3 (`scrub`) the pass
//! found unreadable blocks.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use dmremap_lib::bufpool::BufferPool;
use dmremap_lib::tune;
use dmremapd::backends::{ControlEvents, DmMarker, ScraperProbe};
use dmremapd::config::Config;
use dmremapd::daemon::{self, Backends};
use dmremapd::logging;
use dmremapd::scrub::{self, BlockReader, FileReader, ScrubEvent, ScrubOptions};
use dmremapd::source::StopToken;

#[cfg(feature = "devtools")]
mod devtools;
mod man_and_completions;

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
    /// Read a device or file end to end once, reporting unreadable blocks.
    Scrub(ScrubArgs),
    /// Development tools: load tests, benchmarks, error-log injection.
    #[cfg(feature = "devtools")]
    #[command(flatten)]
    Dev(devtools::DevCmd),
}

#[derive(clap::Args)]
struct ScrubArgs {
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
        Some(Cmd::Completions { shell }) => man_and_completions::completions(Cli::command(), shell),
        Some(Cmd::Manpage { dir }) => man_and_completions::manpage(Cli::command(), dir.as_deref()),
        Some(Cmd::PrintDefaultConfig) => {
            print!("{}", Config::default_toml());
            ExitCode::SUCCESS
        }
        Some(Cmd::Scrub(a)) => scrub_cmd(&a),
        #[cfg(feature = "devtools")]
        Some(Cmd::Dev(c)) => devtools::run(c),
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

fn scrub_cmd(a: &ScrubArgs) -> ExitCode {
    let ScrubArgs {
        ref device,
        rate,
        ref checkpoint,
        block_size,
        read_kb,
        no_direct,
        mark_pending,
        json,
    } = *a;
    let direct = !no_direct;
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
        checkpoint: checkpoint.clone(),
        ..Default::default()
    };
    let mut reader = match FileReader::open(device, direct) {
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

//! `dmremap`: create and control dm-remap devices.
//!
//! Exit codes: see [`error`].

mod alloc_count;
mod bench;
mod events;
mod error;
mod nvme;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "dmremap",
    version,
    about = "Create and control dm-remap devices"
)]
struct Cli {
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// NVMe controllers: health log, error log, Amazon statistics, scrape benchmark.
    #[command(subcommand)]
    Nvme(nvme::NvmeCmd),
    /// Benchmarks through the control device.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Events from the kernel's event ring (remaps, spare low/exhausted, I/O errors).
    Events(events::EventsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.cmd {
        Cmd::Nvme(c) => nvme::run(c, cli.json),
        Cmd::Bench(c) => bench::run(c, cli.json),
        Cmd::Events(a) => events::run(a, cli.json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dmremap: {e}");
            e.exit_code()
        }
    }
}

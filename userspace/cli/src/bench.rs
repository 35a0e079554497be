//! `dmremap bench`: benchmarks that run through the control device.

use std::io::Write;

use clap::{Subcommand, ValueEnum};
use dmremap_lib::control::{BenchOp, BenchResult, Control};

use crate::error::CliError;

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// In-kernel microbenchmark: spare allocation and remap-index operations, timed in the kernel.
    Kernel {
        /// Operations to measure.
        #[arg(long, value_delimiter = ',', default_values = ["noop", "alloc", "lookup", "insert"])]
        ops: Vec<Op>,
        /// Index sizes (remaps present) to measure at.
        #[arg(long, value_delimiter = ',', default_values = ["0", "1000", "100000", "1000000"])]
        entries: Vec<u64>,
        /// Operations per measurement.
        #[arg(long, default_value_t = 200_000)]
        iterations: u64,
        /// Operations per timed sample (1..1024).
        #[arg(long, default_value_t = 16)]
        batch: u32,
        /// Write the results as JSON to this file.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Remap storm: durable remaps per second on a live remap device, with many remaps per
    /// commit (`remap <sector> <batch>` messages) and with one commit per remap (batch 1).
    /// Moves blocks from sector --start on; the device must have that many blocks free there.
    Storm(crate::storm::StormArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Op {
    Noop,
    Alloc,
    Lookup,
    Insert,
}

impl From<Op> for BenchOp {
    fn from(o: Op) -> BenchOp {
        match o {
            Op::Noop => BenchOp::Noop,
            Op::Alloc => BenchOp::Alloc,
            Op::Lookup => BenchOp::Lookup,
            Op::Insert => BenchOp::Insert,
        }
    }
}

pub fn run(cmd: &BenchCmd, json: bool) -> Result<(), CliError> {
    match cmd {
        BenchCmd::Storm(a) => crate::storm::run(a, json),
        BenchCmd::Kernel { ops, entries, iterations, batch, out } => {
            let ctl = Control::open().map_err(|e| CliError::failed(e.to_string()))?;
            let mut results: Vec<BenchResult> = Vec::new();
            for &op in ops {
                let sizes: &[u64] = if matches!(op, Op::Noop) { &[0] } else { entries };
                for &n in sizes {
                    let r = ctl.bench(op.into(), *iterations, n, *batch).map_err(|e| CliError::failed(e.to_string()))?;
                    if !json {
                        println!(
                            "{:<7} entries={:<8} p50={:>6} ns  p99={:>6} ns  min={:>6} ns  max={:>8} ns  ({} samples of {})",
                            r.op, r.entries, r.p50, r.p99, r.min, r.max, r.samples, r.batch
                        );
                    }
                    results.push(r);
                }
            }
            let doc = serde_json::json!({
                "bench": "kernel",
                "unit": "ns",
                "results": results.iter().map(|r| serde_json::json!({
                    "case": format!("{}@{}", r.op, r.entries),
                    "op": r.op,
                    "entries": r.entries,
                    "p50": r.p50,
                    "p99": r.p99,
                    "min": r.min,
                    "max": r.max,
                    "samples": r.samples,
                    "batch": r.batch,
                    "iterations": r.iterations,
                })).collect::<Vec<_>>(),
            });
            let text = serde_json::to_string(&doc).map_err(|e| CliError::failed(e.to_string()))?;
            if json {
                println!("{text}");
            }
            if let Some(path) = out {
                std::fs::File::create(path)
                    .and_then(|mut f| f.write_all(text.as_bytes()))
                    .map_err(|e| CliError::failed(format!("{}: {e}", path.display())))?;
            }
            Ok(())
        }
    }
}

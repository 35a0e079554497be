//! `dmremap bench`: benchmarks that run through the control device.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Subcommand, ValueEnum};
use dmremap_lib::control::{BenchOp, BenchResult, Control};
use dmremap_lib::dm::Dm;
use dmremap_lib::stats::percentile;

use crate::error::CliError;

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// In-kernel microbenchmark: spare allocation and remap-index operations, timed in the kernel.
    Kernel {
        /// Operations to measure.
        #[arg(long, value_delimiter = ',', default_values = ["noop", "alloc", "alloc-full", "lookup", "insert", "fill-dense", "fill-scattered"])]
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
    #[cfg(feature = "devtools")]
    Storm(crate::storm::StormArgs),
    /// Control-path round trips, each timed from userspace: `dmsetup message DEVICE 0 ping` run
    /// as a process, the same message through the DM_TARGET_MSG ioctl, our own DMR_IOC_VERSION
    /// ioctl, and the in-kernel no-op (timed in the kernel).
    Control {
        /// A dm-remap device (name) to send `ping` to.
        #[arg(long)]
        device: String,
        /// Round trips of the `dmsetup message` process.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        process_iterations: u64,
        /// Round trips of the DM_TARGET_MSG ioctl.
        #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        dm_iterations: u64,
        /// Round trips of DMR_IOC_VERSION, and operations of the in-kernel no-op.
        #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        iterations: u64,
        /// The dmsetup program.
        #[arg(long, default_value = "dmsetup")]
        dmsetup: PathBuf,
        /// Write the results as JSON to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Op {
    Noop,
    Alloc,
    AllocFull,
    Lookup,
    Insert,
    FillDense,
    FillScattered,
}

impl From<Op> for BenchOp {
    fn from(o: Op) -> BenchOp {
        match o {
            Op::Noop => BenchOp::Noop,
            Op::Alloc => BenchOp::Alloc,
            Op::AllocFull => BenchOp::AllocFull,
            Op::Lookup => BenchOp::Lookup,
            Op::Insert => BenchOp::Insert,
            Op::FillDense => BenchOp::FillDense,
            Op::FillScattered => BenchOp::FillScattered,
        }
    }
}

pub fn run(cmd: &BenchCmd, json: bool) -> Result<(), CliError> {
    match cmd {
        #[cfg(feature = "devtools")]
        BenchCmd::Storm(a) => crate::storm::run(a, json),
        BenchCmd::Control {
            device,
            process_iterations,
            dm_iterations,
            iterations,
            dmsetup,
            out,
        } => control(
            device,
            *process_iterations,
            *dm_iterations,
            *iterations,
            dmsetup,
            out.as_deref(),
            json,
        ),
        BenchCmd::Kernel {
            ops,
            entries,
            iterations,
            batch,
            out,
        } => {
            let ctl = Control::open()?;
            let mut results: Vec<BenchResult> = Vec::new();
            for &op in ops {
                let sizes: &[u64] = if matches!(op, Op::Noop) {
                    &[0]
                } else {
                    entries
                };
                let fill = matches!(op, Op::FillDense | Op::FillScattered);
                // A fill from an empty index to nothing measures nothing.
                for &n in sizes.iter().filter(|&&n| !(fill && n == 0)) {
                    let r = ctl.bench(op.into(), *iterations, n, *batch)?;
                    if !json {
                        println!(
                            "{:<7} entries={:<8} p50={:>6} ns  p99={:>6} ns  min={:>6} ns  max={:>8} ns  ({} samples of {})",
                            r.op, r.entries, r.p50, r.p99, r.min, r.max, r.samples, r.batch
                        );
                        if fill {
                            println!(
                                "{:<7} entries={:<8} index memory {} bytes = {:.1} bytes per entry",
                                r.op,
                                r.entries,
                                r.index_bytes,
                                r.index_bytes as f64 / r.entries as f64
                            );
                        }
                    }
                    results.push(r);
                }
            }
            // Memory of the filled index per entry, by pattern and size ("dense_1000000").
            let per_remap: serde_json::Map<String, serde_json::Value> = results
                .iter()
                .filter(|r| r.op.starts_with("fill_") && r.entries > 0)
                .map(|r| {
                    let per = (r.index_bytes as f64 / r.entries as f64 * 10.0).round() / 10.0;
                    (
                        format!("{}_{}", &r.op["fill_".len()..], r.entries),
                        serde_json::json!(per),
                    )
                })
                .collect();
            let doc = serde_json::json!({
                "bench": "kernel",
                "unit": "ns",
                "index_bytes_per_remap": per_remap,
                "results": results.iter().map(|r| {
                    let mut c = serde_json::json!({
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
                    });
                    if r.op.starts_with("fill_") {
                        c["index_bytes"] = serde_json::json!(r.index_bytes);
                    }
                    c
                }).collect::<Vec<_>>(),
            });
            emit(&doc, json, out.as_deref())
        }
    }
}

fn emit(doc: &serde_json::Value, json: bool, out: Option<&Path>) -> Result<(), CliError> {
    let text = serde_json::to_string(doc).map_err(|e| CliError::failed(e.to_string()))?;
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

/// Nearest-rank percentiles of `ns`, sorted here.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Summary {
    p50: u64,
    p99: u64,
    min: u64,
    max: u64,
    mean: f64,
}

fn summarize(ns: &mut [u64]) -> Summary {
    ns.sort_unstable();
    let mean = if ns.is_empty() {
        0.0
    } else {
        ns.iter().map(|&x| x as f64).sum::<f64>() / ns.len() as f64
    };
    Summary {
        p50: percentile(ns, 50),
        p99: percentile(ns, 99),
        min: ns.first().copied().unwrap_or(0),
        max: ns.last().copied().unwrap_or(0),
        mean,
    }
}

/// Time `n` calls of `op` one by one (ns each); stops at the first error.
fn time_each(n: u64, mut op: impl FnMut() -> Result<(), CliError>) -> Result<Vec<u64>, CliError> {
    let mut v = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let t = Instant::now();
        op()?;
        v.push(t.elapsed().as_nanos() as u64);
    }
    Ok(v)
}

fn control(
    device: &str,
    process_n: u64,
    dm_n: u64,
    n: u64,
    dmsetup: &Path,
    out: Option<&Path>,
    json: bool,
) -> Result<(), CliError> {
    let ctl = Control::open()?;
    let dm = Dm::open().map_err(|e| crate::dmcmd::dm_error(device, e))?;
    // The device must be there and answer before anything is timed.
    match dm.message(device, 0, "ping") {
        Ok(Some(a)) if a.trim() == "pong" => {}
        Ok(other) => {
            return Err(CliError::failed(format!(
                "{device}: `ping` answered {other:?}, not `pong`"
            )))
        }
        Err(e) => return Err(crate::dmcmd::dm_error(device, e)),
    }
    let mut cases = Vec::new();

    // (a) dmsetup message DEVICE 0 ping, a process per round trip.
    let mut a = time_each(process_n, || {
        let o = std::process::Command::new(dmsetup)
            .args(["message", device, "0", "ping"])
            .output()
            .map_err(|e| CliError::failed(format!("{}: {e}", dmsetup.display())))?;
        if !o.status.success() || String::from_utf8_lossy(&o.stdout).trim() != "pong" {
            return Err(CliError::failed(format!(
                "{} message {device} 0 ping: {} {}",
                dmsetup.display(),
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )));
        }
        Ok(())
    })?;
    cases.push((
        "dmsetup_message_ping",
        "dmsetup message DEV 0 ping, one process per round trip",
        summarize(&mut a),
        process_n,
    ));

    // (b) DM_TARGET_MSG ping from this process (devicemapper crate).
    let mut b = time_each(dm_n, || match dm.message(device, 0, "ping") {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(CliError::failed(format!("{device}: no answer to `ping`"))),
        Err(e) => Err(crate::dmcmd::dm_error(device, e)),
    })?;
    cases.push((
        "dm_target_msg_ping",
        "DM_TARGET_MSG ioctl `ping` on /dev/mapper/control (devicemapper crate)",
        summarize(&mut b),
        dm_n,
    ));

    // (c) our own ioctl round trip.
    let mut c = time_each(n, || ctl.version().map(|_| ()).map_err(CliError::from))?;
    cases.push((
        "own_ioctl_version",
        "DMR_IOC_VERSION ioctl on /dev/dm-remap",
        summarize(&mut c),
        n,
    ));

    // (d) the in-kernel no-op, timed in the kernel one operation per sample.
    let k = ctl.bench(BenchOp::Noop, n, 0, 1)?;
    let d = Summary {
        p50: k.p50,
        p99: k.p99,
        min: k.min,
        max: k.max,
        mean: k.total_ns as f64 / n as f64,
    };
    cases.push((
        "kernel_noop",
        "DMR_IOC_BENCH noop, timed in the kernel (ktime per sample of 1 op)",
        d,
        n,
    ));

    let ratio = |x: u64, y: u64| {
        if y == 0 {
            None
        } else {
            Some(((x as f64 / y as f64) * 10.0).round() / 10.0)
        }
    };
    let (sa, sb, sc) = (cases[0].2, cases[1].2, cases[2].2);
    let a_over_c = ratio(sa.p50, sc.p50);
    if !json {
        for (name, _, s, iters) in &cases {
            println!(
                "{name:<22} p50={:>10} ns  p99={:>10} ns  min={:>10} ns  max={:>12} ns  ({iters} round trips)",
                s.p50, s.p99, s.min, s.max
            );
        }
        println!(
            "dmsetup / own ioctl (p50): {}   DM_TARGET_MSG / own ioctl (p50): {}",
            a_over_c.map_or("-".into(), |r| r.to_string()),
            ratio(sb.p50, sc.p50).map_or("-".into(), |r| r.to_string())
        );
    }
    let doc = serde_json::json!({
        "bench": "control",
        "unit": "ns",
        "device": device,
        "results": cases.iter().map(|(name, what, s, iters)| serde_json::json!({
            "case": name,
            "what": what,
            "p50": s.p50,
            "p99": s.p99,
            "min": s.min,
            "max": s.max,
            "mean": (s.mean * 10.0).round() / 10.0,
            "iterations": iters,
        })).collect::<Vec<_>>(),
        "ratio": {
            "dmsetup_over_own_ioctl_p50": a_over_c,
            "dmsetup_over_own_ioctl_p99": ratio(sa.p99, sc.p99),
            "dm_target_msg_over_own_ioctl_p50": ratio(sb.p50, sc.p50),
            "dmsetup_over_dm_target_msg_p50": ratio(sa.p50, sb.p50),
        },
    });
    emit(&doc, json, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        let s = summarize(&mut v);
        assert_eq!((s.p50, s.p99, s.min, s.max), (50, 99, 1, 100));
        assert_eq!(s.mean, 50.5);
        let s = summarize(&mut []);
        assert_eq!((s.p50, s.p99, s.min, s.max), (0, 0, 0, 0));
    }
}

//! `dmremap bench storm`: durable remaps per second on a live remap device.

use std::io::Write;
use std::time::Instant;

use clap::Args;
use dmremap_lib::dm::{Dm, Stats};

use crate::error::CliError;

#[derive(Args, Debug)]
pub struct StormArgs {
    /// The remap device.
    name: String,
    /// Remaps per case.
    #[arg(long, default_value_t = 4096)]
    remaps: u64,
    /// Blocks per `remap` message (one commit each) for the group-commit case.
    #[arg(long, default_value_t = 256)]
    batch: u64,
    /// First device sector to move; the cases use consecutive ranges of blocks from here.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Write the results as JSON to this file.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

struct Case {
    name: &'static str,
    batch: u64,
    remaps: u64,
    commits: u64,
    secs: f64,
}

/// The segment's `stats`, parsed by the library.
fn stats(dm: &Dm, name: &str) -> Result<Stats, CliError> {
    dm.stats(name, 0)
        .map_err(|e| CliError::failed(format!("{name}: stats: {e}")))
}

/// Commits so far (a counter the library keeps among the other keys).
fn commits(name: &str, s: &Stats) -> Result<u64, CliError> {
    s.other
        .get("commits")
        .copied()
        .ok_or_else(|| CliError::failed(format!("{name}: stats has no commits")))
}

fn run_case(
    dm: &Dm,
    a: &StormArgs,
    name: &'static str,
    batch: u64,
    first_sector: u64,
    block_sectors: u64,
) -> Result<Case, CliError> {
    let before = stats(dm, &a.name)?;
    let t0 = Instant::now();
    let mut done = 0;
    while done < a.remaps {
        let n = batch.min(a.remaps - done);
        let sector = first_sector + done * block_sectors;
        dm.message(&a.name, sector, &format!("remap {sector} {n}"))
            .map_err(|e| CliError::failed(format!("{}: remap {sector} {n}: {e}", a.name)))?;
        done += n;
    }
    let secs = t0.elapsed().as_secs_f64();
    let after = stats(dm, &a.name)?;
    let remaps = after.remap_ops - before.remap_ops;
    if remaps != a.remaps {
        return Err(CliError::failed(format!(
            "{}: {remaps} blocks were moved, expected {} (were some already remapped?)",
            a.name, a.remaps
        )));
    }
    Ok(Case {
        name,
        batch,
        remaps,
        commits: commits(&a.name, &after)? - commits(&a.name, &before)?,
        secs,
    })
}

pub fn run(a: &StormArgs, json: bool) -> Result<(), CliError> {
    if a.remaps == 0 || a.batch == 0 {
        return Err(CliError::usage("--remaps and --batch must be at least 1"));
    }
    let dm = Dm::open().map_err(|e| CliError::failed(e.to_string()))?;
    let block_size = stats(&dm, &a.name)?.block_size;
    let bs = block_size / 512;
    let cases = [
        run_case(&dm, a, "group_commit", a.batch, a.start, bs)?,
        run_case(&dm, a, "commit_per_remap", 1, a.start + a.remaps * bs, bs)?,
    ];
    let rate = |c: &Case| c.remaps as f64 / c.secs;
    let doc = serde_json::json!({
        "bench": "storm",
        "device": a.name,
        "block_size": block_size,
        "remaps_per_s": rate(&cases[0]).round(),
        "ratio_group_over_single": (rate(&cases[0]) / rate(&cases[1]) * 100.0).round() / 100.0,
        "results": cases.iter().map(|c| serde_json::json!({
            "case": c.name,
            "batch": c.batch,
            "remaps": c.remaps,
            "commits": c.commits,
            "seconds": (c.secs * 1000.0).round() / 1000.0,
            "remaps_per_s": rate(c).round(),
        })).collect::<Vec<_>>(),
    });
    if !json {
        for c in &cases {
            println!(
                "{:<17} batch {:>4}: {} remaps, {} commits in {:.3} s = {:.0} durable remaps/s",
                c.name,
                c.batch,
                c.remaps,
                c.commits,
                c.secs,
                rate(c)
            );
        }
    }
    let text = serde_json::to_string(&doc).map_err(|e| CliError::failed(e.to_string()))?;
    if json {
        println!("{text}");
    }
    if let Some(path) = &a.out {
        std::fs::File::create(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| CliError::failed(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

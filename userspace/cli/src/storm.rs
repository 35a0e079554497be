//! `dmremap bench storm`: durable remaps per second on a live remap device, and the latency and
//! metadata bytes of one durable single-block remap.

use std::io::Write;
use std::time::Instant;

use clap::Args;
use dmremap_lib::dm::{Dm, Stats};
use dmremap_lib::stats::percentile;

use crate::error::CliError;

#[derive(Args, Debug)]
pub struct StormArgs {
    /// The remap device.
    name: String,
    /// Remaps in the group-commit case (and, without --single-remaps, in the single case).
    #[arg(long, default_value_t = 4096)]
    remaps: u64,
    /// Blocks per `remap` message (one commit each) for the group-commit case.
    #[arg(long, default_value_t = 256)]
    batch: u64,
    /// Remaps in the one-commit-per-remap case (default: --remaps). Each is timed on its own
    /// for the latency percentiles.
    #[arg(long)]
    single_remaps: Option<u64>,
    /// The spare's block-layer statistics (/sys/block/<spare>/stat): with it, the metadata bytes
    /// written per single remap are measured (spare sectors written, less one data block per
    /// remap).
    #[arg(long)]
    spare_stat: Option<std::path::PathBuf>,
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
    /// Microseconds per `remap` message, sorted.
    lat_us: Vec<u64>,
    /// Sectors written to the spare during the case (with --spare-stat).
    spare_sectors: Option<u64>,
}

/// Sectors written so far, from a block device's `stat` file (field 7).
fn write_sectors(path: &std::path::Path) -> Result<u64, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::failed(format!("{}: {e}", path.display())))?;
    text.split_whitespace()
        .nth(6)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| CliError::failed(format!("{}: no write-sectors field", path.display())))
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
    (total, batch): (u64, u64),
    first_sector: u64,
    block_sectors: u64,
) -> Result<Case, CliError> {
    let before = stats(dm, &a.name)?;
    let spare0 = a.spare_stat.as_deref().map(write_sectors).transpose()?;
    let mut lat_us = Vec::new();
    let t0 = Instant::now();
    let mut done = 0;
    while done < total {
        let n = batch.min(total - done);
        let sector = first_sector + done * block_sectors;
        let t = Instant::now();
        dm.message(&a.name, sector, &format!("remap {sector} {n}"))
            .map_err(|e| CliError::failed(format!("{}: remap {sector} {n}: {e}", a.name)))?;
        lat_us.push(t.elapsed().as_micros() as u64);
        done += n;
    }
    let secs = t0.elapsed().as_secs_f64();
    let spare1 = a.spare_stat.as_deref().map(write_sectors).transpose()?;
    let after = stats(dm, &a.name)?;
    let remaps = after.remap_ops - before.remap_ops;
    if remaps != total {
        return Err(CliError::failed(format!(
            "{}: {remaps} blocks were moved, expected {total} (were some already remapped?)",
            a.name
        )));
    }
    lat_us.sort_unstable();
    Ok(Case {
        name,
        batch,
        remaps,
        commits: commits(&a.name, &after)? - commits(&a.name, &before)?,
        secs,
        lat_us,
        spare_sectors: spare0.zip(spare1).map(|(x, y)| y.saturating_sub(x)),
    })
}

pub fn run(a: &StormArgs, json: bool) -> Result<(), CliError> {
    let singles = a.single_remaps.unwrap_or(a.remaps);
    if a.remaps == 0 || a.batch == 0 || singles == 0 {
        return Err(CliError::usage(
            "--remaps, --batch and --single-remaps must be at least 1",
        ));
    }
    let dm = Dm::open().map_err(|e| CliError::failed(e.to_string()))?;
    let st = stats(&dm, &a.name)?;
    let (block_size, existing) = (st.block_size, st.remapped);
    let bs = block_size / 512;
    // The single remaps run first, so that they see the existing remaps and hardly more.
    let single = run_case(
        &dm,
        a,
        "commit_per_remap",
        (singles, 1),
        a.start + a.remaps * bs,
        bs,
    )?;
    let cases = [
        run_case(&dm, a, "group_commit", (a.remaps, a.batch), a.start, bs)?,
        single,
    ];
    let rate = |c: &Case| c.remaps as f64 / c.secs;
    // Each single remap writes one data block to the spare; the rest is metadata.
    let meta_bytes = |c: &Case| {
        c.spare_sectors
            .map(|s| (s * 512).saturating_sub(c.remaps * block_size) / c.remaps)
    };
    let single = &cases[1];
    let doc = serde_json::json!({
        "bench": "storm",
        "device": a.name,
        "block_size": block_size,
        "existing_remaps": existing,
        "remaps_per_s": rate(&cases[0]).round(),
        "ratio_group_over_single": (rate(&cases[0]) / rate(&cases[1]) * 100.0).round() / 100.0,
        "single_latency_p50_us": percentile(&single.lat_us, 50),
        "single_latency_p99_us": percentile(&single.lat_us, 99),
        "metadata_bytes_per_remap": meta_bytes(single),
        "results": cases.iter().map(|c| serde_json::json!({
            "case": c.name,
            "batch": c.batch,
            "remaps": c.remaps,
            "commits": c.commits,
            "seconds": (c.secs * 1000.0).round() / 1000.0,
            "remaps_per_s": rate(c).round(),
            "message_p50_us": percentile(&c.lat_us, 50),
            "message_p99_us": percentile(&c.lat_us, 99),
            "message_max_us": c.lat_us.last().copied().unwrap_or(0),
            "spare_sectors_written": c.spare_sectors,
            "metadata_bytes_per_remap": meta_bytes(c),
        })).collect::<Vec<_>>(),
    });
    if !json {
        println!("{} remaps exist before the cases", existing);
        for c in &cases {
            println!(
                "{:<17} batch {:>4}: {} remaps, {} commits in {:.3} s = {:.0} durable remaps/s; per message p50 {} us, p99 {} us{}",
                c.name,
                c.batch,
                c.remaps,
                c.commits,
                c.secs,
                rate(c),
                percentile(&c.lat_us, 50),
                percentile(&c.lat_us, 99),
                meta_bytes(c).map_or(String::new(), |b| format!("; {b} metadata bytes per remap")),
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

#[cfg(test)]
mod tests {
    use super::write_sectors;

    #[test]
    fn write_sectors_is_the_seventh_stat_field() {
        let dir = std::env::temp_dir().join(format!("dmremap-storm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stat = dir.join("stat");
        std::fs::write(
            &stat,
            "     120        0     9600       31     4242        7   165888     5120        0      300     5151        0        0        0        0       12       40\n",
        )
        .unwrap();
        assert_eq!(write_sectors(&stat).unwrap(), 165888);
        std::fs::write(&stat, "1 2 3\n").unwrap();
        assert!(write_sectors(&stat).is_err());
        assert!(write_sectors(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

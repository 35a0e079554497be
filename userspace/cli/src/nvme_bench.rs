//! `dmremap nvme bench`: time scrape cycles over every controller (or simulated ones), with a
//! cold and a warm type cache, counting the process's allocations per cycle.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use dmremap_lib::nvme::admin::IoctlTransport;
use dmremap_lib::nvme::fake::{controller_record, FakeController, FakeTransport};
use dmremap_lib::nvme::sysfs::Controller;
use dmremap_lib::nvme::{AdminTransport, Discovery, Scraper, ScraperConfig};
use dmremap_lib::stats::percentile;

use crate::alloc_count;
use crate::error::{CliError, Kind};
use crate::nvme::{dev_dir, discover_all, sysfs_root};

/// `dmremap nvme bench` arguments.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct BenchArgs {
    /// Cycles per case.
    #[arg(long, default_value_t = 100)]
    cycles: u32,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Scrape this many simulated in-memory controllers instead of the real ones.
    #[arg(long)]
    simulate: Option<u32>,
    /// Budget of one cycle in microseconds (cycles over it are counted).
    #[arg(long, default_value_t = 5000)]
    budget_us: u64,
    /// SMART reads in flight at once in the third case, `warm_parallel` (the first two read
    /// one controller after the other).
    #[arg(long, default_value_t = 4)]
    parallel: usize,
}

/// Run `dmremap nvme bench`.
pub fn run(a: &BenchArgs, json: bool) -> Result<(), CliError> {
    cmd_bench(
        a.cycles,
        a.out.as_deref(),
        a.simulate,
        a.budget_us,
        a.parallel,
        json,
    )
}

#[derive(Serialize, Debug, Clone, PartialEq)]
struct CaseResult {
    case: &'static str,
    p50: f64,
    p99: f64,
    max: f64,
    min: f64,
    mean: f64,
    cycles: u32,
    controllers: usize,
    allocs_per_scrape: f64,
    over_budget: u64,
    smart_errors: u64,
    detect_errors: u64,
    cache_hits: u64,
    /// The discovery part (listing the controllers) of the same cycles.
    discovery_p50: f64,
    discovery_p99: f64,
}

#[derive(Serialize)]
struct Ratio {
    warm_over_cold_p50: f64,
    warm_over_cold_p99: f64,
    parallel_over_warm_p50: f64,
    parallel_over_warm_p99: f64,
}

#[derive(Serialize)]
struct BenchJson {
    bench: &'static str,
    unit: &'static str,
    mode: &'static str,
    controllers: usize,
    budget_us: u64,
    /// SMART reads in flight at once in the `warm_parallel` case.
    parallel: usize,
    results: Vec<CaseResult>,
    ratio: Ratio,
    /// Allocations made by one controller discovery (part of every cycle's count).
    allocs_per_discovery: u64,
}

fn us(d: Duration) -> f64 {
    (d.as_nanos() as f64 / 1000.0 * 1000.0).round() / 1000.0
}

/// Run `cycles` scrape cycles; `cold` clears the type cache before each one, otherwise one
/// priming cycle fills it first. Counts process allocations made inside each cycle.
fn run_case<T: AdminTransport>(
    s: &mut Scraper<T>,
    cycles: u32,
    cold: bool,
    case: &'static str,
    first_error: &mut Option<String>,
) -> Result<CaseResult, CliError> {
    let scrape = |s: &mut Scraper<T>| {
        s.scrape_cycle()
            .map_err(|e| CliError::failed(format!("NVMe discovery: {e}")))
    };
    if !cold {
        scrape(s)?;
    }
    let mut times = Vec::with_capacity(cycles as usize);
    let mut discovery = Vec::with_capacity(cycles as usize);
    let (mut allocs, mut over, mut smart_err, mut det_err, mut hits, mut ctrls) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0usize);
    for _ in 0..cycles {
        if cold {
            s.clear_cache();
        }
        let a0 = alloc_count::allocations();
        let r = scrape(s)?;
        allocs += alloc_count::allocations() - a0;
        times.push(r.elapsed);
        discovery.push(r.discovery);
        over += u64::from(r.over_budget);
        ctrls = r.controllers.len();
        for c in &r.controllers {
            hits += u64::from(c.cache_hit);
            if let Err(e) = &c.smart {
                smart_err += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
            if let Err(e) = &c.device_type {
                det_err += 1;
                first_error.get_or_insert_with(|| e.clone());
            }
        }
    }
    times.sort_unstable();
    discovery.sort_unstable();
    let n = times.len().max(1) as f64;
    let total: Duration = times.iter().sum();
    Ok(CaseResult {
        case,
        p50: us(percentile(&times, 50)),
        p99: us(percentile(&times, 99)),
        max: us(times.last().copied().unwrap_or_default()),
        min: us(times.first().copied().unwrap_or_default()),
        mean: (total.as_nanos() as f64 / n / 1000.0 * 1000.0).round() / 1000.0,
        cycles,
        controllers: ctrls,
        allocs_per_scrape: (allocs as f64 / n * 100.0).round() / 100.0,
        over_budget: over,
        smart_errors: smart_err,
        detect_errors: det_err,
        cache_hits: hits,
        discovery_p50: us(percentile(&discovery, 50)),
        discovery_p99: us(percentile(&discovery, 99)),
    })
}

fn bench_doc<T: AdminTransport>(
    mut s: Scraper<T>,
    cycles: u32,
    mode: &'static str,
    budget_us: u64,
    parallel: usize,
    allocs_per_discovery: u64,
) -> Result<(BenchJson, Option<String>), CliError> {
    let mut first_error = None;
    s.transport_mut().set_parallel(1);
    let cold = run_case(&mut s, cycles, true, "cold", &mut first_error)?;
    let warm = run_case(&mut s, cycles, false, "warm", &mut first_error)?;
    s.transport_mut().set_parallel(parallel);
    let warm_par = run_case(&mut s, cycles, false, "warm_parallel", &mut first_error)?;
    let ratio = |w: f64, c: f64| {
        if c > 0.0 {
            (w / c * 1000.0).round() / 1000.0
        } else {
            0.0
        }
    };
    let doc = BenchJson {
        bench: "nvme",
        unit: "us",
        mode,
        controllers: cold.controllers,
        budget_us,
        ratio: Ratio {
            warm_over_cold_p50: ratio(warm.p50, cold.p50),
            warm_over_cold_p99: ratio(warm.p99, cold.p99),
            parallel_over_warm_p50: ratio(warm_par.p50, warm.p50),
            parallel_over_warm_p99: ratio(warm_par.p99, warm.p99),
        },
        parallel,
        results: vec![cold, warm, warm_par],
        allocs_per_discovery,
    };
    Ok((doc, first_error))
}

/// `n` simulated controllers: a mix of generic, EBS and instance-store devices.
fn simulated_fleet(n: u32) -> (FakeTransport, Vec<Controller>) {
    let mut t = FakeTransport::new();
    t.record = false;
    let mut list = Vec::new();
    for i in 0..n {
        let name = format!("nvme{i}");
        let c = match i % 3 {
            0 => FakeController::generic(&format!("SIM{i:04}")),
            1 => FakeController::ebs(&format!("vol{i:017}")),
            _ => FakeController::instance_store(&format!("AWS{i:05}")),
        };
        list.push(controller_record(&name, &c, 1));
        t.insert(&name, c);
    }
    (t, list)
}

fn cmd_bench(
    cycles: u32,
    out: Option<&Path>,
    simulate: Option<u32>,
    budget_us: u64,
    parallel: usize,
    json: bool,
) -> Result<(), CliError> {
    if cycles == 0 {
        return Err(CliError::new(Kind::Usage, "--cycles must be at least 1"));
    }
    if parallel == 0 || parallel > 64 {
        return Err(CliError::new(Kind::Usage, "--parallel must be 1..=64"));
    }
    let cfg = ScraperConfig {
        budget: Duration::from_micros(budget_us),
        ..ScraperConfig::default()
    };
    let (doc, first_error) = match simulate {
        Some(0) => return Err(CliError::new(Kind::Usage, "--simulate must be at least 1")),
        Some(n) => {
            let (t, list) = simulated_fleet(n);
            // A fixed list is cloned every cycle.
            let a0 = alloc_count::allocations();
            drop(list.clone());
            let discovery_allocs = alloc_count::allocations() - a0;
            bench_doc(
                Scraper::new(Discovery::Fixed(list), t, cfg),
                cycles,
                "simulated",
                budget_us,
                parallel,
                discovery_allocs,
            )?
        }
        None => {
            let root = sysfs_root();
            let a0 = alloc_count::allocations();
            let found = discover_all(&root)?;
            let discovery_allocs = alloc_count::allocations() - a0;
            if found.is_empty() {
                return Err(CliError::new(
                    Kind::NoDevice,
                    format!(
                        "no NVMe controllers under {}",
                        root.join("class/nvme").display()
                    ),
                ));
            }
            let t = IoctlTransport::new(dev_dir());
            bench_doc(
                Scraper::new(Discovery::Sysfs(root), t, cfg),
                cycles,
                "devices",
                budget_us,
                parallel,
                discovery_allocs,
            )?
        }
    };
    let text = serde_json::to_string_pretty(&doc)
        .map_err(|e| CliError::failed(format!("JSON output: {e}")))?;
    if let Some(path) = out {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)
                .map_err(|e| CliError::failed(format!("{}: {e}", dir.display())))?;
        }
        fs::write(path, format!("{text}\n"))
            .map_err(|e| CliError::failed(format!("{}: {e}", path.display())))?;
    }
    if let Some(e) = &first_error {
        eprintln!("dmremap: warning: some scrapes failed; first error: {e}");
    }
    if json {
        println!("{text}");
    } else {
        println!(
            "nvme scrape bench ({}, {} controllers, {} cycles per case, budget {} us)",
            doc.mode, doc.controllers, cycles, budget_us
        );
        println!(
            "{:<6} {:>12} {:>12} {:>12} {:>12} {:>14} {:>11}",
            "case", "p50 us", "p99 us", "max us", "mean us", "allocs/scrape", "over budget"
        );
        for r in &doc.results {
            println!(
                "{:<6} {:>12.3} {:>12.3} {:>12.3} {:>12.3} {:>14.2} {:>11}",
                r.case, r.p50, r.p99, r.max, r.mean, r.allocs_per_scrape, r.over_budget
            );
        }
        println!(
            "{:<6} {:>12} {:>12}   (discovery part of each cycle; {} allocations per discovery)",
            "", "p50 us", "p99 us", doc.allocs_per_discovery
        );
        for r in &doc.results {
            println!(
                "{:<6} {:>12.3} {:>12.3}",
                r.case, r.discovery_p50, r.discovery_p99
            );
        }
        println!("warm/cold p50 ratio: {:.3}", doc.ratio.warm_over_cold_p50);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_bench_reports_cold_and_warm() {
        let (t, list) = simulated_fleet(10);
        let s = Scraper::new(Discovery::Fixed(list), t, ScraperConfig::default());
        let (doc, first_error) = bench_doc(s, 20, "simulated", 5000, 4, 0).unwrap();
        assert!(first_error.is_none(), "{first_error:?}");
        assert_eq!(doc.controllers, 10);
        let cold = &doc.results[0];
        let warm = &doc.results[1];
        assert_eq!((cold.case, warm.case), ("cold", "warm"));
        assert_eq!(cold.cache_hits, 0, "cold cycles never hit");
        assert_eq!(warm.cache_hits, 20 * 10, "warm cycles always hit");
        assert!(cold.p50 > 0.0 && cold.p50 <= cold.p99 && cold.p99 <= cold.max);
        assert!(cold.min <= cold.p50);
        assert!(cold.discovery_p50 <= cold.p50 && cold.discovery_p99 <= cold.max);
        assert!(cold.allocs_per_scrape > 0.0);
        assert_eq!((cold.smart_errors, cold.detect_errors), (0, 0));
        let v = serde_json::to_value(&doc).unwrap();
        assert_eq!(v["bench"], "nvme");
        assert_eq!(v["unit"], "us");
        assert_eq!(v["results"][1]["case"], "warm");
        assert_eq!(v["results"][2]["case"], "warm_parallel");
        assert_eq!(v["results"][2]["cache_hits"], 20 * 10);
        assert_eq!(v["parallel"], 4);
        assert!(v["ratio"]["warm_over_cold_p50"].as_f64().unwrap() > 0.0);
        assert!(v["ratio"]["parallel_over_warm_p50"].as_f64().unwrap() > 0.0);
    }

    #[test]
    fn bench_counts_device_failures() {
        let (mut t, list) = simulated_fleet(3);
        t.controllers.get_mut("nvme1").unwrap().fail_status = Some(0x4006);
        let s = Scraper::new(Discovery::Fixed(list), t, ScraperConfig::default());
        let (doc, first_error) = bench_doc(s, 4, "simulated", 5000, 1, 0).unwrap();
        assert_eq!(doc.results[0].smart_errors, 4);
        assert_eq!(doc.results[0].detect_errors, 4);
        assert!(first_error.unwrap().starts_with("nvme1: "));
    }
}

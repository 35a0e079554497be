//! One scrape cycle over every NVMe controller: discovery, type detection (cached), SMART /
//! health, the Amazon statistics page for EBS and instance-store devices, and optionally the
//! error log.
//!
//! Work is per controller, never per namespace: a controller with many namespaces gets one
//! detection and one read of each page. Page buffers come from a [`BufferPool`]. Each cycle's
//! wall time is recorded; a cycle slower than the configured budget is flagged in its report
//! and passed to the budget callback (the library itself never prints).

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dmremap_core::nvme::aws::{
    expected_kind, AwsDeviceKind, AwsStats, AwsStatsHeader, Direction, IoSizeBin, LatencyBin,
};
use dmremap_core::nvme::error_log::{ErrorLog, ErrorLogEntry, ERROR_ENTRY_LEN};
use dmremap_core::nvme::smart::SmartLog;

use super::admin::{
    identify_controller, read_aws_stats, read_error_log, read_smart_batch, AdminTransport,
    DeviceError,
};
use super::cache::{CacheStats, Detection, DeviceType, TypeCache};
use super::sysfs::{self, Controller};
use crate::bufpool::{BufferPool, PoolStats};
use crate::stats::percentile;

/// Unit of the page-buffer pool: a SMART log, an error log of up to 64 entries or an Identify
/// fills one; the 8 KiB instance-store statistics page takes two, contiguous.
const PAGE_UNIT: usize = 4096;

/// Where the controller list comes from.
#[derive(Clone, Debug)]
pub enum Discovery {
    /// Controllers under `<root>/class/nvme` (root is normally `/sys`). The list is walked in
    /// full on the first cycle and whenever a cheap check ([`sysfs::still_current`]: names,
    /// serials, namespace entries) sees a change; otherwise the previous list is reused.
    Sysfs(PathBuf),
    /// A fixed list (tests, simulations).
    Fixed(Vec<Controller>),
}

/// Scraper settings.
#[derive(Clone, Debug)]
pub struct ScraperConfig {
    /// Wall-time budget of one cycle; slower cycles are reported.
    pub budget: Duration,
    /// Error log entries to read per controller (0 = do not read the error log). Capped at what
    /// the controller keeps (Identify ELPE + 1).
    pub error_log_entries: u16,
    /// Read the error log only on a controller's first cycle and when the SMART log's count of
    /// error log entries changed since the previous read (otherwise every cycle).
    pub error_log_on_change: bool,
    /// Read the Amazon statistics page of EBS / instance-store devices.
    pub read_aws_stats: bool,
    /// Number of recent cycle times kept for [`Scraper::latency_summary`].
    pub keep_latencies: usize,
}

impl Default for ScraperConfig {
    fn default() -> Self {
        ScraperConfig {
            budget: Duration::from_millis(5),
            error_log_entries: 0,
            error_log_on_change: true,
            read_aws_stats: true,
            keep_latencies: 1024,
        }
    }
}

/// Owned copy of a statistics page's contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsSnapshot {
    /// Volume kind (confirmed by the page magic).
    pub kind: AwsDeviceKind,
    /// Scalar fields.
    pub header: AwsStatsHeader,
    /// Read latency bins.
    pub read: Vec<LatencyBin>,
    /// Write latency bins.
    pub write: Vec<LatencyBin>,
    /// Per-I/O-size histograms (instance store, version 1).
    pub io_size: Vec<IoSizeSnapshot>,
}

/// Owned copy of one per-I/O-size histogram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoSizeSnapshot {
    /// Exclusive lower I/O-size bound, bytes.
    pub io_size_low: u32,
    /// Inclusive upper I/O-size bound, bytes (u32::MAX = unbounded).
    pub io_size_high: u32,
    /// Read bins.
    pub read: Vec<IoSizeBin>,
    /// Write bins.
    pub write: Vec<IoSizeBin>,
}

impl AwsSnapshot {
    /// Copy everything out of a parsed page.
    pub fn from_stats(s: &AwsStats<'_>) -> Self {
        // Sized up front: the bin iterators cannot report their exact length.
        fn exact<I: Iterator>(len: usize, it: I) -> Vec<I::Item> {
            let mut v = Vec::with_capacity(len);
            v.extend(it);
            v
        }
        let (r, w) = (s.histogram(Direction::Read), s.histogram(Direction::Write));
        AwsSnapshot {
            kind: s.kind(),
            header: *s.header(),
            read: exact(r.len(), r.bins()),
            write: exact(w.len(), w.bins()),
            io_size: exact(
                s.io_size_histogram_count(),
                s.io_size_histograms().map(|h| IoSizeSnapshot {
                    io_size_low: h.io_size_low,
                    io_size_high: h.io_size_high,
                    read: exact(h.len(), h.bins(Direction::Read)),
                    write: exact(h.len(), h.bins(Direction::Write)),
                }),
            ),
        }
    }
}

/// What one cycle found on one controller.
#[derive(Debug)]
pub struct ControllerReport {
    /// Controller name (`nvme0`).
    pub name: String,
    /// Serial number (sysfs).
    pub serial: String,
    /// Model number (sysfs).
    pub model: String,
    /// Number of namespaces (and multipath paths) seen in sysfs.
    pub namespaces: usize,
    /// The namespaces themselves (block device, NSID, logical block size).
    pub namespace_list: Vec<sysfs::Namespace>,
    /// Device type, or why detection failed.
    pub device_type: Result<DeviceType, String>,
    /// True if the type came from the cache.
    pub cache_hit: bool,
    /// SMART / health log.
    pub smart: Result<SmartLog, DeviceError>,
    /// Amazon statistics (EBS / instance store only, if enabled).
    pub aws: Option<Result<AwsSnapshot, DeviceError>>,
    /// Non-empty error log entries (if enabled and read in this cycle; see
    /// [`ScraperConfig::error_log_on_change`]).
    pub errors: Option<Result<Vec<ErrorLogEntry>, DeviceError>>,
}

/// Result of one cycle.
#[derive(Debug)]
pub struct CycleReport {
    /// Per controller, in discovery order.
    pub controllers: Vec<ControllerReport>,
    /// Wall time of the cycle.
    pub elapsed: Duration,
    /// Part of `elapsed` spent listing the controllers (the sysfs walk).
    pub discovery: Duration,
    /// Budget the cycle was measured against.
    pub budget: Duration,
    /// True if `elapsed > budget`.
    pub over_budget: bool,
}

/// Passed to the budget callback when a cycle is too slow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetWarning {
    /// Wall time of the cycle.
    pub elapsed: Duration,
    /// The budget.
    pub budget: Duration,
    /// Controllers scraped in the cycle.
    pub controllers: usize,
}

/// Cycle-time statistics over the recent cycles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Cycles run since the scraper was made.
    pub cycles: u64,
    /// Cycles over budget since the scraper was made.
    pub over_budget: u64,
    /// Samples the percentiles below are computed over.
    pub samples: usize,
    /// Median of the recent cycles.
    pub p50: Duration,
    /// 99th percentile (nearest rank) of the recent cycles.
    pub p99: Duration,
    /// Slowest cycle since the scraper was made.
    pub max: Duration,
    /// Most recent cycle.
    pub last: Duration,
}

type BudgetCallback = Box<dyn FnMut(&BudgetWarning) + Send>;

/// The scraper.
pub struct Scraper<T: AdminTransport> {
    discovery: Discovery,
    transport: T,
    cache: TypeCache,
    pool: BufferPool,
    config: ScraperConfig,
    recent: VecDeque<Duration>,
    cycles: u64,
    over_budget: u64,
    max: Duration,
    on_over_budget: Option<BudgetCallback>,
    /// Controllers found by the last full sysfs walk.
    known: Option<Vec<Controller>>,
    /// Per controller: the SMART error log entry count at the last error log read.
    err_counts: std::collections::HashMap<String, u128>,
}

struct Detected {
    device_type: DeviceType,
    error_log_entries: u16,
}

/// What [`Scraper::detect_cached`] found for one controller.
struct Detection1 {
    detected: Result<Detected, String>,
    cache_hit: bool,
    /// The Amazon page read during detection (reused for the cycle's statistics).
    aws_from_detection: Option<AwsSnapshot>,
}

impl<T: AdminTransport> Scraper<T> {
    /// A scraper with a standard type cache and a pool keeping up to 16 idle 4 KiB units.
    pub fn new(discovery: Discovery, transport: T, config: ScraperConfig) -> Self {
        Scraper {
            discovery,
            transport,
            cache: TypeCache::new(),
            pool: BufferPool::new(PAGE_UNIT, PAGE_UNIT, 16).zero_on_return(),
            config,
            recent: VecDeque::new(),
            cycles: 0,
            over_budget: 0,
            max: Duration::ZERO,
            on_over_budget: None,
            known: None,
            err_counts: std::collections::HashMap::new(),
        }
    }

    /// Replace the type cache (e.g. one with other TTLs).
    pub fn with_cache(mut self, cache: TypeCache) -> Self {
        self.cache = cache;
        self
    }

    /// Call `f` after every cycle that exceeds the budget.
    pub fn on_over_budget(&mut self, f: impl FnMut(&BudgetWarning) + Send + 'static) {
        self.on_over_budget = Some(Box::new(f));
    }

    /// The settings.
    pub fn config(&self) -> &ScraperConfig {
        &self.config
    }

    /// Change the settings.
    pub fn config_mut(&mut self) -> &mut ScraperConfig {
        &mut self.config
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The transport, mutably.
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Forget every cached detection and the controller list (the next cycle walks sysfs and
    /// detects every controller again).
    pub fn clear_cache(&mut self) {
        self.cache.clear();
        self.known = None;
    }

    /// Type cache counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Buffer pool counters.
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Cycle-time statistics.
    pub fn latency_summary(&self) -> LatencySummary {
        let mut sorted: Vec<Duration> = self.recent.iter().copied().collect();
        sorted.sort_unstable();
        LatencySummary {
            cycles: self.cycles,
            over_budget: self.over_budget,
            samples: sorted.len(),
            p50: percentile(&sorted, 50),
            p99: percentile(&sorted, 99),
            max: self.max,
            last: self.recent.back().copied().unwrap_or(Duration::ZERO),
        }
    }

    fn controllers(&mut self) -> io::Result<Vec<Controller>> {
        match &self.discovery {
            Discovery::Sysfs(root) => {
                if let Some(list) = &self.known {
                    if sysfs::still_current(root, list)? {
                        return Ok(list.clone());
                    }
                }
                let list = sysfs::discover(root)?;
                self.known = Some(list.clone());
                Ok(list)
            }
            Discovery::Fixed(list) => Ok(list.clone()),
        }
    }

    /// Run one cycle over every controller. Fails only if discovery fails; per-device failures
    /// are in the report.
    pub fn scrape_cycle(&mut self) -> io::Result<CycleReport> {
        let start = Instant::now();
        self.cache.cleanup(start);
        let controllers = self.controllers()?;
        let discovery = start.elapsed();
        let mut reports = Vec::with_capacity(controllers.len());
        // Detection (cached) per controller, then the SMART logs of all controllers as one
        // batch (the transport may overlap the commands), then the rest per controller.
        let mut detections = Vec::with_capacity(controllers.len());
        for c in &controllers {
            detections.push(self.detect_cached(c, start));
        }
        let smart = {
            let names: Vec<&str> = controllers.iter().map(|c| c.name.as_str()).collect();
            let mut bufs: Vec<_> = names.iter().map(|_| self.pool.lease(512)).collect();
            read_smart_batch(&mut self.transport, &names, &mut bufs)
        };
        for ((c, d), sm) in controllers.into_iter().zip(detections).zip(smart) {
            reports.push(self.scrape_controller(c, d, sm));
        }
        let elapsed = start.elapsed();
        let budget = self.config.budget;
        let over = elapsed > budget;
        self.record(elapsed, over);
        if over {
            let w = BudgetWarning {
                elapsed,
                budget,
                controllers: reports.len(),
            };
            if let Some(cb) = self.on_over_budget.as_mut() {
                cb(&w);
            }
        }
        Ok(CycleReport {
            controllers: reports,
            elapsed,
            discovery,
            budget,
            over_budget: over,
        })
    }

    fn record(&mut self, elapsed: Duration, over: bool) {
        self.cycles += 1;
        if over {
            self.over_budget += 1;
        }
        self.max = self.max.max(elapsed);
        if self.config.keep_latencies > 0 {
            while self.recent.len() >= self.config.keep_latencies {
                self.recent.pop_front();
            }
            self.recent.push_back(elapsed);
        }
    }

    fn detect(&mut self, name: &str) -> Result<(Detection, Option<AwsSnapshot>), String> {
        let id = {
            let mut buf = self.pool.lease(4096);
            identify_controller(&mut self.transport, name, &mut buf).map_err(|e| e.to_string())?
        };
        let detection = |t: DeviceType| Detection {
            device_type: t,
            vid: id.vid,
            model: id.mn.to_string(),
            serial: id.sn.to_string(),
            firmware: id.fr.to_string(),
            error_log_entries: id.error_log_entries(),
        };
        match expected_kind(id.vid, id.mn.as_bytes()) {
            None => Ok((detection(DeviceType::Other), None)),
            Some(kind) => {
                let mut buf = self.pool.lease(kind.page_len());
                let stats = read_aws_stats(&mut self.transport, name, kind, &mut buf)
                    .map_err(|e| e.to_string())?;
                Ok((
                    detection(kind.into()),
                    Some(AwsSnapshot::from_stats(&stats)),
                ))
            }
        }
    }

    fn detect_cached(&mut self, c: &Controller, now: Instant) -> Detection1 {
        let name = &c.name;
        let mut aws_from_detection = None;
        let (detected, cache_hit) = match self.cache.lookup(name, &c.serial, now) {
            Some(Ok(d)) => (
                Ok(Detected {
                    device_type: d.device_type,
                    error_log_entries: d.error_log_entries,
                }),
                true,
            ),
            Some(Err(e)) => (Err(e.clone()), true),
            None => match self.detect(name) {
                Ok((d, aws)) => {
                    let out = Detected {
                        device_type: d.device_type,
                        error_log_entries: d.error_log_entries,
                    };
                    self.cache.store_success(name, &c.serial, d, now);
                    aws_from_detection = aws;
                    (Ok(out), false)
                }
                Err(e) => {
                    self.cache.store_failure(name, &c.serial, e.clone(), now);
                    (Err(e), false)
                }
            },
        };
        Detection1 {
            detected,
            cache_hit,
            aws_from_detection,
        }
    }

    fn scrape_controller(
        &mut self,
        c: Controller,
        d: Detection1,
        smart: Result<SmartLog, DeviceError>,
    ) -> ControllerReport {
        let name = c.name;
        let Detection1 {
            detected,
            cache_hit,
            mut aws_from_detection,
        } = d;

        let aws = match (&detected, self.config.read_aws_stats) {
            (Ok(d), true) => d
                .device_type
                .aws_kind()
                .map(|kind| match aws_from_detection.take() {
                    Some(snap) => Ok(snap),
                    None => {
                        let mut buf = self.pool.lease(kind.page_len());
                        read_aws_stats(&mut self.transport, &name, kind, &mut buf)
                            .map(|s| AwsSnapshot::from_stats(&s))
                    }
                }),
            _ => None,
        };

        let smart_err_count = smart.as_ref().ok().map(|s| s.num_err_log_entries);
        let error_log_due = match (self.config.error_log_on_change, smart_err_count) {
            (true, Some(n)) => self.err_counts.get(&name) != Some(&n),
            _ => true,
        };
        let errors = if self.config.error_log_entries > 0 && error_log_due {
            let keep = detected.as_ref().map(|d| d.error_log_entries).unwrap_or(1);
            let n = usize::from(self.config.error_log_entries.min(keep).max(1));
            let mut buf = self.pool.lease(n * ERROR_ENTRY_LEN);
            Some(
                read_error_log(&mut self.transport, &name, n, &mut buf).map(|len| {
                    if let Some(n) = smart_err_count {
                        self.err_counts.insert(name.clone(), n);
                    }
                    ErrorLog::new(&buf[..len])
                        .map(|l| l.non_empty().collect())
                        .unwrap_or_default()
                }),
            )
        } else {
            None
        };

        ControllerReport {
            namespaces: c.namespaces.len(),
            namespace_list: c.namespaces,
            serial: c.serial,
            model: c.model,
            name,
            device_type: detected.map(|d| d.device_type),
            cache_hit,
            smart,
            aws,
            errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvme::fake::{
        controller_record, FakeController, FakeSysfs, FakeSysfsController, FakeTransport,
    };
    use dmremap_core::nvme::{
        LID_AWS_STATS, LID_ERROR_INFO, LID_SMART, OPC_GET_LOG_PAGE, OPC_IDENTIFY,
    };
    use std::sync::{Arc, Mutex};

    const IDENT: (u8, u8) = (OPC_IDENTIFY, 1);
    const SMART: (u8, u8) = (OPC_GET_LOG_PAGE, LID_SMART);
    const AWS: (u8, u8) = (OPC_GET_LOG_PAGE, LID_AWS_STATS);

    fn fleet() -> (FakeTransport, Vec<Controller>) {
        let mut t = FakeTransport::new();
        t.insert("nvme0", FakeController::generic("qemu-serial"));
        t.insert("nvme1", FakeController::ebs("vol0123"));
        t.insert("nvme2", FakeController::instance_store("AWS1234"));
        let list = vec![
            controller_record("nvme0", &t.controllers["nvme0"], 8),
            controller_record("nvme1", &t.controllers["nvme1"], 1),
            controller_record("nvme2", &t.controllers["nvme2"], 1),
        ];
        (t, list)
    }

    #[test]
    fn detects_types_and_reads_pages_once_per_controller() {
        let (t, list) = fleet();
        let mut s = Scraper::new(Discovery::Fixed(list), t, ScraperConfig::default());
        let r = s.scrape_cycle().unwrap();
        assert_eq!(r.controllers.len(), 3);
        assert!(r.discovery <= r.elapsed);
        let types: Vec<_> = r
            .controllers
            .iter()
            .map(|c| c.device_type.clone().unwrap())
            .collect();
        assert_eq!(
            types,
            vec![
                DeviceType::Other,
                DeviceType::Ebs,
                DeviceType::InstanceStore
            ]
        );
        assert!(r.controllers.iter().all(|c| !c.cache_hit));
        assert_eq!(r.controllers[0].namespaces, 8);

        let t = s.transport();
        // nvme0 has 8 namespaces but gets one identify and one SMART read.
        assert_eq!(t.count("nvme0", IDENT.0, IDENT.1), 1);
        assert_eq!(t.count("nvme0", SMART.0, SMART.1), 1);
        assert_eq!(
            t.count("nvme0", AWS.0, AWS.1),
            0,
            "no vendor page read on a non-Amazon device"
        );
        // The Amazon page read during detection is reused for the cycle's statistics.
        assert_eq!(t.count("nvme1", AWS.0, AWS.1), 1);
        assert_eq!(t.count("nvme2", AWS.0, AWS.1), 1);
        // EBS page asked for namespace 1, 4096 bytes; instance store for all namespaces, 8192.
        let rec1 = t.log["nvme1"]
            .iter()
            .find(|r| r.opcode == OPC_GET_LOG_PAGE && r.id == LID_AWS_STATS)
            .unwrap();
        assert_eq!((rec1.nsid, rec1.len), (1, 4096));
        let rec2 = t.log["nvme2"]
            .iter()
            .find(|r| r.opcode == OPC_GET_LOG_PAGE && r.id == LID_AWS_STATS)
            .unwrap();
        assert_eq!((rec2.nsid, rec2.len), (0xFFFF_FFFF, 8192));

        let smart = r.controllers[1].smart.as_ref().unwrap();
        assert_eq!(smart.temperature, 310);
        assert_eq!(smart.data_units_read, 2001);
        let ebs = r.controllers[1].aws.as_ref().unwrap().as_ref().unwrap();
        assert_eq!(ebs.kind, AwsDeviceKind::Ebs);
        assert_eq!(ebs.header.total_write_ops, 2000);
        assert_eq!(ebs.read.len(), 20);
        assert!(ebs.io_size.is_empty());
        let is = r.controllers[2].aws.as_ref().unwrap().as_ref().unwrap();
        assert_eq!(is.io_size.len(), 3);
        assert_eq!(is.io_size[1].io_size_low, 4096);
        assert_eq!(is.io_size[1].read[5].count, 105);
        assert!(r.controllers[0].aws.is_none());
        assert!(
            r.controllers[0].errors.is_none(),
            "error log off by default"
        );
    }

    #[test]
    fn warm_cycles_hit_the_cache_and_skip_identify() {
        let (t, list) = fleet();
        let mut s = Scraper::new(Discovery::Fixed(list), t, ScraperConfig::default());
        s.scrape_cycle().unwrap();
        s.transport_mut().clear_log();
        let r = s.scrape_cycle().unwrap();
        assert!(r.controllers.iter().all(|c| c.cache_hit));
        let t = s.transport();
        for n in ["nvme0", "nvme1", "nvme2"] {
            assert_eq!(t.count(n, IDENT.0, IDENT.1), 0, "{n}");
            assert_eq!(t.count(n, SMART.0, SMART.1), 1, "{n}");
        }
        assert_eq!(
            t.count("nvme1", AWS.0, AWS.1),
            1,
            "statistics still read every cycle"
        );
        let st = s.cache_stats();
        assert_eq!((st.hits, st.misses, st.entries), (3, 3, 3));

        s.clear_cache();
        s.transport_mut().clear_log();
        s.scrape_cycle().unwrap();
        assert_eq!(
            s.transport().count("nvme2", IDENT.0, IDENT.1),
            1,
            "cold again after clear"
        );
    }

    #[test]
    fn failed_detection_is_cached_and_smart_still_tried() {
        let (mut t, list) = fleet();
        // nvme1 claims to be EBS but its page has the wrong magic.
        let mut bad = FakeController::ebs("vol0123");
        bad.aws =
            Some(crate::nvme::fake::aws_image(AwsDeviceKind::InstanceStore, 4)[..4096].to_vec());
        t.insert("nvme1", bad);
        let mut s = Scraper::new(Discovery::Fixed(list), t, ScraperConfig::default());
        let r = s.scrape_cycle().unwrap();
        let c = &r.controllers[1];
        let err = c.device_type.as_ref().unwrap_err();
        assert!(err.starts_with("nvme1: get log page 0xd0: "), "{err}");
        assert!(err.contains("does not match"), "{err}");
        assert!(c.smart.is_ok());
        assert!(c.aws.is_none());
        s.transport_mut().clear_log();
        let r = s.scrape_cycle().unwrap();
        assert!(r.controllers[1].cache_hit);
        assert!(r.controllers[1].device_type.is_err());
        assert_eq!(
            s.transport().count("nvme1", AWS.0, AWS.1),
            0,
            "failure remembered"
        );
    }

    #[test]
    fn failure_ttl_expires_and_device_is_retried() {
        let (t, list) = fleet();
        let mut s = Scraper::new(Discovery::Fixed(list), t, ScraperConfig::default()).with_cache(
            TypeCache::with_ttls(Duration::from_secs(300), Duration::ZERO),
        );
        s.transport_mut()
            .controllers
            .get_mut("nvme0")
            .unwrap()
            .fail_status = Some(0x4006);
        let r = s.scrape_cycle().unwrap();
        let e = r.controllers[0].device_type.as_ref().unwrap_err();
        assert_eq!(
            e,
            "nvme0: identify controller: Internal Error (status 0x4006)"
        );
        let smart_err = r.controllers[0].smart.as_ref().unwrap_err().to_string();
        assert_eq!(
            smart_err,
            "nvme0: get log page 0x02: Internal Error (status 0x4006)"
        );
        s.transport_mut()
            .controllers
            .get_mut("nvme0")
            .unwrap()
            .fail_status = None;
        let r = s.scrape_cycle().unwrap();
        assert!(
            !r.controllers[0].cache_hit,
            "zero failure TTL: retried at once"
        );
        assert_eq!(
            r.controllers[0].device_type.as_ref().unwrap(),
            &DeviceType::Other
        );
    }

    #[test]
    fn error_log_reading_is_capped_by_elpe() {
        let (t, list) = fleet();
        let cfg = ScraperConfig {
            error_log_entries: 64,
            ..ScraperConfig::default()
        };
        let mut s = Scraper::new(Discovery::Fixed(list), t, cfg);
        let r = s.scrape_cycle().unwrap();
        let errs = r.controllers[1].errors.as_ref().unwrap().as_ref().unwrap();
        assert_eq!(
            errs.iter().map(|e| e.error_count).collect::<Vec<_>>(),
            vec![2, 1]
        );
        let t = s.transport();
        let len = |n: &str| {
            t.log[n]
                .iter()
                .find(|r| r.opcode == OPC_GET_LOG_PAGE && r.id == LID_ERROR_INFO)
                .unwrap()
                .len
        };
        assert_eq!(len("nvme1"), 64 * 64, "EBS keeps 256, we asked for 64");
        assert_eq!(len("nvme2"), 64, "instance store keeps 1 (ELPE 0)");
        assert!(r.controllers[0]
            .errors
            .as_ref()
            .unwrap()
            .as_ref()
            .unwrap()
            .is_empty());
    }

    #[test]
    fn error_log_is_read_only_when_the_smart_count_moves() {
        let (t, list) = fleet();
        let cfg = ScraperConfig {
            error_log_entries: 4,
            ..ScraperConfig::default()
        };
        let mut s = Scraper::new(Discovery::Fixed(list), t, cfg);
        let reads = |s: &Scraper<FakeTransport>| {
            s.transport()
                .count("nvme0", OPC_GET_LOG_PAGE, LID_ERROR_INFO)
        };
        let r = s.scrape_cycle().unwrap();
        assert!(r.controllers[0].errors.is_some(), "first cycle reads");
        assert_eq!(reads(&s), 1);
        let r = s.scrape_cycle().unwrap();
        assert!(
            r.controllers[0].errors.is_none(),
            "count unchanged: no read"
        );
        assert_eq!(reads(&s), 1);
        // The controller logs an error: the SMART count moves, the next cycle reads the log.
        let mut smart = SmartLog::decode(&s.transport().controllers["nvme0"].smart).unwrap();
        smart.num_err_log_entries += 1;
        smart
            .encode(
                &mut s
                    .transport_mut()
                    .controllers
                    .get_mut("nvme0")
                    .unwrap()
                    .smart,
            )
            .unwrap();
        let r = s.scrape_cycle().unwrap();
        assert!(r.controllers[0].errors.is_some());
        assert_eq!(reads(&s), 2);
        s.scrape_cycle().unwrap();
        assert_eq!(reads(&s), 2);
        // Without the rule, every cycle reads.
        s.config_mut().error_log_on_change = false;
        s.scrape_cycle().unwrap();
        assert_eq!(reads(&s), 3);
    }

    #[test]
    fn budget_warning_goes_to_the_callback() {
        let (t, list) = fleet();
        let cfg = ScraperConfig {
            budget: Duration::ZERO,
            ..ScraperConfig::default()
        };
        let mut s = Scraper::new(Discovery::Fixed(list), t, cfg);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        s.on_over_budget(move |w| sink.lock().unwrap().push(*w));
        let r = s.scrape_cycle().unwrap();
        assert!(r.over_budget);
        let w = seen.lock().unwrap().clone();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].controllers, 3);
        assert_eq!(w[0].elapsed, r.elapsed);

        s.config_mut().budget = Duration::from_secs(3600);
        let r = s.scrape_cycle().unwrap();
        assert!(!r.over_budget);
        assert_eq!(seen.lock().unwrap().len(), 1, "no warning within budget");
        let l = s.latency_summary();
        assert_eq!((l.cycles, l.over_budget, l.samples), (2, 1, 2));
        assert!(l.max >= l.p50 && l.p99 >= l.p50);
        assert_eq!(l.last, r.elapsed);
    }

    #[test]
    fn pool_buffers_are_reused_across_cycles() {
        let (t, list) = fleet();
        let mut s = Scraper::new(Discovery::Fixed(list), t, ScraperConfig::default());
        s.scrape_cycle().unwrap();
        let after_first = s.pool_stats().allocated;
        for _ in 0..5 {
            s.scrape_cycle().unwrap();
        }
        let p = s.pool_stats();
        assert_eq!(
            p.allocated, after_first,
            "steady state allocates no new page buffers"
        );
        assert!(p.reused > 0);
        assert_eq!(p.leased_units, 0, "every lease returned");
    }

    #[test]
    fn scrapes_a_fake_sysfs_tree_and_notices_a_replaced_device() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FakeSysfs::new(dir.path());
        let sys = |serial: &str| FakeSysfsController {
            name: "nvme0".into(),
            model: "Amazon Elastic Block Store".into(),
            serial: serial.into(),
            firmware_rev: "2.0".into(),
            pci_vendor: Some(0x1d0f),
            namespaces: vec![("nvme0n1".into(), 2048, 512), ("nvme0n2".into(), 2048, 512)],
        };
        fs.add(&sys("vol0123")).unwrap();
        let mut t = FakeTransport::new();
        t.insert("nvme0", FakeController::ebs("vol0123"));
        let mut s = Scraper::new(
            Discovery::Sysfs(dir.path().to_path_buf()),
            t,
            ScraperConfig::default(),
        );
        let r = s.scrape_cycle().unwrap();
        assert_eq!(r.controllers.len(), 1);
        assert_eq!(r.controllers[0].serial, "vol0123");
        assert_eq!(r.controllers[0].namespaces, 2);
        assert_eq!(
            r.controllers[0].device_type.as_ref().unwrap(),
            &DeviceType::Ebs
        );
        assert!(s.scrape_cycle().unwrap().controllers[0].cache_hit);
        // Another volume appears under the same name: the cached type is not reused.
        fs.add(&sys("vol0999")).unwrap();
        s.transport_mut()
            .insert("nvme0", FakeController::ebs("vol0999"));
        assert!(!s.scrape_cycle().unwrap().controllers[0].cache_hit);
    }

    #[test]
    fn reused_controller_list_notices_changes() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FakeSysfs::new(dir.path());
        let sys = |name: &str, serial: &str, ns: usize| FakeSysfsController {
            name: name.into(),
            model: "QEMU NVMe Ctrl".into(),
            serial: serial.into(),
            firmware_rev: "1.0".into(),
            pci_vendor: Some(0x1b36),
            namespaces: (1..=ns)
                .map(|i| (format!("{name}n{i}"), 2048, 512))
                .collect(),
        };
        fs.add(&sys("nvme0", "A", 1)).unwrap();
        let root = dir.path().to_path_buf();
        let list = sysfs::discover(&root).unwrap();
        assert!(sysfs::still_current(&root, &list).unwrap());
        // A new controller, a replaced serial, a new namespace: each is a change.
        fs.add(&sys("nvme1", "B", 1)).unwrap();
        assert!(!sysfs::still_current(&root, &list).unwrap());
        let list = sysfs::discover(&root).unwrap();
        assert_eq!(list.len(), 2);
        fs.add(&sys("nvme1", "C", 1)).unwrap();
        assert!(!sysfs::still_current(&root, &list).unwrap());
        let list = sysfs::discover(&root).unwrap();
        fs.add(&sys("nvme0", "A", 2)).unwrap();
        assert!(!sysfs::still_current(&root, &list).unwrap());
        let list = sysfs::discover(&root).unwrap();
        assert!(sysfs::still_current(&root, &list).unwrap());
        assert!(!sysfs::still_current(&root, &list[..1]).unwrap());

        let mut t = FakeTransport::new();
        t.insert("nvme0", FakeController::generic("A"));
        t.insert("nvme1", FakeController::generic("C"));
        let mut s = Scraper::new(Discovery::Sysfs(root), t, ScraperConfig::default());
        assert_eq!(s.scrape_cycle().unwrap().controllers.len(), 2);
        fs.add(&sys("nvme2", "D", 1)).unwrap();
        s.transport_mut()
            .insert("nvme2", FakeController::generic("D"));
        let r = s.scrape_cycle().unwrap();
        assert_eq!(
            r.controllers.len(),
            3,
            "the new controller is found on the next cycle"
        );
    }
}

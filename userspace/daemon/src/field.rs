//! What an operator needs from the daemon on a real machine:
//!
//! - [`DeviceCollector`]: per-device gauges read at scrape time from the `remap` targets' status
//!   (so they exist from the first scrape, survive restarts and never go stale), an `_info`
//!   metric joining the device-mapper name to its main and spare disks and the NVMe controller,
//!   and `dmremapd_build_info`;
//! - [`ProcessCollector`]: `process_start_time_seconds` (the standard, unprefixed name);
//! - [`JournalSink`]: critical events logged at warning or above, so they reach the journal
//!   with a matching priority (see `logging`).

use std::io;
use std::path::{Path, PathBuf};

use dmremap_lib::dm::{RemapStatus, SegmentTotals};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::event::{Event, EventKind};
use crate::metrics::escape_label;
use crate::pipeline::Sink;

/// Every state the target's status reports (`dmremapd_device_state{state=...}` has one series
/// per state, 1 for the current one).
pub const STATES: [&str; 3] = ["active", "spare_exhausted", "metadata_error"];

/// One `remap` segment as its status and table show it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentStatus {
    /// Device-mapper name.
    pub dm: String,
    /// Kernel name of the main device (`nvme0n1`).
    pub main: String,
    /// Kernel name of the spare device.
    pub spare: String,
    /// NVMe controller of the main device (`nvme0`), empty for other disks.
    pub controller: String,
    /// The segment's status (`state` is `active`, `spare_exhausted` or `metadata_error`).
    pub status: RemapStatus,
}

/// Reads the status of every `remap` segment.
pub trait DeviceStatus: Send + Sync {
    fn segments(&self) -> io::Result<Vec<SegmentStatus>>;
}

/// The real one: device-mapper ioctls (`DM_LIST_DEVICES`, `DM_TABLE_STATUS`) and sysfs names.
pub struct DmDeviceStatus {
    sys_dev_block: PathBuf,
}

impl DmDeviceStatus {
    pub fn new() -> DmDeviceStatus {
        DmDeviceStatus {
            sys_dev_block: PathBuf::from("/sys/dev/block"),
        }
    }
}

impl Default for DmDeviceStatus {
    fn default() -> Self {
        Self::new()
    }
}

/// Kernel name of block device `majmin` (`259:0` -> `nvme0n1`), or `majmin` itself.
pub fn kernel_name(sys_dev_block: &Path, majmin: &str) -> String {
    std::fs::canonicalize(sys_dev_block.join(majmin))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| majmin.to_string())
}

/// The NVMe controller (`nvme0`) block device `majmin` belongs to, or empty.
pub fn nvme_controller(sys_dev_block: &Path, majmin: &str) -> String {
    // A namespace's `device` link points at its controller; a partition's parent is the
    // namespace.
    let dir = match std::fs::canonicalize(sys_dev_block.join(majmin)) {
        Ok(d) => d,
        Err(_) => return String::new(),
    };
    let disk = if dir.join("partition").exists() {
        dir.parent().map(Path::to_path_buf).unwrap_or(dir)
    } else {
        dir
    };
    let Ok(dev) = std::fs::canonicalize(disk.join("device")) else {
        return String::new();
    };
    let name = dev
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let is_ctrl = |n: &str| {
        n.strip_prefix("nvme")
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    };
    if is_ctrl(&name) {
        return name;
    }
    // Native NVMe multipath: the namespace hangs off its subsystem, which links its
    // controllers (`nvme-subsys0/nvme0`, `nvme1`, ...).
    if name.starts_with("nvme-subsys") {
        let mut ctrls: Vec<String> = std::fs::read_dir(&dev)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| is_ctrl(n))
            .collect();
        ctrls.sort();
        return ctrls.join(",");
    }
    String::new()
}

impl DeviceStatus for DmDeviceStatus {
    fn segments(&self) -> io::Result<Vec<SegmentStatus>> {
        let dm = dmremap_lib::dm::Dm::open().map_err(io::Error::other)?;
        let devs = dm.list_remap_devices().map_err(io::Error::other)?;
        let mut out = Vec::new();
        for d in devs {
            for s in d.remap_segments() {
                let (Some(t), Some(st)) = (&s.table, &s.status) else {
                    continue;
                };
                out.push(SegmentStatus {
                    dm: d.info.name.clone(),
                    main: kernel_name(&self.sys_dev_block, &t.main),
                    spare: kernel_name(&self.sys_dev_block, &t.spare),
                    controller: nvme_controller(&self.sys_dev_block, &t.main),
                    status: st.clone(),
                });
            }
        }
        Ok(out)
    }
}

/// Per-device metrics at scrape time, summed over a device's segments (the state is the worst
/// one: `metadata_error` over `spare_exhausted` over `active`).
pub struct DeviceCollector {
    pub status: Box<dyn DeviceStatus>,
}

impl std::fmt::Debug for DeviceCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceCollector")
    }
}

/// Each device's counters over its segments, devices in order of their first segment.
fn totals(segs: &[SegmentStatus]) -> Vec<(String, SegmentTotals)> {
    let mut out: Vec<(String, SegmentTotals)> = Vec::new();
    for s in segs {
        let i = match out.iter().position(|(n, _)| *n == s.dm) {
            Some(i) => i,
            None => {
                out.push((s.dm.clone(), SegmentTotals::default()));
                out.len() - 1
            }
        };
        out[i].1.add(&s.status);
    }
    out
}

fn gauges(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&prometheus_client::registry::Unit>,
    values: &[(String, i64)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (dev, v) in values {
        ConstGauge::new(*v).encode(m.encode_family(&[("device", dev.as_str())])?)?;
    }
    Ok(())
}

fn counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(String, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (dev, v) in values {
        ConstCounter::new(*v).encode(m.encode_family(&[("device", dev.as_str())])?)?;
    }
    Ok(())
}

impl Collector for DeviceCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        {
            let mut m = enc.encode_descriptor(
                "build_info",
                "dmremapd build: version label, value 1",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(1i64)
                .encode(m.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?)?;
        }
        let segs = match self.status.segments() {
            Ok(s) => s,
            Err(e) => {
                log::debug!("device status: {e}");
                Vec::new()
            }
        };
        {
            let mut m = enc.encode_descriptor(
                "device_info",
                "A remap segment's device-mapper name, main and spare disks and NVMe controller (value 1)",
                None,
                MetricType::Gauge,
            )?;
            for s in &segs {
                let l = [
                    ("dm", escape_label(&s.dm)),
                    ("main", escape_label(&s.main)),
                    ("spare", escape_label(&s.spare)),
                    ("controller", escape_label(&s.controller)),
                ];
                let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
                ConstGauge::new(1i64).encode(m.encode_family(&l)?)?;
            }
        }
        let t = totals(&segs);
        let dev = |f: fn(&SegmentTotals) -> u64| -> Vec<(String, i64)> {
            t.iter()
                .map(|(n, x)| (escape_label(n), f(x) as i64))
                .collect()
        };
        let cnt = |f: fn(&SegmentTotals) -> u64| -> Vec<(String, u64)> {
            t.iter().map(|(n, x)| (escape_label(n), f(x))).collect()
        };
        gauges(
            &mut enc,
            "remapped_blocks",
            "Blocks of the device living on its spare (target status)",
            None,
            &dev(|x| x.remapped),
        )?;
        gauges(
            &mut enc,
            "pending_blocks",
            "Unreadable blocks waiting for a rewrite (target status)",
            None,
            &dev(|x| x.pending),
        )?;
        gauges(
            &mut enc,
            "spare_used_blocks",
            "Spare slots in use (target status)",
            None,
            &dev(|x| x.spare_used),
        )?;
        gauges(
            &mut enc,
            "spare_total_blocks",
            "Spare slots in all (target status)",
            None,
            &dev(|x| x.spare_total),
        )?;
        counters(
            &mut enc,
            "read_errors",
            "Read errors of the main device seen by the target (reset by clear_stats)",
            &cnt(|x| x.read_errors),
        )?;
        counters(
            &mut enc,
            "write_errors",
            "Write errors of the main device seen by the target (reset by clear_stats)",
            &cnt(|x| x.write_errors),
        )?;
        let mut m = enc.encode_descriptor(
            "device_state",
            "Target state: 1 for the current one of active, spare_exhausted, metadata_error",
            None,
            MetricType::Gauge,
        )?;
        for (n, x) in &t {
            let n = escape_label(n);
            for s in STATES {
                let v = i64::from(x.worst_state() == s);
                ConstGauge::new(v)
                    .encode(m.encode_family(&[("device", n.as_str()), ("state", s)])?)?;
            }
        }
        Ok(())
    }
}

/// `process_start_time_seconds`: when the daemon started, seconds since the epoch.
#[derive(Debug)]
pub struct ProcessCollector {
    pub start_time_s: f64,
}

impl ProcessCollector {
    pub fn now() -> ProcessCollector {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        ProcessCollector { start_time_s: t }
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = enc.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.start_time_s).encode(m)
    }
}

/// How an event is logged: `None` for routine events.
pub fn severity(kind: &EventKind) -> Option<log::Level> {
    match kind {
        EventKind::SpareExhausted { .. } | EventKind::MetadataWriteError { .. } => {
            Some(log::Level::Error)
        }
        EventKind::NvmeHealth {
            critical_warning, ..
        } if *critical_warning != 0 => Some(log::Level::Error),
        EventKind::SpareLow { .. }
        | EventKind::PendingMarked { .. }
        | EventKind::KernelEventsLost { .. }
        | EventKind::ScrubUnreadable { .. } => Some(log::Level::Warn),
        EventKind::IoError { .. } => Some(log::Level::Warn),
        _ => None,
    }
}

/// Logs critical events (see [`severity`]) with the device and the event's fields.
pub struct JournalSink;

impl Sink for JournalSink {
    fn name(&self) -> &str {
        "journal"
    }

    fn write_batch(&mut self, batch: &[Event]) -> io::Result<()> {
        for ev in batch {
            if let Some(level) = severity(&ev.kind) {
                let fields = serde_json::to_value(ev)
                    .ok()
                    .and_then(|v| v.get("fields").cloned())
                    .unwrap_or_default();
                log::log!(
                    level,
                    "{} {}: {} {}",
                    ev.source,
                    ev.device,
                    ev.kind.name(),
                    fields
                );
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<SegmentStatus>);
    impl DeviceStatus for Fixed {
        fn segments(&self) -> io::Result<Vec<SegmentStatus>> {
            Ok(self.0.clone())
        }
    }

    fn seg(dm: &str, remapped: u64, state: &str) -> SegmentStatus {
        SegmentStatus {
            dm: dm.into(),
            main: "nvme0n1".into(),
            spare: "vda".into(),
            controller: "nvme0".into(),
            status: RemapStatus {
                remapped,
                pending: 1,
                spare_used: remapped,
                spare_total: 100,
                read_errors: 2,
                write_errors: 3,
                metadata_seq: 0,
                state: state.into(),
                extra: vec![],
            },
        }
    }

    #[test]
    fn segments_sum_per_device_worst_state_wins() {
        let t = totals(&[
            seg("r0", 5, "active"),
            seg("r0", 7, "spare_exhausted"),
            seg("r1", 1, "active"),
        ]);
        assert_eq!(t.len(), 2);
        let r0 = &t[0].1;
        assert_eq!((r0.remapped, r0.pending, r0.spare_total), (12, 2, 200));
        assert_eq!(r0.worst_state(), "spare_exhausted");
        assert_eq!(t[1].1.worst_state(), "active");
    }

    #[test]
    fn severities() {
        assert_eq!(
            severity(&EventKind::SpareExhausted {
                sector: 0,
                total: 1
            }),
            Some(log::Level::Error)
        );
        assert_eq!(
            severity(&EventKind::PendingMarked {
                sector: 0,
                sectors: 8
            }),
            Some(log::Level::Warn)
        );
        assert_eq!(
            severity(&EventKind::RemapDone {
                sector: 0,
                sectors: 8,
                spare_slot: 0,
                cause: crate::event::RemapCause::Manual
            }),
            None
        );
    }

    #[test]
    fn names_from_sysfs() {
        let d = tempfile::tempdir().unwrap();
        let ctrl = d.path().join("devices/nvme0");
        let ns = ctrl.join("nvme0n1");
        std::fs::create_dir_all(ns.join("nvme0n1p1")).unwrap();
        std::fs::write(ns.join("nvme0n1p1/partition"), "1").unwrap();
        std::os::unix::fs::symlink(&ctrl, ns.join("device")).unwrap();
        let b = d.path().join("dev/block");
        std::fs::create_dir_all(&b).unwrap();
        std::os::unix::fs::symlink(&ns, b.join("259:0")).unwrap();
        std::os::unix::fs::symlink(ns.join("nvme0n1p1"), b.join("259:1")).unwrap();
        assert_eq!(kernel_name(&b, "259:0"), "nvme0n1");
        assert_eq!(kernel_name(&b, "9:9"), "9:9");
        assert_eq!(nvme_controller(&b, "259:0"), "nvme0");
        assert_eq!(nvme_controller(&b, "259:1"), "nvme0");
        assert_eq!(nvme_controller(&b, "9:9"), "");
        // Multipath: the namespace's device is the subsystem, which links the controllers.
        let subsys = d.path().join("devices/virtual/nvme-subsystem/nvme-subsys0");
        let head = subsys.join("nvme0n2");
        std::fs::create_dir_all(&head).unwrap();
        std::os::unix::fs::symlink(&subsys, head.join("device")).unwrap();
        std::os::unix::fs::symlink(&ctrl, subsys.join("nvme0")).unwrap();
        std::fs::create_dir_all(subsys.join("power")).unwrap();
        std::os::unix::fs::symlink(&head, b.join("259:5")).unwrap();
        assert_eq!(kernel_name(&b, "259:5"), "nvme0n2");
        assert_eq!(nvme_controller(&b, "259:5"), "nvme0");
    }

    #[test]
    fn exposition_has_every_device_metric() {
        let mut r = prometheus_client::registry::Registry::with_prefix("dmremapd");
        r.register_collector(Box::new(DeviceCollector {
            status: Box::new(Fixed(vec![seg("r0", 5, "metadata_error")])),
        }));
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &r).unwrap();
        for want in [
            "dmremapd_build_info{version=\"",
            "dmremapd_device_info{dm=\"r0\",main=\"nvme0n1\",spare=\"vda\",controller=\"nvme0\"} 1",
            "dmremapd_remapped_blocks{device=\"r0\"} 5",
            "dmremapd_pending_blocks{device=\"r0\"} 1",
            "dmremapd_spare_used_blocks{device=\"r0\"} 5",
            "dmremapd_spare_total_blocks{device=\"r0\"} 100",
            "dmremapd_read_errors_total{device=\"r0\"} 2",
            "dmremapd_write_errors_total{device=\"r0\"} 3",
            "dmremapd_device_state{device=\"r0\",state=\"metadata_error\"} 1",
            "dmremapd_device_state{device=\"r0\",state=\"active\"} 0",
        ] {
            assert!(s.contains(want), "missing {want} in\n{s}");
        }
    }
}

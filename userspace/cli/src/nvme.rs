//! `dmremap nvme ...`: list controllers, show the SMART / health log, the error log and the
//! Amazon statistics page, and benchmark scrape cycles.
//!
//! JSON output uses the key names of nvme-cli's `-o json` output where nvme-cli has the field
//! (`nvme list`, `nvme smart-log`, `nvme error-log`, and the Amazon plugin's `stats`), so the two
//! can be compared key by key. 128-bit SMART counters are printed as plain JSON integers.
//!
//! The sysfs root and the device directory default to `/sys` and `/dev`; the environment
//! variables `DMREMAP_SYSFS_ROOT` and `DMREMAP_DEV_DIR` override them (used by tests).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use dmremap_core::nvme::aws::{expected_kind, LatencyBin};
use dmremap_core::nvme::error_log::{ErrorLog, ErrorLogEntry, ERROR_ENTRY_LEN};
use dmremap_core::nvme::identify::IDENTIFY_LEN;
use dmremap_core::nvme::smart::{SmartLog, SMART_LOG_LEN};
use dmremap_lib::nvme::admin::{
    identify_controller, read_aws_stats, read_error_log, read_smart, unsupported, AdminError,
    DeviceError, DeviceErrorCause, IoctlTransport,
};
use dmremap_lib::nvme::scraper::{AwsSnapshot, IoSizeSnapshot};
use dmremap_lib::nvme::sysfs::{discover, resolve_controller, Controller};
use dmremap_lib::nvme::AdminTransport;

use crate::error::{CliError, Kind};

/// `dmremap nvme` subcommands.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum NvmeCmd {
    /// List NVMe controllers and their namespaces (from sysfs).
    List,
    /// Show the SMART / health log of a controller.
    Smart {
        /// Device: /dev/nvme0, /dev/nvme0n1 or nvme0.
        dev: String,
    },
    /// Show the error information log of a controller.
    Errors {
        /// Device: /dev/nvme0, /dev/nvme0n1 or nvme0.
        dev: String,
        /// Entries to read (default 64), capped at what the controller keeps (ELPE + 1).
        #[arg(long)]
        entries: Option<u16>,
    },
    /// Show the Amazon EBS / EC2 instance-store statistics page (log page 0xd0).
    AwsStats {
        /// Device: /dev/nvme0, /dev/nvme0n1 or nvme0.
        dev: String,
    },
    /// Time scrape cycles over every controller, with a cold and a warm type cache.
    #[cfg(feature = "devtools")]
    Bench(crate::nvme_bench::BenchArgs),
}

/// Run one `dmremap nvme` subcommand.
pub fn run(cmd: &NvmeCmd, json: bool) -> Result<(), CliError> {
    match cmd {
        NvmeCmd::List => cmd_list(&sysfs_root(), json),
        NvmeCmd::Smart { dev } => cmd_smart(dev, json),
        NvmeCmd::Errors { dev, entries } => cmd_errors(dev, *entries, json),
        NvmeCmd::AwsStats { dev } => cmd_aws_stats(dev, json),
        #[cfg(feature = "devtools")]
        NvmeCmd::Bench(a) => crate::nvme_bench::run(a, json),
    }
}

pub(crate) fn sysfs_root() -> PathBuf {
    std::env::var_os("DMREMAP_SYSFS_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/sys"))
}

pub(crate) fn dev_dir() -> PathBuf {
    std::env::var_os("DMREMAP_DEV_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/dev"))
}

pub(crate) fn discover_all(root: &Path) -> Result<Vec<Controller>, CliError> {
    discover(root).map_err(|e| CliError::failed(format!("NVMe discovery: {e}")))
}

/// The controller name for a device argument.
fn resolve(dev: &str) -> Result<String, CliError> {
    let ctrls = discover_all(&sysfs_root())?;
    resolve_controller(&ctrls, dev)
        .map(|c| c.name.clone())
        .map_err(|m| CliError::new(Kind::NoDevice, m))
}

fn device_error(e: DeviceError) -> CliError {
    let kind = match &e.cause {
        DeviceErrorCause::Unsupported(_) => Kind::Unsupported,
        DeviceErrorCause::Admin(AdminError::Io(io))
            if io.kind() == std::io::ErrorKind::NotFound =>
        {
            Kind::NoDevice
        }
        _ => Kind::Failed,
    };
    CliError::new(kind, e.to_string())
}

fn print_json<T: Serialize>(v: &T) -> Result<(), CliError> {
    let s = serde_json::to_string_pretty(v)
        .map_err(|e| CliError::failed(format!("JSON output: {e}")))?;
    println!("{s}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// list

#[derive(Serialize)]
struct ListDevice {
    #[serde(rename = "NameSpace")]
    namespace: u32,
    #[serde(rename = "DevicePath")]
    device_path: String,
    #[serde(rename = "Firmware")]
    firmware: String,
    #[serde(rename = "ModelNumber")]
    model: String,
    #[serde(rename = "SerialNumber")]
    serial: String,
    #[serde(rename = "MaximumLBA")]
    maximum_lba: u64,
    #[serde(rename = "PhysicalSize")]
    physical_size: u64,
    #[serde(rename = "SectorSize")]
    sector_size: u32,
    /// Not in nvme-cli: the controller the namespace was found under.
    #[serde(rename = "Controller")]
    controller: String,
}

#[derive(Serialize)]
struct ListJson {
    #[serde(rename = "Devices")]
    devices: Vec<ListDevice>,
}

fn list_devices(ctrls: &[Controller]) -> Vec<ListDevice> {
    let mut out: Vec<ListDevice> = Vec::new();
    for c in ctrls {
        for n in &c.namespaces {
            let path = format!("/dev/{}", n.block_device);
            // With multipath several controllers reach one namespace: list it once.
            if out.iter().any(|d| d.device_path == path) {
                continue;
            }
            out.push(ListDevice {
                namespace: n.nsid,
                device_path: path,
                firmware: c.firmware_rev.clone(),
                model: c.model.clone(),
                serial: c.serial.clone(),
                maximum_lba: n.logical_blocks(),
                physical_size: n.size_bytes,
                sector_size: n.logical_block_size,
                controller: c.name.clone(),
            });
        }
    }
    out
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    format!("{v:.2} {}", UNITS[i])
}

fn cmd_list(root: &Path, json: bool) -> Result<(), CliError> {
    let ctrls = discover_all(root)?;
    if json {
        return print_json(&ListJson {
            devices: list_devices(&ctrls),
        });
    }
    if ctrls.is_empty() {
        println!("No NVMe controllers found.");
        return Ok(());
    }
    println!(
        "{:<16} {:<8} {:<20} {:<40} {:<9} {:<12} {:<8} {:<8}",
        "Node", "Ctrl", "SN", "Model", "Namespace", "Size", "Format", "FW Rev"
    );
    println!("{}", "-".repeat(16 + 8 + 20 + 40 + 9 + 12 + 8 + 8 + 7));
    for c in &ctrls {
        if c.namespaces.is_empty() {
            println!(
                "{:<16} {:<8} {:<20} {:<40} {:<9} {:<12} {:<8} {:<8}",
                "-", c.name, c.serial, c.model, "-", "-", "-", c.firmware_rev
            );
        }
        for n in &c.namespaces {
            println!(
                "{:<16} {:<8} {:<20} {:<40} {:<9} {:<12} {:<8} {:<8}",
                format!("/dev/{}", n.block_device),
                c.name,
                c.serial,
                c.model,
                n.nsid,
                human_size(n.size_bytes),
                format!("{} B", n.logical_block_size),
                c.firmware_rev
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// smart

/// SMART log in nvme-cli's `smart-log -o json` layout: same keys, same order; temperatures in
/// Kelvin; temperature sensors only when non-zero.
struct SmartJson<'a>(&'a SmartLog);

impl Serialize for SmartJson<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let s = self.0;
        let mut m = ser.serialize_map(None)?;
        m.serialize_entry("critical_warning", &s.critical_warning)?;
        m.serialize_entry("temperature", &s.temperature)?;
        m.serialize_entry("avail_spare", &s.avail_spare)?;
        m.serialize_entry("spare_thresh", &s.spare_thresh)?;
        m.serialize_entry("percent_used", &s.percent_used)?;
        m.serialize_entry(
            "endurance_grp_critical_warning_summary",
            &s.endurance_grp_critical_warning_summary,
        )?;
        m.serialize_entry("data_units_read", &s.data_units_read)?;
        m.serialize_entry("data_units_written", &s.data_units_written)?;
        m.serialize_entry("host_read_commands", &s.host_read_commands)?;
        m.serialize_entry("host_write_commands", &s.host_write_commands)?;
        m.serialize_entry("controller_busy_time", &s.controller_busy_time)?;
        m.serialize_entry("power_cycles", &s.power_cycles)?;
        m.serialize_entry("power_on_hours", &s.power_on_hours)?;
        m.serialize_entry("unsafe_shutdowns", &s.unsafe_shutdowns)?;
        m.serialize_entry("media_errors", &s.media_errors)?;
        m.serialize_entry("num_err_log_entries", &s.num_err_log_entries)?;
        m.serialize_entry("warning_temp_time", &s.warning_temp_time)?;
        m.serialize_entry("critical_comp_time", &s.critical_comp_time)?;
        for (n, k) in s.sensors() {
            m.serialize_entry(&format!("temperature_sensor_{n}"), &k)?;
        }
        m.serialize_entry("thm_temp1_trans_count", &s.thm_temp1_trans_count)?;
        m.serialize_entry("thm_temp2_trans_count", &s.thm_temp2_trans_count)?;
        m.serialize_entry("thm_temp1_total_time", &s.thm_temp1_total_time)?;
        m.serialize_entry("thm_temp2_total_time", &s.thm_temp2_total_time)?;
        m.end()
    }
}

fn kelvin(k: u16) -> String {
    format!("{}°C ({} Kelvin)", i32::from(k) - 273, k)
}

fn smart_text(name: &str, s: &SmartLog) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let mut line = |k: &str, v: String| {
        let _ = writeln!(o, "{k:<40}: {v}");
    };
    line("critical_warning", format!("{:#x}", s.critical_warning));
    line("temperature", kelvin(s.temperature));
    line("available_spare", format!("{}%", s.avail_spare));
    line("available_spare_threshold", format!("{}%", s.spare_thresh));
    line("percentage_used", format!("{}%", s.percent_used));
    line(
        "endurance group critical warning summary",
        format!("{:#x}", s.endurance_grp_critical_warning_summary),
    );
    line("data_units_read", s.data_units_read.to_string());
    line("data_units_written", s.data_units_written.to_string());
    line("host_read_commands", s.host_read_commands.to_string());
    line("host_write_commands", s.host_write_commands.to_string());
    line("controller_busy_time", s.controller_busy_time.to_string());
    line("power_cycles", s.power_cycles.to_string());
    line("power_on_hours", s.power_on_hours.to_string());
    line("unsafe_shutdowns", s.unsafe_shutdowns.to_string());
    line("media_errors", s.media_errors.to_string());
    line("num_err_log_entries", s.num_err_log_entries.to_string());
    line("Warning Temperature Time", s.warning_temp_time.to_string());
    line(
        "Critical Composite Temperature Time",
        s.critical_comp_time.to_string(),
    );
    for (n, k) in s.sensors() {
        line(&format!("Temperature Sensor {n}"), kelvin(k));
    }
    line(
        "Thermal Management T1 Trans Count",
        s.thm_temp1_trans_count.to_string(),
    );
    line(
        "Thermal Management T2 Trans Count",
        s.thm_temp2_trans_count.to_string(),
    );
    line(
        "Thermal Management T1 Total Time",
        s.thm_temp1_total_time.to_string(),
    );
    line(
        "Thermal Management T2 Total Time",
        s.thm_temp2_total_time.to_string(),
    );
    format!("Smart Log for NVME device:{name} namespace-id:ffffffff\n{o}")
}

fn cmd_smart(dev: &str, json: bool) -> Result<(), CliError> {
    let name = resolve(dev)?;
    let mut t = IoctlTransport::new(dev_dir());
    let mut buf = vec![0u8; SMART_LOG_LEN];
    let s = read_smart(&mut t, &name, &mut buf).map_err(device_error)?;
    if json {
        print_json(&SmartJson(&s))
    } else {
        print!("{}", smart_text(&name, &s));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// errors

/// One entry in nvme-cli's `error-log -o json` layout (`status_field` without the phase tag,
/// which is its own key).
#[derive(Serialize)]
struct ErrorJson {
    error_count: u64,
    sqid: u16,
    cmdid: u16,
    status_field: u16,
    phase_tag: u8,
    parm_error_location: u16,
    lba: u64,
    nsid: u32,
    vs: u8,
    trtype: u8,
    cs: u64,
    trtype_spec_info: u16,
}

impl From<&ErrorLogEntry> for ErrorJson {
    fn from(e: &ErrorLogEntry) -> Self {
        ErrorJson {
            error_count: e.error_count,
            sqid: e.sqid,
            cmdid: e.cmdid,
            status_field: e.status(),
            phase_tag: e.phase_tag(),
            parm_error_location: e.parm_error_location,
            lba: e.lba,
            nsid: e.nsid,
            vs: e.vs,
            trtype: e.trtype,
            cs: e.cs,
            trtype_spec_info: e.trtype_spec_info,
        }
    }
}

#[derive(Serialize)]
struct ErrorsJson {
    errors: Vec<ErrorJson>,
}

fn errors_text(name: &str, entries: &[ErrorLogEntry]) -> String {
    use std::fmt::Write;
    let used = entries.iter().filter(|e| !e.is_empty()).count();
    let mut o = format!(
        "Error Log Entries for device:{name} entries:{} (in use: {used})\n",
        entries.len()
    );
    for (i, e) in entries.iter().enumerate().filter(|(_, e)| !e.is_empty()) {
        let _ = writeln!(o, " Entry[{i:2}]");
        let _ = writeln!(o, "{:<22}: {}", "error_count", e.error_count);
        let _ = writeln!(o, "{:<22}: {}", "sqid", e.sqid);
        let _ = writeln!(o, "{:<22}: {:#x}", "cmdid", e.cmdid);
        let _ = writeln!(
            o,
            "{:<22}: {:#x} ({}, sct {:#x} sc {:#x}{})",
            "status_field",
            e.status(),
            dmremap_core::nvme::status_name(e.status()),
            e.status_code_type(),
            e.status_code(),
            if e.dnr() { ", dnr" } else { "" }
        );
        let _ = writeln!(o, "{:<22}: {:#x}", "phase_tag", e.phase_tag());
        let _ = writeln!(o, "{:<22}: {:#x}", "parm_err_loc", e.parm_error_location);
        let _ = writeln!(o, "{:<22}: {:#x}", "lba", e.lba);
        let _ = writeln!(o, "{:<22}: {:#x}", "nsid", e.nsid);
        let _ = writeln!(o, "{:<22}: {}", "vs", e.vs);
        let _ = writeln!(o, "{:<22}: {}", "trtype", e.trtype);
        let _ = writeln!(o, "{:<22}: {:#x}", "csi", e.csi);
        let _ = writeln!(o, "{:<22}: {:#x}", "opcode", e.opcode);
        let _ = writeln!(o, "{:<22}: {:#x}", "cs", e.cs);
        let _ = writeln!(o, "{:<22}: {:#x}", "trtype_spec_info", e.trtype_spec_info);
    }
    o
}

/// Entries to read: the request (default 64) capped at what the controller keeps.
fn error_entries(requested: Option<u16>, keep: u16) -> Result<usize, CliError> {
    let want = requested.unwrap_or(64);
    if want == 0 {
        return Err(CliError::new(Kind::Usage, "--entries must be at least 1"));
    }
    Ok(usize::from(want.min(keep)))
}

fn cmd_errors(dev: &str, entries: Option<u16>, json: bool) -> Result<(), CliError> {
    let name = resolve(dev)?;
    let mut t = IoctlTransport::new(dev_dir());
    let mut idbuf = vec![0u8; IDENTIFY_LEN];
    let id = identify_controller(&mut t, &name, &mut idbuf).map_err(device_error)?;
    let n = error_entries(entries, id.error_log_entries())?;
    let mut buf = vec![0u8; n * ERROR_ENTRY_LEN];
    let len = read_error_log(&mut t, &name, n, &mut buf).map_err(device_error)?;
    let log = ErrorLog::new(&buf[..len])
        .map_err(|e| CliError::failed(format!("{name}: get log page 0x01: {e}")))?;
    let all: Vec<ErrorLogEntry> = log.entries().collect();
    if json {
        print_json(&ErrorsJson {
            errors: all.iter().map(ErrorJson::from).collect(),
        })
    } else {
        print!("{}", errors_text(&name, &all));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// aws-stats

/// I/O size as the Amazon plugin prints it: `max`, `0`, `<n>M`, `<n>K` or bytes.
fn format_io_size(size: u32) -> String {
    if size == u32::MAX {
        "max".into()
    } else if size == 0 {
        "0".into()
    } else if size.is_multiple_of(1024 * 1024) {
        format!("{}M", size / (1024 * 1024))
    } else if size.is_multiple_of(1024) {
        format!("{}K", size / 1024)
    } else {
        size.to_string()
    }
}

#[derive(Serialize)]
struct BinJson {
    lower: u64,
    upper: u64,
    count: u64,
}

#[derive(Serialize)]
struct HistJson {
    num_bins: u64,
    bins: Vec<BinJson>,
}

impl HistJson {
    fn latency(bins: &[LatencyBin]) -> Self {
        HistJson {
            num_bins: bins.len() as u64,
            bins: bins
                .iter()
                .map(|b| BinJson {
                    lower: b.lower,
                    upper: b.upper,
                    count: u64::from(b.count),
                })
                .collect(),
        }
    }
}

#[derive(Serialize)]
struct IoHistJson {
    io_size_low: String,
    io_size_high: String,
    read_io_latency_histogram: HistJson,
    write_io_latency_histogram: HistJson,
}

impl From<&IoSizeSnapshot> for IoHistJson {
    fn from(h: &IoSizeSnapshot) -> Self {
        let conv = |v: &[dmremap_core::nvme::aws::IoSizeBin]| HistJson {
            num_bins: v.len() as u64,
            bins: v
                .iter()
                .map(|b| BinJson {
                    lower: b.lower,
                    upper: b.upper,
                    count: b.count,
                })
                .collect(),
        };
        IoHistJson {
            io_size_low: format_io_size(h.io_size_low),
            io_size_high: format_io_size(h.io_size_high),
            read_io_latency_histogram: conv(&h.read),
            write_io_latency_histogram: conv(&h.write),
        }
    }
}

#[derive(Serialize)]
struct DetailJson {
    num_of_hists: u64,
    io_histograms: Vec<IoHistJson>,
}

/// The Amazon plugin's `stats -o json` layout (with `--details` for instance store), plus
/// `device_type`.
#[derive(Serialize)]
struct AwsJson {
    device_type: &'static str,
    total_read_ops: u64,
    total_write_ops: u64,
    total_read_bytes: u64,
    total_write_bytes: u64,
    total_read_time: u64,
    total_write_time: u64,
    ebs_volume_performance_exceeded_iops: u64,
    ebs_volume_performance_exceeded_tp: u64,
    ec2_instance_ebs_performance_exceeded_iops: u64,
    ec2_instance_ebs_performance_exceeded_tp: u64,
    volume_queue_length: u64,
    read_io_latency_histogram: HistJson,
    write_io_latency_histogram: HistJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_histograms: Option<DetailJson>,
}

impl From<&AwsSnapshot> for AwsJson {
    fn from(s: &AwsSnapshot) -> Self {
        let h = &s.header;
        let detail = (s.kind == dmremap_core::nvme::aws::AwsDeviceKind::InstanceStore
            && h.version == dmremap_core::nvme::aws::DETAIL_IO_VERSION)
            .then(|| DetailJson {
                num_of_hists: s.io_size.len() as u64,
                io_histograms: s.io_size.iter().map(IoHistJson::from).collect(),
            });
        AwsJson {
            device_type: s.kind.name(),
            total_read_ops: h.total_read_ops,
            total_write_ops: h.total_write_ops,
            total_read_bytes: h.total_read_bytes,
            total_write_bytes: h.total_write_bytes,
            total_read_time: h.total_read_time,
            total_write_time: h.total_write_time,
            ebs_volume_performance_exceeded_iops: h.ebs_volume_performance_exceeded_iops,
            ebs_volume_performance_exceeded_tp: h.ebs_volume_performance_exceeded_tp,
            ec2_instance_ebs_performance_exceeded_iops: h
                .ec2_instance_ebs_performance_exceeded_iops,
            ec2_instance_ebs_performance_exceeded_tp: h.ec2_instance_ebs_performance_exceeded_tp,
            volume_queue_length: h.volume_queue_length,
            read_io_latency_histogram: HistJson::latency(&s.read),
            write_io_latency_histogram: HistJson::latency(&s.write),
            latency_histograms: detail,
        }
    }
}

fn aws_text(name: &str, s: &AwsSnapshot) -> String {
    use dmremap_core::nvme::aws::AwsDeviceKind;
    use std::fmt::Write;
    let h = &s.header;
    let mut o = String::new();
    let _ = writeln!(o, "Amazon statistics for {name} ({})", s.kind.name());
    let _ = writeln!(
        o,
        "Total Ops:        read {:>14}  write {:>14}",
        h.total_read_ops, h.total_write_ops
    );
    let _ = writeln!(
        o,
        "Total Bytes:      read {:>14}  write {:>14}",
        h.total_read_bytes, h.total_write_bytes
    );
    let _ = writeln!(
        o,
        "Total Time (us):  read {:>14}  write {:>14}",
        h.total_read_time, h.total_write_time
    );
    match s.kind {
        AwsDeviceKind::InstanceStore => {
            let _ = writeln!(
                o,
                "Instance store performance exceeded (us): IOPS {}  throughput {}",
                h.ec2_instance_ebs_performance_exceeded_iops,
                h.ec2_instance_ebs_performance_exceeded_tp
            );
        }
        AwsDeviceKind::Ebs => {
            let _ = writeln!(
                o,
                "EBS volume performance exceeded (us):     IOPS {}  throughput {}",
                h.ebs_volume_performance_exceeded_iops, h.ebs_volume_performance_exceeded_tp
            );
            let _ = writeln!(
                o,
                "EC2 instance EBS performance exceeded (us): IOPS {}  throughput {}",
                h.ec2_instance_ebs_performance_exceeded_iops,
                h.ec2_instance_ebs_performance_exceeded_tp
            );
        }
    }
    let _ = writeln!(o, "Queue length (point in time): {}", h.volume_queue_length);
    for (title, bins) in [("Read", &s.read), ("Write", &s.write)] {
        let _ = writeln!(o, "\n{title} I/O latency histogram (us)");
        for b in bins.iter() {
            let _ = writeln!(o, "  [{:>10} - {:>10}) => {}", b.lower, b.upper, b.count);
        }
    }
    for hs in &s.io_size {
        let _ = writeln!(
            o,
            "\nI/O size ({} .. {}]",
            format_io_size(hs.io_size_low),
            format_io_size(hs.io_size_high)
        );
        for (title, bins) in [("read", &hs.read), ("write", &hs.write)] {
            let counts: Vec<String> = bins.iter().map(|b| b.count.to_string()).collect();
            let _ = writeln!(o, "  {title:<5}: {}", counts.join(" "));
        }
    }
    o
}

fn cmd_aws_stats(dev: &str, json: bool) -> Result<(), CliError> {
    let name = resolve(dev)?;
    let mut t = IoctlTransport::new(dev_dir());
    let snap = aws_snapshot(&mut t, &name)?;
    if json {
        print_json(&AwsJson::from(&snap))
    } else {
        print!("{}", aws_text(&name, &snap));
        Ok(())
    }
}

/// Identify the controller, check it is an Amazon EBS / instance-store device, read and
/// validate its statistics page.
fn aws_snapshot<T: AdminTransport>(t: &mut T, name: &str) -> Result<AwsSnapshot, CliError> {
    let mut idbuf = vec![0u8; IDENTIFY_LEN];
    let id = identify_controller(t, name, &mut idbuf).map_err(device_error)?;
    let kind = expected_kind(id.vid, id.mn.as_bytes()).ok_or_else(|| {
        device_error(unsupported(
            name,
            "get log page 0xd0",
            format!(
                "not an Amazon EBS or EC2 instance-store device (vendor {:#06x}, model \"{}\")",
                id.vid, id.mn
            ),
        ))
    })?;
    let mut buf = vec![0u8; kind.page_len()];
    let stats = read_aws_stats(t, name, kind, &mut buf).map_err(device_error)?;
    Ok(AwsSnapshot::from_stats(&stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmremap_core::nvme::aws::AwsDeviceKind;
    use dmremap_lib::nvme::fake::{FakeController, FakeSysfs, FakeSysfsController, FakeTransport};
    use serde_json::Value;

    fn keys(v: &Value) -> Vec<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn smart_json_uses_nvme_cli_keys_in_order() {
        let s = SmartLog {
            critical_warning: 0x02,
            temperature: 318,
            avail_spare: 99,
            spare_thresh: 10,
            percent_used: 1,
            data_units_read: (1u128 << 70) + 5,
            num_err_log_entries: 3,
            temp_sensors: [320, 0, 315, 0, 0, 0, 0, 0],
            thm_temp2_total_time: 9,
            ..SmartLog::default()
        };
        let v: Value =
            serde_json::from_str(&serde_json::to_string(&SmartJson(&s)).unwrap()).unwrap();
        assert_eq!(
            keys(&v),
            [
                "critical_warning",
                "temperature",
                "avail_spare",
                "spare_thresh",
                "percent_used",
                "endurance_grp_critical_warning_summary",
                "data_units_read",
                "data_units_written",
                "host_read_commands",
                "host_write_commands",
                "controller_busy_time",
                "power_cycles",
                "power_on_hours",
                "unsafe_shutdowns",
                "media_errors",
                "num_err_log_entries",
                "warning_temp_time",
                "critical_comp_time",
                "temperature_sensor_1",
                "temperature_sensor_3",
                "thm_temp1_trans_count",
                "thm_temp2_trans_count",
                "thm_temp1_total_time",
                "thm_temp2_total_time",
            ]
        );
        assert_eq!(v["temperature"], 318);
        assert_eq!(v["critical_warning"], 2);
        assert_eq!(v["temperature_sensor_3"], 315);
        assert_eq!(v["num_err_log_entries"], 3);
        assert_eq!(v["thm_temp2_total_time"], 9);
        // 128-bit counters stay exact as JSON integers.
        let text = serde_json::to_string(&SmartJson(&s)).unwrap();
        assert!(
            text.contains(&format!("\"data_units_read\":{}", (1u128 << 70) + 5)),
            "{text}"
        );
    }

    #[test]
    fn smart_text_shows_celsius_and_kelvin() {
        let s = SmartLog {
            temperature: 310,
            temp_sensors: [0, 300, 0, 0, 0, 0, 0, 0],
            ..SmartLog::default()
        };
        let t = smart_text("nvme0", &s);
        assert!(t.starts_with("Smart Log for NVME device:nvme0 namespace-id:ffffffff\n"));
        assert!(
            t.contains("temperature                             : 37°C (310 Kelvin)"),
            "{t}"
        );
        assert!(t.contains("Temperature Sensor 2"));
        assert!(!t.contains("Temperature Sensor 1"));
    }

    #[test]
    fn error_json_matches_nvme_cli_keys_and_status_split() {
        let e = ErrorLogEntry {
            error_count: 5,
            sqid: 1,
            cmdid: 0x22,
            status_field: (0x4281 << 1) | 1,
            parm_error_location: 0xffff,
            lba: 4096,
            nsid: 1,
            vs: 0,
            trtype: 0,
            csi: 0,
            opcode: 2,
            cs: 7,
            trtype_spec_info: 0,
            log_page_version: 1,
        };
        let v = serde_json::to_value(ErrorsJson {
            errors: vec![ErrorJson::from(&e)],
        })
        .unwrap();
        assert_eq!(keys(&v), ["errors"]);
        let x = &v["errors"][0];
        assert_eq!(
            keys(x),
            [
                "error_count",
                "sqid",
                "cmdid",
                "status_field",
                "phase_tag",
                "parm_error_location",
                "lba",
                "nsid",
                "vs",
                "trtype",
                "cs",
                "trtype_spec_info",
            ]
        );
        assert_eq!(x["status_field"], 0x4281);
        assert_eq!(x["phase_tag"], 1);
        assert_eq!(x["cs"], 7);
        let t = errors_text("nvme0", &[e, ErrorLogEntry::default()]);
        assert!(t.contains("entries:2 (in use: 1)"));
        assert!(t.contains("Unrecovered Read Error"), "{t}");
        assert!(t.contains(", dnr"));
    }

    #[test]
    fn error_entry_count_is_capped() {
        assert_eq!(error_entries(None, 256).unwrap(), 64);
        assert_eq!(error_entries(None, 4).unwrap(), 4);
        assert_eq!(error_entries(Some(300), 256).unwrap(), 256);
        assert_eq!(error_entries(Some(2), 256).unwrap(), 2);
        assert_eq!(error_entries(Some(0), 256).unwrap_err().kind, Kind::Usage);
    }

    #[test]
    fn io_sizes_format_like_the_plugin() {
        assert_eq!(format_io_size(u32::MAX), "max");
        assert_eq!(format_io_size(0), "0");
        assert_eq!(format_io_size(4096), "4K");
        assert_eq!(format_io_size(1 << 20), "1M");
        assert_eq!(format_io_size(3 << 20), "3M");
        assert_eq!(format_io_size(1536), "1536");
        assert_eq!(format_io_size(512), "512");
    }

    #[test]
    fn aws_stats_via_fake_devices() {
        let mut t = FakeTransport::new();
        t.insert("nvme0", FakeController::generic("x"));
        t.insert("nvme1", FakeController::ebs("vol1"));
        t.insert("nvme2", FakeController::instance_store("is"));

        let err = aws_snapshot(&mut t, "nvme0").unwrap_err();
        assert_eq!(err.kind, Kind::Unsupported);
        assert_eq!(
            err.msg,
            "nvme0: get log page 0xd0: not an Amazon EBS or EC2 instance-store device (vendor 0x1b36, model \"QEMU NVMe Ctrl\")"
        );

        let ebs = aws_snapshot(&mut t, "nvme1").unwrap();
        assert_eq!(ebs.kind, AwsDeviceKind::Ebs);
        let v = serde_json::to_value(AwsJson::from(&ebs)).unwrap();
        assert_eq!(v["device_type"], "ebs");
        assert_eq!(v["total_read_ops"], 1000);
        assert_eq!(v["read_io_latency_histogram"]["num_bins"], 20);
        assert_eq!(v["read_io_latency_histogram"]["bins"][2]["lower"], 4);
        assert_eq!(v["read_io_latency_histogram"]["bins"][2]["count"], 9);
        assert!(v.get("latency_histograms").is_none());

        let is = aws_snapshot(&mut t, "nvme2").unwrap();
        let v = serde_json::to_value(AwsJson::from(&is)).unwrap();
        let d = &v["latency_histograms"];
        assert_eq!(d["num_of_hists"], 3);
        assert_eq!(d["io_histograms"][0]["io_size_low"], "0");
        assert_eq!(d["io_histograms"][0]["io_size_high"], "4K");
        assert_eq!(d["io_histograms"][2]["io_size_high"], "max");
        assert_eq!(
            d["io_histograms"][1]["write_io_latency_histogram"]["bins"][3]["count"],
            103
        );
        let text = aws_text("nvme2", &is);
        assert!(
            text.contains("Instance store performance exceeded (us): IOPS 9  throughput 10"),
            "{text}"
        );
        assert!(text.contains("I/O size (4K .. 64K]"), "{text}");

        // A device that answers with an invalid status.
        t.controllers.get_mut("nvme1").unwrap().aws_nsid = Some(7);
        let err = aws_snapshot(&mut t, "nvme1").unwrap_err();
        assert_eq!(err.kind, Kind::Failed);
        assert_eq!(
            err.msg,
            "nvme1: get log page 0xd0: Invalid Field in Command (status 0x4002)"
        );
    }

    #[test]
    fn list_json_from_fake_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FakeSysfs::new(dir.path());
        for (name, ns) in [("nvme0", "nvme0c0n1"), ("nvme1", "nvme0c1n1")] {
            fs.add(&FakeSysfsController {
                name: name.into(),
                model: "Multipath Ctrl".into(),
                serial: "MP1".into(),
                firmware_rev: "1.0".into(),
                pci_vendor: None,
                namespaces: vec![(ns.into(), 2048, 4096)],
            })
            .unwrap();
        }
        let ctrls = discover(dir.path()).unwrap();
        let v = serde_json::to_value(ListJson {
            devices: list_devices(&ctrls),
        })
        .unwrap();
        let devs = v["Devices"].as_array().unwrap();
        assert_eq!(devs.len(), 1, "two paths to one namespace are listed once");
        let d = &devs[0];
        assert_eq!(
            keys(d),
            [
                "NameSpace",
                "DevicePath",
                "Firmware",
                "ModelNumber",
                "SerialNumber",
                "MaximumLBA",
                "PhysicalSize",
                "SectorSize",
                "Controller"
            ]
        );
        assert_eq!(d["DevicePath"], "/dev/nvme0n1");
        assert_eq!(d["PhysicalSize"], 2048 * 512);
        assert_eq!(d["MaximumLBA"], 2048 * 512 / 4096);
        assert_eq!(d["SectorSize"], 4096);
        assert_eq!(d["Controller"], "nvme0");
    }
}

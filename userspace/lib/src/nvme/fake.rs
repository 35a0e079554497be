//! In-memory NVMe controllers and sysfs trees, for tests and simulated benchmarks.
//!
//! [`FakeTransport`] implements [`AdminTransport`] by decoding each command the way a controller
//! would (opcode, CNS, log id, NUMD, namespace) and answering from byte-level page images built
//! with the core encoders. It records every command, so tests can check how many commands of
//! each kind a scrape issued. Unknown log pages complete with Invalid Field in Command, as
//! controllers without vendor pages do.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use dmremap_core::nvme::aws::{
    AwsDeviceKind, AwsStatsHeader, AwsStatsWriter, Direction, LatencyBin, EBS_MODEL,
    INSTANCE_STORE_MODEL,
};
use dmremap_core::nvme::error_log::{ErrorLogEntry, ERROR_ENTRY_LEN};
use dmremap_core::nvme::identify::{IdentifyController, IDENTIFY_LEN, VID_AMAZON};
use dmremap_core::nvme::smart::{SmartLog, SMART_LOG_LEN};
use dmremap_core::nvme::{
    AsciiField, CNS_CONTROLLER, LID_AWS_STATS, LID_ERROR_INFO, LID_SMART, OPC_GET_LOG_PAGE,
    OPC_IDENTIFY,
};

use super::admin::{AdminCommand, AdminError, AdminTransport};
use super::sysfs::{Controller, Namespace};

/// Status "Invalid Field in Command" (generic, SC 02h) with DNR set, as the ioctl returns it.
pub const STATUS_INVALID_FIELD: u16 = 0x4002;

/// One simulated controller.
#[derive(Clone, Debug)]
pub struct FakeController {
    /// Identify Controller image (4096 bytes).
    pub identify: Vec<u8>,
    /// SMART log image (512 bytes).
    pub smart: Vec<u8>,
    /// Error log image (whole entries).
    pub error_log: Vec<u8>,
    /// Amazon statistics page image, if the device has one.
    pub aws: Option<Vec<u8>>,
    /// Namespace the statistics page must be asked for (None: any).
    pub aws_nsid: Option<u32>,
    /// Status to fail every command with (simulates a broken device).
    pub fail_status: Option<u16>,
}

fn identify_image(vid: u16, model: &str, serial: &str, firmware: &str, elpe: u8) -> Vec<u8> {
    let id = IdentifyController {
        vid,
        ssvid: vid,
        sn: AsciiField::from_raw(serial.as_bytes()),
        mn: AsciiField::from_raw(model.as_bytes()),
        fr: AsciiField::from_raw(firmware.as_bytes()),
        ver: 0x0001_0400,
        elpe,
        nn: 1,
        lpa: 0x06,
        ..IdentifyController::default()
    };
    let mut b = vec![0u8; IDENTIFY_LEN];
    // The image is built from a fixed-size buffer: encode cannot fail.
    id.encode(&mut b).expect("identify image");
    b
}

/// A SMART log image with recognisable values derived from `seed`.
pub fn smart_image(seed: u64) -> Vec<u8> {
    let s = SmartLog {
        critical_warning: 0,
        temperature: 310,
        avail_spare: 100,
        spare_thresh: 10,
        percent_used: (seed % 100) as u8,
        data_units_read: u128::from(seed) * 1000 + 1,
        data_units_written: u128::from(seed) * 1000 + 2,
        host_read_commands: u128::from(seed) * 10_000 + 3,
        host_write_commands: u128::from(seed) * 10_000 + 4,
        power_cycles: 5,
        power_on_hours: 6 + u128::from(seed),
        media_errors: 0,
        num_err_log_entries: 0,
        temp_sensors: [310, 0, 0, 0, 0, 0, 0, 0],
        ..SmartLog::default()
    };
    let mut b = vec![0u8; SMART_LOG_LEN];
    s.encode(&mut b).expect("smart image");
    b
}

/// An error log image of `entries` slots with `used` non-empty entries (newest first).
pub fn error_log_image(entries: usize, used: usize) -> Vec<u8> {
    let mut b = vec![0u8; entries * ERROR_ENTRY_LEN];
    for (i, chunk) in b.chunks_exact_mut(ERROR_ENTRY_LEN).take(used).enumerate() {
        let e = ErrorLogEntry {
            error_count: (used - i) as u64,
            sqid: 1,
            cmdid: 0x10 + i as u16,
            status_field: (0x4281 << 1) | 1,
            parm_error_location: 0xffff,
            lba: 1000 + i as u64,
            nsid: 1,
            opcode: 0x02,
            ..ErrorLogEntry::default()
        };
        e.encode(chunk).expect("error entry image");
    }
    b
}

/// A statistics page image of `kind` with `bins` latency bins and, for instance store, the
/// per-I/O-size histograms.
pub fn aws_image(kind: AwsDeviceKind, bins: usize) -> Vec<u8> {
    let mut b = vec![0u8; kind.page_len()];
    let mut w = AwsStatsWriter::new(&mut b, kind).expect("aws writer");
    let detail = kind == AwsDeviceKind::InstanceStore;
    w.header(&AwsStatsHeader {
        version: u32::from(detail),
        total_read_ops: 1_000,
        total_write_ops: 2_000,
        total_read_bytes: 4_096_000,
        total_write_bytes: 8_192_000,
        total_read_time: 500_000,
        total_write_time: 900_000,
        ebs_volume_performance_exceeded_iops: 7,
        ebs_volume_performance_exceeded_tp: 8,
        ec2_instance_ebs_performance_exceeded_iops: 9,
        ec2_instance_ebs_performance_exceeded_tp: 10,
        volume_queue_length: 2,
        num_of_hists: if detail { 3 } else { 0 },
        hist_io_sizes: [4096, 65536, u32::MAX, 0, 0, 0, 0, 0],
    })
    .expect("aws header");
    let bins: Vec<LatencyBin> = (0..bins as u64)
        .map(|i| LatencyBin {
            lower: 1 << i,
            upper: 2 << i,
            count: (i as u32 + 1) * 3,
        })
        .collect();
    w.histogram(Direction::Read, &bins).expect("aws read bins");
    w.histogram(Direction::Write, &bins)
        .expect("aws write bins");
    if detail {
        for h in 0..3 {
            let counts: Vec<u64> = (0..bins.len() as u64).map(|i| i + 100 * h as u64).collect();
            w.io_size_counts(h, Direction::Read, &counts)
                .expect("counts");
            w.io_size_counts(h, Direction::Write, &counts)
                .expect("counts");
        }
    }
    b
}

impl FakeController {
    /// A controller like QEMU's emulated one: SMART and error log, no vendor page.
    pub fn generic(serial: &str) -> Self {
        FakeController {
            identify: identify_image(0x1b36, "QEMU NVMe Ctrl", serial, "8.0.0", 63),
            smart: smart_image(1),
            error_log: error_log_image(64, 0),
            aws: None,
            aws_nsid: None,
            fail_status: None,
        }
    }

    /// An EBS volume (answers page D0h for namespace 1).
    pub fn ebs(serial: &str) -> Self {
        FakeController {
            identify: identify_image(VID_AMAZON, EBS_MODEL, serial, "2.0", 255),
            smart: smart_image(2),
            error_log: error_log_image(256, 2),
            aws: Some(aws_image(AwsDeviceKind::Ebs, 20)),
            aws_nsid: Some(1),
            fail_status: None,
        }
    }

    /// An EC2 instance-store volume.
    pub fn instance_store(serial: &str) -> Self {
        FakeController {
            identify: identify_image(VID_AMAZON, INSTANCE_STORE_MODEL, serial, "0", 0),
            smart: smart_image(3),
            error_log: error_log_image(1, 0),
            aws: Some(aws_image(AwsDeviceKind::InstanceStore, 24)),
            aws_nsid: None,
            fail_status: None,
        }
    }
}

/// One command the fake received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// Opcode.
    pub opcode: u8,
    /// Log id (Get Log Page) or CNS (Identify).
    pub id: u8,
    /// Namespace.
    pub nsid: u32,
    /// Data length.
    pub len: usize,
}

/// The fake transport.
#[derive(Clone, Debug)]
pub struct FakeTransport {
    /// Controllers by name.
    pub controllers: HashMap<String, FakeController>,
    /// Every command received, per controller (when `record` is set).
    pub log: HashMap<String, Vec<Recorded>>,
    /// Record commands in `log` (on by default; simulations running many cycles turn it off).
    pub record: bool,
}

impl Default for FakeTransport {
    fn default() -> Self {
        FakeTransport {
            controllers: HashMap::new(),
            log: HashMap::new(),
            record: true,
        }
    }
}

impl FakeTransport {
    /// An empty transport that records commands.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add (or replace) a controller.
    pub fn insert(&mut self, name: &str, c: FakeController) {
        self.controllers.insert(name.to_string(), c);
    }

    /// Number of commands `controller` received with `opcode` and `id` (CNS or log id).
    pub fn count(&self, controller: &str, opcode: u8, id: u8) -> usize {
        self.log
            .get(controller)
            .map(|v| {
                v.iter()
                    .filter(|r| r.opcode == opcode && r.id == id)
                    .count()
            })
            .unwrap_or(0)
    }

    /// Forget the recorded commands.
    pub fn clear_log(&mut self) {
        self.log.clear();
    }
}

fn copy_page(src: &[u8], data: &mut [u8]) {
    data.fill(0);
    let n = src.len().min(data.len());
    data[..n].copy_from_slice(&src[..n]);
}

impl AdminTransport for FakeTransport {
    fn submit(
        &mut self,
        controller: &str,
        cmd: &AdminCommand,
        data: &mut [u8],
    ) -> Result<(), AdminError> {
        let c = self.controllers.get(controller).ok_or_else(|| {
            AdminError::Io(io::Error::new(
                io::ErrorKind::NotFound,
                format!("open /dev/{controller}: no such device"),
            ))
        })?;
        if data.len() != cmd.data_len as usize {
            return Err(AdminError::InvalidLength(data.len()));
        }
        let id = (cmd.cdw10 & 0xff) as u8;
        if self.record {
            let rec = Recorded {
                opcode: cmd.opcode,
                id,
                nsid: cmd.nsid,
                len: data.len(),
            };
            match self.log.get_mut(controller) {
                Some(v) => v.push(rec),
                None => {
                    self.log.insert(controller.to_string(), vec![rec]);
                }
            }
        }
        if let Some(s) = c.fail_status {
            return Err(AdminError::Status(s));
        }
        match cmd.opcode {
            OPC_IDENTIFY if id == CNS_CONTROLLER && data.len() == IDENTIFY_LEN => {
                copy_page(&c.identify, data);
                Ok(())
            }
            OPC_GET_LOG_PAGE => {
                if cmd.log_len() != data.len() {
                    return Err(AdminError::Status(STATUS_INVALID_FIELD));
                }
                match id {
                    LID_SMART => copy_page(&c.smart, data),
                    LID_ERROR_INFO => copy_page(&c.error_log, data),
                    LID_AWS_STATS => match (&c.aws, c.aws_nsid) {
                        (Some(_), Some(ns)) if ns != cmd.nsid => {
                            return Err(AdminError::Status(STATUS_INVALID_FIELD));
                        }
                        (Some(page), _) => copy_page(page, data),
                        (None, _) => return Err(AdminError::Status(STATUS_INVALID_FIELD)),
                    },
                    _ => return Err(AdminError::Status(STATUS_INVALID_FIELD)),
                }
                Ok(())
            }
            _ => Err(AdminError::Status(STATUS_INVALID_FIELD)),
        }
    }
}

/// Description of a controller directory in a fake sysfs tree.
#[derive(Clone, Debug)]
pub struct FakeSysfsController {
    /// `nvme0`.
    pub name: String,
    /// Model (written space padded like the kernel's 40-byte field).
    pub model: String,
    /// Serial.
    pub serial: String,
    /// Firmware revision.
    pub firmware_rev: String,
    /// PCI vendor id for `device/vendor`, if any.
    pub pci_vendor: Option<u16>,
    /// Namespaces: (sysfs name, size in 512-byte sectors, logical block size).
    pub namespaces: Vec<(String, u64, u32)>,
}

/// Writes fake `<root>/class/nvme/...` trees.
pub struct FakeSysfs {
    root: PathBuf,
}

impl FakeSysfs {
    /// Trees go under `root`.
    pub fn new(root: &Path) -> Self {
        FakeSysfs {
            root: root.to_path_buf(),
        }
    }

    /// Write one controller directory with its attributes and namespaces.
    pub fn add(&self, c: &FakeSysfsController) -> io::Result<()> {
        let dir = self.root.join("class/nvme").join(&c.name);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("model"), format!("{:<40}\n", c.model))?;
        fs::write(dir.join("serial"), format!("{:<20}\n", c.serial))?;
        fs::write(dir.join("firmware_rev"), format!("{:<8}\n", c.firmware_rev))?;
        fs::write(dir.join("transport"), "pcie\n")?;
        fs::write(dir.join("state"), "live\n")?;
        fs::write(dir.join("cntlid"), "0\n")?;
        if let Some(v) = c.pci_vendor {
            fs::create_dir_all(dir.join("device"))?;
            fs::write(dir.join("device/vendor"), format!("0x{v:04x}\n"))?;
        }
        for (name, sectors, lbs) in &c.namespaces {
            let ns = dir.join(name);
            fs::create_dir_all(ns.join("queue"))?;
            fs::write(ns.join("size"), format!("{sectors}\n"))?;
            fs::write(ns.join("queue/logical_block_size"), format!("{lbs}\n"))?;
            if let Some((_, nsid)) = super::sysfs::parse_namespace_name(name) {
                fs::write(ns.join("nsid"), format!("{nsid}\n"))?;
            }
        }
        Ok(())
    }
}

/// A discovered-controller record matching a fake controller, for scrapers that are given a
/// fixed controller list instead of a sysfs tree.
pub fn controller_record(name: &str, fake: &FakeController, namespaces: u32) -> Controller {
    let id = IdentifyController::decode(&fake.identify).unwrap_or_default();
    let instance = super::sysfs::parse_controller_name(name).unwrap_or(0);
    Controller {
        name: name.to_string(),
        instance,
        model: id.mn.to_string(),
        serial: id.sn.to_string(),
        firmware_rev: id.fr.to_string(),
        transport: Some("pcie".into()),
        state: Some("live".into()),
        cntlid: Some(id.cntlid),
        pci_vendor: Some(id.vid),
        namespaces: (1..=namespaces)
            .map(|n| Namespace {
                name: format!("{name}n{n}"),
                block_device: format!("{name}n{n}"),
                nsid: n,
                size_bytes: 1 << 30,
                logical_block_size: 512,
            })
            .collect(),
    }
}

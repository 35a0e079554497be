//! NVMe admin commands: building Identify / Get Log Page commands, the transport trait they are
//! submitted through, the real transport over `NVME_IOCTL_ADMIN_CMD`, and typed readers that
//! decode what came back.

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use dmremap_core::nvme::aws::{AwsDeviceKind, AwsStats};
use dmremap_core::nvme::error_log::ERROR_ENTRY_LEN;
use dmremap_core::nvme::identify::{IdentifyController, IDENTIFY_LEN};
use dmremap_core::nvme::smart::{SmartLog, SMART_LOG_LEN};
use dmremap_core::nvme::{
    status_name, NvmeError, CNS_CONTROLLER, LID_AWS_STATS, LID_ERROR_INFO, LID_SMART, NSID_ALL,
    OPC_GET_LOG_PAGE, OPC_IDENTIFY,
};

/// `struct nvme_passthru_cmd` (alias `nvme_admin_cmd`) from `<linux/nvme_ioctl.h>`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NvmePassthruCmd {
    pub opcode: u8,
    pub flags: u8,
    pub rsvd1: u16,
    pub nsid: u32,
    pub cdw2: u32,
    pub cdw3: u32,
    pub metadata: u64,
    pub addr: u64,
    pub metadata_len: u32,
    pub data_len: u32,
    pub cdw10: u32,
    pub cdw11: u32,
    pub cdw12: u32,
    pub cdw13: u32,
    pub cdw14: u32,
    pub cdw15: u32,
    pub timeout_ms: u32,
    pub result: u32,
}

const _: () = assert!(std::mem::size_of::<NvmePassthruCmd>() == 72);
const _: () = assert!(std::mem::offset_of!(NvmePassthruCmd, addr) == 24);
const _: () = assert!(std::mem::offset_of!(NvmePassthruCmd, cdw10) == 40);
const _: () = assert!(std::mem::offset_of!(NvmePassthruCmd, result) == 68);

// NVME_IOCTL_ADMIN_CMD = _IOWR('N', 0x41, struct nvme_admin_cmd) = 0xC0484E41.
nix::ioctl_readwrite!(nvme_ioctl_admin_cmd, b'N', 0x41, NvmePassthruCmd);

/// An admin command, transport independent: what goes into the submission queue entry besides
/// the data pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminCommand {
    /// Opcode.
    pub opcode: u8,
    /// Namespace id.
    pub nsid: u32,
    /// Command dwords 10..=13.
    pub cdw10: u32,
    pub cdw11: u32,
    pub cdw12: u32,
    pub cdw13: u32,
    /// Length of the data the controller returns.
    pub data_len: u32,
}

impl AdminCommand {
    /// Identify Controller (opcode 06h, CNS 01h, 4096 bytes).
    pub fn identify_controller() -> Self {
        AdminCommand {
            opcode: OPC_IDENTIFY,
            nsid: 0,
            cdw10: u32::from(CNS_CONTROLLER),
            cdw11: 0,
            cdw12: 0,
            cdw13: 0,
            data_len: IDENTIFY_LEN as u32,
        }
    }

    /// Get Log Page (opcode 02h) of `len` bytes of log `lid` for namespace `nsid`:
    /// NUMD = len/4 − 1 (0's based dwords), lower 16 bits in CDW10[31:16], upper 16 bits in
    /// CDW11[15:0]. `len` must be a non-zero multiple of 4.
    pub fn get_log_page(lid: u8, nsid: u32, len: usize) -> Result<Self, AdminError> {
        if len == 0 || !len.is_multiple_of(4) || len > u32::MAX as usize {
            return Err(AdminError::InvalidLength(len));
        }
        let numd = (len / 4 - 1) as u32;
        Ok(AdminCommand {
            opcode: OPC_GET_LOG_PAGE,
            nsid,
            cdw10: u32::from(lid) | ((numd & 0xffff) << 16),
            cdw11: numd >> 16,
            cdw12: 0,
            cdw13: 0,
            data_len: len as u32,
        })
    }

    /// Log identifier of a Get Log Page command.
    pub fn log_id(&self) -> u8 {
        (self.cdw10 & 0xff) as u8
    }

    /// Number of bytes a Get Log Page command asks for (from NUMD).
    pub fn log_len(&self) -> usize {
        let numd = ((self.cdw11 & 0xffff) << 16) | (self.cdw10 >> 16);
        (numd as usize + 1) * 4
    }

    /// Short description for error messages: `identify controller`, `get log page 0x02`.
    pub fn describe(&self) -> String {
        match self.opcode {
            OPC_IDENTIFY if self.cdw10 & 0xff == u32::from(CNS_CONTROLLER) => {
                "identify controller".into()
            }
            OPC_IDENTIFY => format!("identify cns 0x{:02x}", self.cdw10 & 0xff),
            OPC_GET_LOG_PAGE => format!("get log page 0x{:02x}", self.log_id()),
            op => format!("admin opcode 0x{op:02x}"),
        }
    }
}

/// Why an admin command failed.
#[derive(Debug)]
pub enum AdminError {
    /// The device could not be opened or the ioctl failed.
    Io(io::Error),
    /// The controller completed the command with a non-zero NVMe status (as the ioctl returns
    /// it: SC in bits 7:0, SCT 10:8, CRD 12:11, More 13, DNR 14).
    Status(u16),
    /// A buffer length the command cannot express.
    InvalidLength(usize),
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::Io(e) => write!(f, "{e}"),
            AdminError::Status(s) => write!(f, "{} (status 0x{s:04x})", status_name(*s)),
            AdminError::InvalidLength(n) => write!(f, "invalid data length {n}"),
        }
    }
}

impl std::error::Error for AdminError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AdminError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Something that executes admin commands on named controllers (`nvme0`). `data` is exactly
/// `cmd.data_len` bytes and receives what the controller returns.
pub trait AdminTransport {
    fn submit(
        &mut self,
        controller: &str,
        cmd: &AdminCommand,
        data: &mut [u8],
    ) -> Result<(), AdminError>;

    /// Runs a batch of commands, each to a different controller, filling in each item's
    /// `result`. The default runs them one after the other; a transport may overlap them.
    fn submit_batch(&mut self, items: &mut [BatchItem<'_>]) {
        for it in items.iter_mut() {
            it.result = self.submit(it.controller, it.cmd, it.data);
        }
    }

    /// How many commands of a batch may be in flight at once (a hint; 1 = one after the other).
    /// Transports that cannot overlap commands ignore it.
    fn set_parallel(&mut self, _n: usize) {}
}

/// One command of a [`AdminTransport::submit_batch`].
pub struct BatchItem<'a> {
    pub controller: &'a str,
    pub cmd: &'a AdminCommand,
    pub data: &'a mut [u8],
    pub result: Result<(), AdminError>,
}

fn ioctl_admin(
    fd: std::os::fd::RawFd,
    cmd: &AdminCommand,
    data: &mut [u8],
    timeout_ms: u32,
) -> Result<(), AdminError> {
    if data.len() != cmd.data_len as usize {
        return Err(AdminError::InvalidLength(data.len()));
    }
    let mut pt = NvmePassthruCmd {
        opcode: cmd.opcode,
        nsid: cmd.nsid,
        addr: data.as_mut_ptr() as u64,
        data_len: cmd.data_len,
        cdw10: cmd.cdw10,
        cdw11: cmd.cdw11,
        cdw12: cmd.cdw12,
        cdw13: cmd.cdw13,
        timeout_ms,
        ..NvmePassthruCmd::default()
    };
    // SAFETY: the caller keeps `fd` open for the duration of the call; `pt` is a properly laid
    // out `nvme_passthru_cmd` (size asserted above) whose `addr`/`data_len` describe `data`, a
    // live, exclusively borrowed buffer of exactly `data_len` bytes (checked above) that the
    // kernel writes into. No metadata buffer is passed.
    let r = unsafe { nvme_ioctl_admin_cmd(fd, &mut pt) };
    match r {
        Ok(0) => Ok(()),
        Ok(status) => Err(AdminError::Status(status as u16)),
        Err(errno) => Err(AdminError::Io(io::Error::from(errno))),
    }
}

/// The real transport: `NVME_IOCTL_ADMIN_CMD` on `<dev_dir>/<controller>` (normally `/dev`),
/// keeping each character device open between commands.
pub struct IoctlTransport {
    dev_dir: PathBuf,
    open: HashMap<String, File>,
    /// Command timeout passed to the kernel (0 = the driver's default).
    pub timeout_ms: u32,
    /// Commands of a batch in flight at once (see [`AdminTransport::submit_batch`]).
    pub parallel: usize,
}

impl IoctlTransport {
    /// A transport opening controllers under `dev_dir`.
    pub fn new(dev_dir: impl Into<PathBuf>) -> Self {
        IoctlTransport {
            dev_dir: dev_dir.into(),
            open: HashMap::new(),
            timeout_ms: 0,
            parallel: 1,
        }
    }

    /// Close every cached file descriptor (the next command reopens).
    pub fn close_all(&mut self) {
        self.open.clear();
    }

    fn file(&mut self, controller: &str) -> Result<&File, AdminError> {
        if !self.open.contains_key(controller) {
            let path = self.dev_dir.join(controller);
            let f = OpenOptions::new().read(true).open(&path).map_err(|e| {
                AdminError::Io(io::Error::new(
                    e.kind(),
                    format!("open {}: {}", path.display(), e),
                ))
            })?;
            self.open.insert(controller.to_string(), f);
        }
        self.open
            .get(controller)
            .ok_or_else(|| AdminError::Io(io::Error::other("device cache lost an entry")))
    }
}

impl AdminTransport for IoctlTransport {
    fn submit(
        &mut self,
        controller: &str,
        cmd: &AdminCommand,
        data: &mut [u8],
    ) -> Result<(), AdminError> {
        let timeout_ms = self.timeout_ms;
        let fd = self.file(controller)?.as_raw_fd();
        ioctl_admin(fd, cmd, data, timeout_ms)
    }

    /// With `parallel > 1`, the batch is split over up to `parallel` threads, each running its
    /// share of the commands one after the other: commands to different controllers overlap.
    fn submit_batch(&mut self, items: &mut [BatchItem<'_>]) {
        let workers = self.parallel.min(items.len());
        if workers <= 1 {
            for it in items.iter_mut() {
                it.result = self.submit(it.controller, it.cmd, it.data);
            }
            return;
        }
        let timeout_ms = self.timeout_ms;
        // Open (or find) every controller first; the files stay in `self.open` while the
        // threads use their descriptors.
        let mut fds = Vec::with_capacity(items.len());
        for it in items.iter_mut() {
            match self.file(it.controller) {
                Ok(f) => fds.push(Some(f.as_raw_fd())),
                Err(e) => {
                    it.result = Err(e);
                    fds.push(None);
                }
            }
        }
        let per = items.len().div_ceil(workers);
        std::thread::scope(|s| {
            for (chunk, fds) in items.chunks_mut(per).zip(fds.chunks(per)) {
                s.spawn(move || {
                    for (it, fd) in chunk.iter_mut().zip(fds) {
                        if let Some(fd) = fd {
                            it.result = ioctl_admin(*fd, it.cmd, it.data, timeout_ms);
                        }
                    }
                });
            }
        });
    }

    fn set_parallel(&mut self, n: usize) {
        self.parallel = n.max(1);
    }
}

/// An admin operation that failed on a device; displays as
/// `nvme0: get log page 0xd0: Invalid Field in Command (status 0x4002)`.
#[derive(Debug)]
pub struct DeviceError {
    /// Controller name.
    pub device: String,
    /// What was being done (`identify controller`, `get log page 0x02`, ...).
    pub op: String,
    /// Why it failed.
    pub cause: DeviceErrorCause,
}

/// Cause of a [`DeviceError`].
#[derive(Debug)]
pub enum DeviceErrorCause {
    /// The command failed.
    Admin(AdminError),
    /// The command succeeded but its data did not decode.
    Decode(NvmeError),
    /// The device is not of the kind the operation needs.
    Unsupported(String),
}

impl DeviceError {
    fn admin(device: &str, cmd: &AdminCommand, e: AdminError) -> Self {
        DeviceError {
            device: device.into(),
            op: cmd.describe(),
            cause: DeviceErrorCause::Admin(e),
        }
    }

    fn decode(device: &str, cmd: &AdminCommand, e: NvmeError) -> Self {
        DeviceError {
            device: device.into(),
            op: cmd.describe(),
            cause: DeviceErrorCause::Decode(e),
        }
    }

    /// The NVMe status if the controller rejected the command.
    pub fn status(&self) -> Option<u16> {
        match self.cause {
            DeviceErrorCause::Admin(AdminError::Status(s)) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: ", self.device, self.op)?;
        match &self.cause {
            DeviceErrorCause::Admin(e) => write!(f, "{e}"),
            DeviceErrorCause::Decode(e) => write!(f, "{e}"),
            DeviceErrorCause::Unsupported(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for DeviceError {}

fn run<T: AdminTransport + ?Sized>(
    t: &mut T,
    device: &str,
    cmd: &AdminCommand,
    buf: &mut [u8],
) -> Result<(), DeviceError> {
    let want = cmd.data_len as usize;
    let have = buf.len();
    let data = buf
        .get_mut(..want)
        .ok_or_else(|| DeviceError::admin(device, cmd, AdminError::InvalidLength(have)))?;
    t.submit(device, cmd, data)
        .map_err(|e| DeviceError::admin(device, cmd, e))
}

/// Identify Controller into `buf[..4096]` and decode it.
pub fn identify_controller<T: AdminTransport + ?Sized>(
    t: &mut T,
    device: &str,
    buf: &mut [u8],
) -> Result<IdentifyController, DeviceError> {
    let cmd = AdminCommand::identify_controller();
    run(t, device, &cmd, buf)?;
    IdentifyController::decode(&buf[..IDENTIFY_LEN])
        .map_err(|e| DeviceError::decode(device, &cmd, e))
}

/// Read and decode the controller-wide SMART / Health log (NSID FFFFFFFFh) via `buf[..512]`.
pub fn read_smart<T: AdminTransport + ?Sized>(
    t: &mut T,
    device: &str,
    buf: &mut [u8],
) -> Result<SmartLog, DeviceError> {
    let cmd = AdminCommand::get_log_page(LID_SMART, NSID_ALL, SMART_LOG_LEN).map_err(|e| {
        DeviceError {
            device: device.into(),
            op: "get log page 0x02".into(),
            cause: DeviceErrorCause::Admin(e),
        }
    })?;
    run(t, device, &cmd, buf)?;
    SmartLog::decode(&buf[..SMART_LOG_LEN]).map_err(|e| DeviceError::decode(device, &cmd, e))
}

/// Reads the SMART / Health log of several controllers as one batch (overlapped if the
/// transport does so); `bufs[i]` (at least 512 bytes) belongs to `devices[i]`.
pub fn read_smart_batch<T: AdminTransport + ?Sized, B: std::ops::DerefMut<Target = [u8]>>(
    t: &mut T,
    devices: &[&str],
    bufs: &mut [B],
) -> Vec<Result<SmartLog, DeviceError>> {
    let cmd = match AdminCommand::get_log_page(LID_SMART, NSID_ALL, SMART_LOG_LEN) {
        Ok(c) => c,
        Err(e) => {
            let msg = e.to_string();
            return devices
                .iter()
                .map(|d| {
                    Err(DeviceError {
                        device: (*d).into(),
                        op: "get log page 0x02".into(),
                        cause: DeviceErrorCause::Admin(AdminError::Io(io::Error::other(
                            msg.clone(),
                        ))),
                    })
                })
                .collect();
        }
    };
    let mut items: Vec<BatchItem<'_>> = Vec::with_capacity(devices.len());
    let mut short = Vec::new();
    for (i, (d, b)) in devices.iter().zip(bufs.iter_mut()).enumerate() {
        let have = b.len();
        match b.get_mut(..SMART_LOG_LEN) {
            Some(data) => items.push(BatchItem {
                controller: d,
                cmd: &cmd,
                data,
                result: Ok(()),
            }),
            None => short.push((i, have)),
        }
    }
    t.submit_batch(&mut items);
    let mut results: Vec<Result<(), AdminError>> = items.into_iter().map(|it| it.result).collect();
    for (i, have) in short {
        results.insert(i, Err(AdminError::InvalidLength(have)));
    }
    devices
        .iter()
        .zip(results)
        .zip(bufs.iter())
        .map(|((d, r), b)| {
            r.map_err(|e| DeviceError::admin(d, &cmd, e))?;
            SmartLog::decode(&b[..SMART_LOG_LEN]).map_err(|e| DeviceError::decode(d, &cmd, e))
        })
        .collect()
}

/// Read `entries` Error Information log entries into `buf[..entries * 64]`; returns the length
/// read (decode it with [`dmremap_core::nvme::error_log::ErrorLog::new`]).
pub fn read_error_log<T: AdminTransport + ?Sized>(
    t: &mut T,
    device: &str,
    entries: usize,
    buf: &mut [u8],
) -> Result<usize, DeviceError> {
    let len = entries.checked_mul(ERROR_ENTRY_LEN).unwrap_or(0);
    let cmd =
        AdminCommand::get_log_page(LID_ERROR_INFO, NSID_ALL, len).map_err(|e| DeviceError {
            device: device.into(),
            op: "get log page 0x01".into(),
            cause: DeviceErrorCause::Admin(e),
        })?;
    run(t, device, &cmd, buf)?;
    Ok(len)
}

/// Namespace id used to read the Amazon statistics page: EBS volumes answer for namespace 1,
/// instance-store volumes read through the controller device use NSID FFFFFFFFh.
pub fn aws_stats_nsid(kind: AwsDeviceKind) -> u32 {
    match kind {
        AwsDeviceKind::Ebs => 1,
        AwsDeviceKind::InstanceStore => NSID_ALL,
    }
}

/// Read the Amazon statistics page of a device expected to be of `kind` into
/// `buf[..kind.page_len()]` and check that its magic confirms the kind.
pub fn read_aws_stats<'b, T: AdminTransport + ?Sized>(
    t: &mut T,
    device: &str,
    kind: AwsDeviceKind,
    buf: &'b mut [u8],
) -> Result<AwsStats<'b>, DeviceError> {
    let len = kind.page_len();
    let cmd =
        AdminCommand::get_log_page(LID_AWS_STATS, aws_stats_nsid(kind), len).map_err(|e| {
            DeviceError {
                device: device.into(),
                op: "get log page 0xd0".into(),
                cause: DeviceErrorCause::Admin(e),
            }
        })?;
    run(t, device, &cmd, buf)?;
    let ro: &'b [u8] = buf;
    let page = &ro[..len];
    AwsStats::parse_expecting(page, kind).map_err(|e| DeviceError::decode(device, &cmd, e))
}

/// A [`DeviceError`] saying `device` does not support an operation.
pub fn unsupported(device: &str, op: &str, why: impl Into<String>) -> DeviceError {
    DeviceError {
        device: device.into(),
        op: op.into(),
        cause: DeviceErrorCause::Unsupported(why.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_log_page_dwords() {
        // 512 bytes = 128 dwords -> NUMD 127.
        let c = AdminCommand::get_log_page(0x02, NSID_ALL, 512).unwrap();
        assert_eq!(c.opcode, 0x02);
        assert_eq!(c.nsid, 0xFFFF_FFFF);
        assert_eq!(c.cdw10, 0x02 | (127 << 16));
        assert_eq!(c.cdw11, 0);
        assert_eq!(c.data_len, 512);
        assert_eq!((c.log_id(), c.log_len()), (0x02, 512));
        // 8192 bytes of page 0xd0: NUMD 2047.
        let c = AdminCommand::get_log_page(0xD0, 1, 8192).unwrap();
        assert_eq!(c.cdw10, 0xD0 | (2047 << 16));
        assert_eq!(c.cdw11, 0);
        // 1 MiB: NUMD 262143 = 0x3FFFF -> low 0xFFFF in cdw10, high 0x3 in cdw11.
        let c = AdminCommand::get_log_page(0x01, NSID_ALL, 1 << 20).unwrap();
        assert_eq!(c.cdw10, 0x01 | (0xFFFF << 16));
        assert_eq!(c.cdw11, 0x3);
        assert_eq!(c.log_len(), 1 << 20);
        assert!(matches!(
            AdminCommand::get_log_page(2, 0, 0),
            Err(AdminError::InvalidLength(0))
        ));
        assert!(matches!(
            AdminCommand::get_log_page(2, 0, 6),
            Err(AdminError::InvalidLength(6))
        ));
    }

    #[test]
    fn identify_dwords_and_descriptions() {
        let c = AdminCommand::identify_controller();
        assert_eq!((c.opcode, c.cdw10, c.data_len, c.nsid), (0x06, 1, 4096, 0));
        assert_eq!(c.describe(), "identify controller");
        assert_eq!(
            AdminCommand::get_log_page(0xD0, 1, 4096)
                .unwrap()
                .describe(),
            "get log page 0xd0"
        );
    }

    #[test]
    fn passthru_layout_matches_uapi() {
        assert_eq!(std::mem::size_of::<NvmePassthruCmd>(), 72);
        assert_eq!(std::mem::offset_of!(NvmePassthruCmd, nsid), 4);
        assert_eq!(std::mem::offset_of!(NvmePassthruCmd, metadata), 16);
        assert_eq!(std::mem::offset_of!(NvmePassthruCmd, metadata_len), 32);
        assert_eq!(std::mem::offset_of!(NvmePassthruCmd, data_len), 36);
        assert_eq!(std::mem::offset_of!(NvmePassthruCmd, timeout_ms), 64);
        // _IOWR('N', 0x41, 72 bytes)
        let dir_rw: u64 = 3;
        let nr = (dir_rw << 30) | (72u64 << 16) | ((b'N' as u64) << 8) | 0x41;
        assert_eq!(nr, 0xC048_4E41);
    }

    #[test]
    fn errors_name_device_op_and_cause() {
        let cmd = AdminCommand::get_log_page(0xD0, 1, 4096).unwrap();
        let e = DeviceError::admin("nvme0", &cmd, AdminError::Status(0x4002));
        assert_eq!(
            e.to_string(),
            "nvme0: get log page 0xd0: Invalid Field in Command (status 0x4002)"
        );
        assert_eq!(e.status(), Some(0x4002));
        let e = DeviceError::decode(
            "nvme1",
            &cmd,
            NvmeError::BadMagic {
                page: dmremap_core::nvme::Page::AwsStats,
                found: 0,
            },
        );
        assert_eq!(
            e.to_string(),
            "nvme1: get log page 0xd0: Amazon statistics page (0xd0): unknown magic 0x00000000"
        );
    }

    #[test]
    fn ioctl_transport_reports_open_failures_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = IoctlTransport::new(dir.path());
        let mut buf = vec![0u8; 4096];
        let err = identify_controller(&mut t, "nvme9", &mut buf).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("nvme9: identify controller: open "),
            "{msg}"
        );
        assert!(msg.contains("nvme9"), "{msg}");
    }

    #[test]
    fn ioctl_on_a_regular_file_fails_cleanly() {
        // A regular file accepts open() but not the NVMe ioctl: the error must come back as an
        // I/O error (ENOTTY), not a crash.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nvme0"), b"not a device").unwrap();
        let mut t = IoctlTransport::new(dir.path());
        let mut buf = vec![0u8; 512];
        let err = read_smart(&mut t, "nvme0", &mut buf).unwrap_err();
        match err.cause {
            DeviceErrorCause::Admin(AdminError::Io(ref e)) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOTTY))
            }
            ref other => panic!("unexpected {other:?}"),
        }
        assert_eq!(buf, vec![0u8; 512], "nothing written on failure");
    }

    #[test]
    fn parallel_batch_fills_every_result() {
        let dir = tempfile::tempdir().unwrap();
        // Regular files take no NVMe ioctl (ENOTTY); nvme2 does not exist.
        std::fs::write(dir.path().join("nvme0"), b"").unwrap();
        std::fs::write(dir.path().join("nvme1"), b"").unwrap();
        std::fs::write(dir.path().join("nvme3"), b"").unwrap();
        for parallel in [1, 4] {
            let mut t = IoctlTransport::new(dir.path());
            t.set_parallel(parallel);
            let cmd = AdminCommand::get_log_page(LID_SMART, NSID_ALL, SMART_LOG_LEN).unwrap();
            let mut bufs = vec![vec![0u8; SMART_LOG_LEN]; 4];
            let names = ["nvme0", "nvme1", "nvme2", "nvme3"];
            let mut items: Vec<BatchItem<'_>> = names
                .iter()
                .zip(bufs.iter_mut())
                .map(|(n, b)| BatchItem {
                    controller: n,
                    cmd: &cmd,
                    data: &mut b[..],
                    result: Ok(()),
                })
                .collect();
            t.submit_batch(&mut items);
            let errs: Vec<Option<i32>> = items
                .iter()
                .map(|it| match &it.result {
                    Err(AdminError::Io(e)) => e.raw_os_error(),
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(
                errs,
                vec![
                    Some(libc::ENOTTY),
                    Some(libc::ENOTTY),
                    None, // open failed: the error names the path, no raw errno
                    Some(libc::ENOTTY)
                ],
                "parallel {parallel}"
            );
            match &items[2].result {
                Err(AdminError::Io(e)) => assert!(e.to_string().contains("nvme2"), "{e}"),
                other => panic!("{other:?}"),
            }
        }
    }
}

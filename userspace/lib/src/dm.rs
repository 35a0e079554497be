//! Standard device-mapper access for `remap` devices: create, remove, list, table, status and
//! target messages, through the `devicemapper` crate's ioctls on `/dev/mapper/control`.
//!
//! Besides the ioctl wrappers ([`Dm`]) this module holds the pure parts that tests cover without
//! a kernel: the table line a [`RemapSegment`] becomes ([`build_table`]), the checks of a planned
//! segment against the devices it uses ([`plan_segment`]), device and UUID name rules
//! ([`check_name`], [`check_uuid`]), and parsers for the target's answers: the status INFO line
//! ([`RemapStatus`]), the table line ([`RemapTable`]), `list` lines ([`RemapEntry`]), `stats`
//! lines ([`Stats`]) and the answers of `remap` and `unremap`.
//!
//! Device nodes: with udev running, udev creates `/dev/mapper/<name>` (the crate waits for it
//! through the udev cookie on resume and remove). Without udev (`/run/udev/control` absent, the
//! crate's own test), [`Dm::create`] makes the block-special node itself and [`Dm::remove`]
//! deletes it, as libdevmapper does when udev is not managing nodes.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use devicemapper::{DevId, DmFlags, DmName, DmOptions, DmUuid, DM};
use dmremap_core::table::{self as ktable, Options};
use serde::{Serialize, Serializer};

/// The device-mapper target type this module manages.
pub const TARGET_TYPE: &str = "remap";
/// The device-mapper control node.
pub const CONTROL_PATH: &str = "/dev/mapper/control";
/// Where device nodes of device-mapper devices live.
pub const MAPPER_DIR: &str = "/dev/mapper";
/// Longest device name (`DM_NAME_LEN` less the terminating NUL).
pub const NAME_MAX: usize = 127;
/// Longest UUID (`DM_UUID_LEN` less the terminating NUL).
pub const UUID_MAX: usize = 128;
/// Entries asked for per `list` message when paging through all remapped blocks.
pub const LIST_PAGE: u64 = 1000;

// ---------------------------------------------------------------------------------------------
// Errors

/// A failed device-mapper operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `/dev/mapper/control` could not be opened.
    #[error("cannot open {CONTROL_PATH}: {0}")]
    Control(#[source] io::Error),
    /// An ioctl failed; `op` names it (`DM_DEV_CREATE`, ...).
    #[error("{op}: {}", errno_text(*.errno))]
    Ioctl { op: &'static str, errno: i32 },
    /// An argument that device-mapper would not accept (name too long, bad table, ...).
    #[error("{0}")]
    Invalid(String),
    /// The device exists but has no `remap` target.
    #[error("{0} has no `remap` target")]
    NotRemap(String),
    /// The kernel's answer did not have the expected form.
    #[error("unexpected answer from the kernel: {0}")]
    Parse(String),
    /// Anything else the `devicemapper` crate reports.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The errno behind the error, if there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Control(e) => e.raw_os_error(),
            Error::Ioctl { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    fn from_dm(op: &'static str, e: devicemapper::DmError) -> Error {
        use devicemapper::errors::Error as Core;
        match e {
            devicemapper::DmError::Core(Core::Ioctl(_, _, _, errno)) => Error::Ioctl {
                op,
                errno: *errno as i32,
            },
            devicemapper::DmError::Core(Core::InvalidArgument(s)) => Error::Invalid(s),
            devicemapper::DmError::Core(Core::ContextInit(s)) => Error::Other(s),
            other => Error::Other(format!("{op}: {other}")),
        }
    }
}

/// `ENXIO: No such device or address` style text for an errno.
pub fn errno_text(errno: i32) -> String {
    let e = nix::errno::Errno::from_raw(errno);
    format!("{e:?}: {}", e.desc())
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------------------------
// Device numbers and block devices

/// A block device number, written `major:minor` as device-mapper tables do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DevNo {
    pub major: u32,
    pub minor: u32,
}

impl DevNo {
    pub fn from_dev_t(d: u64) -> DevNo {
        DevNo {
            // The kernel's device numbers have 12-bit majors and 20-bit minors.
            major: nix::sys::stat::major(d) as u32,
            minor: nix::sys::stat::minor(d) as u32,
        }
    }

    pub fn to_dev_t(self) -> u64 {
        nix::sys::stat::makedev(self.major.into(), self.minor.into())
    }

    /// `/dev/<DEVNAME>` from sysfs (`/sys/dev/block/M:m/uevent`), if the device is known there.
    pub fn node_path(self) -> Option<PathBuf> {
        let uevent = fs::read_to_string(format!("/sys/dev/block/{self}/uevent")).ok()?;
        let name = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME="))?;
        Some(Path::new("/dev").join(name))
    }
}

impl fmt::Display for DevNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

impl FromStr for DevNo {
    type Err = String;
    fn from_str(s: &str) -> Result<DevNo, String> {
        let (a, b) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}` is not major:minor"))?;
        let num = |x: &str| {
            ktable::parse_u64(x.as_bytes())
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| format!("`{s}` is not major:minor"))
        };
        Ok(DevNo {
            major: num(a)?,
            minor: num(b)?,
        })
    }
}

impl Serialize for DevNo {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl From<devicemapper::Device> for DevNo {
    fn from(d: devicemapper::Device) -> DevNo {
        DevNo {
            major: d.major,
            minor: d.minor,
        }
    }
}

/// A block device as a table needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlockDevice {
    /// The path after resolving symlinks.
    pub path: PathBuf,
    pub dev: DevNo,
    /// Size in 512-byte sectors.
    pub sectors: u64,
    /// Logical block size in bytes.
    pub logical_block_size: u32,
}

/// Why a path cannot be used as a block device.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{}: {source}", path.display())]
    Missing { path: PathBuf, source: io::Error },
    #[error("{} is not a block device (it is {kind})", path.display())]
    NotBlock { path: PathBuf, kind: &'static str },
    #[error("{}: {what}: {source}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
}

nix::ioctl_read!(blk_getsize64, 0x12, 114, u64);
nix::ioctl_read_bad!(blk_sszget, nix::request_code_none!(0x12, 104), libc::c_int);

fn file_kind(ft: &fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a directory"
    } else if ft.is_file() {
        "a regular file"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a device"
    }
}

/// Resolves `path`, checks that it is a block device and reads its size and logical block size
/// (`BLKGETSIZE64`, `BLKSSZGET` on a read-only descriptor).
pub fn probe_block_device(path: &Path) -> Result<BlockDevice, ProbeError> {
    let meta = fs::metadata(path).map_err(|source| ProbeError::Missing {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.file_type().is_block_device() {
        return Err(ProbeError::NotBlock {
            path: path.to_path_buf(),
            kind: file_kind(&meta.file_type()),
        });
    }
    let real = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let io_err = |what, source| ProbeError::Io {
        path: real.clone(),
        what,
        source,
    };
    let f = File::open(&real).map_err(|e| io_err("open", e))?;
    let bytes = block_device_bytes(&f).map_err(|e| io_err("BLKGETSIZE64", e))?;
    let lbs = logical_block_size(&f).map_err(|e| io_err("BLKSSZGET", e))?;
    Ok(BlockDevice {
        path: real,
        dev: DevNo::from_dev_t(meta.rdev()),
        sectors: bytes >> 9,
        logical_block_size: lbs.max(512),
    })
}

/// Size in bytes of the block device open as `f` (`BLKGETSIZE64`).
pub fn block_device_bytes(f: &File) -> io::Result<u64> {
    let mut bytes: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer; `f` is an open descriptor.
    unsafe { blk_getsize64(std::os::fd::AsRawFd::as_raw_fd(f), &mut bytes) }?;
    Ok(bytes)
}

/// Logical block size of the block device open as `f` (`BLKSSZGET`).
pub fn logical_block_size(f: &File) -> io::Result<u32> {
    let mut lbs: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer; `f` is an open descriptor.
    unsafe { blk_sszget(std::os::fd::AsRawFd::as_raw_fd(f), &mut lbs) }?;
    u32::try_from(lbs).map_err(|_| io::Error::other(format!("logical block size {lbs}")))
}

// ---------------------------------------------------------------------------------------------
// Names

/// Checks a device name: 1 to 127 characters from `A-Z a-z 0-9 # + - . : = @ _`, not `.`, `..`
/// or `control` (the names that would clash in `/dev/mapper`). The kernel itself only refuses
/// `/`; the narrower set keeps names usable as paths and in shell commands without quoting,
/// the same set libdevmapper accepts without mangling.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the device name is empty".into());
    }
    if name.len() > NAME_MAX {
        return Err(format!(
            "the device name is {} characters long, at most {NAME_MAX} are allowed",
            name.len()
        ));
    }
    if matches!(name, "." | ".." | "control") {
        return Err(format!("`{name}` cannot be a device name"));
    }
    check_chars(name, "device name")
}

/// Checks a device UUID: 1 to 128 characters from the same set as names.
pub fn check_uuid(uuid: &str) -> Result<(), String> {
    if uuid.is_empty() {
        return Err("the UUID is empty".into());
    }
    if uuid.len() > UUID_MAX {
        return Err(format!(
            "the UUID is {} characters long, at most {UUID_MAX} are allowed",
            uuid.len()
        ));
    }
    check_chars(uuid, "UUID")
}

fn check_chars(s: &str, what: &str) -> Result<(), String> {
    match s
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "#+-.:=@_".contains(c)))
    {
        Some(c) => Err(format!(
            "the {what} `{}` contains {c:?}; allowed are A-Z a-z 0-9 and # + - . : = @ _",
            s.escape_default()
        )),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Tables

/// One line of a device-mapper table: start and length in sectors, target type, parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableLine {
    pub start: u64,
    pub length: u64,
    pub target_type: String,
    pub params: String,
}

impl fmt::Display for TableLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.start, self.length, self.target_type, self.params
        )
    }
}

/// One `remap` segment of a table to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemapSegment {
    /// First sector of the segment in the device.
    pub start: u64,
    /// Length in sectors.
    pub length: u64,
    /// Main device as the kernel should look it up (`major:minor` or a path).
    pub main: String,
    /// Offset on the main device in sectors.
    pub main_offset: u64,
    /// Spare device (`major:minor` or a path).
    pub spare: String,
    pub options: Options,
}

impl RemapSegment {
    /// The target parameters: `<main> <offset> <spare>[ <#opts> <opt>...]`.
    pub fn params(&self) -> String {
        let mut s = format!("{} {} {}", self.main, self.main_offset, self.spare);
        // Writing to a String cannot fail.
        let _ = self.options.emit(&mut s);
        s
    }
}

/// Table lines for `segments`, checked as the kernel's constructor checks the non-device
/// arguments (the same parser), and for a gap-free layout from sector 0.
pub fn build_table(segments: &[RemapSegment]) -> Result<Vec<TableLine>> {
    if segments.is_empty() {
        return Err(Error::Invalid("a table needs at least one segment".into()));
    }
    let mut next = 0u64;
    let mut lines = Vec::with_capacity(segments.len());
    for (i, seg) in segments.iter().enumerate() {
        if seg.start != next {
            return Err(Error::Invalid(format!(
                "segment {i} starts at sector {}, expected {next} (segments must follow each other from 0)",
                seg.start
            )));
        }
        if seg.length == 0 {
            return Err(Error::Invalid(format!("segment {i} has length 0")));
        }
        for (what, dev) in [("main", &seg.main), ("spare", &seg.spare)] {
            if dev.is_empty() || dev.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Error::Invalid(format!(
                    "segment {i}: {what} device `{}` is empty or contains white space",
                    dev.escape_default()
                )));
            }
        }
        let params = seg.params();
        let words: Vec<&[u8]> = params.split(' ').map(str::as_bytes).collect();
        let parsed = ktable::parse_args(words.iter().copied())
            .map_err(|e| Error::Invalid(format!("segment {i}: {e}")))?;
        debug_assert_eq!(parsed.main_offset, seg.main_offset);
        next = seg
            .start
            .checked_add(seg.length)
            .ok_or_else(|| Error::Invalid(format!("segment {i} ends beyond 2^64 sectors")))?;
        lines.push(TableLine {
            start: seg.start,
            length: seg.length,
            target_type: TARGET_TYPE.into(),
            params,
        });
    }
    Ok(lines)
}

/// Why a planned segment does not fit its devices. The messages match the kernel
/// constructor's checks, with the numbers filled in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("block size {0} is not a power of two from {min} to {max} bytes", min = ktable::MIN_BLOCK_SIZE, max = ktable::MAX_BLOCK_SIZE)]
    BadBlockSize(u64),
    #[error("read retries {0} is out of range (0 to {max})", max = ktable::MAX_READ_RETRIES)]
    BadReadRetries(u64),
    #[error("main and spare are the same device ({0})")]
    SameDevice(DevNo),
    #[error("block size {block_size} is smaller than the logical block size {lbs} of {dev}")]
    BlockBelowLogical {
        block_size: u32,
        lbs: u32,
        dev: String,
    },
    #[error("offset {offset} is not a multiple of the block size ({block_sectors} sectors)")]
    OffsetNotAligned { offset: u64, block_sectors: u64 },
    #[error("offset {offset} is not inside the main device ({size} sectors)")]
    OffsetBeyondEnd { offset: u64, size: u64 },
    #[error("length 0: the segment would be empty")]
    LengthZero,
    #[error("offset {offset} + length {length} sectors is beyond the end of the main device ({size} sectors)")]
    LengthBeyondEnd { offset: u64, length: u64, size: u64 },
    #[error("length {length} is not a multiple of the logical block size ({sectors} sectors)")]
    LengthNotAligned { length: u64, sectors: u64 },
    #[error("the spare device ({sectors} sectors) is smaller than one block ({block_size} bytes)")]
    SpareTooSmall { sectors: u64, block_size: u32 },
}

/// Table options from the optional command-line values, range-checked like the kernel does.
/// Only values given end up in the table line.
pub fn options(block_size: Option<u64>, read_retries: Option<u64>) -> Result<Options, PlanError> {
    let mut o = Options::default();
    if let Some(b) = block_size {
        if !b.is_power_of_two()
            || b < u64::from(ktable::MIN_BLOCK_SIZE)
            || b > u64::from(ktable::MAX_BLOCK_SIZE)
        {
            return Err(PlanError::BadBlockSize(b));
        }
        o.block_size = b as u32;
        o.block_size_given = true;
    }
    if let Some(r) = read_retries {
        if r > u64::from(ktable::MAX_READ_RETRIES) {
            return Err(PlanError::BadReadRetries(r));
        }
        o.read_retries = r as u32;
        o.read_retries_given = true;
    }
    Ok(o)
}

/// A segment at `start` mapping `main` from `main_offset` for `length` sectors (default: to the
/// end of `main`, rounded down to its logical block size), with remapped blocks on `spare`.
/// Devices are named by `major:minor` in the table, so the kernel opens exactly the devices
/// that were checked.
pub fn plan_segment(
    start: u64,
    main: &BlockDevice,
    spare: &BlockDevice,
    main_offset: u64,
    length: Option<u64>,
    options: Options,
) -> Result<RemapSegment, PlanError> {
    if main.dev == spare.dev {
        return Err(PlanError::SameDevice(main.dev));
    }
    for d in [main, spare] {
        if options.block_size < d.logical_block_size {
            return Err(PlanError::BlockBelowLogical {
                block_size: options.block_size,
                lbs: d.logical_block_size,
                dev: d.path.display().to_string(),
            });
        }
    }
    let block_sectors = options.block_sectors();
    // Block sizes are powers of two.
    if main_offset & (block_sectors - 1) != 0 {
        return Err(PlanError::OffsetNotAligned {
            offset: main_offset,
            block_sectors,
        });
    }
    if main_offset >= main.sectors {
        return Err(PlanError::OffsetBeyondEnd {
            offset: main_offset,
            size: main.sectors,
        });
    }
    let lbs_sectors = u64::from(main.logical_block_size.max(spare.logical_block_size) >> 9).max(1);
    let length = match length {
        Some(l) => {
            if l == 0 {
                return Err(PlanError::LengthZero);
            }
            if l > main.sectors - main_offset {
                return Err(PlanError::LengthBeyondEnd {
                    offset: main_offset,
                    length: l,
                    size: main.sectors,
                });
            }
            if l % lbs_sectors != 0 {
                return Err(PlanError::LengthNotAligned {
                    length: l,
                    sectors: lbs_sectors,
                });
            }
            l
        }
        None => {
            let l = (main.sectors - main_offset) / lbs_sectors * lbs_sectors;
            if l == 0 {
                return Err(PlanError::LengthZero);
            }
            l
        }
    };
    if spare.sectors < block_sectors {
        return Err(PlanError::SpareTooSmall {
            sectors: spare.sectors,
            block_size: options.block_size,
        });
    }
    Ok(RemapSegment {
        start,
        length,
        main: main.dev.to_string(),
        main_offset,
        spare: spare.dev.to_string(),
        options,
    })
}

// ---------------------------------------------------------------------------------------------
// Parsing of what the target reports

fn num(field: &str, s: &str) -> Result<u64> {
    ktable::parse_u64(s.as_bytes())
        .ok_or_else(|| Error::Parse(format!("{field} `{s}` is not a number")))
}

/// The parsed table line of a `remap` target (`STATUSTYPE_TABLE`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RemapTable {
    /// Main device as the kernel reports it (`major:minor`).
    pub main: String,
    pub main_offset: u64,
    pub spare: String,
    pub block_size: u32,
    pub read_retries: u32,
}

impl FromStr for RemapTable {
    type Err = Error;
    fn from_str(s: &str) -> Result<RemapTable> {
        let words: Vec<&str> = s.split_whitespace().collect();
        let parsed = ktable::parse_args(words.iter().map(|w| w.as_bytes()))
            .map_err(|e| Error::Parse(format!("table `{s}`: {e}")))?;
        Ok(RemapTable {
            main: words[0].to_string(),
            main_offset: parsed.main_offset,
            spare: words[2].to_string(),
            block_size: parsed.options.block_size,
            read_retries: parsed.options.read_retries,
        })
    }
}

/// The status INFO of a `remap` target:
/// `<remapped> <pending> <spare_used>/<spare_total> <read_errors> <write_errors> <metadata_seq> <state>`.
/// Fields a newer module appends after these are kept, in order, in `extra` (so a new kernel
/// field does not break this parser).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RemapStatus {
    pub remapped: u64,
    pub pending: u64,
    pub spare_used: u64,
    pub spare_total: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    pub metadata_seq: u64,
    pub state: String,
    /// Trailing fields this version does not know.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<String>,
}

impl FromStr for RemapStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<RemapStatus> {
        let w: Vec<&str> = s.split_whitespace().collect();
        if w.len() < 7 {
            return Err(Error::Parse(format!(
                "status `{s}` has {} fields, expected at least 7",
                w.len()
            )));
        }
        let (used, total) = w[2]
            .split_once('/')
            .ok_or_else(|| Error::Parse(format!("spare usage `{}` is not used/total", w[2])))?;
        let st = RemapStatus {
            remapped: num("remapped", w[0])?,
            pending: num("pending", w[1])?,
            spare_used: num("spare_used", used)?,
            spare_total: num("spare_total", total)?,
            read_errors: num("read_errors", w[3])?,
            write_errors: num("write_errors", w[4])?,
            metadata_seq: num("metadata_seq", w[5])?,
            state: w[6].to_string(),
            extra: w[7..].iter().map(|f| f.to_string()).collect(),
        };
        if st.spare_used > st.spare_total {
            return Err(Error::Parse(format!(
                "status `{s}`: spare used {} exceeds total {}",
                st.spare_used, st.spare_total
            )));
        }
        Ok(st)
    }
}

/// State of a block in the remap index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryState {
    /// Its data lives in a spare slot.
    Remapped,
    /// Unreadable on main, waiting for a full-block write.
    Pending,
}

/// One line of the `list` answer: `<sector> <block> <slot> <state>` (`-` for no slot).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RemapEntry {
    /// First device sector of the block.
    pub sector: u64,
    /// Block number inside its segment.
    pub block: u64,
    /// Spare slot, if the block has one.
    pub slot: Option<u64>,
    pub state: EntryState,
}

impl FromStr for RemapEntry {
    type Err = Error;
    fn from_str(s: &str) -> Result<RemapEntry> {
        let w: Vec<&str> = s.split_whitespace().collect();
        if w.len() != 4 {
            return Err(Error::Parse(format!(
                "list line `{s}` has {} fields, expected 4",
                w.len()
            )));
        }
        let state = match w[3] {
            "remapped" => EntryState::Remapped,
            "pending" => EntryState::Pending,
            other => {
                return Err(Error::Parse(format!(
                    "list line `{s}`: unknown state `{other}`"
                )))
            }
        };
        let slot = match w[2] {
            "-" => None,
            x => Some(num("slot", x)?),
        };
        if (state == EntryState::Remapped) != slot.is_some() {
            return Err(Error::Parse(format!(
                "list line `{s}`: slot and state disagree"
            )));
        }
        Ok(RemapEntry {
            sector: num("sector", w[0])?,
            block: num("block", w[1])?,
            slot,
            state,
        })
    }
}

/// Parses a whole `list` answer (one entry per line, possibly empty).
pub fn parse_list(answer: &str) -> Result<Vec<RemapEntry>> {
    answer
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::parse)
        .collect()
}

/// The `stats` answer (`key=value` lines). Keys this version does not know are kept: in `other`
/// when their value is a number, in `other_text` otherwise (both flattened into the JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub remapped: u64,
    pub pending: u64,
    pub spare_used: u64,
    pub spare_total: u64,
    pub block_size: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    pub remap_ops: u64,
    pub unremap_ops: u64,
    pub split_bios: u64,
    pub held_bios: u64,
    #[serde(flatten)]
    pub other: BTreeMap<String, u64>,
    #[serde(flatten)]
    pub other_text: BTreeMap<String, String>,
}

/// The keys [`Stats`] has fields for.
const STATS_KEYS: [&str; 11] = [
    "remapped",
    "pending",
    "spare_used",
    "spare_total",
    "block_size",
    "read_errors",
    "write_errors",
    "remap_ops",
    "unremap_ops",
    "split_bios",
    "held_bios",
];

impl FromStr for Stats {
    type Err = Error;
    fn from_str(s: &str) -> Result<Stats> {
        let mut map = BTreeMap::new();
        let mut text = BTreeMap::new();
        for line in s.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| Error::Parse(format!("stats line `{line}` is not key=value")))?;
            if k.is_empty()
                || !k
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
            {
                return Err(Error::Parse(format!("stats line `{line}`: bad key")));
            }
            if map.contains_key(k) || text.contains_key(k) {
                return Err(Error::Parse(format!("stats: key `{k}` appears twice")));
            }
            match num(k, v) {
                Ok(n) => {
                    map.insert(k.to_string(), n);
                }
                // Every known key is a number; an unknown one may be anything.
                Err(_) if !STATS_KEYS.contains(&k) => {
                    text.insert(k.to_string(), v.to_string());
                }
                Err(e) => return Err(e),
            }
        }
        let mut take = |k: &str| {
            map.remove(k)
                .ok_or_else(|| Error::Parse(format!("stats: key `{k}` is missing")))
        };
        Ok(Stats {
            remapped: take("remapped")?,
            pending: take("pending")?,
            spare_used: take("spare_used")?,
            spare_total: take("spare_total")?,
            block_size: take("block_size")?,
            read_errors: take("read_errors")?,
            write_errors: take("write_errors")?,
            remap_ops: take("remap_ops")?,
            unremap_ops: take("unremap_ops")?,
            split_bios: take("split_bios")?,
            held_bios: take("held_bios")?,
            other: map,
            other_text: text,
        })
    }
}

/// The answer of `remap <sector> <count>`:
/// `remapped <n> blocks, <m> already remapped[, then failed: error <e>]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RemapAnswer {
    /// Blocks moved to the spare by this message.
    pub remapped: u64,
    /// Blocks that were on the spare already.
    pub already_remapped: u64,
    /// The error (a negative errno, as the kernel prints it) that stopped the message part way.
    pub error: Option<i32>,
}

impl FromStr for RemapAnswer {
    type Err = Error;
    fn from_str(s: &str) -> Result<RemapAnswer> {
        let bad = || Error::Parse(format!("remap answer `{s}`"));
        let rest = s.trim().strip_prefix("remapped ").ok_or_else(bad)?;
        let (n, rest) = rest.split_once(" blocks, ").ok_or_else(bad)?;
        let (m, rest) = rest.split_once(" already remapped").ok_or_else(bad)?;
        let error = match rest {
            "" => None,
            r => Some(
                r.strip_prefix(", then failed: error ")
                    .and_then(|e| e.parse::<i32>().ok())
                    .ok_or_else(bad)?,
            ),
        };
        Ok(RemapAnswer {
            remapped: num("remapped", n)?,
            already_remapped: num("already remapped", m)?,
            error,
        })
    }
}

/// The answer of `unremap <sector>`: `unremapped block <b>`; returns `b`.
/// The answer to `pending`: `marked <N> blocks pending` (also `block`).
pub fn parse_pending_answer(s: &str) -> Result<u64> {
    let w: Vec<&str> = s.split_whitespace().collect();
    match w.as_slice() {
        ["marked", n, "blocks" | "block", "pending"] => n
            .parse()
            .map_err(|_| Error::Parse(format!("pending answer `{}`", s.trim()))),
        _ => Err(Error::Parse(format!("pending answer `{}`", s.trim()))),
    }
}

pub fn parse_unremap_answer(s: &str) -> Result<u64> {
    let b = s
        .trim()
        .strip_prefix("unremapped block ")
        .ok_or_else(|| Error::Parse(format!("unremap answer `{s}`")))?;
    num("block", b)
}

// ---------------------------------------------------------------------------------------------
// Devices

/// What `DM_DEV_STATUS` says about a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DevInfo {
    pub name: String,
    pub uuid: Option<String>,
    pub dev: DevNo,
    pub open_count: i32,
    pub event_nr: u32,
    pub suspended: bool,
    pub read_only: bool,
    /// The device has a live table.
    pub active: bool,
}

impl DevInfo {
    fn from_dm(i: &devicemapper::DeviceInfo, fallback_name: &str) -> DevInfo {
        let f = i.flags();
        DevInfo {
            name: i
                .name()
                .map(|n| n.to_string())
                .unwrap_or_else(|| fallback_name.to_string()),
            uuid: i.uuid().map(|u| u.to_string()).filter(|u| !u.is_empty()),
            dev: i.device().into(),
            open_count: i.open_count(),
            event_nr: i.event_nr(),
            suspended: f.contains(DmFlags::DM_SUSPEND),
            read_only: f.contains(DmFlags::DM_READONLY),
            active: f.contains(DmFlags::DM_ACTIVE_PRESENT),
        }
    }
}

/// One segment of a device: the table line and, for `remap` targets, the parsed table and status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Segment {
    pub start: u64,
    pub length: u64,
    pub target_type: String,
    /// Parsed `remap` table; `None` for other target types.
    pub table: Option<RemapTable>,
    /// Parsed `remap` status; `None` for other target types.
    pub status: Option<RemapStatus>,
    /// The table parameters as the kernel reports them.
    pub params: String,
    /// The status INFO as the kernel reports it.
    pub info: String,
}

/// A device with its table and status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Device {
    #[serde(flatten)]
    pub info: DevInfo,
    /// Total length in sectors.
    pub sectors: u64,
    pub segments: Vec<Segment>,
}

impl Device {
    /// The device has at least one `remap` segment.
    pub fn is_remap(&self) -> bool {
        self.segments.iter().any(|s| s.target_type == TARGET_TYPE)
    }

    /// The `remap` segments.
    pub fn remap_segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments
            .iter()
            .filter(|s| s.target_type == TARGET_TYPE)
    }

    /// The segment holding device sector `sector`.
    pub fn segment_at(&self, sector: u64) -> Option<&Segment> {
        self.segments
            .iter()
            .find(|s| sector >= s.start && sector - s.start < s.length)
    }
}

/// Combines the table and the status lines of one device into segments.
pub fn combine_segments(table: &[TableLine], status: &[TableLine]) -> Result<Vec<Segment>> {
    if table.len() != status.len()
        || table.iter().zip(status).any(|(t, s)| {
            (t.start, t.length, &t.target_type) != (s.start, s.length, &s.target_type)
        })
    {
        return Err(Error::Parse(
            "the table changed between reading it and reading its status; try again".into(),
        ));
    }
    table
        .iter()
        .zip(status)
        .map(|(t, s)| {
            let remap = t.target_type == TARGET_TYPE;
            Ok(Segment {
                start: t.start,
                length: t.length,
                target_type: t.target_type.clone(),
                table: if remap { Some(t.params.parse()?) } else { None },
                status: if remap { Some(s.params.parse()?) } else { None },
                params: t.params.clone(),
                info: s.params.clone(),
            })
        })
        .collect()
}

/// A loaded target type and its version (`DM_LIST_VERSIONS`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TargetVersion {
    pub name: String,
    pub version: [u32; 3],
}

/// Whether udev manages device nodes (the `devicemapper` crate's own test).
pub fn udev_running() -> bool {
    Path::new("/run/udev/control").exists()
}

/// A handle on `/dev/mapper/control`.
pub struct Dm {
    dm: DM,
}

fn dm_name(name: &str) -> Result<&DmName> {
    check_name(name).map_err(Error::Invalid)?;
    DmName::new(name).map_err(|e| Error::from_dm("name", e))
}

impl Dm {
    /// Opens the control node. The error keeps the errno (`EACCES` for a caller without
    /// permission, `ENOENT` without device-mapper): the crate's own open reports only text, so
    /// the node is opened once here first to learn why it fails.
    pub fn open() -> Result<Dm> {
        File::open(CONTROL_PATH).map_err(Error::Control)?;
        let dm = DM::new().map_err(|e| Error::from_dm("open", e))?;
        Ok(Dm { dm })
    }

    /// The kernel's device-mapper ioctl interface version.
    pub fn driver_version(&self) -> Result<(u32, u32, u32)> {
        self.dm
            .version()
            .map_err(|e| Error::from_dm("DM_VERSION", e))
    }

    /// The registered target types (`DM_LIST_VERSIONS`).
    pub fn target_types(&self) -> Result<Vec<TargetVersion>> {
        let v = self
            .dm
            .list_versions()
            .map_err(|e| Error::from_dm("DM_LIST_VERSIONS", e))?;
        Ok(v.into_iter()
            .map(|(name, a, b, c)| TargetVersion {
                name,
                version: [a, b, c],
            })
            .collect())
    }

    /// The version of the `remap` target type, `None` when it is not registered.
    pub fn remap_target_version(&self) -> Result<Option<[u32; 3]>> {
        Ok(self
            .target_types()?
            .into_iter()
            .find(|t| t.name == TARGET_TYPE)
            .map(|t| t.version))
    }

    /// `DM_DEV_STATUS` of a device.
    pub fn info(&self, name: &str) -> Result<DevInfo> {
        let n = dm_name(name)?;
        let i = self
            .dm
            .device_info(&DevId::Name(n))
            .map_err(|e| Error::from_dm("DM_DEV_STATUS", e))?;
        Ok(DevInfo::from_dm(&i, name))
    }

    fn table_status(&self, name: &str, table: bool) -> Result<Vec<TableLine>> {
        let n = dm_name(name)?;
        let opts = if table {
            DmOptions::default().set_flags(DmFlags::DM_STATUS_TABLE)
        } else {
            DmOptions::default()
        };
        let (_, lines) = self
            .dm
            .table_status(&DevId::Name(n), opts)
            .map_err(|e| Error::from_dm("DM_TABLE_STATUS", e))?;
        Ok(lines
            .into_iter()
            .map(|(start, length, target_type, params)| TableLine {
                start,
                length,
                target_type,
                params,
            })
            .collect())
    }

    /// The live table (`DM_TABLE_STATUS` with `DM_STATUS_TABLE_FLAG`).
    pub fn table(&self, name: &str) -> Result<Vec<TableLine>> {
        self.table_status(name, true)
    }

    /// The status INFO lines (`DM_TABLE_STATUS`).
    pub fn status(&self, name: &str) -> Result<Vec<TableLine>> {
        self.table_status(name, false)
    }

    /// Info, table and status of a device, whatever its targets.
    pub fn device(&self, name: &str) -> Result<Device> {
        let info = self.info(name)?;
        let table = self.table(name)?;
        let status = self.status(name)?;
        let segments = combine_segments(&table, &status)?;
        Ok(Device {
            info,
            sectors: segments.iter().map(|s| s.length).sum(),
            segments,
        })
    }

    /// Like [`Dm::device`], but fails with [`Error::NotRemap`] for a device without a `remap`
    /// segment.
    pub fn remap_device(&self, name: &str) -> Result<Device> {
        let d = self.device(name)?;
        if !d.is_remap() {
            return Err(Error::NotRemap(name.to_string()));
        }
        Ok(d)
    }

    /// Every device with at least one `remap` segment, sorted by name. Devices removed while
    /// being listed are skipped.
    pub fn list_remap_devices(&self) -> Result<Vec<Device>> {
        let mut names: Vec<String> = self
            .dm
            .list_devices()
            .map_err(|e| Error::from_dm("DM_LIST_DEVICES", e))?
            .into_iter()
            .map(|(n, _, _)| n.to_string())
            .collect();
        names.sort();
        let mut out = Vec::new();
        for n in names {
            match self.device(&n) {
                Ok(d) if d.is_remap() => out.push(d),
                Ok(_) => {}
                Err(e) if e.errno() == Some(libc::ENXIO) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Creates device `name` (with `uuid`, if given) from `segments` and makes it live:
    /// `DM_DEV_CREATE`, `DM_TABLE_LOAD`, resume. If loading or resuming fails the half-made
    /// device is removed again. Without udev, also makes `/dev/mapper/<name>`; a failure there
    /// is returned as the second value (the device itself is live).
    pub fn create(
        &self,
        name: &str,
        uuid: Option<&str>,
        segments: &[RemapSegment],
    ) -> Result<(DevInfo, Option<io::Error>)> {
        let n = dm_name(name)?;
        let u = match uuid {
            Some(u) => {
                check_uuid(u).map_err(Error::Invalid)?;
                Some(DmUuid::new(u).map_err(|e| Error::from_dm("uuid", e))?)
            }
            None => None,
        };
        let table = build_table(segments)?;
        let lines: Vec<(u64, u64, String, String)> = table
            .into_iter()
            .map(|l| (l.start, l.length, l.target_type, l.params))
            .collect();
        self.dm
            .device_create(n, u, DmOptions::default())
            .map_err(|e| Error::from_dm("DM_DEV_CREATE", e))?;
        let id = DevId::Name(n);
        let live = self
            .dm
            .table_load(&id, &lines, DmOptions::default())
            .map_err(|e| Error::from_dm("DM_TABLE_LOAD", e))
            .and_then(|_| {
                self.dm
                    .device_suspend(&id, DmOptions::default())
                    .map_err(|e| Error::from_dm("DM_DEV_SUSPEND (resume)", e))
            });
        let info = match live {
            Ok(i) => DevInfo::from_dm(&i, name),
            Err(e) => {
                // Best effort: the error that matters is the one that stopped the creation.
                let _ = self.dm.device_remove(&id, DmOptions::default());
                return Err(e);
            }
        };
        let node_err = if udev_running() {
            None
        } else {
            make_node(name, info.dev).err()
        };
        Ok((info, node_err))
    }

    /// Gives a device that has none its device-mapper UUID (`DM_DEV_RENAME` with
    /// `DM_UUID_FLAG`; the kernel refuses to change a UUID once set).
    pub fn set_uuid(&self, name: &str, uuid: &str) -> Result<()> {
        let n = dm_name(name)?;
        check_uuid(uuid).map_err(Error::Invalid)?;
        let u = DmUuid::new(uuid).map_err(|e| Error::from_dm("uuid", e))?;
        self.dm
            .device_rename(n, &DevId::Uuid(u))
            .map_err(|e| Error::from_dm("DM_DEV_RENAME (uuid)", e))?;
        Ok(())
    }

    /// Removes a device (`DM_DEV_REMOVE`, retried a few times while it is busy) and, without
    /// udev, its `/dev/mapper/<name>` node.
    pub fn remove(&self, name: &str) -> Result<()> {
        let n = dm_name(name)?;
        // The device number for the node check: DM_DEV_REMOVE does not report it.
        let dev = self.info(name)?.dev;
        self.dm
            .device_remove(&DevId::Name(n), DmOptions::default())
            .map_err(|e| Error::from_dm("DM_DEV_REMOVE", e))?;
        if !udev_running() {
            remove_node(name, dev);
        }
        Ok(())
    }

    /// Sends a target message to the target holding device sector `sector` and returns its
    /// answer (`DM_TARGET_MSG`; the answer comes back with `DM_DATA_OUT_FLAG`). `None`: the
    /// target answered nothing.
    pub fn message(&self, name: &str, sector: u64, msg: &str) -> Result<Option<String>> {
        let n = dm_name(name)?;
        if msg.trim().is_empty() || msg.contains('\0') {
            return Err(Error::Invalid(
                "the message is empty or contains NUL".into(),
            ));
        }
        let (_, out) = self
            .dm
            .target_msg(&DevId::Name(n), Some(sector), msg)
            .map_err(|e| Error::from_dm("DM_TARGET_MSG", e))?;
        Ok(out)
    }

    fn expect_answer(&self, name: &str, sector: u64, msg: &str) -> Result<String> {
        self.message(name, sector, msg)?
            .ok_or_else(|| Error::Parse(format!("no answer to `{msg}`")))
    }

    /// Marks the blocks covering `count` device sectors from `sector` pending (unreadable
    /// until rewritten): the target's `pending <sector> <blocks>` message, sent to the segment
    /// holding `sector` (the sector range must lie in that segment). Returns the number of
    /// blocks the target reports as newly marked.
    pub fn pending(&self, name: &str, sector: u64, count: u64) -> Result<u64> {
        if count == 0 {
            return Err(Error::Invalid("pending: count must be at least 1".into()));
        }
        let line = self
            .table(name)?
            .into_iter()
            .find(|l| l.target_type == "remap" && l.start <= sector && sector - l.start < l.length)
            .ok_or_else(|| Error::Invalid(format!("sector {sector} is not in a remap segment")))?;
        let end = sector
            .checked_add(count)
            .filter(|&e| e <= line.start + line.length)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "sectors {sector}+{count} run past the end of their segment"
                ))
            })?;
        let bsec = u64::from(line.params.parse::<RemapTable>()?.block_size / 512).max(1);
        let blocks = (end - 1 - line.start) / bsec - (sector - line.start) / bsec + 1;
        parse_pending_answer(&self.expect_answer(
            name,
            sector,
            &format!("pending {sector} {blocks}"),
        )?)
    }

    /// `remap <sector> <count>`, sent to the segment holding `sector`.
    pub fn remap(&self, name: &str, sector: u64, count: u64) -> Result<RemapAnswer> {
        self.expect_answer(name, sector, &format!("remap {sector} {count}"))?
            .parse()
    }

    /// `unremap <sector>`; returns the block number the target moved back.
    pub fn unremap(&self, name: &str, sector: u64) -> Result<u64> {
        parse_unremap_answer(&self.expect_answer(name, sector, &format!("unremap {sector}"))?)
    }

    /// One `list <from> <max>` message to the segment holding `from`.
    pub fn list_page(&self, name: &str, from: u64, max: u64) -> Result<Vec<RemapEntry>> {
        let answer = self
            .message(name, from, &format!("list {from} {max}"))?
            .unwrap_or_default();
        parse_list(&answer)
    }

    /// The remapped and pending blocks of `dev` from device sector `from` on, across all its
    /// `remap` segments, at most `max` (all when `None`), paging [`LIST_PAGE`] entries at a time.
    pub fn list_remaps(
        &self,
        dev: &Device,
        from: u64,
        max: Option<u64>,
    ) -> Result<Vec<RemapEntry>> {
        let name = &dev.info.name;
        let mut out: Vec<RemapEntry> = Vec::new();
        let mut left = max.unwrap_or(u64::MAX);
        for seg in dev.remap_segments() {
            let end = seg.start + seg.length;
            if end <= from {
                continue;
            }
            let block_sectors = u64::from(
                seg.table
                    .as_ref()
                    .map_or(ktable::DEFAULT_BLOCK_SIZE, |t| t.block_size)
                    >> 9,
            );
            let mut next = from.max(seg.start);
            while left > 0 && next < end {
                let want = left.min(LIST_PAGE);
                let page = self.list_page(name, next, want)?;
                let got = page.len() as u64;
                // The first entry may be the block holding `next`; all lie in this segment
                // and come in increasing order.
                let mut lo = seg.start + (next - seg.start) / block_sectors * block_sectors;
                for e in &page {
                    if e.sector < lo || e.sector >= end {
                        return Err(Error::Parse(format!(
                            "list {next} {want}: sector {} is out of order or outside {lo}..{end}",
                            e.sector
                        )));
                    }
                    lo = e.sector + 1;
                }
                if got > want {
                    return Err(Error::Parse(format!(
                        "list {next} {want} returned {got} entries"
                    )));
                }
                let Some(last) = page.last() else { break };
                next = last.sector + block_sectors;
                left -= got;
                out.extend(page);
                if got < want {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The `stats` answer of the segment holding `sector`.
    pub fn stats(&self, name: &str, sector: u64) -> Result<Stats> {
        self.expect_answer(name, sector, "stats")?.parse()
    }

    /// `clear_stats` on the segment holding `sector`.
    pub fn clear_stats(&self, name: &str, sector: u64) -> Result<()> {
        self.message(name, sector, "clear_stats").map(|_| ())
    }
}

/// Makes `/dev/mapper/<name>` a block node for `dev` (mode 0600), replacing a stale block node.
fn make_node(name: &str, dev: DevNo) -> io::Result<()> {
    let dir = Path::new(MAPPER_DIR);
    fs::create_dir_all(dir)?;
    let path = dir.join(name);
    match fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_block_device() && m.rdev() == dev.to_dev_t() => return Ok(()),
        Ok(m) if m.file_type().is_block_device() || m.file_type().is_symlink() => {
            fs::remove_file(&path)?
        }
        Ok(m) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is {}",
                    path.display(),
                    file_kind(&m.file_type())
                ),
            ))
        }
        Err(_) => {}
    }
    use nix::sys::stat::{mknod, Mode, SFlag};
    if let Err(e) = mknod(
        &path,
        SFlag::S_IFBLK,
        Mode::S_IRUSR | Mode::S_IWUSR,
        dev.to_dev_t(),
    ) {
        let e = io::Error::from(e);
        return Err(io::Error::new(
            e.kind(),
            format!("mknod {}: {e}", path.display()),
        ));
    }
    Ok(())
}

/// Deletes `/dev/mapper/<name>` if it is a block node for `dev` (nothing else is touched).
fn remove_node(name: &str, dev: DevNo) {
    let path = Path::new(MAPPER_DIR).join(name);
    if let Ok(m) = fs::symlink_metadata(&path) {
        if m.file_type().is_block_device() && m.rdev() == dev.to_dev_t() {
            let _ = fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bdev(path: &str, major: u32, minor: u32, sectors: u64, lbs: u32) -> BlockDevice {
        BlockDevice {
            path: PathBuf::from(path),
            dev: DevNo { major, minor },
            sectors,
            logical_block_size: lbs,
        }
    }

    fn seg(start: u64, length: u64, opts: Options) -> RemapSegment {
        RemapSegment {
            start,
            length,
            main: "259:0".into(),
            main_offset: 0,
            spare: "253:1".into(),
            options: opts,
        }
    }

    #[test]
    fn table_lines_from_segments() {
        let t = build_table(&[seg(0, 2048, Options::default())]).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].to_string(), "0 2048 remap 259:0 0 253:1");

        let o = options(Some(65536), Some(5)).unwrap();
        let mut s2 = seg(2048, 4096, o);
        s2.main_offset = 8192;
        let t = build_table(&[seg(0, 2048, options(None, Some(0)).unwrap()), s2]).unwrap();
        assert_eq!(t[0].params, "259:0 0 253:1 1 read_retries:0");
        assert_eq!(
            t[1].to_string(),
            "2048 4096 remap 259:0 8192 253:1 2 block_size:65536 read_retries:5"
        );
        // What the kernel prints back parses to the same values.
        let back: RemapTable = t[1].params.parse().unwrap();
        assert_eq!(
            back,
            RemapTable {
                main: "259:0".into(),
                main_offset: 8192,
                spare: "253:1".into(),
                block_size: 65536,
                read_retries: 5
            }
        );
    }

    #[test]
    fn table_layout_is_checked() {
        assert!(matches!(build_table(&[]), Err(Error::Invalid(_))));
        let e = build_table(&[seg(8, 16, Options::default())]).unwrap_err();
        assert!(
            e.to_string().contains("starts at sector 8, expected 0"),
            "{e}"
        );
        let e = build_table(&[
            seg(0, 16, Options::default()),
            seg(32, 16, Options::default()),
        ])
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("segment 1 starts at sector 32, expected 16"),
            "{e}"
        );
        assert!(build_table(&[seg(0, 0, Options::default())])
            .unwrap_err()
            .to_string()
            .contains("length 0"));
        let mut s = seg(0, 8, Options::default());
        s.spare = "/dev/a b".into();
        assert!(build_table(&[s])
            .unwrap_err()
            .to_string()
            .contains("white space"));
        let mut s = seg(0, 8, Options::default());
        s.main = String::new();
        assert!(build_table(&[s]).is_err());
        let end = build_table(&[
            seg(0, u64::MAX, Options::default()),
            seg(u64::MAX, 1, Options::default()),
        ]);
        assert!(end.is_err());
    }

    #[test]
    fn option_ranges() {
        for bad in [0, 1, 256, 511, 513, 3000, 4097, 2 << 20, u64::MAX] {
            assert_eq!(
                options(Some(bad), None),
                Err(PlanError::BadBlockSize(bad)),
                "{bad}"
            );
        }
        for good in [512, 1024, 4096, 1 << 20] {
            let o = options(Some(good), None).unwrap();
            assert_eq!(u64::from(o.block_size), good);
            assert!(o.block_size_given && !o.read_retries_given);
        }
        assert_eq!(options(None, Some(17)), Err(PlanError::BadReadRetries(17)));
        assert_eq!(options(None, Some(16)).unwrap().read_retries, 16);
        assert_eq!(options(None, None).unwrap(), Options::default());
        let msg = PlanError::BadBlockSize(3000).to_string();
        assert_eq!(
            msg,
            "block size 3000 is not a power of two from 512 to 1048576 bytes"
        );
    }

    #[test]
    fn plan_checks_devices() {
        let main = bdev("/dev/nvme0n1", 259, 0, 2_097_152, 512);
        let spare = bdev("/dev/vda", 253, 0, 524_288, 512);
        let d = Options::default();
        let s = plan_segment(0, &main, &spare, 0, None, d).unwrap();
        assert_eq!(
            (s.main.as_str(), s.spare.as_str(), s.length),
            ("259:0", "253:0", 2_097_152)
        );
        let s = plan_segment(0, &main, &spare, 2048, None, d).unwrap();
        assert_eq!(s.length, 2_097_152 - 2048);
        let s = plan_segment(0, &main, &spare, 8, Some(1000), d).unwrap();
        assert_eq!((s.main_offset, s.length), (8, 1000));

        assert_eq!(
            plan_segment(0, &main, &main, 0, None, d),
            Err(PlanError::SameDevice(main.dev))
        );
        assert_eq!(
            plan_segment(0, &main, &spare, 4, None, d),
            Err(PlanError::OffsetNotAligned {
                offset: 4,
                block_sectors: 8
            })
        );
        assert_eq!(
            plan_segment(0, &main, &spare, 2_097_152, None, d),
            Err(PlanError::OffsetBeyondEnd {
                offset: 2_097_152,
                size: 2_097_152
            })
        );
        assert_eq!(
            plan_segment(0, &main, &spare, 0, Some(0), d),
            Err(PlanError::LengthZero)
        );
        assert_eq!(
            plan_segment(0, &main, &spare, 8, Some(2_097_152), d),
            Err(PlanError::LengthBeyondEnd {
                offset: 8,
                length: 2_097_152,
                size: 2_097_152
            })
        );
        let tiny = bdev("/dev/vdb", 253, 16, 4, 512);
        assert_eq!(
            plan_segment(0, &main, &tiny, 0, None, d),
            Err(PlanError::SpareTooSmall {
                sectors: 4,
                block_size: 4096
            })
        );
        // 4Kn main: 512-byte blocks are too small, lengths must be whole 4 KiB blocks.
        let main4k = bdev("/dev/sdb", 8, 16, 1 << 20, 4096);
        let e = plan_segment(
            0,
            &main4k,
            &spare,
            0,
            None,
            options(Some(512), None).unwrap(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "block size 512 is smaller than the logical block size 4096 of /dev/sdb"
        );
        assert_eq!(
            plan_segment(0, &main4k, &spare, 0, Some(12), d),
            Err(PlanError::LengthNotAligned {
                length: 12,
                sectors: 8
            })
        );
        // The default length rounds down to whole logical blocks.
        let odd = bdev("/dev/sdc", 8, 32, 1001, 4096);
        assert_eq!(
            plan_segment(0, &odd, &spare, 0, None, d).unwrap().length,
            1000
        );
        let s = plan_segment(
            0,
            &main,
            &spare,
            0,
            None,
            options(Some(1 << 20), Some(0)).unwrap(),
        )
        .unwrap();
        assert_eq!(
            build_table(&[s]).unwrap()[0].params,
            "259:0 0 253:0 2 block_size:1048576 read_retries:0"
        );
    }

    #[test]
    fn names() {
        for ok in ["r0", "a", "data-remap_1", "x.y:z=w@v+u#t", &"n".repeat(127)] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "control",
            "a/b",
            "a b",
            "tab\there",
            "é",
            "a\nb",
            "$x",
            &"n".repeat(128),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("a/b").unwrap_err().contains("'/'"));
        assert!(check_name(&"n".repeat(128))
            .unwrap_err()
            .contains("128 characters"));
        assert_eq!(check_uuid("CRYPT-abc-123"), Ok(()));
        assert!(check_uuid(&"u".repeat(129)).is_err());
        assert!(check_uuid("").is_err());
        assert!(check_uuid("a b").is_err());
    }

    #[test]
    fn status_info() {
        let s: RemapStatus = "3 1 4/65536 7 2 42 active".parse().unwrap();
        assert_eq!(
            s,
            RemapStatus {
                remapped: 3,
                pending: 1,
                spare_used: 4,
                spare_total: 65536,
                read_errors: 7,
                write_errors: 2,
                metadata_seq: 42,
                state: "active".into(),
                extra: vec![],
            }
        );
        assert!(!serde_json::to_string(&s).unwrap().contains("extra"));
        // Fields a newer module appends are kept, not fatal.
        let s: RemapStatus = "3 1 4/65536 7 2 42 active extra 9".parse().unwrap();
        assert_eq!((s.state.as_str(), s.metadata_seq), ("active", 42));
        assert_eq!(s.extra, ["extra", "9"]);
        assert_eq!(
            serde_json::to_value(&s).unwrap()["extra"],
            serde_json::json!(["extra", "9"])
        );
        for bad in [
            "",
            "3 1 4/65536 7 2 42",
            "3 1 465536 7 2 42 active",
            "3 1 4/x 7 2 42 active",
            "-3 1 4/65536 7 2 42 active",
            "3 1 9/8 7 2 42 active",
            "3 1 4/65536 7 2 18446744073709551616 active",
        ] {
            assert!(
                matches!(bad.parse::<RemapStatus>(), Err(Error::Parse(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn table_parse() {
        let t: RemapTable = "259:0 2048 253:0".parse().unwrap();
        assert_eq!(
            (t.main_offset, t.block_size, t.read_retries),
            (2048, 4096, 3)
        );
        let t: RemapTable = "259:0 0 253:0 1 block_size:512".parse().unwrap();
        assert_eq!(t.block_size, 512);
        for bad in [
            "",
            "259:0",
            "259:0 x 253:0",
            "259:0 0 253:0 2 block_size:512",
        ] {
            assert!(bad.parse::<RemapTable>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn list_answer() {
        let l = parse_list("0 0 5 remapped\n4104 513 0 remapped\n8192 1024 - pending\n").unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(
            l[1],
            RemapEntry {
                sector: 4104,
                block: 513,
                slot: Some(0),
                state: EntryState::Remapped
            }
        );
        assert_eq!((l[2].slot, l[2].state), (None, EntryState::Pending));
        assert_eq!(parse_list("").unwrap(), vec![]);
        assert_eq!(parse_list("\n").unwrap(), vec![]);
        for bad in [
            "0 0 5",
            "0 0 5 remapped x",
            "0 0 - remapped",
            "0 0 5 pending",
            "0 0 5 gone",
            "a 0 5 remapped",
            "0 0 -5 remapped",
        ] {
            assert!(parse_list(bad).is_err(), "{bad:?}");
        }
        let json = serde_json::to_string(&l[2]).unwrap();
        assert_eq!(
            json,
            r#"{"sector":8192,"block":1024,"slot":null,"state":"pending"}"#
        );
    }

    const STATS: &str = "remapped=71\npending=0\nspare_used=71\nspare_total=65536\nblock_size=4096\nread_errors=1\nwrite_errors=2\nremap_ops=80\nunremap_ops=9\nsplit_bios=12\nheld_bios=3\n";

    #[test]
    fn stats_answer() {
        let s: Stats = STATS.parse().unwrap();
        assert_eq!(
            (s.remapped, s.spare_total, s.block_size, s.held_bios),
            (71, 65536, 4096, 3)
        );
        assert!(s.other.is_empty());
        let s: Stats = format!("{STATS}future_counter=5\n").parse().unwrap();
        assert_eq!(s.other.get("future_counter"), Some(&5));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["future_counter"], 5);
        assert_eq!(json["remap_ops"], 80);
        // Unknown keys with other values are kept too; known keys must still be numbers.
        let s: Stats = format!("{STATS}future_mode=fast\nfuture_counter=6\n")
            .parse()
            .unwrap();
        assert_eq!(
            s.other_text.get("future_mode").map(String::as_str),
            Some("fast")
        );
        assert_eq!(s.other.get("future_counter"), Some(&6));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            (
                json["future_mode"].as_str(),
                json["future_counter"].as_u64()
            ),
            (Some("fast"), Some(6))
        );
        assert!(format!("{STATS}future_mode=a\nfuture_mode=7\n")
            .parse::<Stats>()
            .is_err());
        for bad in [
            STATS.replace("held_bios=3\n", ""),
            STATS.replace("=71\npending", "=x\npending"),
            format!("{STATS}remapped=1\n"),
            format!("{STATS}garbage\n"),
            format!("{STATS}=4\n"),
            format!("{STATS}Bad Key=4\n"),
        ] {
            assert!(
                matches!(bad.parse::<Stats>(), Err(Error::Parse(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn remap_and_unremap_answers() {
        let a: RemapAnswer = "remapped 62 blocks, 2 already remapped".parse().unwrap();
        assert_eq!((a.remapped, a.already_remapped, a.error), (62, 2, None));
        let a: RemapAnswer = "remapped 3 blocks, 0 already remapped, then failed: error -28"
            .parse()
            .unwrap();
        assert_eq!(a.error, Some(-28));
        for bad in [
            "",
            "remapped x blocks, 0 already remapped",
            "remapped 1 blocks",
            "remapped 1 blocks, 0 already remapped, then",
        ] {
            assert!(bad.parse::<RemapAnswer>().is_err(), "{bad:?}");
        }
        assert_eq!(parse_unremap_answer("unremapped block 513").unwrap(), 513);
        assert!(parse_unremap_answer("pong").is_err());
        assert_eq!(
            parse_pending_answer("marked 3 blocks pending\n").unwrap(),
            3
        );
        assert_eq!(parse_pending_answer("marked 1 block pending").unwrap(), 1);
        assert!(parse_pending_answer("marked x blocks pending").is_err());
        assert!(parse_pending_answer("pong").is_err());
    }

    #[test]
    fn segments_combine_table_and_status() {
        let tl = |s, l, t: &str, p: &str| TableLine {
            start: s,
            length: l,
            target_type: t.into(),
            params: p.into(),
        };
        let table = [
            tl(0, 100, "remap", "259:0 0 253:0"),
            tl(100, 50, "linear", "8:0 0"),
        ];
        let status = [
            tl(0, 100, "remap", "1 0 1/10 0 0 0 active"),
            tl(100, 50, "linear", ""),
        ];
        let segs = combine_segments(&table, &status).unwrap();
        assert_eq!(segs[0].status.as_ref().unwrap().spare_total, 10);
        assert!(segs[1].table.is_none() && segs[1].status.is_none());
        let dev = Device {
            info: DevInfo {
                name: "r".into(),
                uuid: None,
                dev: DevNo {
                    major: 253,
                    minor: 3,
                },
                open_count: 0,
                event_nr: 0,
                suspended: false,
                read_only: false,
                active: true,
            },
            sectors: 150,
            segments: segs,
        };
        assert!(dev.is_remap());
        assert_eq!(dev.segment_at(99).unwrap().start, 0);
        assert_eq!(dev.segment_at(100).unwrap().target_type, "linear");
        assert!(dev.segment_at(150).is_none());
        assert!(combine_segments(&table, &status[..1]).is_err());
        let moved = [
            tl(0, 90, "remap", "1 0 1/10 0 0 0 active"),
            tl(90, 60, "linear", ""),
        ];
        assert!(combine_segments(&table, &moved).is_err());
    }

    #[test]
    fn devno_text() {
        let d: DevNo = "259:3".parse().unwrap();
        assert_eq!(
            d,
            DevNo {
                major: 259,
                minor: 3
            }
        );
        assert_eq!(d.to_string(), "259:3");
        assert_eq!(DevNo::from_dev_t(d.to_dev_t()), d);
        for bad in ["", "259", "259:", ":3", "a:b", "1:2:3", "-1:2"] {
            assert!(bad.parse::<DevNo>().is_err(), "{bad:?}");
        }
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"259:3\"");
    }

    #[test]
    fn probe_refuses_non_block_paths() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        let e = probe_block_device(&file).unwrap_err();
        assert!(
            matches!(
                e,
                ProbeError::NotBlock {
                    kind: "a regular file",
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string()
                .ends_with("is not a block device (it is a regular file)"),
            "{e}"
        );
        let e = probe_block_device(dir.path()).unwrap_err();
        assert!(
            matches!(
                e,
                ProbeError::NotBlock {
                    kind: "a directory",
                    ..
                }
            ),
            "{e}"
        );
        let e = probe_block_device(Path::new("/dev/null")).unwrap_err();
        assert!(
            matches!(
                e,
                ProbeError::NotBlock {
                    kind: "a character device",
                    ..
                }
            ),
            "{e}"
        );
        let e = probe_block_device(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(e, ProbeError::Missing { .. }), "{e}");
        assert!(e.to_string().contains("No such file"), "{e}");
    }

    #[test]
    fn errno_texts() {
        assert_eq!(errno_text(libc::ENXIO), "ENXIO: No such device or address");
        let e = Error::Ioctl {
            op: "DM_DEV_STATUS",
            errno: libc::ENXIO,
        };
        assert_eq!(
            e.to_string(),
            "DM_DEV_STATUS: ENXIO: No such device or address"
        );
        assert_eq!(e.errno(), Some(libc::ENXIO));
    }
}

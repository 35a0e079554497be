//! The dm-remap control device `/dev/dm-remap`: typed access to the ioctls of
//! `include/dm_remap.h` (types generated from the header at build time).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Types and constants generated from `include/dm_remap.h`.
#[allow(non_camel_case_types, non_upper_case_globals, dead_code, clippy::all)]
pub mod uapi {
    include!(concat!(env!("OUT_DIR"), "/uapi.rs"));
}

nix::ioctl_readwrite!(ioc_version, uapi::DMR_IOCTL_MAGIC, 0x00, uapi::dmr_version);
nix::ioctl_readwrite!(ioc_bench, uapi::DMR_IOCTL_MAGIC, 0x01, uapi::dmr_bench);
nix::ioctl_readwrite!(ioc_events, uapi::DMR_IOCTL_MAGIC, 0x02, uapi::dmr_events);
nix::ioctl_readwrite!(
    ioc_events_seek,
    uapi::DMR_IOCTL_MAGIC,
    0x03,
    uapi::dmr_events_seek
);

/// Default path of the control device.
pub const CONTROL_PATH: &str = "/dev/dm-remap";

/// Errors from the control device, each naming the device and the cause.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The control device does not exist.
    #[error("{0}: no such device: the dm_remap module is not loaded (load it with `modprobe dm_remap` or `insmod dm_remap.ko`)")]
    NotLoaded(PathBuf),
    /// Opening or an ioctl was refused for lack of privilege.
    #[error("{path}: {what}: permission denied (CAP_SYS_ADMIN is required)")]
    Permission {
        /// Device path.
        path: PathBuf,
        /// What was attempted.
        what: &'static str,
    },
    /// Any other I/O or ioctl failure.
    #[error("{path}: {what}: {source}")]
    Io {
        /// Device path.
        path: PathBuf,
        /// What was attempted.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// Operation measured by the in-kernel benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchOp {
    /// Empty loop body: the timing floor.
    Noop,
    /// Spare-slot allocation (alloc + free).
    Alloc,
    /// Spare-slot allocation on a spare with one free slot: alloc, a failed alloc, free.
    AllocFull,
    /// Remap-index lookup.
    Lookup,
    /// Remap-index insert (insert + erase).
    Insert,
    /// Inserts filling an empty index with consecutive blocks; reports the index's memory.
    FillDense,
    /// Inserts filling an empty index with every 64th block; reports the index's memory.
    FillScattered,
}

impl BenchOp {
    fn raw(self) -> u32 {
        match self {
            BenchOp::Noop => uapi::dmr_bench_op_DMR_BENCH_NOOP,
            BenchOp::Alloc => uapi::dmr_bench_op_DMR_BENCH_ALLOC,
            BenchOp::AllocFull => uapi::dmr_bench_op_DMR_BENCH_ALLOC_FULL,
            BenchOp::Lookup => uapi::dmr_bench_op_DMR_BENCH_LOOKUP,
            BenchOp::Insert => uapi::dmr_bench_op_DMR_BENCH_INSERT,
            BenchOp::FillDense => uapi::dmr_bench_op_DMR_BENCH_FILL_DENSE,
            BenchOp::FillScattered => uapi::dmr_bench_op_DMR_BENCH_FILL_SCATTERED,
        }
    }

    /// Name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            BenchOp::Noop => "noop",
            BenchOp::Alloc => "alloc",
            BenchOp::AllocFull => "alloc_full",
            BenchOp::Lookup => "lookup",
            BenchOp::Insert => "insert",
            BenchOp::FillDense => "fill_dense",
            BenchOp::FillScattered => "fill_scattered",
        }
    }
}

/// Result of an in-kernel benchmark run (nanoseconds per operation).
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    /// Operation.
    pub op: &'static str,
    /// Operations run.
    pub iterations: u64,
    /// Index size the operations ran against.
    pub entries: u64,
    /// Operations per timed sample.
    pub batch: u32,
    /// Number of samples.
    pub samples: u64,
    /// Fastest sample, ns per operation.
    pub min: u64,
    /// Median, ns per operation.
    pub p50: u64,
    /// 99th percentile, ns per operation.
    pub p99: u64,
    /// Slowest sample, ns per operation.
    pub max: u64,
    /// Wall time of the timed part, ns.
    pub total_ns: u64,
    /// Fill operations: kernel memory (slab + vmalloc) the filled index holds, bytes; else 0.
    pub index_bytes: u64,
}

/// Kind of a kernel event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// A block moved to the spare (`arg` = slot).
    Remap,
    /// A block moved back to main (`arg` = freed slot).
    Unremap,
    /// A block was marked pending (unreadable).
    Pending,
    /// Free spare slots fell to 10 % or less (`arg` = free slots).
    SpareLow,
    /// No free spare slot was left for a block.
    SpareExhausted,
    /// A metadata write failed (`arg` = errno).
    MetadataError,
    /// A device failed a bio (`arg` = block-layer status).
    IoError,
    /// read() only: this reader fell behind and `arg` events from `seq` on were overwritten
    /// before it read them.
    Overflow,
    /// A type this program does not know (newer module).
    Unknown(u32),
}

impl EventType {
    fn from_raw(t: u32) -> EventType {
        match t {
            uapi::dmr_event_type_DMR_EV_REMAP => EventType::Remap,
            uapi::dmr_event_type_DMR_EV_UNREMAP => EventType::Unremap,
            uapi::dmr_event_type_DMR_EV_PENDING => EventType::Pending,
            uapi::dmr_event_type_DMR_EV_SPARE_LOW => EventType::SpareLow,
            uapi::dmr_event_type_DMR_EV_SPARE_EXHAUSTED => EventType::SpareExhausted,
            uapi::dmr_event_type_DMR_EV_META_ERROR => EventType::MetadataError,
            uapi::dmr_event_type_DMR_EV_IO_ERROR => EventType::IoError,
            uapi::dmr_event_type_DMR_EV_OVERFLOW => EventType::Overflow,
            other => EventType::Unknown(other),
        }
    }
}

impl Event {
    /// Major number of [`Event::dev`].
    pub fn major(&self) -> u32 {
        self.dev >> 20
    }

    /// Minor number of [`Event::dev`].
    pub fn minor(&self) -> u32 {
        self.dev & 0xfffff
    }

    fn from_raw(e: &uapi::dmr_event) -> Event {
        Event {
            seq: e.seq,
            time_ns: e.time_ns,
            kind: EventType::from_raw(e.type_),
            dev: e.dev,
            sector: e.sector,
            arg: e.arg,
            write: e.flags & uapi::DMR_EVF_WRITE != 0,
            spare: e.flags & uapi::DMR_EVF_SPARE != 0,
        }
    }
}

/// Where to put a file's event read() cursor ([`Control::seek_events`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seek {
    /// The oldest event still in the kernel's ring.
    Oldest,
    /// The next event to be raised: only new events.
    Now,
    /// This sequence number (1 up to the next one to be raised).
    Seq(u64),
}

/// One event from the module's event ring (the raw record; [`crate::event`] turns it into the
/// documented event schema).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Module-wide sequence number.
    pub seq: u64,
    /// CLOCK_MONOTONIC nanoseconds.
    pub time_ns: u64,
    /// What happened.
    pub kind: EventType,
    /// The device-mapper device, `major << 20 | minor` as the kernel encodes it.
    pub dev: u32,
    /// Sector of the device-mapper device.
    pub sector: u64,
    /// Type-specific value.
    pub arg: u64,
    /// The failed bio was a write.
    pub write: bool,
    /// The event concerns the spare device.
    pub spare: bool,
}

/// A batch of events and where to continue.
#[derive(Debug, Clone)]
pub struct EventBatch {
    /// Events in sequence order.
    pub events: Vec<Event>,
    /// Sequence number to ask for next.
    pub next_seq: u64,
    /// Oldest sequence number still held by the kernel.
    pub oldest_seq: u64,
    /// Events overwritten in the full ring since the module loaded.
    pub lost: u64,
}

/// Versions reported by the module.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Version {
    /// ABI version of the control device.
    pub abi: u32,
    /// Version of the `remap` target type.
    pub target: [u32; 3],
}

/// An open control device.
pub struct Control {
    file: File,
    path: PathBuf,
}

impl Control {
    /// Open the control device at its default path.
    pub fn open() -> Result<Self, ControlError> {
        Self::open_path(Path::new(CONTROL_PATH))
    }

    /// Open the control device at `path`.
    pub fn open_path(path: &Path) -> Result<Self, ControlError> {
        let path = path.to_path_buf();
        match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => Ok(Control { file, path }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ControlError::NotLoaded(path)),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                Err(ControlError::Permission { path, what: "open" })
            }
            Err(source) => Err(ControlError::Io {
                path,
                what: "open",
                source,
            }),
        }
    }

    fn err(&self, what: &'static str, e: nix::Error) -> ControlError {
        if e == nix::Error::EPERM || e == nix::Error::EACCES {
            ControlError::Permission {
                path: self.path.clone(),
                what,
            }
        } else {
            ControlError::Io {
                path: self.path.clone(),
                what,
                source: io::Error::from(e),
            }
        }
    }

    /// ABI and target versions.
    pub fn version(&self) -> Result<Version, ControlError> {
        let mut v = uapi::dmr_version {
            size: std::mem::size_of::<uapi::dmr_version>() as u32,
            ..Default::default()
        };
        // SAFETY: `v` is a valid, initialised dmr_version for the kernel to read and fill.
        unsafe { ioc_version(self.file.as_raw_fd(), &mut v) }
            .map_err(|e| self.err("version ioctl", e))?;
        Ok(Version {
            abi: v.abi_version,
            target: v.target_version,
        })
    }

    /// Run the in-kernel microbenchmark.
    pub fn bench(
        &self,
        op: BenchOp,
        iterations: u64,
        entries: u64,
        batch: u32,
    ) -> Result<BenchResult, ControlError> {
        let mut b = uapi::dmr_bench {
            size: std::mem::size_of::<uapi::dmr_bench>() as u32,
            op: op.raw(),
            batch,
            iterations,
            entries,
            ..Default::default()
        };
        // SAFETY: `b` is a valid, initialised dmr_bench for the kernel to read and fill.
        unsafe { ioc_bench(self.file.as_raw_fd(), &mut b) }
            .map_err(|e| self.err("bench ioctl", e))?;
        Ok(BenchResult {
            op: op.name(),
            iterations: b.iterations,
            entries: b.entries,
            batch: b.batch,
            samples: b.samples,
            min: b.ns_min,
            p50: b.ns_p50,
            p99: b.ns_p99,
            max: b.ns_max,
            total_ns: b.ns_total,
            index_bytes: b.index_bytes,
        })
    }

    /// Events with sequence number `since` or later (at most `max`, up to the ring size).
    pub fn events(&self, since: u64, max: u32) -> Result<EventBatch, ControlError> {
        let max = max.clamp(1, uapi::DMR_EVENT_RING);
        let mut buf = vec![uapi::dmr_event::default(); max as usize];
        let mut req = uapi::dmr_events {
            size: std::mem::size_of::<uapi::dmr_events>() as u32,
            since_seq: since,
            buf: buf.as_mut_ptr() as u64,
            max,
            ..Default::default()
        };
        // SAFETY: `req` is valid; `req.buf` points to `max` writable events that outlive the call.
        unsafe { ioc_events(self.file.as_raw_fd(), &mut req) }
            .map_err(|e| self.err("events ioctl", e))?;
        let n = (req.count as usize).min(buf.len());
        let events = buf[..n].iter().map(Event::from_raw).collect();
        Ok(EventBatch {
            events,
            next_seq: req.next_seq,
            oldest_seq: req.oldest_seq,
            lost: req.lost,
        })
    }

    /// Move this file's event read() cursor; returns the sequence number read() returns next.
    pub fn seek_events(&self, to: Seek) -> Result<u64, ControlError> {
        let (whence, seq) = match to {
            Seek::Oldest => (uapi::dmr_seek_whence_DMR_SEEK_OLDEST, 0),
            Seek::Now => (uapi::dmr_seek_whence_DMR_SEEK_NOW, 0),
            Seek::Seq(s) => (uapi::dmr_seek_whence_DMR_SEEK_SEQ, s),
        };
        let mut req = uapi::dmr_events_seek {
            size: std::mem::size_of::<uapi::dmr_events_seek>() as u32,
            whence,
            seq,
            ..Default::default()
        };
        // SAFETY: `req` is a valid, initialised dmr_events_seek for the kernel to read and fill.
        unsafe { ioc_events_seek(self.file.as_raw_fd(), &mut req) }
            .map_err(|e| self.err("events seek ioctl", e))?;
        Ok(req.cursor)
    }

    /// Put the file in non-blocking mode (read() then fails with `WouldBlock` instead of waiting).
    pub fn set_nonblocking(&self, on: bool) -> Result<(), ControlError> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let r = fcntl(&self.file, FcntlArg::F_GETFL).and_then(|fl| {
            let mut fl = OFlag::from_bits_retain(fl);
            fl.set(OFlag::O_NONBLOCK, on);
            fcntl(&self.file, FcntlArg::F_SETFL(fl))
        });
        r.map(drop).map_err(|e| ControlError::Io {
            path: self.path.clone(),
            what: "fcntl",
            source: e.into(),
        })
    }

    /// Wait up to `timeout_ms` (-1: forever) until read() has events; returns whether it has.
    /// An interrupting signal counts as "not yet".
    pub fn wait_events(&self, timeout_ms: i32) -> Result<bool, ControlError> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        // Any negative timeout waits forever, as poll(2) does.
        let timeout = PollTimeout::try_from(timeout_ms).unwrap_or(PollTimeout::NONE);
        let mut p = [PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
        match poll(&mut p, timeout) {
            Ok(n) => Ok(n > 0
                && p[0]
                    .revents()
                    .is_some_and(|r| r.contains(PollFlags::POLLIN))),
            Err(nix::errno::Errno::EINTR) => Ok(false),
            Err(e) => Err(ControlError::Io {
                path: self.path.clone(),
                what: "poll",
                source: e.into(),
            }),
        }
    }

    /// read() up to `max` event records (at least one) from this file's cursor. Blocks until
    /// one is available unless the file is non-blocking, when it returns an empty list instead.
    pub fn read_events(&self, max: usize) -> Result<Vec<Event>, ControlError> {
        let mut buf = vec![uapi::dmr_event::default(); max.max(1)];
        let len = buf.len() * std::mem::size_of::<uapi::dmr_event>();
        // SAFETY: `buf` is writable for `len` bytes; any bytes are a valid `dmr_event`.
        let n = unsafe { libc::read(self.file.as_raw_fd(), buf.as_mut_ptr().cast(), len) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(Vec::new()),
                io::ErrorKind::PermissionDenied => Err(ControlError::Permission {
                    path: self.path.clone(),
                    what: "read",
                }),
                _ => Err(ControlError::Io {
                    path: self.path.clone(),
                    what: "read",
                    source: e,
                }),
            };
        }
        let n = n as usize / std::mem::size_of::<uapi::dmr_event>();
        Ok(buf[..n.min(buf.len())]
            .iter()
            .map(Event::from_raw)
            .collect())
    }

    /// The raw file, for callers that issue their own ioctls (tests of bad input).
    pub fn file(&self) -> &File {
        &self.file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // The request code's type is `ioctl_num_type`: `c_ulong` on glibc (where the cast is a no-op)
    // but `c_int` on musl, so the casts to u64 are needed for the comparison to be portable.
    #[allow(clippy::unnecessary_cast)]
    fn abi_layout_matches_header() {
        assert_eq!(std::mem::size_of::<uapi::dmr_version>(), 56);
        assert_eq!(std::mem::size_of::<uapi::dmr_bench>(), 112);
        assert_eq!(uapi::DMR_IOCTL_MAGIC, 0xDB);
        // _IOWR('\xdb', 1, 112 bytes)
        assert_eq!(
            nix::request_code_readwrite!(uapi::DMR_IOCTL_MAGIC, 0x01, 112) as u64,
            0xC070_DB01
        );
        assert_eq!(std::mem::size_of::<uapi::dmr_event>(), 48);
        assert_eq!(std::mem::size_of::<uapi::dmr_events_seek>(), 48);
        assert_eq!(std::mem::offset_of!(uapi::dmr_events_seek, cursor), 24);
        assert_eq!(
            nix::request_code_readwrite!(uapi::DMR_IOCTL_MAGIC, 0x03, 48) as u64,
            0xC030_DB03
        );
    }

    #[test]
    fn overflow_records_decode() {
        let raw = uapi::dmr_event {
            seq: 5,
            type_: uapi::dmr_event_type_DMR_EV_OVERFLOW,
            arg: 7,
            ..Default::default()
        };
        let e = Event::from_raw(&raw);
        assert_eq!(e.kind, EventType::Overflow);
        assert_eq!((e.seq, e.time_ns, e.dev, e.sector, e.arg), (5, 0, 0, 0, 7));
        // In the event schema: lost events, with the record's numbers.
        let ev = crate::event::Event {
            ts: crate::event::Timestamp(0),
            seq: e.seq,
            source: "kernel".into(),
            device: "dm-remap".into(),
            kind: crate::event::kernel_kind(&e, Default::default()).unwrap(),
            kernel: crate::event::KernelRef::of(&e),
            enqueued_ns: 0,
        };
        let j = serde_json::to_string(&ev).unwrap();
        assert!(
            j.ends_with(
                r#""kind":"kernel_events_lost","fields":{"count":7},"kernel":{"seq":5,"dev":"0:0","arg":7}}"#
            ),
            "{j}"
        );
    }

    #[test]
    fn missing_device_says_module_not_loaded() {
        let e = Control::open_path(Path::new("/nonexistent/dm-remap"))
            .err()
            .unwrap();
        let msg = e.to_string();
        assert!(
            msg.contains("/nonexistent/dm-remap") && msg.contains("not loaded"),
            "{msg}"
        );
    }
}

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
    /// Remap-index lookup.
    Lookup,
    /// Remap-index insert (insert + erase).
    Insert,
}

impl BenchOp {
    fn raw(self) -> u32 {
        match self {
            BenchOp::Noop => uapi::dmr_bench_op_DMR_BENCH_NOOP,
            BenchOp::Alloc => uapi::dmr_bench_op_DMR_BENCH_ALLOC,
            BenchOp::Lookup => uapi::dmr_bench_op_DMR_BENCH_LOOKUP,
            BenchOp::Insert => uapi::dmr_bench_op_DMR_BENCH_INSERT,
        }
    }

    /// Name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            BenchOp::Noop => "noop",
            BenchOp::Alloc => "alloc",
            BenchOp::Lookup => "lookup",
            BenchOp::Insert => "insert",
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
            Err(source) => Err(ControlError::Io { path, what: "open", source }),
        }
    }

    fn err(&self, what: &'static str, e: nix::Error) -> ControlError {
        if e == nix::Error::EPERM || e == nix::Error::EACCES {
            ControlError::Permission { path: self.path.clone(), what }
        } else {
            ControlError::Io { path: self.path.clone(), what, source: io::Error::from(e) }
        }
    }

    /// ABI and target versions.
    pub fn version(&self) -> Result<Version, ControlError> {
        let mut v = uapi::dmr_version { size: std::mem::size_of::<uapi::dmr_version>() as u32, ..Default::default() };
        // SAFETY: `v` is a valid, initialised dmr_version for the kernel to read and fill.
        unsafe { ioc_version(self.file.as_raw_fd(), &mut v) }.map_err(|e| self.err("version ioctl", e))?;
        Ok(Version { abi: v.abi_version, target: v.target_version })
    }

    /// Run the in-kernel microbenchmark.
    pub fn bench(&self, op: BenchOp, iterations: u64, entries: u64, batch: u32) -> Result<BenchResult, ControlError> {
        let mut b = uapi::dmr_bench {
            size: std::mem::size_of::<uapi::dmr_bench>() as u32,
            op: op.raw(),
            batch,
            iterations,
            entries,
            ..Default::default()
        };
        // SAFETY: `b` is a valid, initialised dmr_bench for the kernel to read and fill.
        unsafe { ioc_bench(self.file.as_raw_fd(), &mut b) }.map_err(|e| self.err("bench ioctl", e))?;
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
        })
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
    fn abi_layout_matches_header() {
        assert_eq!(std::mem::size_of::<uapi::dmr_version>(), 56);
        assert_eq!(std::mem::size_of::<uapi::dmr_bench>(), 112);
        assert_eq!(uapi::DMR_IOCTL_MAGIC, 0xDB);
        // _IOWR('\xdb', 1, 112 bytes)
        assert_eq!(nix::request_code_readwrite!(uapi::DMR_IOCTL_MAGIC, 0x01, 112) as u64, 0xC070_DB01);
    }

    #[test]
    fn missing_device_says_module_not_loaded() {
        let e = Control::open_path(Path::new("/nonexistent/dm-remap")).err().unwrap();
        let msg = e.to_string();
        assert!(msg.contains("/nonexistent/dm-remap") && msg.contains("not loaded"), "{msg}");
    }
}

//! Command errors and the process exit codes they map to.
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success |
//! | 1    | the operation failed on the device or the system (I/O, ioctl, NVMe status, bad page, the kernel refused a table or message, device busy, name taken) |
//! | 2    | bad command line: reported by the argument parser, or an argument that cannot be right (bad device name, size, offset, sector; a path that is not a block device) |
//! | 3    | the named device (or process) does not exist: no such device-mapper device, no such path |
//! | 4    | not supported: the device does not support the operation (e.g. Amazon statistics on another device, a device without a `remap` target), or the kernel lacks what it needs (device-mapper, the `remap` target type: load `dm_remap`) |
//! | 5    | permission denied (device-mapper and the block devices need root / `CAP_SYS_ADMIN`) |

use std::fmt;
use std::process::ExitCode;

/// Kind of failure; decides the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Exit code 1.
    Failed,
    /// Exit code 2.
    Usage,
    /// Exit code 3.
    NoDevice,
    /// Exit code 4.
    Unsupported,
    /// Exit code 5.
    Permission,
}

/// An error message (naming the device and the cause) with its exit code.
#[derive(Debug)]
pub struct CliError {
    pub kind: Kind,
    pub msg: String,
}

impl CliError {
    pub fn new(kind: Kind, msg: impl Into<String>) -> Self {
        CliError {
            kind,
            msg: msg.into(),
        }
    }

    pub fn failed(msg: impl Into<String>) -> Self {
        Self::new(Kind::Failed, msg)
    }

    pub fn usage(msg: impl Into<String>) -> Self {
        Self::new(Kind::Usage, msg)
    }

    /// Numeric exit code.
    pub fn code(&self) -> u8 {
        match self.kind {
            Kind::Failed => 1,
            Kind::Usage => 2,
            Kind::NoDevice => 3,
            Kind::Unsupported => 4,
            Kind::Permission => 5,
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for CliError {}

impl From<dmremap_lib::control::ControlError> for CliError {
    /// Control-device errors: module not loaded → 4, no privilege → 5, anything else → 1.
    fn from(e: dmremap_lib::control::ControlError) -> Self {
        use dmremap_lib::control::ControlError as C;
        let kind = match &e {
            C::NotLoaded(_) => Kind::Unsupported,
            C::Permission { .. } => Kind::Permission,
            C::Io { .. } => Kind::Failed,
        };
        CliError::new(kind, e.to_string())
    }
}

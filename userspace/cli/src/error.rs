//! Command errors and the process exit codes they map to.
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success |
//! | 1    | the operation failed on the device or the system (I/O, ioctl, NVMe status, bad page) |
//! | 2    | bad command line (reported by the argument parser) |
//! | 3    | the named device does not exist |
//! | 4    | the device does not support the operation (e.g. Amazon statistics on another device) |

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

    /// Numeric exit code.
    pub fn code(&self) -> u8 {
        match self.kind {
            Kind::Failed => 1,
            Kind::Usage => 2,
            Kind::NoDevice => 3,
            Kind::Unsupported => 4,
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

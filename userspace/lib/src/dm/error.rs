//! Errors of device-mapper operations.

use std::io;

use super::CONTROL_PATH;

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

    pub(super) fn from_dm(op: &'static str, e: devicemapper::DmError) -> Error {
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

#[cfg(test)]
mod tests {
    use super::*;

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

//! Device numbers and block devices: `major:minor` text, probing a path, size and logical
//! block size.

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use dmremap_core::table as ktable;
use serde::{Serialize, Serializer};

use super::Result;

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

pub(super) fn file_kind(ft: &fs::FileType) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

//! Device nodes under `/dev/mapper` when udev does not manage them.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::blockdev::file_kind;
use super::{DevNo, MAPPER_DIR};

/// Whether udev manages device nodes (the `devicemapper` crate's own test).
pub fn udev_running() -> bool {
    Path::new("/run/udev/control").exists()
}

/// Makes `/dev/mapper/<name>` a block node for `dev` (mode 0600), replacing a stale block node.
pub(super) fn make_node(name: &str, dev: DevNo) -> io::Result<()> {
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
pub(super) fn remove_node(name: &str, dev: DevNo) {
    let path = Path::new(MAPPER_DIR).join(name);
    if let Ok(m) = fs::symlink_metadata(&path) {
        if m.file_type().is_block_device() && m.rdev() == dev.to_dev_t() {
            let _ = fs::remove_file(&path);
        }
    }
}

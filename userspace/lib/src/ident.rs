//! Stable identity of a block device: the string the kernel shows in sysfs and
//! `/dev/disk/by-id` is named after, which stays the same when the kernel name (`nvme0n1`,
//! `sda`) changes between boots. The remap target records it in the spare's metadata (table
//! option `main_id:<id>`) and refuses a spare whose main device has another one.
//!
//! Preference order, first attribute present and non-empty (paths under
//! `/sys/dev/block/<major>:<minor>/`):
//!
//! 1. `wwid`: NVMe namespaces: `eui.…`, `nguid.…`, `uuid.…` or `nvme.<vid>-<serial>-<model>-<nsid>`
//!    (by-id `nvme-eui.…`);
//! 2. `device/wwid`: SCSI and SATA disks: `naa.…`, `eui.…`, `t10.…` (by-id `wwn-…`, `scsi-…`);
//! 3. `dm/uuid`: device-mapper devices (LVM `LVM-…`, `CRYPT-…`; by-id `dm-uuid-…`), prefixed
//!    `dm-uuid-`;
//! 4. `md/uuid`: md RAID arrays (by-id `md-uuid-…`), prefixed `md-uuid-`;
//! 5. `serial`: virtio-blk disks with a serial (by-id `virtio-<serial>`);
//! 6. `device/serial`: other disks that only expose a serial (MMC, some USB bridges).
//!
//! A partition takes its disk's identity with `-part<N>` appended, as by-id links do.
//! Whitespace is trimmed and inner runs of it become one `_` (udev does the same for by-id
//! names); the result must be 1 to 256 printable ASCII characters, what the table accepts.

use std::fs;
use std::path::{Path, PathBuf};

use dmremap_core::table::valid_main_id;

use crate::dm::DevNo;

/// Where the identity of a device was read.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StableId {
    /// The identity string as the table and the metadata hold it.
    pub id: String,
    /// The sysfs attribute it came from, relative to the device's directory (for a partition,
    /// the disk's).
    pub source: &'static str,
}

/// Why a device has no usable stable identity.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("{0}: no such block device in sysfs")]
    NoDevice(String),
    #[error(
        "{0}: no stable identity in sysfs (wwid, device/wwid, dm/uuid, md/uuid, serial, \
         device/serial are all missing or empty); give one with --main-id"
    )]
    None(String),
    #[error(
        "{dev}: identity {id:?} from {attr} is not usable (1 to 256 printable ASCII characters)"
    )]
    Invalid {
        dev: String,
        id: String,
        attr: &'static str,
    },
}

/// Attributes tried in order, with the prefix the identity gets.
const SOURCES: [(&str, &str); 6] = [
    ("wwid", ""),
    ("device/wwid", ""),
    ("dm/uuid", "dm-uuid-"),
    ("md/uuid", "md-uuid-"),
    ("serial", ""),
    ("device/serial", ""),
];

/// Trim, and replace inner whitespace runs with one `_`.
pub fn normalize(raw: &str) -> String {
    raw.split_whitespace().collect::<Vec<_>>().join("_")
}

/// The stable identity of block device `dev`, read from the sysfs tree at `sysfs` (normally
/// `/sys`).
pub fn stable_id_at(sysfs: &Path, dev: DevNo) -> Result<StableId, IdError> {
    let shown = format!("{}:{}", dev.major, dev.minor);
    let dir = sysfs.join(format!("dev/block/{shown}"));
    let dir = fs::canonicalize(&dir).map_err(|_| IdError::NoDevice(shown.clone()))?;
    // A partition: its disk is the parent directory; the identity gets -part<N>.
    let (disk, suffix) = match fs::read_to_string(dir.join("partition")) {
        Ok(n) => (
            dir.parent().map(Path::to_path_buf).unwrap_or_default(),
            format!("-part{}", n.trim()),
        ),
        Err(_) => (dir.clone(), String::new()),
    };
    for (attr, prefix) in SOURCES {
        let Ok(raw) = fs::read_to_string(disk.join(attr)) else {
            continue;
        };
        let v = normalize(&raw);
        if v.is_empty() {
            continue;
        }
        let id = format!("{prefix}{v}{suffix}");
        if !valid_main_id(id.as_bytes()) {
            return Err(IdError::Invalid {
                dev: shown,
                id,
                attr,
            });
        }
        return Ok(StableId { id, source: attr });
    }
    Err(IdError::None(shown))
}

/// [`stable_id_at`] on `/sys`.
pub fn stable_id(dev: DevNo) -> Result<StableId, IdError> {
    stable_id_at(Path::new("/sys"), dev)
}

/// Every block device in sysfs (`/sys/class/block`), disks and partitions, with its number.
pub fn block_devices_at(sysfs: &Path) -> Vec<(String, DevNo)> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(sysfs.join("class/block")) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(s) = fs::read_to_string(e.path().join("dev")) else {
            continue;
        };
        let mut it = s.trim().splitn(2, ':');
        if let (Some(Ok(major)), Some(Ok(minor))) = (
            it.next().map(str::parse::<u32>),
            it.next().map(str::parse::<u32>),
        ) {
            out.push((name, DevNo { major, minor }));
        }
    }
    out.sort();
    out
}

/// The block devices whose stable identity is `id`, as `/dev/<name>` paths.
pub fn find_by_id_at(sysfs: &Path, id: &str) -> Vec<(PathBuf, DevNo)> {
    block_devices_at(sysfs)
        .into_iter()
        .filter(|(_, d)| stable_id_at(sysfs, *d).is_ok_and(|s| s.id == id))
        .map(|(n, d)| (PathBuf::from("/dev").join(n), d))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fake sysfs: /sys/devices/<path> directories with attributes, linked from dev/block and
    /// class/block.
    struct FakeSys(tempfile::TempDir);

    impl FakeSys {
        fn new() -> Self {
            let t = tempfile::tempdir().unwrap();
            fs::create_dir_all(t.path().join("dev/block")).unwrap();
            fs::create_dir_all(t.path().join("class/block")).unwrap();
            FakeSys(t)
        }
        fn dev(&self, path: &str, name: &str, major: u32, minor: u32, attrs: &[(&str, &str)]) {
            let d = self.0.path().join("devices").join(path);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("dev"), format!("{major}:{minor}\n")).unwrap();
            for (k, v) in attrs {
                let f = d.join(k);
                fs::create_dir_all(f.parent().unwrap()).unwrap();
                fs::write(f, v).unwrap();
            }
            symlink(&d, self.0.path().join(format!("dev/block/{major}:{minor}"))).unwrap();
            symlink(&d, self.0.path().join(format!("class/block/{name}"))).unwrap();
        }
        fn id(&self, major: u32, minor: u32) -> Result<StableId, IdError> {
            stable_id_at(self.0.path(), DevNo { major, minor })
        }
    }

    #[test]
    fn preference_order_and_partitions() {
        let s = FakeSys::new();
        // NVMe namespace: wwid wins over everything else.
        s.dev(
            "nvme/nvme0/nvme0n1",
            "nvme0n1",
            259,
            0,
            &[("wwid", "eui.0025385b71b2c3d4\n"), ("serial", "IGNORED")],
        );
        s.dev(
            "nvme/nvme0/nvme0n1/nvme0n1p2",
            "nvme0n1p2",
            259,
            2,
            &[("partition", "2\n")],
        );
        // SCSI disk with a t10 id full of spaces.
        s.dev(
            "scsi/sda",
            "sda",
            8,
            0,
            &[("device/wwid", "t10.ATA     QEMU HARDDISK   QM00001   \n")],
        );
        // virtio with a serial; virtio without one.
        s.dev("virtio/vda", "vda", 253, 0, &[("serial", "DISK-7\n")]);
        s.dev("virtio/vdb", "vdb", 253, 16, &[("serial", "\n")]);
        // A device-mapper device.
        s.dev(
            "virtual/dm-0",
            "dm-0",
            252,
            0,
            &[("dm/uuid", "LVM-abc\n"), ("serial", "x")],
        );
        let id = |ma, mi| s.id(ma, mi).map(|x| (x.id, x.source));
        assert_eq!(id(259, 0), Ok(("eui.0025385b71b2c3d4".into(), "wwid")));
        assert_eq!(
            id(259, 2),
            Ok(("eui.0025385b71b2c3d4-part2".into(), "wwid"))
        );
        assert_eq!(
            id(8, 0),
            Ok(("t10.ATA_QEMU_HARDDISK_QM00001".into(), "device/wwid"))
        );
        assert_eq!(id(253, 0), Ok(("DISK-7".into(), "serial")));
        assert_eq!(id(253, 16), Err(IdError::None("253:16".into())));
        assert_eq!(id(252, 0), Ok(("dm-uuid-LVM-abc".into(), "dm/uuid")));
        assert_eq!(id(1, 1), Err(IdError::NoDevice("1:1".into())));
        let found = find_by_id_at(s.0.path(), "DISK-7");
        assert_eq!(
            found,
            vec![(
                PathBuf::from("/dev/vda"),
                DevNo {
                    major: 253,
                    minor: 0
                }
            )]
        );
        assert!(find_by_id_at(s.0.path(), "nothing").is_empty());
    }

    #[test]
    fn unusable_identity_is_refused() {
        let s = FakeSys::new();
        s.dev("a", "sdz", 8, 0, &[("device/wwid", &"x".repeat(300))]);
        s.dev("b", "sdy", 8, 16, &[("serial", "caf\u{e9}")]);
        assert!(matches!(s.id(8, 0), Err(IdError::Invalid { .. })));
        assert!(matches!(s.id(8, 16), Err(IdError::Invalid { .. })));
    }
}

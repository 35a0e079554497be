//! `dmremap activate` and `deactivate`: bring remap sets up from what their spares record, the
//! way LVM (`pvscan --cache -aay`) and mdadm (`--incremental`) assemble from udev events.
//!
//! A spare's metadata (format version 2 or later) records the set UUID, the device-mapper name, the
//! target's place in the device (begin, length), the block size, the main offset and size, and
//! the main device's stable identity (`main_id`, see `dmremap_lib::ident`). Activation reads the
//! metadata of the given spare (or of every block device with `--all`), finds the main device
//! whose stable identity and size match, and creates `/dev/mapper/<name>` with the
//! device-mapper UUID `REMAP-<set uuid>` (as LVM uses `LVM-` and cryptsetup `CRYPT-`). The UUID
//! makes activation idempotent: a set whose UUID is already live is left alone. Segments of one
//! device (several spares recording the same name) are created together once all are present.
//!
//! Nothing is written by userspace: the kernel checks the identity again when it loads the
//! table, and migrates a version 1 spare (which recorded the main's kernel name) then.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use clap::Args;
use dmremap_core::alloc::words_for;
use dmremap_core::metadata::{load, probe, Expect, IoError, SpareRead, Superblock, MD_BLOCK_SIZE};
use dmremap_core::table::{valid_main_id, Options};
use dmremap_lib::dm::{self, BlockDevice, Dm, RemapSegment};
use dmremap_lib::ident;
use serde::Serialize;

use crate::dmcmd::{dm_error, open_dm};
use crate::error::{CliError, Kind};
use crate::inspect::hex;

/// Prefix of the device-mapper UUID of a remap device: `REMAP-<32 hex digits of the set UUID>`.
pub const UUID_PREFIX: &str = "REMAP-";

/// Arguments of `dmremap activate`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["all", "spare", "uuid"])))]
pub struct ActivateArgs {
    /// Probe every block device for remap metadata.
    #[arg(long)]
    pub all: bool,
    /// Probe every block device, activate only the device holding the set with this UUID
    /// (32 hex digits, as in `REMAP-<uuid>`; what the udev rule's unit instances pass).
    #[arg(long, value_name = "HEX")]
    pub uuid: Option<String>,
    /// A spare device to activate the set of.
    pub spare: Option<PathBuf>,
}

/// Directory where `udev-scan` records the spares it saw: one file per set, named by the set
/// UUID, holding the main device's identity.
pub const RUN_DIR: &str = "/run/dmremap/sets";

/// The device-mapper UUID of a set.
pub fn dm_uuid(set_uuid: &[u8; 16]) -> String {
    format!("{UUID_PREFIX}{}", hex(set_uuid))
}

struct Reader(File);

impl SpareRead for Reader {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.0.read_exact_at(buf, sector * 512).map_err(|_| IoError)
    }
}

/// The valid metadata on `dev`, if it holds any (`None`: blank, or not a spare).
pub fn read_set(dev: &BlockDevice) -> Option<Superblock> {
    let f = File::open(&dev.path).ok()?;
    // The kernel writes the metadata with bios, past this device's page cache: drop what an
    // earlier reader may have left there.
    // SAFETY: fadvise on a descriptor we own; no memory is passed.
    unsafe {
        libc::posix_fadvise(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            0,
            0,
            libc::POSIX_FADV_DONTNEED,
        )
    };
    let mut r = Reader(f);
    let mut buf = vec![0u8; MD_BLOCK_SIZE];
    let p = probe(&mut r, dev.sectors, &mut buf).ok()?;
    if p.is_blank() {
        return None;
    }
    let mut bits = vec![0u64; p.bitmap_words().max(words_for(1))];
    load(
        &mut r,
        dev.sectors,
        &Expect::default(),
        &mut buf,
        &mut bits,
        |_, _| Ok(()),
        |_, _| Ok(()),
    )
    .ok()
    .map(|l| l.sb)
}

/// Put `id` into `opts` as the table's `main_id`.
pub fn set_main_id(opts: &mut Options, id: &str) -> Result<(), String> {
    if !valid_main_id(id.as_bytes()) {
        return Err(format!(
            "main id {id:?} is not usable: 1 to 256 printable ASCII characters without spaces"
        ));
    }
    opts.main_id_buf[..id.len()].copy_from_slice(id.as_bytes());
    opts.main_id_len = id.len();
    Ok(())
}

/// The main id `create` puts into the table: the given one, or the device's stable identity.
pub fn main_id_for(main: &BlockDevice, given: Option<&str>) -> Result<String, CliError> {
    match given {
        Some(id) => Ok(id.to_string()),
        None => ident::stable_id(main.dev)
            .map(|s| s.id)
            .map_err(|e| CliError::usage(format!("{}: {e}", main.path.display()))),
    }
}

/// After `create`: give the device the UUID of the set its spare now holds.
pub fn adopt_set_uuid(dmh: &Dm, name: &str, spare: &BlockDevice) -> Result<String, String> {
    let sb = read_set(spare).ok_or("no valid metadata on the spare after creation")?;
    let uuid = dm_uuid(&sb.set.uuid);
    dmh.set_uuid(name, &uuid).map_err(|e| e.to_string())?;
    Ok(uuid)
}

/// One spare found with metadata.
#[derive(Debug, Clone)]
struct Found {
    spare: BlockDevice,
    sb: Superblock,
}

impl Found {
    fn name(&self) -> String {
        let n = String::from_utf8_lossy(self.sb.set.name_bytes()).into_owned();
        if n.is_empty() {
            // Version 1 recorded no name.
            format!("remap-{}", &hex(&self.sb.set.uuid)[..8])
        } else {
            n
        }
    }
}

/// What happened to one set.
#[derive(Debug, Serialize)]
struct Outcome {
    name: String,
    uuid: String,
    spares: Vec<PathBuf>,
    mains: Vec<PathBuf>,
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The main device of a set: the block device with the recorded stable identity and size
/// (version 1: the recorded kernel name).
fn find_main(f: &Found) -> Result<BlockDevice, String> {
    let id = String::from_utf8_lossy(f.sb.set.main.id_bytes()).into_owned();
    let candidates: Vec<PathBuf> = if f.sb.version == 1 {
        vec![PathBuf::from("/dev").join(&id)]
    } else {
        ident::find_by_id_at(Path::new("/sys"), &id)
            .into_iter()
            .map(|(p, _)| p)
            .collect()
    };
    let fits: Vec<BlockDevice> = candidates
        .iter()
        .filter_map(|p| dm::probe_block_device(p).ok())
        .filter(|d| d.sectors == f.sb.set.main.sectors && d.dev != f.spare.dev)
        .collect();
    match fits.len() {
        1 => Ok(fits.into_iter().next().expect("one")),
        0 => Err(format!(
            "main device {id:?} ({} sectors) not found",
            f.sb.set.main.sectors
        )),
        _ => Err(format!(
            "main device {id:?} is ambiguous: {}",
            fits.iter()
                .map(|d| d.path.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The table segment of one spare.
fn segment(f: &Found, main: &BlockDevice) -> Result<RemapSegment, String> {
    let set = &f.sb.set;
    let mut opts =
        dm::options(Some(u64::from(set.geometry.block_size)), None).map_err(|e| e.to_string())?;
    let id = if f.sb.version == 1 {
        // The kernel migrates the spare to the stable identity on this load.
        ident::stable_id(main.dev).map_err(|e| e.to_string())?.id
    } else {
        String::from_utf8_lossy(set.main.id_bytes()).into_owned()
    };
    set_main_id(&mut opts, &id)?;
    let length = (set.target_len > 0).then_some(set.target_len);
    dm::plan_segment(
        set.target_begin,
        main,
        &f.spare,
        set.main.offset,
        length,
        opts,
    )
    .map_err(|e| e.to_string())
}

/// Block devices that may hold a spare (size > 0), as /dev paths.
fn candidates() -> Vec<PathBuf> {
    ident::block_devices_at(Path::new("/sys"))
        .into_iter()
        .filter(|(n, _)| {
            std::fs::read_to_string(format!("/sys/class/block/{n}/size"))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .is_some_and(|s| s > 0)
        })
        .map(|(n, _)| PathBuf::from("/dev").join(n))
        .collect()
}

/// `dmremap activate`.
pub fn activate(a: &ActivateArgs, json: bool) -> Result<(), CliError> {
    let paths = match &a.spare {
        Some(p) => vec![p.clone()],
        None => candidates(),
    };
    let mut found = Vec::new();
    for p in &paths {
        let dev = match dm::probe_block_device(p) {
            Ok(d) => d,
            Err(e) if a.spare.is_some() => return Err(CliError::usage(e.to_string())),
            Err(_) => continue,
        };
        match read_set(&dev) {
            Some(sb) => found.push(Found { spare: dev, sb }),
            None if a.spare.is_some() => {
                return Err(CliError::failed(format!(
                    "{}: no valid remap metadata (see dmremap inspect)",
                    p.display()
                )))
            }
            None => {}
        }
    }
    let dmh = open_dm("activate")?;
    let live: Vec<String> = dmh
        .list_remap_devices()
        .map_err(|e| dm_error("activate", e))?
        .into_iter()
        .filter_map(|d| d.info.uuid)
        .collect();
    // Segments of one device share its name; a device's UUID is its first segment's set.
    let mut by_name: BTreeMap<String, Vec<Found>> = BTreeMap::new();
    for f in found {
        by_name.entry(f.name()).or_default().push(f);
    }
    if let Some(u) = &a.uuid {
        by_name.retain(|_, sets| sets.iter().any(|f| hex(&f.sb.set.uuid) == *u));
    }
    let mut outcomes = Vec::new();
    let mut failed = 0;
    for (name, mut sets) in by_name {
        sets.sort_by_key(|f| f.sb.set.target_begin);
        // The same spare seen twice (a disk and a by-id path) counts once.
        sets.dedup_by_key(|f| f.spare.dev);
        let uuid = dm_uuid(&sets[0].sb.set.uuid);
        let mut o = Outcome {
            name: name.clone(),
            uuid: uuid.clone(),
            spares: sets.iter().map(|f| f.spare.path.clone()).collect(),
            mains: Vec::new(),
            result: "activated",
            error: None,
        };
        if live
            .iter()
            .any(|u| sets.iter().any(|f| *u == dm_uuid(&f.sb.set.uuid)))
        {
            o.result = "already_active";
            outcomes.push(o);
            continue;
        }
        let plan: Result<Vec<RemapSegment>, String> = sets
            .iter()
            .map(|f| {
                let main = find_main(f)?;
                o.mains.push(main.path.clone());
                segment(f, &main)
            })
            .collect();
        let res = plan.and_then(|segs| {
            dmh.create(&name, Some(&uuid), &segs)
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        if let Err(e) = res {
            o.result = "failed";
            o.error = Some(e);
            failed += 1;
        }
        outcomes.push(o);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcomes).map_err(|e| CliError::failed(e.to_string()))?
        );
    } else {
        for o in &outcomes {
            let spares: Vec<String> = o.spares.iter().map(|p| p.display().to_string()).collect();
            match &o.error {
                Some(e) => eprintln!("dmremap: {}: not activated: {e}", o.name),
                None => println!(
                    "{}: {} ({}, spare {})",
                    o.name,
                    o.result,
                    o.uuid,
                    spares.join(", ")
                ),
            }
        }
    }
    match (
        failed,
        (a.spare.is_some() || a.uuid.is_some()) && outcomes.is_empty(),
    ) {
        (0, false) => Ok(()),
        (0, true) => Err(CliError::new(Kind::NoDevice, "no remap set found")),
        (n, _) => Err(CliError::failed(format!("{n} set(s) not activated"))),
    }
}

/// `dmremap deactivate NAME`: remove a device made by `activate` or `create` (refused while
/// open, like `remove`).
pub fn deactivate(name: &str, json: bool) -> Result<(), CliError> {
    crate::dmcmd::remove(name, json)
}

/// `dmremap udev-scan DEVNODE` (run by the udev rule for every block device event): prints
/// `DMREMAP_SET=<uuid>` for udev to import when this device completes a set, so the rule can
/// start `dmremap-activate@<uuid>.service`. A spare records its set under [`RUN_DIR`] (with the
/// main device's identity) and names it; a device whose stable identity is the main of a
/// recorded set names that set. Prints nothing otherwise; never fails the event.
pub fn udev_scan(devnode: &Path) -> Result<(), CliError> {
    let Ok(dev) = dm::probe_block_device(devnode) else {
        return Ok(());
    };
    let dir = Path::new(RUN_DIR);
    if let Some(sb) = read_set(&dev) {
        let u = hex(&sb.set.uuid);
        let id = String::from_utf8_lossy(sb.set.main.id_bytes()).into_owned();
        let _ = std::fs::create_dir_all(dir).and_then(|_| std::fs::write(dir.join(&u), id));
        println!("DMREMAP_SET={u}");
        return Ok(());
    }
    let Ok(id) = ident::stable_id(dev.dev) else {
        return Ok(());
    };
    let kname = dev
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(want) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        // Version 1 sets recorded the kernel name.
        if want == id.id || Some(&want) == kname.as_ref() {
            println!("DMREMAP_SET={}", e.file_name().to_string_lossy());
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmremap_core::metadata::{
        Geometry, MainDevice, SetInfo, Superblock, NAME_LEN, RECORDS_PER_BLOCK, VERSION,
    };

    fn found(version: u32, name: &[u8]) -> Found {
        let set = SetInfo {
            uuid: [
                0x5e, 0x7a, 0x11, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
            ],
            main: MainDevice {
                sectors: 1 << 21,
                offset: 0,
                id: MainDevice::id_from(b"eui.0000000000000001").unwrap(),
            },
            geometry: Geometry::for_spare(1 << 19, 4096, RECORDS_PER_BLOCK as u64).unwrap(),
            features_compat: 0,
            name: SetInfo::name_from(name).unwrap_or([0; NAME_LEN]),
            target_begin: 0,
            target_len: 1 << 21,
        };
        Found {
            spare: BlockDevice {
                path: "/dev/vdb".into(),
                dev: dm::DevNo {
                    major: 253,
                    minor: 16,
                },
                sectors: 1 << 19,
                logical_block_size: 512,
            },
            sb: Superblock {
                copy: dmremap_core::metadata::CopyId::A,
                version,
                seq: 3,
                set,
                nr_records: 0,
                nr_remapped: 0,
                nr_pending: 0,
                records_crc: 0,
            },
        }
    }

    #[test]
    fn names_and_uuids() {
        let f = found(VERSION, b"data0");
        assert_eq!(f.name(), "data0");
        assert_eq!(
            dm_uuid(&f.sb.set.uuid),
            "REMAP-5e7a11010102030405060708090a0b0c"
        );
        dm::check_uuid(&dm_uuid(&f.sb.set.uuid)).unwrap();
        // Version 1 recorded no name: one is made from the set UUID.
        assert_eq!(found(1, b"").name(), "remap-5e7a1101");
    }

    #[test]
    fn main_id_option() {
        let mut o = Options::default();
        set_main_id(&mut o, "eui.0025385b71b2c3d4").unwrap();
        assert_eq!(o.main_id(), Some(&b"eui.0025385b71b2c3d4"[..]));
        assert_eq!(o.count_given(), 1);
        for bad in ["", "has space", "caf\u{e9}", &"x".repeat(257)] {
            assert!(
                set_main_id(&mut Options::default(), bad).is_err(),
                "{bad:?}"
            );
        }
    }
}

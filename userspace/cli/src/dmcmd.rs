//! Device commands: `create`, `remove`, `list`, `status`, `remap`, `unremap`, `list-remaps`,
//! `stats` and `message`, over the standard device-mapper ioctls (`dmremap_lib::dm`).
//!
//! Arguments are checked before anything reaches the kernel, so most mistakes get a precise
//! message and exit code 2 instead of the kernel's bare `EINVAL`. Every error names the device
//! it concerns.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use dmremap_lib::dm::{self, BlockDevice, Device, Dm, ProbeError, RemapEntry, Segment, Stats};

use crate::error::{CliError, Kind};

/// Most blocks one `remap` message may move (the target's limit).
pub const REMAP_MAX_COUNT: u64 = 1 << 20;

/// `dmremap create` arguments.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct CreateArgs {
    /// Name of the new device (/dev/mapper/NAME).
    pub name: String,
    /// Main device: the disk whose bad blocks get remapped.
    #[arg(long, value_name = "DEV")]
    pub main: PathBuf,
    /// Spare device: holds the remapped blocks.
    #[arg(long, value_name = "DEV")]
    pub spare: PathBuf,
    /// Where the device starts on main, in 512-byte sectors (a multiple of the block size).
    #[arg(long, value_name = "SECTORS", default_value_t = 0)]
    pub offset: u64,
    /// Remap granularity in bytes: a power of two from 512 to 1048576 (kernel default 4096).
    #[arg(long, value_name = "BYTES")]
    pub block_size: Option<u64>,
    /// Retries of a failed read before the block counts as unreadable: 0 to 16 (kernel default 3).
    #[arg(long, value_name = "N")]
    pub read_retries: Option<u64>,
    /// Length of the device in sectors (default: from the offset to the end of main).
    #[arg(long, value_name = "SECTORS")]
    pub length: Option<u64>,
    /// Device-mapper UUID for the new device (default: `REMAP-<set uuid>` of the spare).
    #[arg(long)]
    pub uuid: Option<String>,
    /// Stable identity of the main device recorded on the spare (default: read from sysfs:
    /// wwid, device/wwid, dm/uuid, md/uuid, serial, device/serial).
    #[arg(long, value_name = "ID")]
    pub main_id: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Error mapping

/// Maps a device-mapper error about `subject` (usually the device name) to a message and an
/// exit code.
pub fn dm_error(subject: &str, e: dm::Error) -> CliError {
    use libc::{EACCES, EBUSY, ENOENT, ENOSPC, ENXIO, EPERM};
    match (&e, e.errno()) {
        (dm::Error::Control(_), Some(EACCES | EPERM))
        | (dm::Error::Ioctl { .. }, Some(EACCES | EPERM)) => CliError::new(
            Kind::Permission,
            format!("{subject}: {e}: device-mapper needs root (CAP_SYS_ADMIN)"),
        ),
        (dm::Error::Control(_), Some(ENOENT | ENXIO | libc::ENODEV)) => CliError::new(
            Kind::Unsupported,
            format!(
                "{subject}: {e}: the kernel has no device-mapper (CONFIG_BLK_DEV_DM; try `modprobe dm_mod`)"
            ),
        ),
        (dm::Error::Ioctl { .. }, Some(ENXIO)) => {
            CliError::new(Kind::NoDevice, format!("{subject}: no such device-mapper device"))
        }
        (dm::Error::Ioctl { op: "DM_DEV_CREATE", .. }, Some(EBUSY)) => CliError::failed(format!(
            "{subject}: a device-mapper device with this name or UUID exists already"
        )),
        (dm::Error::Ioctl { op: "DM_TABLE_LOAD", .. }, _) => CliError::failed(format!(
            "{subject}: the kernel refused the table ({e}); the kernel log (dmesg) says why"
        )),
        (dm::Error::Ioctl { op: "DM_TARGET_MSG", .. }, Some(ENOSPC)) => {
            CliError::failed(format!("{subject}: the spare device is full ({e})"))
        }
        (dm::Error::NotRemap(_), _) => CliError::new(Kind::Unsupported, e.to_string()),
        (dm::Error::Invalid(_), _) => CliError::usage(format!("{subject}: {e}")),
        _ => CliError::failed(format!("{subject}: {e}")),
    }
}

fn probe_error(role: &str, e: ProbeError) -> CliError {
    let kind = match &e {
        ProbeError::Missing { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
            Kind::Permission
        }
        ProbeError::Missing { .. } => Kind::NoDevice,
        ProbeError::NotBlock { .. } => Kind::Usage,
        ProbeError::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
            Kind::Permission
        }
        ProbeError::Io { .. } => Kind::Failed,
    };
    CliError::new(kind, format!("{role} device {e}"))
}

fn check_name(name: &str) -> Result<(), CliError> {
    dm::check_name(name).map_err(|m| CliError::usage(format!("{}: {m}", name.escape_default())))
}

pub fn open_dm(subject: &str) -> Result<Dm, CliError> {
    Dm::open().map_err(|e| dm_error(subject, e))
}

/// Opens device-mapper and reads device `name`, which must have a `remap` target.
fn open_remap(name: &str) -> Result<(Dm, Device), CliError> {
    check_name(name)?;
    let dmh = open_dm(name)?;
    let dev = dmh.device(name).map_err(|e| dm_error(name, e))?;
    if !dev.is_remap() {
        let types: Vec<&str> = dev
            .segments
            .iter()
            .map(|s| s.target_type.as_str())
            .collect();
        return Err(CliError::new(
            Kind::Unsupported,
            format!(
                "{name}: not a dm-remap device (targets: {})",
                if types.is_empty() {
                    "none, no live table".to_string()
                } else {
                    types.join(", ")
                }
            ),
        ));
    }
    Ok((dmh, dev))
}

/// The `remap` segment holding device sector `sector`, or a usage error.
fn remap_segment_at(dev: &Device, sector: u64) -> Result<&Segment, CliError> {
    let name = &dev.info.name;
    let seg = dev.segment_at(sector).ok_or_else(|| {
        CliError::usage(format!(
            "{name}: sector {sector} is beyond the end of the device ({} sectors)",
            dev.sectors
        ))
    })?;
    if seg.target_type != dm::TARGET_TYPE {
        return Err(CliError::new(
            Kind::Unsupported,
            format!(
                "{name}: sector {sector} lies in a `{}` segment, not a `remap` one",
                seg.target_type
            ),
        ));
    }
    Ok(seg)
}

fn block_sectors(seg: &Segment) -> u64 {
    u64::from(seg.table.as_ref().map_or(4096, |t| t.block_size) >> 9).max(1)
}

/// Checks that `count` blocks from the block holding `sector` fit in its segment.
pub fn check_remap_range(dev: &Device, sector: u64, count: u64) -> Result<(), CliError> {
    let name = &dev.info.name;
    if count == 0 || count > REMAP_MAX_COUNT {
        return Err(CliError::usage(format!(
            "{name}: count {count} is out of range (1 to {REMAP_MAX_COUNT})"
        )));
    }
    let seg = remap_segment_at(dev, sector)?;
    let bs = block_sectors(seg);
    let first = (sector - seg.start) / bs;
    let blocks = seg.length.div_ceil(bs);
    if first + count > blocks {
        return Err(CliError::usage(format!(
            "{name}: {count} blocks from sector {sector} (block {first}) run past the end of its segment ({blocks} blocks of {} bytes)",
            bs * 512
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Output helpers

fn print_json<T: Serialize + ?Sized>(v: &T) -> Result<(), CliError> {
    let s = serde_json::to_string_pretty(v)
        .map_err(|e| CliError::failed(format!("JSON output: {e}")))?;
    println!("{s}");
    Ok(())
}

fn node_of(dev: &str) -> String {
    match dev.parse::<dm::DevNo>().ok().and_then(|d| d.node_path()) {
        Some(p) => format!("{dev} ({})", p.display()),
        None => dev.to_string(),
    }
}

fn mapper_path(name: &str) -> PathBuf {
    Path::new(dm::MAPPER_DIR).join(name)
}

fn print_device(dev: &Device) {
    let i = &dev.info;
    println!("name:          {}", i.name);
    println!("device:        {}", node_of(&i.dev.to_string()));
    println!("uuid:          {}", i.uuid.as_deref().unwrap_or("-"));
    println!("sectors:       {}", dev.sectors);
    println!("open count:    {}", i.open_count);
    println!(
        "table:         {}{}",
        if i.active { "live" } else { "none" },
        if i.suspended { ", suspended" } else { "" }
    );
    for (n, s) in dev.segments.iter().enumerate() {
        println!(
            "segment {n}:     sectors {}..{} ({} sectors), {}",
            s.start,
            s.start + s.length,
            s.length,
            s.target_type
        );
        match (&s.table, &s.status) {
            (Some(t), Some(st)) => {
                println!(
                    "  main:          {}, offset {}",
                    node_of(&t.main),
                    t.main_offset
                );
                println!("  spare:         {}", node_of(&t.spare));
                println!("  block size:    {}", t.block_size);
                println!("  read retries:  {}", t.read_retries);
                println!("  remapped:      {}", st.remapped);
                println!("  pending:       {}", st.pending);
                println!("  spare used:    {}/{}", st.spare_used, st.spare_total);
                println!("  read errors:   {}", st.read_errors);
                println!("  write errors:  {}", st.write_errors);
                println!("  metadata seq:  {}", st.metadata_seq);
                println!("  state:         {}", st.state);
            }
            _ => {
                println!("  table:         {}", s.params);
                println!("  status:        {}", s.info);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Commands

/// `create`: checks names and devices, builds the table, creates the device.
pub fn create(a: &CreateArgs, json: bool) -> Result<(), CliError> {
    let name = a.name.as_str();
    check_name(name)?;
    if let Some(u) = &a.uuid {
        dm::check_uuid(u).map_err(|m| CliError::usage(format!("{name}: {m}")))?;
    }
    let mut opts = dm::options(a.block_size, a.read_retries)
        .map_err(|e| CliError::usage(format!("{name}: {e}")))?;
    let main = dm::probe_block_device(&a.main).map_err(|e| probe_error("main", e))?;
    let spare = dm::probe_block_device(&a.spare).map_err(|e| probe_error("spare", e))?;
    let main_id = crate::activate::main_id_for(&main, a.main_id.as_deref())?;
    crate::activate::set_main_id(&mut opts, &main_id)
        .map_err(|e| CliError::usage(format!("{name}: {e}")))?;
    let seg = dm::plan_segment(0, &main, &spare, a.offset, a.length, opts)
        .map_err(|e| CliError::usage(format!("{name}: {e}")))?;
    let dmh = open_dm(name)?;
    check_target_registered(&dmh, name)?;
    let (_, node_err) = dmh
        .create(name, a.uuid.as_deref(), std::slice::from_ref(&seg))
        .map_err(|e| dm_error(name, e))?;
    if let Some(e) = node_err {
        eprintln!("dmremap: {name}: warning: the device is live but its node was not made: {e}");
    }
    if a.uuid.is_none() {
        if let Err(e) = crate::activate::adopt_set_uuid(&dmh, name, &spare) {
            eprintln!("dmremap: {name}: warning: the device is live but has no REMAP- uuid: {e}");
        }
    }
    let dev = dmh.remap_device(name).map_err(|e| dm_error(name, e))?;
    if json {
        return print_json(&dev);
    }
    println!(
        "created {name} ({}, {}): {} sectors of {} from sector {}, spare {}",
        dev.info.dev,
        mapper_path(name).display(),
        seg.length,
        describe(&main),
        seg.main_offset,
        describe(&spare)
    );
    Ok(())
}

fn describe(d: &BlockDevice) -> String {
    format!("{} ({})", d.path.display(), d.dev)
}

/// Fails with exit code 4 and what to do when the `remap` target type is not registered.
fn check_target_registered(dmh: &Dm, name: &str) -> Result<(), CliError> {
    match dmh.remap_target_version().map_err(|e| dm_error(name, e))? {
        Some(_) => Ok(()),
        None => Err(CliError::new(
            Kind::Unsupported,
            format!(
                "{name}: the device-mapper target type `remap` is not registered: load the module \
                 with `modprobe dm_remap` (or `insmod dm_remap.ko`)"
            ),
        )),
    }
}

/// `remove`: only devices with a `remap` target.
pub fn remove(name: &str, json: bool) -> Result<(), CliError> {
    let (dmh, dev) = open_remap(name)?;
    dmh.remove(name).map_err(|e| match e.errno() {
        Some(libc::EBUSY) => CliError::failed(format!(
            "{name}: cannot remove: the device is in use (open count {}; unmount it or close it first)",
            dev.info.open_count
        )),
        _ => dm_error(name, e),
    })?;
    if json {
        return print_json(&serde_json::json!({ "removed": name, "dev": dev.info.dev }));
    }
    println!("removed {name}");
    Ok(())
}

/// `list`: the devices with a `remap` target.
pub fn list(json: bool) -> Result<(), CliError> {
    let dmh = open_dm("list")?;
    let devs = dmh.list_remap_devices().map_err(|e| dm_error("list", e))?;
    if json {
        return print_json(&devs);
    }
    if devs.is_empty() {
        println!("no dm-remap devices");
        return Ok(());
    }
    println!(
        "{:<20} {:<9} {:>12} {:>4} {:>9} {:>8} {:>17} {:>8} {:>8}  STATE",
        "NAME",
        "DEV",
        "SECTORS",
        "SEGS",
        "REMAPPED",
        "PENDING",
        "SPARE USED/TOTAL",
        "RD_ERR",
        "WR_ERR"
    );
    for d in &devs {
        let t = d.totals();
        println!(
            "{:<20} {:<9} {:>12} {:>4} {:>9} {:>8} {:>17} {:>8} {:>8}  {}",
            d.info.name,
            d.info.dev.to_string(),
            d.sectors,
            d.remap_segments().count(),
            t.remapped,
            t.pending,
            format!("{}/{}", t.spare_used, t.spare_total),
            t.read_errors,
            t.write_errors,
            t.states.join(",")
        );
    }
    Ok(())
}

/// `status`.
pub fn status(name: &str, json: bool) -> Result<(), CliError> {
    let (_, dev) = open_remap(name)?;
    if json {
        return print_json(&dev);
    }
    print_device(&dev);
    Ok(())
}

/// `remap`: moves `count` blocks from the one holding `sector` to the spare.
pub fn remap(name: &str, sector: u64, count: u64, json: bool) -> Result<(), CliError> {
    let (dmh, dev) = open_remap(name)?;
    check_remap_range(&dev, sector, count)?;
    let ans = dmh
        .remap(name, sector, count)
        .map_err(|e| dm_error(name, e))?;
    if json {
        print_json(&serde_json::json!({
            "device": name,
            "sector": sector,
            "count": count,
            "remapped": ans.remapped,
            "already_remapped": ans.already_remapped,
            "error": ans.error,
        }))?;
    } else {
        println!(
            "{name}: remapped {} blocks from sector {sector} ({} already remapped)",
            ans.remapped, ans.already_remapped
        );
    }
    match ans.error {
        None => Ok(()),
        Some(e) => Err(CliError::failed(format!(
            "{name}: remap stopped after {} of {count} blocks: {}",
            ans.remapped + ans.already_remapped,
            dm::errno_text(-e)
        ))),
    }
}

/// `unremap`: moves the block holding `sector` back to main.
pub fn unremap(name: &str, sector: u64, json: bool) -> Result<(), CliError> {
    let (dmh, dev) = open_remap(name)?;
    remap_segment_at(&dev, sector)?;
    let block = dmh.unremap(name, sector).map_err(|e| match e.errno() {
        Some(libc::ENOENT) => CliError::failed(format!(
            "{name}: the block holding sector {sector} is not remapped"
        )),
        _ => dm_error(name, e),
    })?;
    if json {
        return print_json(
            &serde_json::json!({ "device": name, "sector": sector, "block": block }),
        );
    }
    println!("{name}: block {block} (sector {sector}) is back on the main device");
    Ok(())
}

/// `list-remaps`.
pub fn list_remaps(name: &str, from: u64, max: Option<u64>, json: bool) -> Result<(), CliError> {
    let (dmh, dev) = open_remap(name)?;
    if from >= dev.sectors {
        return Err(CliError::usage(format!(
            "{name}: sector {from} is beyond the end of the device ({} sectors)",
            dev.sectors
        )));
    }
    let entries: Vec<RemapEntry> = dmh
        .list_remaps(&dev, from, max)
        .map_err(|e| dm_error(name, e))?;
    if json {
        return print_json(&entries);
    }
    let mut out = io::stdout().lock();
    let _ = writeln!(
        out,
        "{:>14} {:>12} {:>10}  STATE",
        "SECTOR", "BLOCK", "SLOT"
    );
    for e in &entries {
        let slot = e.slot.map_or("-".to_string(), |s| s.to_string());
        let state = match e.state {
            dm::EntryState::Remapped => "remapped",
            dm::EntryState::Pending => "pending",
        };
        let _ = writeln!(
            out,
            "{:>14} {:>12} {:>10}  {state}",
            e.sector, e.block, slot
        );
    }
    Ok(())
}

#[derive(Serialize)]
struct SegmentStats {
    start: u64,
    length: u64,
    #[serde(flatten)]
    stats: Stats,
}

/// `stats`: the `stats` answer of every `remap` segment; with `clear`, then `clear_stats`.
pub fn stats(name: &str, clear: bool, json: bool) -> Result<(), CliError> {
    let (dmh, dev) = open_remap(name)?;
    let mut all = Vec::new();
    for seg in dev.remap_segments() {
        let stats = dmh.stats(name, seg.start).map_err(|e| dm_error(name, e))?;
        all.push(SegmentStats {
            start: seg.start,
            length: seg.length,
            stats,
        });
    }
    if clear {
        for seg in dev.remap_segments() {
            dmh.clear_stats(name, seg.start)
                .map_err(|e| dm_error(name, e))?;
        }
    }
    if json {
        return print_json(&all);
    }
    for s in &all {
        if all.len() > 1 {
            println!("segment at sector {} ({} sectors):", s.start, s.length);
        }
        let v = serde_json::to_value(&s.stats).map_err(|e| CliError::failed(e.to_string()))?;
        if let Some(m) = v.as_object() {
            for (k, v) in m {
                println!("{k}={v}");
            }
        }
    }
    Ok(())
}

/// `message`: a raw target message.
pub fn message(name: &str, sector: u64, words: &[String], json: bool) -> Result<(), CliError> {
    check_name(name)?;
    if words
        .iter()
        .any(|w| w.is_empty() || w.chars().any(|c| c.is_whitespace() || c == '\0'))
    {
        return Err(CliError::usage(format!(
            "{name}: message words must be non-empty and contain no white space"
        )));
    }
    let msg = words.join(" ");
    let dmh = open_dm(name)?;
    let answer = dmh
        .message(name, sector, &msg)
        .map_err(|e| match e.errno() {
            Some(libc::EINVAL) => CliError::failed(format!(
                "{name}: the target refused `{msg}` ({e}); the kernel log (dmesg) says why"
            )),
            _ => dm_error(name, e),
        })?;
    if json {
        return print_json(&serde_json::json!({
            "device": name,
            "sector": sector,
            "message": msg,
            "answer": answer,
        }));
    }
    if let Some(a) = answer {
        if a.ends_with('\n') {
            print!("{a}");
        } else {
            println!("{a}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmremap_lib::dm::{DevInfo, DevNo, RemapStatus, RemapTable};

    fn device(segs: Vec<Segment>) -> Device {
        Device {
            info: DevInfo {
                name: "r0".into(),
                uuid: None,
                dev: DevNo {
                    major: 253,
                    minor: 0,
                },
                open_count: 0,
                event_nr: 0,
                suspended: false,
                read_only: false,
                active: true,
            },
            sectors: segs.iter().map(|s| s.length).sum(),
            segments: segs,
        }
    }

    fn remap_seg(start: u64, length: u64, block_size: u32) -> Segment {
        Segment {
            start,
            length,
            target_type: "remap".into(),
            table: Some(RemapTable {
                main: "259:0".into(),
                main_offset: 0,
                spare: "253:1".into(),
                block_size,
                read_retries: 3,
            }),
            status: Some(RemapStatus {
                remapped: 2,
                pending: 1,
                spare_used: 2,
                spare_total: 100,
                read_errors: 0,
                write_errors: 4,
                metadata_seq: 0,
                state: "active".into(),
                extra: vec![],
            }),
            params: String::new(),
            info: String::new(),
        }
    }

    fn linear_seg(start: u64, length: u64) -> Segment {
        Segment {
            start,
            length,
            target_type: "linear".into(),
            table: None,
            status: None,
            params: "8:0 0".into(),
            info: String::new(),
        }
    }

    #[test]
    fn remap_ranges() {
        // 100 sectors of 4 KiB blocks: 13 blocks, the last one partial.
        let d = device(vec![remap_seg(0, 100, 4096), linear_seg(100, 50)]);
        assert!(check_remap_range(&d, 0, 13).is_ok());
        assert!(check_remap_range(&d, 96, 1).is_ok());
        let e = check_remap_range(&d, 8, 13).unwrap_err();
        assert_eq!(e.kind, Kind::Usage);
        assert!(
            e.msg
                .contains("run past the end of its segment (13 blocks of 4096 bytes)"),
            "{}",
            e.msg
        );
        let e = check_remap_range(&d, 0, 0).unwrap_err();
        assert_eq!((e.kind, e.code()), (Kind::Usage, 2));
        assert!(check_remap_range(&d, 0, REMAP_MAX_COUNT + 1).is_err());
        let e = check_remap_range(&d, 100, 1).unwrap_err();
        assert_eq!(e.kind, Kind::Unsupported);
        assert!(e.msg.contains("`linear` segment"), "{}", e.msg);
        let e = check_remap_range(&d, 150, 1).unwrap_err();
        assert_eq!(e.kind, Kind::Usage);
        assert_eq!(
            e.msg,
            "r0: sector 150 is beyond the end of the device (150 sectors)"
        );
    }

    #[test]
    fn totals_sum_segments() {
        let d = device(vec![
            remap_seg(0, 100, 4096),
            linear_seg(100, 50),
            remap_seg(150, 8, 512),
        ]);
        let t = d.totals();
        assert_eq!(
            (
                t.remapped,
                t.pending,
                t.spare_used,
                t.spare_total,
                t.write_errors
            ),
            (4, 2, 4, 200, 8)
        );
        assert_eq!(t.states, vec!["active".to_string()]);
    }

    #[test]
    fn error_mapping() {
        let io = |errno| dm::Error::Ioctl {
            op: "DM_DEV_STATUS",
            errno,
        };
        let e = dm_error("r0", io(libc::ENXIO));
        assert_eq!(
            (e.code(), e.msg.as_str()),
            (3, "r0: no such device-mapper device")
        );
        let e = dm_error("r0", io(libc::EACCES));
        assert_eq!(e.code(), 5);
        assert_eq!(
            e.msg,
            "r0: DM_DEV_STATUS: EACCES: Permission denied: device-mapper needs root (CAP_SYS_ADMIN)"
        );
        let e = dm_error(
            "r0",
            dm::Error::Control(io::Error::from_raw_os_error(libc::EACCES)),
        );
        assert_eq!(e.code(), 5);
        let e = dm_error(
            "r0",
            dm::Error::Control(io::Error::from_raw_os_error(libc::ENOENT)),
        );
        assert_eq!(e.code(), 4);
        assert!(e.msg.contains("modprobe dm_mod"), "{}", e.msg);
        let e = dm_error(
            "r0",
            dm::Error::Ioctl {
                op: "DM_DEV_CREATE",
                errno: libc::EBUSY,
            },
        );
        assert_eq!(e.code(), 1);
        assert!(e.msg.contains("exists already"), "{}", e.msg);
        let e = dm_error(
            "r0",
            dm::Error::Ioctl {
                op: "DM_TABLE_LOAD",
                errno: libc::EINVAL,
            },
        );
        assert!(
            e.msg.contains("refused the table") && e.msg.contains("EINVAL"),
            "{}",
            e.msg
        );
        let e = dm_error(
            "r0",
            dm::Error::Ioctl {
                op: "DM_TARGET_MSG",
                errno: libc::ENOSPC,
            },
        );
        assert!(e.msg.contains("spare device is full"), "{}", e.msg);
        let e = dm_error("r0", dm::Error::NotRemap("r0".into()));
        assert_eq!(e.code(), 4);
        let e = dm_error("r0", dm::Error::Invalid("bad".into()));
        assert_eq!(e.code(), 2);
    }

    #[test]
    fn probe_errors_map_to_codes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("img");
        std::fs::write(&f, b"").unwrap();
        let e = probe_error("main", dm::probe_block_device(&f).unwrap_err());
        assert_eq!(e.code(), 2);
        assert_eq!(
            e.msg,
            format!(
                "main device {} is not a block device (it is a regular file)",
                f.display()
            )
        );
        let e = probe_error(
            "spare",
            dm::probe_block_device(&dir.path().join("nope")).unwrap_err(),
        );
        assert_eq!(e.code(), 3);
        assert!(
            e.msg.starts_with("spare device ") && e.msg.contains("No such file"),
            "{}",
            e.msg
        );
    }
}

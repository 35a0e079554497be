//! The device-mapper ioctls on `/dev/mapper/control` ([`Dm`]).

use std::fs::File;
use std::io;

use devicemapper::{DevId, DmFlags, DmName, DmOptions, DmUuid, DM};
use dmremap_core::table as ktable;

use super::node::{make_node, remove_node, udev_running};
use super::*;

/// A handle on `/dev/mapper/control`.
pub struct Dm {
    dm: DM,
}

fn dm_name(name: &str) -> Result<&DmName> {
    check_name(name).map_err(Error::Invalid)?;
    DmName::new(name).map_err(|e| Error::from_dm("name", e))
}

impl Dm {
    /// Opens the control node. The error keeps the errno (`EACCES` for a caller without
    /// permission, `ENOENT` without device-mapper): the crate's own open reports only text, so
    /// the node is opened once here first to learn why it fails.
    pub fn open() -> Result<Dm> {
        File::open(CONTROL_PATH).map_err(Error::Control)?;
        let dm = DM::new().map_err(|e| Error::from_dm("open", e))?;
        Ok(Dm { dm })
    }

    /// The kernel's device-mapper ioctl interface version.
    pub fn driver_version(&self) -> Result<(u32, u32, u32)> {
        self.dm
            .version()
            .map_err(|e| Error::from_dm("DM_VERSION", e))
    }

    /// The registered target types (`DM_LIST_VERSIONS`).
    pub fn target_types(&self) -> Result<Vec<TargetVersion>> {
        let v = self
            .dm
            .list_versions()
            .map_err(|e| Error::from_dm("DM_LIST_VERSIONS", e))?;
        Ok(v.into_iter()
            .map(|(name, a, b, c)| TargetVersion {
                name,
                version: [a, b, c],
            })
            .collect())
    }

    /// The version of the `remap` target type, `None` when it is not registered.
    pub fn remap_target_version(&self) -> Result<Option<[u32; 3]>> {
        Ok(self
            .target_types()?
            .into_iter()
            .find(|t| t.name == TARGET_TYPE)
            .map(|t| t.version))
    }

    /// `DM_DEV_STATUS` of a device.
    pub fn info(&self, name: &str) -> Result<DevInfo> {
        let n = dm_name(name)?;
        let i = self
            .dm
            .device_info(&DevId::Name(n))
            .map_err(|e| Error::from_dm("DM_DEV_STATUS", e))?;
        Ok(DevInfo::from_dm(&i, name))
    }

    fn table_status(&self, name: &str, table: bool) -> Result<Vec<TableLine>> {
        let n = dm_name(name)?;
        let opts = if table {
            DmOptions::default().set_flags(DmFlags::DM_STATUS_TABLE)
        } else {
            DmOptions::default()
        };
        let (_, lines) = self
            .dm
            .table_status(&DevId::Name(n), opts)
            .map_err(|e| Error::from_dm("DM_TABLE_STATUS", e))?;
        Ok(lines
            .into_iter()
            .map(|(start, length, target_type, params)| TableLine {
                start,
                length,
                target_type,
                params,
            })
            .collect())
    }

    /// The live table (`DM_TABLE_STATUS` with `DM_STATUS_TABLE_FLAG`).
    pub fn table(&self, name: &str) -> Result<Vec<TableLine>> {
        self.table_status(name, true)
    }

    /// The status INFO lines (`DM_TABLE_STATUS`).
    pub fn status(&self, name: &str) -> Result<Vec<TableLine>> {
        self.table_status(name, false)
    }

    /// Info, table and status of a device, whatever its targets.
    pub fn device(&self, name: &str) -> Result<Device> {
        let info = self.info(name)?;
        let table = self.table(name)?;
        let status = self.status(name)?;
        let segments = combine_segments(&table, &status)?;
        Ok(Device {
            info,
            sectors: segments.iter().map(|s| s.length).sum(),
            segments,
        })
    }

    /// Like [`Dm::device`], but fails with [`Error::NotRemap`] for a device without a `remap`
    /// segment.
    pub fn remap_device(&self, name: &str) -> Result<Device> {
        let d = self.device(name)?;
        if !d.is_remap() {
            return Err(Error::NotRemap(name.to_string()));
        }
        Ok(d)
    }

    /// Every device with at least one `remap` segment, sorted by name. Devices removed while
    /// being listed are skipped.
    pub fn list_remap_devices(&self) -> Result<Vec<Device>> {
        let mut names: Vec<String> = self
            .dm
            .list_devices()
            .map_err(|e| Error::from_dm("DM_LIST_DEVICES", e))?
            .into_iter()
            .map(|(n, _, _)| n.to_string())
            .collect();
        names.sort();
        let mut out = Vec::new();
        for n in names {
            match self.device(&n) {
                Ok(d) if d.is_remap() => out.push(d),
                Ok(_) => {}
                Err(e) if e.errno() == Some(libc::ENXIO) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Creates device `name` (with `uuid`, if given) from `segments` and makes it live:
    /// `DM_DEV_CREATE`, `DM_TABLE_LOAD`, resume. If loading or resuming fails the half-made
    /// device is removed again. Without udev, also makes `/dev/mapper/<name>`; a failure there
    /// is returned as the second value (the device itself is live).
    pub fn create(
        &self,
        name: &str,
        uuid: Option<&str>,
        segments: &[RemapSegment],
    ) -> Result<(DevInfo, Option<io::Error>)> {
        let n = dm_name(name)?;
        let u = match uuid {
            Some(u) => {
                check_uuid(u).map_err(Error::Invalid)?;
                Some(DmUuid::new(u).map_err(|e| Error::from_dm("uuid", e))?)
            }
            None => None,
        };
        let table = build_table(segments)?;
        let lines: Vec<(u64, u64, String, String)> = table
            .into_iter()
            .map(|l| (l.start, l.length, l.target_type, l.params))
            .collect();
        self.dm
            .device_create(n, u, DmOptions::default())
            .map_err(|e| Error::from_dm("DM_DEV_CREATE", e))?;
        let id = DevId::Name(n);
        let live = self
            .dm
            .table_load(&id, &lines, DmOptions::default())
            .map_err(|e| Error::from_dm("DM_TABLE_LOAD", e))
            .and_then(|_| {
                self.dm
                    .device_suspend(&id, DmOptions::default())
                    .map_err(|e| Error::from_dm("DM_DEV_SUSPEND (resume)", e))
            });
        let info = match live {
            Ok(i) => DevInfo::from_dm(&i, name),
            Err(e) => {
                // Best effort: the error that matters is the one that stopped the creation.
                let _ = self.dm.device_remove(&id, DmOptions::default());
                return Err(e);
            }
        };
        let node_err = if udev_running() {
            None
        } else {
            make_node(name, info.dev).err()
        };
        Ok((info, node_err))
    }

    /// Gives a device that has none its device-mapper UUID (`DM_DEV_RENAME` with
    /// `DM_UUID_FLAG`; the kernel refuses to change a UUID once set).
    pub fn set_uuid(&self, name: &str, uuid: &str) -> Result<()> {
        let n = dm_name(name)?;
        check_uuid(uuid).map_err(Error::Invalid)?;
        let u = DmUuid::new(uuid).map_err(|e| Error::from_dm("uuid", e))?;
        self.dm
            .device_rename(n, &DevId::Uuid(u))
            .map_err(|e| Error::from_dm("DM_DEV_RENAME (uuid)", e))?;
        Ok(())
    }

    /// Removes a device (`DM_DEV_REMOVE`, retried a few times while it is busy) and, without
    /// udev, its `/dev/mapper/<name>` node.
    pub fn remove(&self, name: &str) -> Result<()> {
        let n = dm_name(name)?;
        // The device number for the node check: DM_DEV_REMOVE does not report it.
        let dev = self.info(name)?.dev;
        self.dm
            .device_remove(&DevId::Name(n), DmOptions::default())
            .map_err(|e| Error::from_dm("DM_DEV_REMOVE", e))?;
        if !udev_running() {
            remove_node(name, dev);
        }
        Ok(())
    }

    /// Sends a target message to the target holding device sector `sector` and returns its
    /// answer (`DM_TARGET_MSG`; the answer comes back with `DM_DATA_OUT_FLAG`). `None`: the
    /// target answered nothing.
    pub fn message(&self, name: &str, sector: u64, msg: &str) -> Result<Option<String>> {
        let n = dm_name(name)?;
        if msg.trim().is_empty() || msg.contains('\0') {
            return Err(Error::Invalid(
                "the message is empty or contains NUL".into(),
            ));
        }
        let (_, out) = self
            .dm
            .target_msg(&DevId::Name(n), Some(sector), msg)
            .map_err(|e| Error::from_dm("DM_TARGET_MSG", e))?;
        Ok(out)
    }

    fn expect_answer(&self, name: &str, sector: u64, msg: &str) -> Result<String> {
        self.message(name, sector, msg)?
            .ok_or_else(|| Error::Parse(format!("no answer to `{msg}`")))
    }

    /// Marks the blocks covering `count` device sectors from `sector` pending (unreadable
    /// until rewritten): the target's `pending <sector> <blocks>` message, sent to the segment
    /// holding `sector` (the sector range must lie in that segment). Returns the number of
    /// blocks the target reports as newly marked.
    pub fn pending(&self, name: &str, sector: u64, count: u64) -> Result<u64> {
        if count == 0 {
            return Err(Error::Invalid("pending: count must be at least 1".into()));
        }
        let line = self
            .table(name)?
            .into_iter()
            .find(|l| l.target_type == "remap" && l.start <= sector && sector - l.start < l.length)
            .ok_or_else(|| Error::Invalid(format!("sector {sector} is not in a remap segment")))?;
        let end = sector
            .checked_add(count)
            .filter(|&e| e <= line.start + line.length)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "sectors {sector}+{count} run past the end of their segment"
                ))
            })?;
        let bsec = u64::from(line.params.parse::<RemapTable>()?.block_size / 512).max(1);
        let blocks = (end - 1 - line.start) / bsec - (sector - line.start) / bsec + 1;
        parse_pending_answer(&self.expect_answer(
            name,
            sector,
            &format!("pending {sector} {blocks}"),
        )?)
    }

    /// `remap <sector> <count>`, sent to the segment holding `sector`.
    pub fn remap(&self, name: &str, sector: u64, count: u64) -> Result<RemapAnswer> {
        self.expect_answer(name, sector, &format!("remap {sector} {count}"))?
            .parse()
    }

    /// `unremap <sector>`; returns the block number the target moved back.
    pub fn unremap(&self, name: &str, sector: u64) -> Result<u64> {
        parse_unremap_answer(&self.expect_answer(name, sector, &format!("unremap {sector}"))?)
    }

    /// One `list <from> <max>` message to the segment holding `from`.
    pub fn list_page(&self, name: &str, from: u64, max: u64) -> Result<Vec<RemapEntry>> {
        let answer = self
            .message(name, from, &format!("list {from} {max}"))?
            .unwrap_or_default();
        parse_list(&answer)
    }

    /// The remapped and pending blocks of `dev` from device sector `from` on, across all its
    /// `remap` segments, at most `max` (all when `None`), paging [`LIST_PAGE`] entries at a time.
    pub fn list_remaps(
        &self,
        dev: &Device,
        from: u64,
        max: Option<u64>,
    ) -> Result<Vec<RemapEntry>> {
        let name = &dev.info.name;
        let mut out: Vec<RemapEntry> = Vec::new();
        let mut left = max.unwrap_or(u64::MAX);
        for seg in dev.remap_segments() {
            let end = seg.start + seg.length;
            if end <= from {
                continue;
            }
            let block_sectors = u64::from(
                seg.table
                    .as_ref()
                    .map_or(ktable::DEFAULT_BLOCK_SIZE, |t| t.block_size)
                    >> 9,
            );
            let mut next = from.max(seg.start);
            while left > 0 && next < end {
                let want = left.min(LIST_PAGE);
                let page = self.list_page(name, next, want)?;
                let got = page.len() as u64;
                // The first entry may be the block holding `next`; all lie in this segment
                // and come in increasing order.
                let mut lo = seg.start + (next - seg.start) / block_sectors * block_sectors;
                for e in &page {
                    if e.sector < lo || e.sector >= end {
                        return Err(Error::Parse(format!(
                            "list {next} {want}: sector {} is out of order or outside {lo}..{end}",
                            e.sector
                        )));
                    }
                    lo = e.sector + 1;
                }
                if got > want {
                    return Err(Error::Parse(format!(
                        "list {next} {want} returned {got} entries"
                    )));
                }
                let Some(last) = page.last() else { break };
                next = last.sector + block_sectors;
                left -= got;
                out.extend(page);
                if got < want {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The `stats` answer of the segment holding `sector`.
    pub fn stats(&self, name: &str, sector: u64) -> Result<Stats> {
        self.expect_answer(name, sector, "stats")?.parse()
    }

    /// `clear_stats` on the segment holding `sector`.
    pub fn clear_stats(&self, name: &str, sector: u64) -> Result<()> {
        self.message(name, sector, "clear_stats").map(|_| ())
    }
}

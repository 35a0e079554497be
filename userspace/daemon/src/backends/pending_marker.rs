//! [`DmMarker`] ([`PendingMarker`]): the `pending <sector> <count>` target message, sent with
//! `DM_TARGET_MSG` through [`dmremap_lib::dm`].

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use dmremap_lib::dm::Dm;

use crate::scrub::PendingMarker;

use super::main_ranges::{map_main_range, remap_uses, PendingTarget, RemapUse};
use super::other;

/// Marks blocks pending with the `pending` target message (`DM_TARGET_MSG`).
#[derive(Default)]
pub struct DmMarker {
    dm: Option<Dm>,
}

impl DmMarker {
    pub fn new() -> DmMarker {
        DmMarker { dm: None }
    }

    fn dm(&mut self) -> io::Result<&Dm> {
        if self.dm.is_none() {
            self.dm = Some(Dm::open().map_err(other)?);
        }
        Ok(self.dm.as_ref().expect("opened"))
    }

    /// The remap segments of all devices.
    pub fn uses(&mut self) -> io::Result<Vec<RemapUse>> {
        remap_uses(self.dm()?)
    }

    /// Sends `pending <sector> <sectors>` to `t`'s device; returns the blocks newly marked.
    pub fn mark_target(&mut self, t: &PendingTarget) -> io::Result<u64> {
        self.dm()?
            .pending(&t.dm_name, t.sector, t.sectors)
            .map_err(|e| {
                other(format!(
                    "{}: pending {} {}: {e}",
                    t.dm_name, t.sector, t.sectors
                ))
            })
    }

    /// Where a range of `device` (a remap device, or a main device under remap devices) lands.
    pub fn resolve(
        &mut self,
        device: &str,
        sector: u64,
        sectors: u64,
    ) -> io::Result<Vec<PendingTarget>> {
        let path = Path::new(device);
        let devno = block_devno(path)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{device}: not a block device; nothing to mark"),
            )
        })?;
        let dm_name = std::fs::read_to_string(format!("/sys/dev/block/{devno}/dm/name"))
            .ok()
            .map(|s| s.trim().to_string());
        let uses = self.uses()?;
        if let Some(n) = dm_name.filter(|n| uses.iter().any(|u| &u.dm_name == n)) {
            return Ok(vec![PendingTarget {
                dm_name: n,
                sector,
                sectors,
            }]);
        }
        let t = map_main_range(&uses, &devno, sector, sectors);
        if t.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{device} ({devno}): sectors {sector}+{sectors} are in no remap device (not a remap device, nor its main device)"
                ),
            ));
        }
        Ok(t)
    }
}

impl PendingMarker for DmMarker {
    fn mark_pending(&mut self, device: &str, sector: u64, sectors: u32) -> io::Result<()> {
        for t in self.resolve(device, sector, u64::from(sectors))? {
            let n = self.mark_target(&t)?;
            log::info!(
                "{device}: sectors {sector}+{sectors}: marked {n} blocks pending on {} at {}",
                t.dm_name,
                t.sector
            );
        }
        Ok(())
    }
}

/// `major:minor` of a block device node, or `None` if `path` is not one.
fn block_devno(path: &Path) -> io::Result<Option<String>> {
    let m = std::fs::metadata(path)?;
    if !m.file_type().is_block_device() {
        return Ok(None);
    }
    Ok(Some(
        dmremap_lib::dm::DevNo::from_dev_t(m.rdev()).to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_refuses_a_regular_file() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut m = DmMarker::new();
        let e = m
            .mark_pending(f.path().to_str().unwrap(), 0, 8)
            .unwrap_err();
        assert!(e.to_string().contains("not a block device"), "{e}");
    }
}

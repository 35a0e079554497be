//! From a main-device range (or an NVMe error log entry) to the sectors of the remap devices built
//! on it: pure ([`map_main_range`], [`error_log_targets`]) and tested with fixtures; the live
//! device list comes from [`remap_uses`].

use std::io;

use dmremap_core::nvme::error_log::ErrorLogEntry;
use dmremap_lib::dm::Dm;
use serde::Serialize;

use super::other;

/// One `remap` segment and the main device it sits on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemapUse {
    /// Device-mapper name of the remap device.
    pub dm_name: String,
    /// First sector of the segment in the remap device.
    pub start: u64,
    /// Length of the segment in sectors.
    pub length: u64,
    /// Main device as `major:minor`.
    pub main: String,
    /// Offset of the segment on the main device, in sectors.
    pub main_offset: u64,
}

/// A range of a remap device to mark pending.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PendingTarget {
    pub dm_name: String,
    /// First sector, in the remap device.
    pub sector: u64,
    pub sectors: u64,
}

/// The `remap` segments of every device-mapper device.
pub fn remap_uses(dm: &Dm) -> io::Result<Vec<RemapUse>> {
    let mut out = Vec::new();
    for d in dm.list_remap_devices().map_err(other)? {
        for s in d.remap_segments() {
            if let Some(t) = &s.table {
                out.push(RemapUse {
                    dm_name: d.info.name.clone(),
                    start: s.start,
                    length: s.length,
                    main: t.main.clone(),
                    main_offset: t.main_offset,
                });
            }
        }
    }
    Ok(out)
}

/// Where sectors `[sector, sector + sectors)` of main device `main` (`major:minor`) appear in
/// remap devices: one range per overlapping segment, clipped to it.
pub fn map_main_range(
    uses: &[RemapUse],
    main: &str,
    sector: u64,
    sectors: u64,
) -> Vec<PendingTarget> {
    let end = sector.saturating_add(sectors);
    uses.iter()
        .filter(|u| u.main == main)
        .filter_map(|u| {
            let lo = sector.max(u.main_offset);
            let hi = end.min(u.main_offset.saturating_add(u.length));
            (lo < hi).then(|| PendingTarget {
                dm_name: u.dm_name.clone(),
                sector: u.start + (lo - u.main_offset),
                sectors: hi - lo,
            })
        })
        .collect()
}

/// One namespace as the mapping needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceDev {
    pub nsid: u32,
    /// Block device as `major:minor`.
    pub dev: String,
    /// Logical block (LBA) size in bytes.
    pub lba_size: u32,
}

/// Status Code Type "Media and Data Integrity Errors".
const SCT_MEDIA: u8 = 2;

/// Remap device ranges for the media errors in `entries` (NVMe Error Information log) of one
/// controller: each entry with a media-error status names an LBA of namespace `nsid`, which is
/// `lba * lba_size / 512` on the namespace's block device; entries of other status types, of no
/// particular namespace (0, 0xFFFFFFFF) or of a namespace not in `namespaces` are skipped.
/// Duplicates (the same LBA logged twice) are marked once.
pub fn error_log_targets(
    entries: &[ErrorLogEntry],
    namespaces: &[NamespaceDev],
    uses: &[RemapUse],
) -> Vec<PendingTarget> {
    let mut out: Vec<PendingTarget> = Vec::new();
    for e in entries {
        if e.is_empty() || e.status_code_type() != SCT_MEDIA || e.nsid == 0 || e.nsid == u32::MAX {
            continue;
        }
        let Some(ns) = namespaces.iter().find(|n| n.nsid == e.nsid) else {
            continue;
        };
        let per = u64::from(ns.lba_size.max(512) / 512);
        let Some(sector) = e.lba.checked_mul(per) else {
            continue;
        };
        for t in map_main_range(uses, &ns.dev, sector, per) {
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmremap_core::nvme::error_log::{ErrorLog, ERROR_ENTRY_LEN};

    fn uses() -> Vec<RemapUse> {
        vec![
            // r0: main 259:0 sectors 2048.. as r0 0..1000
            RemapUse {
                dm_name: "r0".into(),
                start: 0,
                length: 1000,
                main: "259:0".into(),
                main_offset: 2048,
            },
            // r1: two segments on the same main disk
            RemapUse {
                dm_name: "r1".into(),
                start: 0,
                length: 100,
                main: "259:0".into(),
                main_offset: 10_000,
            },
            RemapUse {
                dm_name: "r1".into(),
                start: 100,
                length: 100,
                main: "259:0".into(),
                main_offset: 20_000,
            },
            RemapUse {
                dm_name: "other".into(),
                start: 0,
                length: 1 << 30,
                main: "8:0".into(),
                main_offset: 0,
            },
        ]
    }

    #[test]
    fn main_ranges_map_through_offsets_and_segment_starts() {
        let u = uses();
        assert_eq!(
            map_main_range(&u, "259:0", 2048 + 16, 8),
            vec![PendingTarget {
                dm_name: "r0".into(),
                sector: 16,
                sectors: 8
            }]
        );
        // Clipped at the segment's end.
        assert_eq!(
            map_main_range(&u, "259:0", 2048 + 996, 8),
            vec![PendingTarget {
                dm_name: "r0".into(),
                sector: 996,
                sectors: 4
            }]
        );
        // The second segment of r1 starts at device sector 100.
        assert_eq!(
            map_main_range(&u, "259:0", 20_008, 8),
            vec![PendingTarget {
                dm_name: "r1".into(),
                sector: 108,
                sectors: 8
            }]
        );
        assert!(
            map_main_range(&u, "259:0", 0, 2048).is_empty(),
            "below main_offset"
        );
        assert!(
            map_main_range(&u, "259:1", 2048, 8).is_empty(),
            "another disk"
        );
    }

    /// A 64-byte Error Information entry, written byte by byte as the NVMe specification lays
    /// it out (not with the codec, so the test checks the decoder too).
    fn entry_bytes(count: u64, status_field: u16, lba: u64, nsid: u32) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..8].copy_from_slice(&count.to_le_bytes());
        b[8..10].copy_from_slice(&1u16.to_le_bytes()); // SQID
        b[10..12].copy_from_slice(&0x22u16.to_le_bytes()); // CID
        b[12..14].copy_from_slice(&status_field.to_le_bytes());
        b[14..16].copy_from_slice(&0xffffu16.to_le_bytes());
        b[16..24].copy_from_slice(&lba.to_le_bytes());
        b[24..28].copy_from_slice(&nsid.to_le_bytes());
        b
    }

    /// Status field: phase bit 0, SC bits 8:1, SCT bits 11:9.
    fn status(sct: u16, sc: u16) -> u16 {
        (sct << 9) | (sc << 1) | 1
    }

    #[test]
    fn error_log_fixture_maps_lbas_with_the_namespace_lba_size() {
        let mut log = Vec::new();
        // Unrecovered read error (SCT 2, SC 0x81) on nsid 1, LBA 258 (4K LBAs): main sectors
        // 2064..2072, r0 sectors 16..24.
        log.extend_from_slice(&entry_bytes(4, status(2, 0x81), 258, 1));
        // The same LBA logged again: marked once.
        log.extend_from_slice(&entry_bytes(3, status(2, 0x81), 258, 1));
        // Invalid field (SCT 0): not a media error, skipped.
        log.extend_from_slice(&entry_bytes(2, status(0, 0x02), 300, 1));
        // Media error on nsid 2 (512-byte LBAs) at LBA 20_001: r1 sector 101.
        log.extend_from_slice(&entry_bytes(1, status(2, 0x81), 20_001, 2));
        // Empty slot.
        log.extend_from_slice(&[0u8; ERROR_ENTRY_LEN]);
        let entries: Vec<ErrorLogEntry> = ErrorLog::new(&log).unwrap().non_empty().collect();
        assert_eq!(entries.len(), 4);
        let ns = vec![
            NamespaceDev {
                nsid: 1,
                dev: "259:0".into(),
                lba_size: 4096,
            },
            // Not the remap main device: "259:0" is shared in this fixture only by nsid 1.
            NamespaceDev {
                nsid: 2,
                dev: "259:0".into(),
                lba_size: 512,
            },
        ];
        let t = error_log_targets(&entries, &ns, &uses());
        assert_eq!(
            t,
            vec![
                PendingTarget {
                    dm_name: "r0".into(),
                    sector: 16,
                    sectors: 8
                },
                PendingTarget {
                    dm_name: "r1".into(),
                    sector: 101,
                    sectors: 1
                },
            ]
        );
        // An unknown namespace and a broadcast nsid map to nothing.
        let other_ns = [
            entry_bytes(9, status(2, 0x81), 258, 3),
            entry_bytes(9, status(2, 0x81), 258, u32::MAX),
        ];
        let e: Vec<ErrorLogEntry> = other_ns
            .iter()
            .map(|b| ErrorLogEntry::decode(b).unwrap())
            .collect();
        assert!(error_log_targets(&e, &ns, &uses()).is_empty());
    }
}

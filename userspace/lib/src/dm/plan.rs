//! Tables: the table lines a set of [`RemapSegment`]s becomes and the checks of a planned segment
//! against the devices it uses.

use std::fmt;

use dmremap_core::table::{self as ktable, Options};
use serde::Serialize;

use super::{BlockDevice, DevNo, Error, Result, TARGET_TYPE};

/// One line of a device-mapper table: start and length in sectors, target type, parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableLine {
    pub start: u64,
    pub length: u64,
    pub target_type: String,
    pub params: String,
}

impl fmt::Display for TableLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.start, self.length, self.target_type, self.params
        )
    }
}

/// One `remap` segment of a table to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemapSegment {
    /// First sector of the segment in the device.
    pub start: u64,
    /// Length in sectors.
    pub length: u64,
    /// Main device as the kernel should look it up (`major:minor` or a path).
    pub main: String,
    /// Offset on the main device in sectors.
    pub main_offset: u64,
    /// Spare device (`major:minor` or a path).
    pub spare: String,
    pub options: Options,
}

impl RemapSegment {
    /// The target parameters: `<main> <offset> <spare>[ <#opts> <opt>...]`.
    pub fn params(&self) -> String {
        let mut s = format!("{} {} {}", self.main, self.main_offset, self.spare);
        // Writing to a String cannot fail.
        let _ = self.options.emit(&mut s);
        s
    }
}

/// Table lines for `segments`, checked as the kernel's constructor checks the non-device
/// arguments (the same parser), and for a gap-free layout from sector 0.
pub fn build_table(segments: &[RemapSegment]) -> Result<Vec<TableLine>> {
    if segments.is_empty() {
        return Err(Error::Invalid("a table needs at least one segment".into()));
    }
    let mut next = 0u64;
    let mut lines = Vec::with_capacity(segments.len());
    for (i, seg) in segments.iter().enumerate() {
        if seg.start != next {
            return Err(Error::Invalid(format!(
                "segment {i} starts at sector {}, expected {next} (segments must follow each other from 0)",
                seg.start
            )));
        }
        if seg.length == 0 {
            return Err(Error::Invalid(format!("segment {i} has length 0")));
        }
        for (what, dev) in [("main", &seg.main), ("spare", &seg.spare)] {
            if dev.is_empty() || dev.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Error::Invalid(format!(
                    "segment {i}: {what} device `{}` is empty or contains white space",
                    dev.escape_default()
                )));
            }
        }
        let params = seg.params();
        let words: Vec<&[u8]> = params.split(' ').map(str::as_bytes).collect();
        let parsed = ktable::parse_args(words.iter().copied())
            .map_err(|e| Error::Invalid(format!("segment {i}: {e}")))?;
        debug_assert_eq!(parsed.main_offset, seg.main_offset);
        next = seg
            .start
            .checked_add(seg.length)
            .ok_or_else(|| Error::Invalid(format!("segment {i} ends beyond 2^64 sectors")))?;
        lines.push(TableLine {
            start: seg.start,
            length: seg.length,
            target_type: TARGET_TYPE.into(),
            params,
        });
    }
    Ok(lines)
}

/// Why a planned segment does not fit its devices. The messages match the kernel
/// constructor's checks, with the numbers filled in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("block size {0} is not a power of two from {min} to {max} bytes", min = ktable::MIN_BLOCK_SIZE, max = ktable::MAX_BLOCK_SIZE)]
    BadBlockSize(u64),
    #[error("read retries {0} is out of range (0 to {max})", max = ktable::MAX_READ_RETRIES)]
    BadReadRetries(u64),
    #[error("main and spare are the same device ({0})")]
    SameDevice(DevNo),
    #[error("block size {block_size} is smaller than the logical block size {lbs} of {dev}")]
    BlockBelowLogical {
        block_size: u32,
        lbs: u32,
        dev: String,
    },
    #[error("offset {offset} is not a multiple of the block size ({block_sectors} sectors)")]
    OffsetNotAligned { offset: u64, block_sectors: u64 },
    #[error("offset {offset} is not inside the main device ({size} sectors)")]
    OffsetBeyondEnd { offset: u64, size: u64 },
    #[error("length 0: the segment would be empty")]
    LengthZero,
    #[error("offset {offset} + length {length} sectors is beyond the end of the main device ({size} sectors)")]
    LengthBeyondEnd { offset: u64, length: u64, size: u64 },
    #[error("length {length} is not a multiple of the logical block size ({sectors} sectors)")]
    LengthNotAligned { length: u64, sectors: u64 },
    #[error("the spare device ({sectors} sectors) is smaller than one block ({block_size} bytes)")]
    SpareTooSmall { sectors: u64, block_size: u32 },
}

/// Table options from the optional command-line values, range-checked like the kernel does.
/// Only values given end up in the table line.
pub fn options(block_size: Option<u64>, read_retries: Option<u64>) -> Result<Options, PlanError> {
    let mut o = Options::default();
    if let Some(b) = block_size {
        if !b.is_power_of_two()
            || b < u64::from(ktable::MIN_BLOCK_SIZE)
            || b > u64::from(ktable::MAX_BLOCK_SIZE)
        {
            return Err(PlanError::BadBlockSize(b));
        }
        o.block_size = b as u32;
        o.block_size_given = true;
    }
    if let Some(r) = read_retries {
        if r > u64::from(ktable::MAX_READ_RETRIES) {
            return Err(PlanError::BadReadRetries(r));
        }
        o.read_retries = r as u32;
        o.read_retries_given = true;
    }
    Ok(o)
}

/// A segment at `start` mapping `main` from `main_offset` for `length` sectors (default: to the
/// end of `main`, rounded down to its logical block size), with remapped blocks on `spare`.
/// Devices are named by `major:minor` in the table, so the kernel opens exactly the devices
/// that were checked.
pub fn plan_segment(
    start: u64,
    main: &BlockDevice,
    spare: &BlockDevice,
    main_offset: u64,
    length: Option<u64>,
    options: Options,
) -> Result<RemapSegment, PlanError> {
    if main.dev == spare.dev {
        return Err(PlanError::SameDevice(main.dev));
    }
    for d in [main, spare] {
        if options.block_size < d.logical_block_size {
            return Err(PlanError::BlockBelowLogical {
                block_size: options.block_size,
                lbs: d.logical_block_size,
                dev: d.path.display().to_string(),
            });
        }
    }
    let block_sectors = options.block_sectors();
    // Block sizes are powers of two.
    if main_offset & (block_sectors - 1) != 0 {
        return Err(PlanError::OffsetNotAligned {
            offset: main_offset,
            block_sectors,
        });
    }
    if main_offset >= main.sectors {
        return Err(PlanError::OffsetBeyondEnd {
            offset: main_offset,
            size: main.sectors,
        });
    }
    let lbs_sectors = u64::from(main.logical_block_size.max(spare.logical_block_size) >> 9).max(1);
    let length = match length {
        Some(l) => {
            if l == 0 {
                return Err(PlanError::LengthZero);
            }
            if l > main.sectors - main_offset {
                return Err(PlanError::LengthBeyondEnd {
                    offset: main_offset,
                    length: l,
                    size: main.sectors,
                });
            }
            if l % lbs_sectors != 0 {
                return Err(PlanError::LengthNotAligned {
                    length: l,
                    sectors: lbs_sectors,
                });
            }
            l
        }
        None => {
            let l = (main.sectors - main_offset) / lbs_sectors * lbs_sectors;
            if l == 0 {
                return Err(PlanError::LengthZero);
            }
            l
        }
    };
    if spare.sectors < block_sectors {
        return Err(PlanError::SpareTooSmall {
            sectors: spare.sectors,
            block_size: options.block_size,
        });
    }
    Ok(RemapSegment {
        start,
        length,
        main: main.dev.to_string(),
        main_offset,
        spare: spare.dev.to_string(),
        options,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::dm::RemapTable;

    fn bdev(path: &str, major: u32, minor: u32, sectors: u64, lbs: u32) -> BlockDevice {
        BlockDevice {
            path: PathBuf::from(path),
            dev: DevNo { major, minor },
            sectors,
            logical_block_size: lbs,
        }
    }

    fn seg(start: u64, length: u64, opts: Options) -> RemapSegment {
        RemapSegment {
            start,
            length,
            main: "259:0".into(),
            main_offset: 0,
            spare: "253:1".into(),
            options: opts,
        }
    }

    #[test]
    fn table_lines_from_segments() {
        let t = build_table(&[seg(0, 2048, Options::default())]).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].to_string(), "0 2048 remap 259:0 0 253:1");

        let o = options(Some(65536), Some(5)).unwrap();
        let mut s2 = seg(2048, 4096, o);
        s2.main_offset = 8192;
        let t = build_table(&[seg(0, 2048, options(None, Some(0)).unwrap()), s2]).unwrap();
        assert_eq!(t[0].params, "259:0 0 253:1 1 read_retries:0");
        assert_eq!(
            t[1].to_string(),
            "2048 4096 remap 259:0 8192 253:1 2 block_size:65536 read_retries:5"
        );
        // What the kernel prints back parses to the same values.
        let back: RemapTable = t[1].params.parse().unwrap();
        assert_eq!(
            back,
            RemapTable {
                main: "259:0".into(),
                main_offset: 8192,
                spare: "253:1".into(),
                block_size: 65536,
                read_retries: 5
            }
        );
    }

    #[test]
    fn table_layout_is_checked() {
        assert!(matches!(build_table(&[]), Err(Error::Invalid(_))));
        let e = build_table(&[seg(8, 16, Options::default())]).unwrap_err();
        assert!(
            e.to_string().contains("starts at sector 8, expected 0"),
            "{e}"
        );
        let e = build_table(&[
            seg(0, 16, Options::default()),
            seg(32, 16, Options::default()),
        ])
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("segment 1 starts at sector 32, expected 16"),
            "{e}"
        );
        assert!(build_table(&[seg(0, 0, Options::default())])
            .unwrap_err()
            .to_string()
            .contains("length 0"));
        let mut s = seg(0, 8, Options::default());
        s.spare = "/dev/a b".into();
        assert!(build_table(&[s])
            .unwrap_err()
            .to_string()
            .contains("white space"));
        let mut s = seg(0, 8, Options::default());
        s.main = String::new();
        assert!(build_table(&[s]).is_err());
        let end = build_table(&[
            seg(0, u64::MAX, Options::default()),
            seg(u64::MAX, 1, Options::default()),
        ]);
        assert!(end.is_err());
    }

    #[test]
    fn option_ranges() {
        for bad in [0, 1, 256, 511, 513, 3000, 4097, 2 << 20, u64::MAX] {
            assert_eq!(
                options(Some(bad), None),
                Err(PlanError::BadBlockSize(bad)),
                "{bad}"
            );
        }
        for good in [512, 1024, 4096, 1 << 20] {
            let o = options(Some(good), None).unwrap();
            assert_eq!(u64::from(o.block_size), good);
            assert!(o.block_size_given && !o.read_retries_given);
        }
        assert_eq!(options(None, Some(17)), Err(PlanError::BadReadRetries(17)));
        assert_eq!(options(None, Some(16)).unwrap().read_retries, 16);
        assert_eq!(options(None, None).unwrap(), Options::default());
        let msg = PlanError::BadBlockSize(3000).to_string();
        assert_eq!(
            msg,
            "block size 3000 is not a power of two from 512 to 1048576 bytes"
        );
    }

    #[test]
    fn plan_checks_devices() {
        let main = bdev("/dev/nvme0n1", 259, 0, 2_097_152, 512);
        let spare = bdev("/dev/vda", 253, 0, 524_288, 512);
        let d = Options::default();
        let s = plan_segment(0, &main, &spare, 0, None, d).unwrap();
        assert_eq!(
            (s.main.as_str(), s.spare.as_str(), s.length),
            ("259:0", "253:0", 2_097_152)
        );
        let s = plan_segment(0, &main, &spare, 2048, None, d).unwrap();
        assert_eq!(s.length, 2_097_152 - 2048);
        let s = plan_segment(0, &main, &spare, 8, Some(1000), d).unwrap();
        assert_eq!((s.main_offset, s.length), (8, 1000));

        assert_eq!(
            plan_segment(0, &main, &main, 0, None, d),
            Err(PlanError::SameDevice(main.dev))
        );
        assert_eq!(
            plan_segment(0, &main, &spare, 4, None, d),
            Err(PlanError::OffsetNotAligned {
                offset: 4,
                block_sectors: 8
            })
        );
        assert_eq!(
            plan_segment(0, &main, &spare, 2_097_152, None, d),
            Err(PlanError::OffsetBeyondEnd {
                offset: 2_097_152,
                size: 2_097_152
            })
        );
        assert_eq!(
            plan_segment(0, &main, &spare, 0, Some(0), d),
            Err(PlanError::LengthZero)
        );
        assert_eq!(
            plan_segment(0, &main, &spare, 8, Some(2_097_152), d),
            Err(PlanError::LengthBeyondEnd {
                offset: 8,
                length: 2_097_152,
                size: 2_097_152
            })
        );
        let tiny = bdev("/dev/vdb", 253, 16, 4, 512);
        assert_eq!(
            plan_segment(0, &main, &tiny, 0, None, d),
            Err(PlanError::SpareTooSmall {
                sectors: 4,
                block_size: 4096
            })
        );
        // 4Kn main: 512-byte blocks are too small, lengths must be whole 4 KiB blocks.
        let main4k = bdev("/dev/sdb", 8, 16, 1 << 20, 4096);
        let e = plan_segment(
            0,
            &main4k,
            &spare,
            0,
            None,
            options(Some(512), None).unwrap(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "block size 512 is smaller than the logical block size 4096 of /dev/sdb"
        );
        assert_eq!(
            plan_segment(0, &main4k, &spare, 0, Some(12), d),
            Err(PlanError::LengthNotAligned {
                length: 12,
                sectors: 8
            })
        );
        // The default length rounds down to whole logical blocks.
        let odd = bdev("/dev/sdc", 8, 32, 1001, 4096);
        assert_eq!(
            plan_segment(0, &odd, &spare, 0, None, d).unwrap().length,
            1000
        );
        let s = plan_segment(
            0,
            &main,
            &spare,
            0,
            None,
            options(Some(1 << 20), Some(0)).unwrap(),
        )
        .unwrap();
        assert_eq!(
            build_table(&[s]).unwrap()[0].params,
            "259:0 0 253:0 2 block_size:1048576 read_retries:0"
        );
    }
}

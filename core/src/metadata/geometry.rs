//! Geometry: where the two copies, their record blocks and the data slots lie on a spare.

use super::{
    CopyId, GeometryError, MAX_DATA_SLOTS, MD_BLOCK_SECTORS, RECORDS_PER_BLOCK, SECTOR_SIZE,
};
use crate::table::{MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};

/// Whether `bs` is a valid remap block size.
pub fn valid_block_size(bs: u32) -> bool {
    bs.is_power_of_two() && (MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&bs)
}

/// Sector of the last whole 4 KiB block of a spare of `spare_sectors` sectors: copy B's
/// superblock. `None` when the spare cannot hold two metadata blocks.
pub fn sb_b_sector(spare_sectors: u64) -> Option<u64> {
    let end = spare_sectors & !(MD_BLOCK_SECTORS - 1);
    if end < 2 * MD_BLOCK_SECTORS {
        return None;
    }
    Some(end - MD_BLOCK_SECTORS)
}

/// Where everything lives on a spare. All positions are in sectors from the spare's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Size of the spare.
    pub spare_sectors: u64,
    /// Remap block size in bytes (one data slot).
    pub block_size: u32,
    /// Records each copy can hold: one per data slot plus the extra asked for.
    pub record_capacity: u64,
    /// First sector of copy A (its superblock; record blocks follow). Always 0.
    pub meta_a_start: u64,
    /// First sector of copy B (its record blocks; its superblock is the last block).
    pub meta_b_start: u64,
    /// Sectors of each copy: one superblock plus `ceil(record_capacity / 252)` record blocks.
    pub meta_sectors: u64,
    /// First sector of the data area, aligned to the block size (and at least 4 KiB).
    pub data_start: u64,
    /// Data slots of `block_size` bytes from `data_start` on.
    pub data_slots: u64,
}

/// `(record_capacity, meta_sectors, data_start)` when `n` slots fit below `end`.
pub(super) fn fit(n: u64, extra: u64, bsec: u64, align: u64, end: u64) -> Option<(u64, u64, u64)> {
    let cap = n.checked_add(extra)?;
    let rblocks = cap.div_ceil(RECORDS_PER_BLOCK as u64);
    if rblocks > u64::from(u32::MAX) {
        return None;
    }
    let meta = rblocks.checked_add(1)?.checked_mul(MD_BLOCK_SECTORS)?;
    let data_start = meta.checked_next_multiple_of(align)?;
    let data_end = data_start.checked_add(n.checked_mul(bsec)?)?;
    let need = data_end.checked_add(meta)?;
    (need <= end).then_some((cap, meta, data_start))
}

impl Geometry {
    /// The layout of a spare of `spare_sectors` sectors with remap blocks of `block_size` bytes
    /// and room for `extra_records` pending records beyond one record per data slot: the most
    /// data slots that fit between the two metadata copies.
    pub fn for_spare(
        spare_sectors: u64,
        block_size: u32,
        extra_records: u64,
    ) -> Result<Geometry, GeometryError> {
        if !valid_block_size(block_size) {
            return Err(GeometryError::BlockSize);
        }
        let bsec = u64::from(block_size) / SECTOR_SIZE;
        let align = bsec.max(MD_BLOCK_SECTORS);
        let end = spare_sectors & !(MD_BLOCK_SECTORS - 1);
        let ok = |n: u64| fit(n, extra_records, bsec, align, end);
        if ok(1).is_none() {
            return Err(GeometryError::TooSmall);
        }
        // `ok` is monotone in n: find the largest n that fits by bisection.
        let mut lo = 1u64;
        let mut hi = (end / bsec).min(MAX_DATA_SLOTS);
        if ok(hi).is_some() {
            lo = hi;
        } else {
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if ok(mid).is_some() {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
        }
        let (cap, meta, data_start) = ok(lo).ok_or(GeometryError::TooSmall)?;
        Ok(Geometry {
            spare_sectors,
            block_size,
            record_capacity: cap,
            meta_a_start: 0,
            meta_b_start: end - meta,
            meta_sectors: meta,
            data_start,
            data_slots: lo,
        })
    }

    /// Sectors per remap block.
    pub fn block_sectors(&self) -> u64 {
        u64::from(self.block_size) / SECTOR_SIZE
    }

    /// Record blocks each copy has room for.
    pub fn record_blocks(&self) -> u64 {
        (self.meta_sectors / MD_BLOCK_SECTORS).saturating_sub(1)
    }

    /// Pending records the capacity allows beyond one per data slot.
    pub fn extra_records(&self) -> u64 {
        self.record_capacity.saturating_sub(self.data_slots)
    }

    /// First sector of the data area's end.
    pub fn data_end(&self) -> u64 {
        self.data_start
            .saturating_add(self.data_slots.saturating_mul(self.block_sectors()))
    }

    /// Sector of `copy`'s superblock.
    pub fn sb_sector(&self, copy: CopyId) -> u64 {
        match copy {
            CopyId::A => self.meta_a_start,
            CopyId::B => self
                .meta_b_start
                .saturating_add(self.meta_sectors)
                .saturating_sub(MD_BLOCK_SECTORS),
        }
    }

    /// Sector of `copy`'s record block `index`.
    pub fn record_sector(&self, copy: CopyId, index: u32) -> u64 {
        let off = u64::from(index).saturating_mul(MD_BLOCK_SECTORS);
        match copy {
            CopyId::A => self
                .meta_a_start
                .saturating_add(MD_BLOCK_SECTORS)
                .saturating_add(off),
            CopyId::B => self.meta_b_start.saturating_add(off),
        }
    }

    /// Sector of data slot `slot` on the spare, if the slot exists.
    pub fn slot_sector(&self, slot: u64) -> Option<u64> {
        if slot >= self.data_slots {
            return None;
        }
        self.data_start
            .checked_add(slot.checked_mul(self.block_sectors())?)
    }
}

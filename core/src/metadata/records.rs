//! Records: the on-disk form of a remap entry, the record-block checks and the copy encoder.

use super::block::{block_of_mut, get_u32, put_bytes, put_u32, put_u64};
use super::layout as L;
use super::{
    encode_superblock, seal, CopyId, EncodeError, RecordProblem, SetInfo, Superblock, RB_MAGIC,
    RECORDS_PER_BLOCK, RECORD_SIZE, SLOT_MASK, STATE_PENDING, STATE_REMAPPED, STATE_SHIFT, VERSION,
};
use crate::alloc::words_for;
use crate::crc32c;
use crate::remap::Entry;

/// The on-disk `state_slot` of an entry.
pub fn entry_to_disk(e: Entry) -> Option<u64> {
    match e {
        Entry::Remapped { slot } if slot <= SLOT_MASK => {
            Some((STATE_REMAPPED << STATE_SHIFT) | slot)
        }
        Entry::Remapped { .. } => None,
        Entry::Pending => Some(STATE_PENDING << STATE_SHIFT),
    }
}

/// The entry of an on-disk `state_slot`.
pub fn entry_from_disk(v: u64) -> Result<Entry, RecordProblem> {
    let slot = v & SLOT_MASK;
    match v >> STATE_SHIFT {
        STATE_REMAPPED => Ok(Entry::Remapped { slot }),
        STATE_PENDING if slot == 0 => Ok(Entry::Pending),
        STATE_PENDING => Err(RecordProblem::PendingSlot),
        _ => Err(RecordProblem::State),
    }
}

pub(super) fn record_off(pos: usize) -> usize {
    L::RB_RECORDS + pos * RECORD_SIZE
}

/// Tests a slot's bit in `bits` and sets it; `false` when it was already set (or out of range).
fn claim(bits: &mut [u64], slot: u64) -> bool {
    let Ok(w) = usize::try_from(slot / 64) else {
        return false;
    };
    let m = 1u64 << (slot % 64);
    match bits.get_mut(w) {
        Some(word) if *word & m == 0 => {
            *word |= m;
            true
        }
        _ => false,
    }
}

/// Checks of one record against the set, shared by the encoder and the decoder.
pub(super) struct RecordCheck {
    main_blocks: u64,
    data_slots: u64,
    prev: Option<u64>,
}

impl RecordCheck {
    pub(super) fn new(set: &SetInfo) -> Self {
        RecordCheck {
            main_blocks: set.main_blocks(),
            data_slots: set.geometry.data_slots,
            prev: None,
        }
    }

    pub(super) fn check(
        &mut self,
        block: u64,
        e: Entry,
        bits: Option<&mut [u64]>,
    ) -> Result<(), RecordProblem> {
        if self.prev.is_some_and(|p| block <= p) {
            return Err(RecordProblem::Order);
        }
        if block >= self.main_blocks {
            return Err(RecordProblem::BlockOutOfRange);
        }
        if let Entry::Remapped { slot } = e {
            if slot >= self.data_slots {
                return Err(RecordProblem::SlotOutOfRange);
            }
            if let Some(bits) = bits {
                if !claim(bits, slot) {
                    return Err(RecordProblem::SlotInUse);
                }
            }
        }
        self.prev = Some(block);
        Ok(())
    }
}

/// Encodes one commit (a whole copy): record blocks first, one per call of
/// [`next_block`](Self::next_block), then the superblock with [`finish`](Self::finish). The
/// caller writes each block to the sector returned.
pub struct CopyEncoder<'s, 'b> {
    set: &'s SetInfo,
    copy: CopyId,
    seq: u64,
    bits: Option<&'b mut [u64]>,
    check: RecordCheck,
    index: u32,
    records: u64,
    remapped: u64,
    pending: u64,
    records_crc: u32,
    done: bool,
    failed: bool,
}

impl<'s, 'b> CopyEncoder<'s, 'b> {
    /// An encoder of a copy of `set` with sequence number `seq` into `copy`'s location. With a
    /// bitmap (at least [`words_for`]`(data_slots)` words; it is cleared), a slot used twice is
    /// refused; without one, only the loader would notice.
    pub fn new(
        set: &'s SetInfo,
        copy: CopyId,
        seq: u64,
        bits: Option<&'b mut [u64]>,
    ) -> Result<Self, EncodeError> {
        set.validate().map_err(|field| EncodeError::Set { field })?;
        if seq == 0 {
            return Err(EncodeError::Seq);
        }
        let bits = match bits {
            Some(b) => {
                let need = words_for(set.geometry.data_slots);
                let b = b
                    .get_mut(..need)
                    .ok_or(EncodeError::BitmapTooSmall { need })?;
                b.fill(0);
                Some(b)
            }
            None => None,
        };
        Ok(CopyEncoder {
            set,
            copy,
            seq,
            bits,
            check: RecordCheck::new(set),
            index: 0,
            records: 0,
            remapped: 0,
            pending: 0,
            records_crc: 0,
            done: false,
            failed: false,
        })
    }

    /// Encode the next record block from up to 252 records of `records` (sorted by block number,
    /// no block twice) into `buf`. Returns the sector it belongs at, or `None` once `records` is
    /// exhausted (no block was produced).
    pub fn next_block<I>(
        &mut self,
        records: &mut I,
        buf: &mut [u8],
    ) -> Result<Option<u64>, EncodeError>
    where
        I: Iterator<Item = (u64, Entry)> + ?Sized,
    {
        if self.failed {
            return Err(EncodeError::Unfinished);
        }
        if self.done {
            return Ok(None);
        }
        let b = block_of_mut(buf).ok_or(EncodeError::BufferTooSmall)?;
        b.fill(0);
        let mut count = 0usize;
        while count < RECORDS_PER_BLOCK {
            let Some((block, e)) = records.next() else {
                self.done = true;
                break;
            };
            if let Err(err) = self.add(b, count, block, e) {
                self.failed = true;
                return Err(err);
            }
            count += 1;
        }
        if count == 0 {
            return Ok(None);
        }
        put_u32(b, L::RB_MAGIC, RB_MAGIC);
        put_u64(b, L::RB_SEQ, self.seq);
        put_bytes(b, L::RB_UUID, &self.set.uuid);
        put_u32(b, L::RB_COPY, self.copy.disk_id());
        put_u32(b, L::RB_INDEX, self.index);
        put_u32(b, L::RB_COUNT, count as u32);
        seal(b);
        self.records_crc = crc32c::update(self.records_crc, &get_u32(b, L::RB_CRC).to_le_bytes());
        let sector = self.set.geometry.record_sector(self.copy, self.index);
        self.index = self.index.saturating_add(1);
        Ok(Some(sector))
    }

    fn add(&mut self, b: &mut [u8], pos: usize, block: u64, e: Entry) -> Result<(), EncodeError> {
        if self.records >= self.set.geometry.record_capacity {
            return Err(EncodeError::TooManyRecords);
        }
        let disk = entry_to_disk(e).ok_or(EncodeError::Record {
            block,
            problem: RecordProblem::SlotOutOfRange,
        })?;
        self.check
            .check(block, e, self.bits.as_deref_mut())
            .map_err(|problem| EncodeError::Record { block, problem })?;
        match e {
            Entry::Remapped { .. } => self.remapped += 1,
            Entry::Pending => self.pending += 1,
        }
        self.records += 1;
        put_u64(b, record_off(pos) + L::REC_BLOCK, block);
        put_u64(b, record_off(pos) + L::REC_STATE_SLOT, disk);
        Ok(())
    }

    /// Encode the copy's superblock into `buf` once every record block was produced. Returns its
    /// sector and the superblock.
    pub fn finish(self, buf: &mut [u8]) -> Result<(u64, Superblock), EncodeError> {
        if self.failed || !self.done {
            return Err(EncodeError::Unfinished);
        }
        let sb = Superblock {
            copy: self.copy,
            version: VERSION,
            seq: self.seq,
            set: *self.set,
            nr_records: self.records,
            nr_remapped: self.remapped,
            nr_pending: self.pending,
            records_crc: self.records_crc,
        };
        encode_superblock(&sb, buf)?;
        Ok((self.set.geometry.sb_sector(self.copy), sb))
    }
}

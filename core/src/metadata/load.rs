//! Loading: probing the superblocks, validating both copies and picking the newest.

use super::block::{all_zero, block_of_mut, get_array, get_u32, get_u64};
use super::io::read_block;
use super::layout as L;
use super::records::{record_off, RecordCheck};
use super::{
    block_crc, decode_superblock, entry_from_disk, replay_journal, sb_b_sector, CopyError, CopyId,
    Field, LoadError, RecordProblem, Replayed, SetInfo, SinkError, SpareRead, Superblock, RB_MAGIC,
    RECORDS_PER_BLOCK, UUID_LEN,
};
use crate::alloc::words_for;
use crate::crc32c;
use crate::remap::Entry;

/// Both superblocks as read from a spare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Copy A's superblock, or why it is not valid.
    pub a: Result<Superblock, CopyError>,
    /// Copy B's superblock, or why it is not valid.
    pub b: Result<Superblock, CopyError>,
    /// Highest sequence number of a superblock whose magic and checksum are intact (0 if none).
    pub max_seq: u64,
}

impl Probe {
    /// The result for `copy`.
    pub fn get(&self, copy: CopyId) -> &Result<Superblock, CopyError> {
        match copy {
            CopyId::A => &self.a,
            CopyId::B => &self.b,
        }
    }

    /// Whether both superblock blocks are all zeros.
    pub fn is_blank(&self) -> bool {
        self.a == Err(CopyError::Blank) && self.b == Err(CopyError::Blank)
    }

    /// Slot bitmap words needed to check every copy whose superblock is valid.
    pub fn bitmap_words(&self) -> usize {
        [&self.a, &self.b]
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|sb| words_for(sb.set.geometry.data_slots))
            .max()
            .unwrap_or(0)
    }
}

/// Read and decode both superblocks of a spare of `spare_sectors` sectors. `buf` is one metadata
/// block of scratch space.
pub fn probe<D: SpareRead + ?Sized>(
    dev: &mut D,
    spare_sectors: u64,
    buf: &mut [u8],
) -> Result<Probe, LoadError> {
    let b_sector = sb_b_sector(spare_sectors).ok_or(LoadError::SpareTooSmall {
        sectors: spare_sectors,
    })?;
    let blk = block_of_mut(buf).ok_or(LoadError::BufferTooSmall)?;
    let mut max_seq = 0;
    let mut one = |copy: CopyId, sector: u64| {
        read_block(dev, sector, blk)?;
        let r = decode_superblock(blk, copy, spare_sectors);
        // A superblock whose magic and checksum are intact (the decoder checks those first) may
        // have been written by a commit even if other fields are wrong: its sequence number
        // must never be reused.
        let sealed = !matches!(
            r,
            Err(CopyError::Blank
                | CopyError::Short
                | CopyError::Superblock {
                    field: Field::Magic | Field::Crc
                })
        );
        if sealed {
            max_seq = max_seq.max(get_u64(blk, L::SB_SEQ));
        }
        r
    };
    let a = one(CopyId::A, 0);
    let b = one(CopyId::B, b_sector);
    Ok(Probe { a, b, max_seq })
}

/// Counts of a validated copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyTotals {
    /// Records in state remapped.
    pub remapped: u64,
    /// Records in state pending.
    pub pending: u64,
}

enum WalkError {
    Copy(CopyError),
    Sink(u64),
}

/// Read every record block of the copy `sb` heads and check it completely; hand each record to
/// `sink`. `bits` (at least `words_for(data_slots)` words) is cleared first and ends up with the
/// bit of every slot the copy uses.
fn walk<D, S>(
    dev: &mut D,
    sb: &Superblock,
    blk: &mut [u8],
    bits: &mut [u64],
    sink: &mut S,
) -> Result<CopyTotals, WalkError>
where
    D: SpareRead + ?Sized,
    S: FnMut(u64, Entry) -> Result<(), SinkError>,
{
    let need = words_for(sb.set.geometry.data_slots);
    let bits = bits
        .get_mut(..need)
        .ok_or(WalkError::Copy(CopyError::Short))?;
    bits.fill(0);
    let copy = sb.copy;
    let mut check = RecordCheck::new(&sb.set);
    let mut left = sb.nr_records;
    let mut acc = 0u32;
    let mut remapped = 0u64;
    let mut pending = 0u64;
    for index in 0..sb.record_blocks() {
        let sector = sb.set.geometry.record_sector(copy, index);
        read_block(dev, sector, blk).map_err(WalkError::Copy)?;
        let bad = |field| WalkError::Copy(CopyError::RecordBlock { index, field });
        let count = left.min(RECORDS_PER_BLOCK as u64);
        if get_u32(blk, L::RB_MAGIC) != RB_MAGIC {
            return Err(bad(Field::Magic));
        }
        let crc = get_u32(blk, L::RB_CRC);
        if crc != block_crc(blk) {
            return Err(bad(Field::Crc));
        }
        if get_u64(blk, L::RB_SEQ) != sb.seq {
            return Err(bad(Field::Seq));
        }
        if get_array::<UUID_LEN>(blk, L::RB_UUID) != sb.set.uuid {
            return Err(bad(Field::Uuid));
        }
        if get_u32(blk, L::RB_COPY) != copy.disk_id() {
            return Err(bad(Field::Copy));
        }
        if get_u32(blk, L::RB_INDEX) != index {
            return Err(bad(Field::Index));
        }
        if u64::from(get_u32(blk, L::RB_COUNT)) != count {
            return Err(bad(Field::Count));
        }
        if !all_zero(blk.get(L::RB_RESERVED..L::RB_RECORDS).unwrap_or(&[])) {
            return Err(bad(Field::Reserved));
        }
        acc = crc32c::update(acc, &crc.to_le_bytes());
        for pos in 0..RECORDS_PER_BLOCK {
            let block = get_u64(blk, record_off(pos) + L::REC_BLOCK);
            let raw = get_u64(blk, record_off(pos) + L::REC_STATE_SLOT);
            let rec_err = |problem| {
                WalkError::Copy(CopyError::Record {
                    index,
                    pos: pos as u32,
                    block,
                    problem,
                })
            };
            if pos as u64 >= count {
                if block != 0 || raw != 0 {
                    return Err(rec_err(RecordProblem::UnusedNotZero));
                }
                continue;
            }
            let e = entry_from_disk(raw).map_err(rec_err)?;
            check.check(block, e, Some(&mut *bits)).map_err(rec_err)?;
            match e {
                Entry::Remapped { .. } => remapped += 1,
                Entry::Pending => pending += 1,
            }
            sink(block, e).map_err(|_| WalkError::Sink(block))?;
        }
        left -= count;
    }
    if acc != sb.records_crc {
        return Err(WalkError::Copy(CopyError::Totals {
            field: Field::RecordsCrc,
        }));
    }
    if remapped != sb.nr_remapped || pending != sb.nr_pending {
        return Err(WalkError::Copy(CopyError::Totals {
            field: Field::Counts,
        }));
    }
    Ok(CopyTotals { remapped, pending })
}

/// Validate every record block of the copy `sb` heads (read with [`probe`]). `buf` is one
/// metadata block of scratch space; `bits` at least `words_for(data_slots)` words, cleared first
/// and left with the copy's used slots.
pub fn check_copy<D: SpareRead + ?Sized>(
    dev: &mut D,
    sb: &Superblock,
    buf: &mut [u8],
    bits: &mut [u64],
) -> Result<CopyTotals, CopyError> {
    let blk = block_of_mut(buf).ok_or(CopyError::Short)?;
    match walk(dev, sb, blk, bits, &mut |_, _| Ok(())) {
        Ok(t) => Ok(t),
        Err(WalkError::Copy(e)) => Err(e),
        Err(WalkError::Sink(_)) => Err(CopyError::Short),
    }
}

/// What the caller knows about the set it expects on the spare; `None` fields are not checked.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expect<'a> {
    /// The set's UUID.
    pub uuid: Option<[u8; UUID_LEN]>,
    /// Size of the main device in sectors.
    pub main_sectors: Option<u64>,
    /// The table's main offset.
    pub main_offset: Option<u64>,
    /// The main device's identity string (unpadded), checked against a version 2 superblock.
    pub main_id: Option<&'a [u8]>,
    /// The identity a version 1 superblock must hold: the main device's kernel name (what
    /// version 1 recorded). `None` accepts any.
    pub main_id_v1: Option<&'a [u8]>,
    /// The table's block size.
    pub block_size: Option<u32>,
}

impl Expect<'_> {
    /// The first field of `set`, read from a superblock of format `version`, that differs from
    /// the expectation.
    pub fn check(&self, set: &SetInfo, version: u32) -> Result<(), Field> {
        let main_id = if version == 1 {
            self.main_id_v1
        } else {
            self.main_id
        };
        if self.uuid.is_some_and(|u| u != set.uuid) {
            return Err(Field::Uuid);
        }
        if self.main_sectors.is_some_and(|s| s != set.main.sectors) {
            return Err(Field::MainSectors);
        }
        if self.main_offset.is_some_and(|o| o != set.main.offset) {
            return Err(Field::MainOffset);
        }
        if main_id.is_some_and(|id| id != set.main.id_bytes()) {
            return Err(Field::MainId);
        }
        if self
            .block_size
            .is_some_and(|bs| bs != set.geometry.block_size)
        {
            return Err(Field::BlockSize);
        }
        Ok(())
    }
}

/// State of the copy that did not win.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyStatus {
    /// Intact, with an older sequence number (the normal state between commits).
    Valid {
        /// Its sequence number.
        seq: u64,
    },
    /// Not valid; it should be rewritten (a commit to it restores redundancy).
    Bad(CopyError),
}

/// The outcome of a successful [`load`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    /// The copy whose records were delivered.
    pub winner: CopyId,
    /// Its superblock.
    pub sb: Superblock,
    /// The other copy.
    pub other: CopyStatus,
    /// Sequence number the next commit must use: above every intact superblock seen and every
    /// replayed journal commit.
    pub next_seq: u64,
    /// The winner's journal as replayed: where the next journal commit goes, and why it ends.
    pub journal: Replayed,
    /// Highest sequence number of an intact superblock ([`Probe::max_seq`]): a checkpoint
    /// changes it, a journal commit does not (see [`super::journal_continues`]).
    pub max_sb_seq: u64,
}

impl Loaded {
    /// The copy the next commit writes (ping-pong: never the winner).
    pub fn commit_target(&self) -> CopyId {
        self.winner.other()
    }

    /// Whether the other copy is damaged, stale from a torn commit, or otherwise not intact.
    pub fn other_bad(&self) -> bool {
        matches!(self.other, CopyStatus::Bad(_))
    }
}

/// Load a spare of `spare_sectors` sectors: read both superblocks, validate both copies
/// completely, pick the valid copy with the highest sequence number (A on a tie), check it
/// against `expect`, then read it again and hand every record to `sink` in block order; then
/// replay the winner's journal (version 3), handing each change to `replay` in commit order
/// (`Some`: the block's entry becomes this one; `None`: the block's record is removed).
///
/// `buf` is one metadata block of scratch space. `bits` must hold [`words_for`]`(data_slots)`
/// words for the copies found (see [`Probe::bitmap_words`]; the kernel knows its spare's
/// geometry from [`Geometry::for_spare`]); it ends up with the winner's used slots.
///
/// A blank spare gives [`LoadError::Blank`]; a spare with no valid copy
/// [`LoadError::NoValidCopy`] naming each copy's problem. Records reach `sink` only from a copy
/// that validated completely; if the second pass finds it changed ([`LoadError::Changed`]) or
/// `sink` refuses a record, the records delivered so far must be discarded (likewise for the
/// journal: [`LoadError::JournalIo`], or `replay` refusing a change). `bits` holds the winning
/// copy's slots before the journal: checking the slots the journal changes is `replay`'s job.
pub fn load<D, S, R>(
    dev: &mut D,
    spare_sectors: u64,
    expect: &Expect<'_>,
    buf: &mut [u8],
    bits: &mut [u64],
    mut sink: S,
    mut replay: R,
) -> Result<Loaded, LoadError>
where
    D: SpareRead + ?Sized,
    S: FnMut(u64, Entry) -> Result<(), SinkError>,
    R: FnMut(u64, Option<Entry>) -> Result<(), SinkError>,
{
    let p = probe(dev, spare_sectors, buf)?;
    if p.is_blank() {
        return Err(LoadError::Blank);
    }
    let need = p.bitmap_words();
    if bits.len() < need {
        return Err(LoadError::BitmapTooSmall { need });
    }
    let blk = block_of_mut(buf).ok_or(LoadError::BufferTooSmall)?;
    let mut validate = |r: &Result<Superblock, CopyError>| -> Result<Superblock, CopyError> {
        let sb = (*r)?;
        match walk(dev, &sb, blk, bits, &mut |_, _| Ok(())) {
            Ok(_) => Ok(sb),
            Err(WalkError::Copy(e)) => Err(e),
            Err(WalkError::Sink(_)) => Err(CopyError::Short),
        }
    };
    let a = validate(&p.a);
    let b = validate(&p.b);
    let (winner, other) = match (a, b) {
        (Ok(sa), Ok(sb)) if sb.seq > sa.seq => (sb, Ok(sa)),
        (Ok(sa), other) => (sa, other),
        (Err(ea), Ok(sb)) => (sb, Err(ea)),
        (Err(a), Err(b)) => return Err(LoadError::NoValidCopy { a, b }),
    };
    let other = match other {
        Ok(o) if o.set != winner.set => CopyStatus::Bad(CopyError::OtherSet),
        Ok(o) if o.seq == winner.seq => CopyStatus::Bad(CopyError::SameSequence),
        Ok(o) => CopyStatus::Valid { seq: o.seq },
        Err(e) => CopyStatus::Bad(e),
    };
    expect
        .check(&winner.set, winner.version)
        .map_err(|field| LoadError::Mismatch {
            copy: winner.copy,
            field,
        })?;
    match walk(dev, &winner, blk, bits, &mut sink) {
        Ok(_) => {}
        Err(WalkError::Copy(error)) => {
            return Err(LoadError::Changed {
                copy: winner.copy,
                error,
            })
        }
        Err(WalkError::Sink(block)) => return Err(LoadError::Sink { block }),
    }
    let journal = replay_journal(dev, &winner, blk, Some(&mut replay))?;
    let next_seq = p
        .max_seq
        .max(winner.seq)
        .max(journal.journal.last_seq)
        .checked_add(1)
        .ok_or(LoadError::SeqExhausted)?;
    Ok(Loaded {
        winner: winner.copy,
        sb: winner,
        other,
        next_seq,
        journal,
        max_sb_seq: p.max_seq,
    })
}

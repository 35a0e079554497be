//! The journal (format version 3): commits made since the newest copy was written, appended to
//! the record blocks that copy does not use.
//!
//! A commit is `ceil(changes / 252)` consecutive journal blocks, written at the journal's head
//! with one write. Every block repeats the commit's sequence number, the sequence number of the
//! copy the journal follows (`base_seq`), the previous commit's (`prev_seq`, `base_seq` for the
//! first), its index in the commit, the commit's block count, and a CRC-32C over the entry areas
//! of all the commit's blocks (`commit_crc`). Replay accepts a commit only when all its blocks
//! are intact and agree; the first commit that is not ends the journal, so a torn commit (and
//! anything a later write might have left behind it) is never replayed.

use super::block::{all_zero, get_array, get_u32, get_u64, put_bytes, put_u32, put_u64};
use super::io::read_block;
use super::layout as L;
use super::{
    block_crc, entry_from_disk, entry_to_disk, seal, CopyError, CopyId, EncodeError, Field,
    LoadError, RecordProblem, SetInfo, SinkError, SpareRead, Superblock, JB_MAGIC,
    JOURNAL_ENTRIES_PER_BLOCK, MD_BLOCK_SIZE, RECORD_SIZE, SLOT_MASK, STATE_REMOVED, STATE_SHIFT,
    UUID_LEN, VERSION_JOURNAL,
};
use crate::crc32c;
use crate::remap::Entry;

/// One change of a commit: main block and its new entry (`None`: the block's record is removed).
pub type Change = (u64, Option<Entry>);

/// The on-disk `state_slot` of a journal entry.
pub fn change_to_disk(e: Option<Entry>) -> Option<u64> {
    match e {
        Some(e) => entry_to_disk(e),
        None => Some(STATE_REMOVED << STATE_SHIFT),
    }
}

/// The change a journal entry's `state_slot` encodes.
pub fn change_from_disk(v: u64) -> Result<Option<Entry>, RecordProblem> {
    match v >> STATE_SHIFT {
        STATE_REMOVED if v & SLOT_MASK == 0 => Ok(None),
        STATE_REMOVED => Err(RecordProblem::PendingSlot),
        _ => entry_from_disk(v).map(Some),
    }
}

/// Journal blocks a commit of `changes` changes takes.
pub fn journal_blocks_for(changes: usize) -> usize {
    changes.div_ceil(JOURNAL_ENTRIES_PER_BLOCK)
}

fn entry_off(pos: usize) -> usize {
    L::JB_ENTRIES + pos * RECORD_SIZE
}

/// The journal behind one copy: where it lies and how far it is written. Positions are record
/// block indexes of the copy (see [`super::Geometry::record_sector`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Journal {
    /// The copy whose unused record blocks hold the journal.
    pub copy: CopyId,
    /// Sequence number of that copy: every block of the journal names it.
    pub base_seq: u64,
    /// First journal block: the first record block the copy does not use.
    pub first: u32,
    /// Where the next commit goes.
    pub head: u32,
    /// End of the journal region: the copy's record area ends here.
    pub end: u32,
    /// Sequence number of the newest commit (`base_seq` while there is none).
    pub last_seq: u64,
    /// Commits in the journal.
    pub commits: u64,
}

impl Journal {
    /// The empty journal behind the copy `sb` heads.
    pub fn after(sb: &Superblock) -> Journal {
        let first = sb.record_blocks();
        let end = u32::try_from(sb.set.geometry.record_blocks())
            .unwrap_or(u32::MAX)
            .max(first);
        Journal {
            copy: sb.copy,
            base_seq: sb.seq,
            first,
            head: first,
            end,
            last_seq: sb.seq,
            commits: 0,
        }
    }

    /// Blocks written so far.
    pub fn used(&self) -> u32 {
        self.head.saturating_sub(self.first)
    }

    /// Blocks left.
    pub fn free(&self) -> u32 {
        self.end.saturating_sub(self.head)
    }

    /// Sector of journal block `index` (a record block index of the copy).
    pub fn sector(&self, set: &SetInfo, index: u32) -> u64 {
        set.geometry.record_sector(self.copy, index)
    }

    /// Account a commit of `blocks` blocks with sequence number `seq`, written at the head.
    pub fn advance(&mut self, blocks: u32, seq: u64) {
        self.head = self.head.saturating_add(blocks);
        self.last_seq = seq;
        self.commits += 1;
    }
}

/// Encode a commit of `changes` (applied in order; a block may appear more than once) with
/// sequence number `seq` as the next commit of `j` into `buf`, one [`MD_BLOCK_SIZE`] block after
/// the other. Returns the number of blocks (0 when there are no changes); the caller writes them
/// at `j.sector(set, j.head)` and then calls [`Journal::advance`]. Refuses
/// ([`EncodeError::JournalSpace`]) a commit larger than `buf` or the journal's free blocks.
pub fn encode_journal<I>(
    set: &SetInfo,
    j: &Journal,
    seq: u64,
    changes: I,
    buf: &mut [u8],
) -> Result<u32, EncodeError>
where
    I: Iterator<Item = Change>,
{
    if seq <= j.last_seq {
        return Err(EncodeError::Seq);
    }
    let main_blocks = set.main_blocks();
    let data_slots = set.geometry.data_slots;
    let room = (buf.len() / MD_BLOCK_SIZE).min(j.free() as usize);
    let mut n = 0usize;
    for (block, e) in changes {
        let bi = n / JOURNAL_ENTRIES_PER_BLOCK;
        if bi >= room {
            return Err(EncodeError::JournalSpace);
        }
        let pos = n % JOURNAL_ENTRIES_PER_BLOCK;
        let b = buf
            .get_mut(bi * MD_BLOCK_SIZE..(bi + 1) * MD_BLOCK_SIZE)
            .ok_or(EncodeError::JournalSpace)?;
        if pos == 0 {
            b.fill(0);
        }
        let problem = if block >= main_blocks {
            Some(RecordProblem::BlockOutOfRange)
        } else if matches!(e, Some(Entry::Remapped { slot }) if slot >= data_slots) {
            Some(RecordProblem::SlotOutOfRange)
        } else {
            None
        };
        let disk = change_to_disk(e);
        let (Some(disk), None) = (disk, problem) else {
            return Err(EncodeError::Record {
                block,
                problem: problem.unwrap_or(RecordProblem::SlotOutOfRange),
            });
        };
        put_u64(b, entry_off(pos), block);
        put_u64(b, entry_off(pos) + 8, disk);
        n += 1;
    }
    let blocks = journal_blocks_for(n);
    let mut commit_crc = 0u32;
    for bi in 0..blocks {
        let b = buf
            .get(bi * MD_BLOCK_SIZE + L::JB_ENTRIES..(bi + 1) * MD_BLOCK_SIZE)
            .ok_or(EncodeError::JournalSpace)?;
        commit_crc = crc32c::update(commit_crc, b);
    }
    for bi in 0..blocks {
        let count = if bi + 1 == blocks {
            n - bi * JOURNAL_ENTRIES_PER_BLOCK
        } else {
            JOURNAL_ENTRIES_PER_BLOCK
        };
        let b = buf
            .get_mut(bi * MD_BLOCK_SIZE..(bi + 1) * MD_BLOCK_SIZE)
            .ok_or(EncodeError::JournalSpace)?;
        put_u32(b, L::JB_MAGIC, JB_MAGIC);
        put_u64(b, L::JB_SEQ, seq);
        put_bytes(b, L::JB_UUID, &set.uuid);
        put_u64(b, L::JB_BASE_SEQ, j.base_seq);
        put_u64(b, L::JB_PREV_SEQ, j.last_seq);
        put_u32(b, L::JB_INDEX, bi as u32);
        put_u32(b, L::JB_BLOCKS, blocks as u32);
        put_u32(b, L::JB_COUNT, count as u32);
        put_u32(b, L::JB_COMMIT_CRC, commit_crc);
        seal(b);
    }
    Ok(blocks as u32)
}

/// Why the journal ends where it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalEnd {
    /// The copy's format predates the journal (version 1 or 2): nothing follows it.
    None,
    /// The block at the head is all zeros, or an intact block that is not a journal block of
    /// this copy (a record block, or a block of an older journal): the normal end.
    Clean,
    /// The journal fills the copy's record area.
    Full,
    /// The block at the head, or a block of the commit starting there, is a journal block of
    /// this copy but not a valid continuation, or a block whose checksum fails: a commit torn by
    /// a crash or a failed write (never acknowledged), or a damaged block. Commits from there on
    /// are not replayed.
    Invalid {
        /// Record block index of the first block that is wrong.
        index: u32,
        /// What is wrong with it.
        field: Field,
    },
}

impl core::fmt::Display for JournalEnd {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            JournalEnd::None => f.write_str("no journal (format before version 3)"),
            JournalEnd::Clean => f.write_str("clean"),
            JournalEnd::Full => f.write_str("full"),
            JournalEnd::Invalid { index, field } => write!(
                f,
                "ends at record block {index}: field {}: {} (torn or damaged commit)",
                field,
                field.problem()
            ),
        }
    }
}

/// A journal as replayed: where it ends and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    /// The journal after its last valid commit (its head is where the next commit goes).
    pub journal: Journal,
    /// Why replay stopped there.
    pub end: JournalEnd,
    /// Entries replayed.
    pub entries: u64,
}

enum Step {
    /// A valid commit of this many blocks with this sequence number.
    Commit(u32, u64),
    /// The journal ends.
    End(JournalEnd),
}

/// Check the commit at the head of `j` (all its blocks), without delivering anything.
fn check_commit<D: SpareRead + ?Sized>(
    dev: &mut D,
    set: &SetInfo,
    j: &Journal,
    blk: &mut [u8],
) -> Result<Step, LoadError> {
    let main_blocks = set.main_blocks();
    let data_slots = set.geometry.data_slots;
    let mut acc = 0u32;
    let mut blocks = 1u32;
    let mut seq = 0u64;
    let mut commit_crc = 0u32;
    let mut i = 0u32;
    while i < blocks {
        let index = j.head.saturating_add(i);
        let sector = j.sector(set, index);
        read_block(dev, sector, blk).map_err(|_| LoadError::JournalIo { sector })?;
        let invalid = |field| Ok(Step::End(JournalEnd::Invalid { index, field }));
        // The journal ends cleanly at a block never written, or at a whole block of another
        // kind or of an older journal; a block whose checksum fails is torn or damaged.
        if i == 0 && all_zero(blk) {
            return Ok(Step::End(JournalEnd::Clean));
        }
        if get_u32(blk, L::JB_CRC) != block_crc(blk) {
            return invalid(Field::Crc);
        }
        if get_u32(blk, L::JB_MAGIC) != JB_MAGIC {
            return if i == 0 {
                Ok(Step::End(JournalEnd::Clean))
            } else {
                invalid(Field::Magic)
            };
        }
        if get_u64(blk, L::JB_BASE_SEQ) != j.base_seq {
            return if i == 0 {
                Ok(Step::End(JournalEnd::Clean))
            } else {
                invalid(Field::BaseSeq)
            };
        }
        if get_array::<UUID_LEN>(blk, L::JB_UUID) != set.uuid {
            return invalid(Field::Uuid);
        }
        if get_u64(blk, L::JB_PREV_SEQ) != j.last_seq {
            return invalid(Field::PrevSeq);
        }
        let bseq = get_u64(blk, L::JB_SEQ);
        if i == 0 {
            seq = bseq;
            blocks = get_u32(blk, L::JB_BLOCKS);
            commit_crc = get_u32(blk, L::JB_COMMIT_CRC);
            if seq <= j.last_seq {
                return invalid(Field::Seq);
            }
            if blocks == 0 || blocks > j.free() {
                return invalid(Field::Blocks);
            }
        } else if bseq != seq {
            return invalid(Field::Seq);
        } else if get_u32(blk, L::JB_BLOCKS) != blocks {
            return invalid(Field::Blocks);
        } else if get_u32(blk, L::JB_COMMIT_CRC) != commit_crc {
            return invalid(Field::CommitCrc);
        }
        if get_u32(blk, L::JB_INDEX) != i {
            return invalid(Field::Index);
        }
        let count = get_u32(blk, L::JB_COUNT) as usize;
        let count_ok = if i + 1 == blocks {
            (1..=JOURNAL_ENTRIES_PER_BLOCK).contains(&count)
        } else {
            count == JOURNAL_ENTRIES_PER_BLOCK
        };
        if !count_ok {
            return invalid(Field::Count);
        }
        for pos in 0..JOURNAL_ENTRIES_PER_BLOCK {
            let block = get_u64(blk, entry_off(pos));
            let raw = get_u64(blk, entry_off(pos) + 8);
            if pos >= count {
                if block != 0 || raw != 0 {
                    return invalid(Field::Entry);
                }
                continue;
            }
            let ok = match change_from_disk(raw) {
                Ok(Some(Entry::Remapped { slot })) => slot < data_slots,
                Ok(_) => true,
                Err(_) => false,
            };
            if !ok || block >= main_blocks {
                return invalid(Field::Entry);
            }
        }
        acc = crc32c::update(acc, blk.get(L::JB_ENTRIES..).unwrap_or(&[]));
        i += 1;
    }
    if acc != commit_crc {
        return Ok(Step::End(JournalEnd::Invalid {
            index: j.head,
            field: Field::CommitCrc,
        }));
    }
    Ok(Step::Commit(blocks, seq))
}

/// Hand the entries of the commit at the head of `j` (checked by [`check_commit`]) to `sink`.
fn deliver<D, R>(
    dev: &mut D,
    sb: &Superblock,
    j: &Journal,
    blocks: u32,
    seq: u64,
    blk: &mut [u8],
    sink: &mut R,
) -> Result<u64, LoadError>
where
    D: SpareRead + ?Sized,
    R: FnMut(u64, Option<Entry>) -> Result<(), SinkError>,
{
    let mut n = 0;
    for i in 0..blocks {
        let index = j.head.saturating_add(i);
        let sector = j.sector(&sb.set, index);
        read_block(dev, sector, blk).map_err(|_| LoadError::JournalIo { sector })?;
        if get_u32(blk, L::JB_CRC) != block_crc(blk) || get_u64(blk, L::JB_SEQ) != seq {
            return Err(LoadError::Changed {
                copy: j.copy,
                error: CopyError::RecordBlock {
                    index,
                    field: Field::Crc,
                },
            });
        }
        let count = (get_u32(blk, L::JB_COUNT) as usize).min(JOURNAL_ENTRIES_PER_BLOCK);
        for pos in 0..count {
            let block = get_u64(blk, entry_off(pos));
            let change = change_from_disk(get_u64(blk, entry_off(pos) + 8)).map_err(|_| {
                LoadError::Changed {
                    copy: j.copy,
                    error: CopyError::RecordBlock {
                        index,
                        field: Field::Entry,
                    },
                }
            })?;
            sink(block, change).map_err(|_| LoadError::Sink { block })?;
            n += 1;
        }
    }
    Ok(n)
}

/// Replay the journal behind the copy `sb` heads (a copy validated by the loader): every valid
/// commit in order, each entry handed to `sink` (`None` for "only check"). Stops at the first
/// commit that is not complete and valid. `buf` is one metadata block of scratch space.
pub fn replay_journal<D, R>(
    dev: &mut D,
    sb: &Superblock,
    buf: &mut [u8],
    mut sink: Option<&mut R>,
) -> Result<Replayed, LoadError>
where
    D: SpareRead + ?Sized,
    R: FnMut(u64, Option<Entry>) -> Result<(), SinkError>,
{
    let blk = buf
        .get_mut(..MD_BLOCK_SIZE)
        .ok_or(LoadError::BufferTooSmall)?;
    let mut j = Journal::after(sb);
    let mut entries = 0;
    if sb.version < VERSION_JOURNAL {
        return Ok(Replayed {
            journal: j,
            end: JournalEnd::None,
            entries,
        });
    }
    loop {
        if j.free() == 0 {
            return Ok(Replayed {
                journal: j,
                end: JournalEnd::Full,
                entries,
            });
        }
        match check_commit(dev, &sb.set, &j, blk)? {
            Step::End(end) => {
                return Ok(Replayed {
                    journal: j,
                    end,
                    entries,
                })
            }
            Step::Commit(blocks, seq) => {
                if let Some(s) = sink.as_deref_mut() {
                    entries += deliver(dev, sb, &j, blocks, seq, blk, s)?;
                }
                j.advance(blocks, seq);
            }
        }
    }
}

/// Whether a valid commit follows the journal `j` of the set `set` on the spare: another table
/// of the device appended to the journal since `j` was read. `buf` is one metadata block of
/// scratch space. (A checkpoint changes a superblock: see [`super::Probe::max_seq`].)
pub fn journal_continues<D: SpareRead + ?Sized>(
    dev: &mut D,
    set: &SetInfo,
    j: &Journal,
    buf: &mut [u8],
) -> Result<bool, LoadError> {
    let blk = buf
        .get_mut(..MD_BLOCK_SIZE)
        .ok_or(LoadError::BufferTooSmall)?;
    if j.free() == 0 {
        return Ok(false);
    }
    Ok(matches!(check_commit(dev, set, j, blk)?, Step::Commit(..)))
}

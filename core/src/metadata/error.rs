//! Names of the copies and fields, and the errors of encoding, formatting, writing and loading.

use super::MD_BLOCK_SIZE;
use super::{COPY_ID_A, COPY_ID_B};

/// One of the two metadata copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CopyId {
    /// The copy at the start of the spare.
    A,
    /// The copy at the end of the spare.
    B,
}

impl CopyId {
    /// The other copy.
    pub fn other(self) -> CopyId {
        match self {
            CopyId::A => CopyId::B,
            CopyId::B => CopyId::A,
        }
    }

    /// `"A"` or `"B"`.
    pub fn name(self) -> &'static str {
        match self {
            CopyId::A => "A",
            CopyId::B => "B",
        }
    }

    /// The on-disk value of the `copy` fields.
    pub fn disk_id(self) -> u32 {
        match self {
            CopyId::A => COPY_ID_A,
            CopyId::B => COPY_ID_B,
        }
    }
}

impl core::fmt::Display for CopyId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// A field of a superblock or record block (or of the caller's description of a set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `magic`
    Magic,
    /// `crc`
    Crc,
    /// `version`
    Version,
    /// `copy`
    Copy,
    /// `seq`
    Seq,
    /// `features_incompat`
    Features,
    /// `uuid`
    Uuid,
    /// `main_sectors`
    MainSectors,
    /// `main_offset`
    MainOffset,
    /// `main_id`
    MainId,
    /// `name`
    Name,
    /// `block_size`
    BlockSize,
    /// `md_block_size`
    MdBlockSize,
    /// `spare_sectors`
    SpareSectors,
    /// The geometry fields (`meta_*`, `data_*`, `record_capacity`) disagree with the layout the
    /// spare size, block size and record capacity give.
    Geometry,
    /// `nr_records`, `nr_remapped`, `nr_pending`
    Counts,
    /// `record_blocks`
    RecordBlocks,
    /// `records_crc`
    RecordsCrc,
    /// A reserved field is not zero.
    Reserved,
    /// A record block's `index`
    Index,
    /// A record block's `count`
    Count,
    /// A journal block's `base_seq`.
    BaseSeq,
    /// A journal block's `prev_seq`.
    PrevSeq,
    /// A journal block's `blocks` (blocks of its commit).
    Blocks,
    /// A journal commit's `commit_crc`.
    CommitCrc,
    /// A journal entry.
    Entry,
}

impl Field {
    /// The field's name as documented in the header.
    pub fn name(self) -> &'static str {
        match self {
            Field::Magic => "magic",
            Field::Crc => "crc",
            Field::Version => "version",
            Field::Copy => "copy",
            Field::Seq => "seq",
            Field::Features => "features_incompat",
            Field::Uuid => "uuid",
            Field::MainSectors => "main_sectors",
            Field::MainOffset => "main_offset",
            Field::MainId => "main_id",
            Field::Name => "name",
            Field::BlockSize => "block_size",
            Field::MdBlockSize => "md_block_size",
            Field::SpareSectors => "spare_sectors",
            Field::Geometry => "geometry",
            Field::Counts => "record counts",
            Field::RecordBlocks => "record_blocks",
            Field::RecordsCrc => "records_crc",
            Field::Reserved => "reserved",
            Field::Index => "index",
            Field::Count => "count",
            Field::BaseSeq => "base_seq",
            Field::PrevSeq => "prev_seq",
            Field::Blocks => "blocks",
            Field::CommitCrc => "commit_crc",
            Field::Entry => "entry",
        }
    }

    pub(super) fn problem(self) -> &'static str {
        match self {
            Field::Magic => "bad magic",
            Field::Crc => "checksum mismatch",
            Field::Version => "unsupported version",
            Field::Copy => "copy id does not match its location",
            Field::Seq => "sequence number wrong",
            Field::Features => "unknown incompatible features",
            Field::Uuid => "set UUID wrong",
            Field::MainSectors => "main device size invalid",
            Field::MainOffset => "main device offset invalid",
            Field::MainId => "main device identity invalid",
            Field::Name => "device name invalid",
            Field::BlockSize => "block size invalid",
            Field::MdBlockSize => "metadata block size invalid",
            Field::SpareSectors => "spare size wrong",
            Field::Geometry => "geometry inconsistent",
            Field::Counts => "record counts inconsistent",
            Field::RecordBlocks => "record block count inconsistent",
            Field::RecordsCrc => "records checksum mismatch",
            Field::Reserved => "reserved bytes not zero",
            Field::Index => "block index wrong",
            Field::Count => "record count wrong",
            Field::BaseSeq => "not the sequence number of the copy it follows",
            Field::PrevSeq => "does not follow the previous commit",
            Field::Blocks => "commit size wrong or past the journal's end",
            Field::CommitCrc => "commit checksum mismatch (blocks of different commits)",
            Field::Entry => "invalid entry",
        }
    }
}

impl core::fmt::Display for Field {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// What is wrong with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordProblem {
    /// The state is neither remapped nor pending.
    State,
    /// A pending record has slot bits set.
    PendingSlot,
    /// The slot is outside the data area.
    SlotOutOfRange,
    /// Another record of the copy uses the same slot.
    SlotInUse,
    /// The block number is past the end of the main device.
    BlockOutOfRange,
    /// The block number is not greater than the previous record's (unsorted or duplicate).
    Order,
    /// An entry past the block's `count` is not zero.
    UnusedNotZero,
}

impl core::fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            RecordProblem::State => "invalid state",
            RecordProblem::PendingSlot => "pending record with a slot",
            RecordProblem::SlotOutOfRange => "slot outside the data area",
            RecordProblem::SlotInUse => "slot used by another record",
            RecordProblem::BlockOutOfRange => "block past the end of the main device",
            RecordProblem::Order => "block not after the previous record's (unsorted or duplicate)",
            RecordProblem::UnusedNotZero => "unused entry not zero",
        })
    }
}

/// Why one copy is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyError {
    /// Reading the block at `sector` failed.
    Io {
        /// First sector of the block.
        sector: u64,
    },
    /// The buffer handed in is shorter than one metadata block.
    Short,
    /// The superblock's block is all zeros.
    Blank,
    /// A superblock field is wrong.
    Superblock {
        /// The field.
        field: Field,
    },
    /// The superblock was written for a spare of another size.
    SpareSize {
        /// Size recorded in the superblock.
        recorded: u64,
        /// Size of the device being read.
        actual: u64,
    },
    /// A record block's header is wrong (torn, stale, misplaced or corrupt block).
    RecordBlock {
        /// Index of the record block in the copy.
        index: u32,
        /// The field.
        field: Field,
    },
    /// A record is wrong.
    Record {
        /// Index of the record block in the copy.
        index: u32,
        /// Position of the record in its block.
        pos: u32,
        /// The record's main block number.
        block: u64,
        /// What is wrong.
        problem: RecordProblem,
    },
    /// The records as a whole disagree with the superblock (`field` is `RecordsCrc` or `Counts`).
    Totals {
        /// The field.
        field: Field,
    },
    /// Valid, but with the same sequence number as the winning copy.
    SameSequence,
    /// Valid, but describing another set (UUID, main device or geometry) than the winning copy.
    OtherSet,
}

impl core::fmt::Display for CopyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            CopyError::Io { sector } => write!(f, "read error at sector {sector}"),
            CopyError::Short => write!(f, "buffer shorter than one {MD_BLOCK_SIZE}-byte metadata block"),
            CopyError::Blank => f.write_str("superblock is blank (all zeros)"),
            CopyError::Superblock { field } => write!(f, "superblock field {}: {}", field, field.problem()),
            CopyError::SpareSize { recorded, actual } => write!(
                f,
                "superblock field spare_sectors: written for a spare of {recorded} sectors, device has {actual}"
            ),
            CopyError::RecordBlock { index, field } => {
                write!(f, "record block {index}: field {}: {}", field, field.problem())
            }
            CopyError::Record { index, pos, block, problem } => {
                write!(f, "record block {index} entry {pos} (main block {block}): {problem}")
            }
            CopyError::Totals { field } => {
                write!(f, "records disagree with the superblock: {}", field.problem())
            }
            CopyError::SameSequence => f.write_str("same sequence number as the winning copy"),
            CopyError::OtherSet => f.write_str("describes another remap set than the winning copy"),
        }
    }
}

/// Why the metadata could not be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadError {
    /// Both superblock blocks are all zeros: the spare holds no metadata and may be formatted.
    Blank,
    /// Neither copy is valid and the spare is not blank: damaged (or not dm-remap metadata).
    /// It must never be formatted over.
    NoValidCopy {
        /// Why copy A is not valid.
        a: CopyError,
        /// Why copy B is not valid.
        b: CopyError,
    },
    /// The device is too small to hold two metadata blocks.
    SpareTooSmall {
        /// Its size.
        sectors: u64,
    },
    /// The buffer handed in is shorter than one metadata block.
    BufferTooSmall,
    /// The slot bitmap handed in has fewer than `need` words.
    BitmapTooSmall {
        /// Words needed.
        need: usize,
    },
    /// The valid copy describes another set than the caller expects: the spare belongs to
    /// another main device (`field` is `MainSectors`, `MainOffset` or `MainId`), to another set
    /// (`Uuid`) or uses another block size (`BlockSize`).
    Mismatch {
        /// The winning copy.
        copy: CopyId,
        /// The field that differs.
        field: Field,
    },
    /// The winning copy changed between validation and the pass that delivered its records;
    /// the records delivered so far must be discarded.
    Changed {
        /// The copy.
        copy: CopyId,
        /// What the second pass found.
        error: CopyError,
    },
    /// The record callback refused the record for main block `block`; records delivered so far
    /// must be discarded.
    Sink {
        /// Main block number of the refused record.
        block: u64,
    },
    /// The sequence number cannot be incremented any more.
    SeqExhausted,
    /// Reading the journal of the winning copy failed at `sector`: commits it may hold cannot be
    /// replayed, so nothing is loaded.
    JournalIo {
        /// First sector of the block.
        sector: u64,
    },
}

impl LoadError {
    /// Whether the spare is blank (may be formatted).
    pub fn is_blank(&self) -> bool {
        matches!(self, LoadError::Blank)
    }
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            LoadError::Blank => f.write_str("spare holds no metadata (blank)"),
            LoadError::NoValidCopy { a, b } => {
                write!(f, "no valid metadata copy: copy A: {a}; copy B: {b}")
            }
            LoadError::SpareTooSmall { sectors } => {
                write!(
                    f,
                    "spare of {sectors} sectors is too small to hold metadata"
                )
            }
            LoadError::BufferTooSmall => {
                write!(
                    f,
                    "buffer shorter than one {MD_BLOCK_SIZE}-byte metadata block"
                )
            }
            LoadError::BitmapTooSmall { need } => {
                write!(f, "slot bitmap too small: {need} words needed")
            }
            LoadError::Mismatch { copy, field } => match field {
                Field::MainSectors | Field::MainOffset | Field::MainId => write!(
                    f,
                    "copy {copy}: spare belongs to another main device ({} differs)",
                    field
                ),
                Field::Uuid => write!(
                    f,
                    "copy {copy}: spare belongs to another remap set (uuid differs)"
                ),
                _ => write!(f, "copy {copy}: {field} differs from the expected value"),
            },
            LoadError::Changed { copy, error } => {
                write!(f, "copy {copy} changed while it was loaded: {error}")
            }
            LoadError::Sink { block } => {
                write!(f, "record of main block {block} refused by the caller")
            }
            LoadError::SeqExhausted => f.write_str("sequence number exhausted"),
            LoadError::JournalIo { sector } => {
                write!(f, "read error at sector {sector} in the journal")
            }
        }
    }
}

/// Why an encoder refused its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The set description is invalid (the field named).
    Set {
        /// The field.
        field: Field,
    },
    /// Sequence number zero (reserved for "never written").
    Seq,
    /// The buffer handed in is shorter than one metadata block.
    BufferTooSmall,
    /// The slot bitmap handed in has fewer than `need` words.
    BitmapTooSmall {
        /// Words needed.
        need: usize,
    },
    /// More records than the geometry's record capacity.
    TooManyRecords,
    /// A record is invalid (`problem` says why).
    Record {
        /// Its main block number.
        block: u64,
        /// What is wrong.
        problem: RecordProblem,
    },
    /// `finish` before the record iterator was exhausted, or after an error.
    Unfinished,
    /// A journal commit does not fit the buffer or the journal's free blocks.
    JournalSpace,
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            EncodeError::Set { field } => write!(f, "set description: {}", field.problem()),
            EncodeError::Seq => f.write_str("sequence number 0 is reserved"),
            EncodeError::BufferTooSmall => {
                write!(
                    f,
                    "buffer shorter than one {MD_BLOCK_SIZE}-byte metadata block"
                )
            }
            EncodeError::BitmapTooSmall { need } => {
                write!(f, "slot bitmap too small: {need} words needed")
            }
            EncodeError::TooManyRecords => f.write_str("more records than the metadata area holds"),
            EncodeError::Record { block, problem } => {
                write!(f, "record of main block {block}: {problem}")
            }
            EncodeError::Unfinished => {
                f.write_str("superblock requested before all records were encoded")
            }
            EncodeError::JournalSpace => {
                f.write_str("journal commit larger than the buffer or the journal's free space")
            }
        }
    }
}

/// Why a geometry cannot be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeometryError {
    /// The block size is not a power of two from 512 bytes to 1 MiB.
    BlockSize,
    /// The spare cannot hold two metadata copies and at least one data slot.
    TooSmall,
}

impl core::fmt::Display for GeometryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            GeometryError::BlockSize => {
                "block size must be a power of two from 512 to 1048576 bytes"
            }
            GeometryError::TooSmall => "spare too small for two metadata copies and one data slot",
        })
    }
}

/// A read or write of the spare failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoError;

impl core::fmt::Display for IoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("I/O error")
    }
}

/// The record callback of [`load`] refused a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkError;

/// Why writing a copy failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// Encoding refused the input; nothing more was written.
    Encode(EncodeError),
    /// Writing (or flushing, `sector` = `u64::MAX`) failed.
    Io {
        /// First sector of the failed write.
        sector: u64,
    },
}

impl core::fmt::Display for WriteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            WriteError::Encode(e) => write!(f, "{e}"),
            WriteError::Io { sector: u64::MAX } => f.write_str("flush failed"),
            WriteError::Io { sector } => write!(f, "write error at sector {sector}"),
        }
    }
}

/// Why formatting was refused or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    /// The spare is not blank (holds metadata, damaged metadata, or other data); it was not
    /// touched.
    NotBlank,
    /// The spare's size differs from the set description's `spare_sectors`.
    SpareSize,
    /// The set description is invalid.
    Set {
        /// The field.
        field: Field,
    },
    /// Probing before formatting failed.
    Probe(LoadError),
    /// Writing a copy failed.
    Write {
        /// The copy.
        copy: CopyId,
        /// Why.
        error: WriteError,
    },
}

impl core::fmt::Display for FormatError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            FormatError::NotBlank => f.write_str(
                "spare is not blank (it holds metadata or other data); refusing to format",
            ),
            FormatError::SpareSize => f.write_str("spare size differs from the geometry's"),
            FormatError::Set { field } => write!(f, "set description: {}", field.problem()),
            FormatError::Probe(e) => write!(f, "{e}"),
            FormatError::Write { copy, error } => write!(f, "copy {copy}: {error}"),
        }
    }
}

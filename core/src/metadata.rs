//! On-disk metadata of a remap set, kept on the spare device: layout, encoder, decoder, loader.
//!
//! The byte layout is documented field by field in `include/dm_remap.h` ("On-disk metadata");
//! this module is its one implementation, compiled into the kernel module (through `#[path]`)
//! and into userspace (`dmremap inspect`). Sectors are 512-byte units; integers little-endian.
//!
//! ```text
//!  sector 0                          data_start                     meta_b_start    end - 8
//!  ┌────────┬──────────────────┬─────┬─────────────────────┬──────┬──────────────────┬────────┐
//!  │ SB (A) │ record blocks(A) │ pad │ data area: N slots  │ gap  │ record blocks(B) │ SB (B) │
//!  └────────┴──────────────────┴─────┴─────────────────────┴──────┴──────────────────┴────────┘
//!  └──────── copy A ──────────┘                                   └────────── copy B ────────┘
//! ```
//!
//! * Every metadata block is 4 KiB and 4 KiB aligned. Copy A starts at sector 0 with its
//!   superblock; copy B ends with its superblock in the last whole 4 KiB block of the spare, so
//!   each superblock can be found from the spare's size alone.
//! * A copy is its superblock plus `ceil(nr_records / 252)` record blocks, each holding up to 252
//!   records of 16 bytes sorted by main block number. Every block carries a CRC-32C of itself;
//!   every record block repeats the superblock's sequence number and set UUID and its own index;
//!   the superblock holds a CRC-32C over the record blocks' CRCs. A copy mixing blocks of two
//!   commits, or holding a torn block, therefore fails validation.
//! * A commit writes a whole copy with sequence number `N + 1` over the copy that does not hold
//!   the newest valid sequence `N` (ping-pong), so the other copy stays intact. Loading validates
//!   both copies completely and picks the valid one with the highest sequence number.
//! * Both copies' record areas are sized for `data_slots + extra` records (one per spare slot plus
//!   room for pending blocks), so the number of remaps is bounded only by the spare.
//!
//! No allocation, no panics, no floating point: this file is compiled into the kernel module.

use crate::alloc::words_for;
use crate::crc32c;
use crate::remap::Entry;
use crate::table::{MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};

/// Bytes per sector: every sector number in the metadata counts 512-byte units.
pub const SECTOR_SIZE: u64 = 512;
/// Size of every metadata block (superblocks and record blocks).
pub const MD_BLOCK_SIZE: usize = 4096;
/// Sectors per metadata block.
pub const MD_BLOCK_SECTORS: u64 = 8;
/// Format version this code writes.
pub const VERSION: u32 = 2;
/// Oldest format version this code reads (version 1 named the main device by its kernel name;
/// the kernel migrates such a spare to [`VERSION`] when it loads it).
pub const VERSION_MIN: u32 = 1;
/// Superblock magic; on disk the bytes read "DMRM".
pub const SB_MAGIC: u32 = 0x4D52_4D44;
/// Record block magic; on disk the bytes read "DMRR".
pub const RB_MAGIC: u32 = 0x5252_4D44;
/// Bytes of the remap set's UUID.
pub const UUID_LEN: usize = 16;
/// Bytes of the main device's identity string (NUL-padded): `main_id` of version 2.
pub const MAIN_ID_LEN: usize = 256;
/// Bytes of version 1's identity field (`main_id_v1`, the main device's kernel name).
pub const MAIN_ID_V1_LEN: usize = 64;
/// Bytes of the device-mapper name field (NUL-padded, at most 127 bytes used).
pub const NAME_LEN: usize = 128;

const _: () = assert!(MAIN_ID_LEN == crate::table::MAX_MAIN_ID_LEN);
/// Bytes of one record.
pub const RECORD_SIZE: usize = 16;
/// Bytes of a record block's header.
pub const RB_HEADER_SIZE: usize = 64;
/// Records in one record block.
pub const RECORDS_PER_BLOCK: usize = (MD_BLOCK_SIZE - RB_HEADER_SIZE) / RECORD_SIZE;
/// A record's `state_slot`: the state sits in bits 63..56.
pub const STATE_SHIFT: u32 = 56;
/// Record state: the block lives in the spare slot held in bits 55..0.
pub const STATE_REMAPPED: u64 = 1;
/// Record state: the block is pending (unreadable, no slot yet); bits 55..0 are zero.
pub const STATE_PENDING: u64 = 2;
/// Mask of the slot bits of `state_slot`.
pub const SLOT_MASK: u64 = (1 << STATE_SHIFT) - 1;
/// Most data slots a spare may have (slot numbers fit the 56 slot bits).
pub const MAX_DATA_SLOTS: u64 = 1 << STATE_SHIFT;
/// Value of the superblock's and record blocks' `copy` field for copy A (`'A'`).
pub const COPY_ID_A: u32 = 0x41;
/// Value of the `copy` field for copy B (`'B'`).
pub const COPY_ID_B: u32 = 0x42;
/// Incompatible feature bits this code understands (none are defined in version 1).
pub const FEATURES_INCOMPAT_SUPPORTED: u32 = 0;

/// Byte offsets of the on-disk fields, as documented in `include/dm_remap.h`.
pub mod layout {
    /// `dmr_md_superblock.magic`
    pub const SB_MAGIC: usize = 0x000;
    /// `dmr_md_superblock.crc`
    pub const SB_CRC: usize = 0x004;
    /// `dmr_md_superblock.version`
    pub const SB_VERSION: usize = 0x008;
    /// `dmr_md_superblock.copy`
    pub const SB_COPY: usize = 0x00c;
    /// `dmr_md_superblock.seq`
    pub const SB_SEQ: usize = 0x010;
    /// `dmr_md_superblock.features_compat`
    pub const SB_COMPAT: usize = 0x018;
    /// `dmr_md_superblock.features_incompat`
    pub const SB_INCOMPAT: usize = 0x01c;
    /// `dmr_md_superblock.uuid`
    pub const SB_UUID: usize = 0x020;
    /// `dmr_md_superblock.main_sectors`
    pub const SB_MAIN_SECTORS: usize = 0x030;
    /// `dmr_md_superblock.main_offset`
    pub const SB_MAIN_OFFSET: usize = 0x038;
    /// `dmr_md_superblock.main_id_v1` (version 1's identity; zero in version 2)
    pub const SB_MAIN_ID_V1: usize = 0x040;
    /// `dmr_md_superblock.block_size`
    pub const SB_BLOCK_SIZE: usize = 0x080;
    /// `dmr_md_superblock.md_block_size`
    pub const SB_MD_BLOCK_SIZE: usize = 0x084;
    /// `dmr_md_superblock.spare_sectors`
    pub const SB_SPARE_SECTORS: usize = 0x088;
    /// `dmr_md_superblock.meta_a_start`
    pub const SB_META_A_START: usize = 0x090;
    /// `dmr_md_superblock.meta_b_start`
    pub const SB_META_B_START: usize = 0x098;
    /// `dmr_md_superblock.meta_sectors`
    pub const SB_META_SECTORS: usize = 0x0a0;
    /// `dmr_md_superblock.data_start`
    pub const SB_DATA_START: usize = 0x0a8;
    /// `dmr_md_superblock.data_slots`
    pub const SB_DATA_SLOTS: usize = 0x0b0;
    /// `dmr_md_superblock.record_capacity`
    pub const SB_RECORD_CAPACITY: usize = 0x0b8;
    /// `dmr_md_superblock.nr_records`
    pub const SB_NR_RECORDS: usize = 0x0c0;
    /// `dmr_md_superblock.nr_remapped`
    pub const SB_NR_REMAPPED: usize = 0x0c8;
    /// `dmr_md_superblock.nr_pending`
    pub const SB_NR_PENDING: usize = 0x0d0;
    /// `dmr_md_superblock.records_crc`
    pub const SB_RECORDS_CRC: usize = 0x0d8;
    /// `dmr_md_superblock.record_blocks`
    pub const SB_RECORD_BLOCKS: usize = 0x0dc;
    /// `dmr_md_superblock.main_id` (version 2)
    pub const SB_MAIN_ID: usize = 0x0e0;
    /// `dmr_md_superblock.name` (version 2)
    pub const SB_NAME: usize = 0x1e0;
    /// `dmr_md_superblock.target_begin` (version 2)
    pub const SB_TARGET_BEGIN: usize = 0x260;
    /// `dmr_md_superblock.target_len` (version 2)
    pub const SB_TARGET_LEN: usize = 0x268;
    /// `dmr_md_superblock.reserved` (to the end of the block)
    pub const SB_RESERVED: usize = 0x270;
    /// Where the reserved bytes of a version 1 superblock begin.
    pub const SB_RESERVED_V1: usize = 0x0e0;

    /// `dmr_md_record_block.magic`
    pub const RB_MAGIC: usize = 0x00;
    /// `dmr_md_record_block.crc`
    pub const RB_CRC: usize = 0x04;
    /// `dmr_md_record_block.seq`
    pub const RB_SEQ: usize = 0x08;
    /// `dmr_md_record_block.uuid`
    pub const RB_UUID: usize = 0x10;
    /// `dmr_md_record_block.copy`
    pub const RB_COPY: usize = 0x20;
    /// `dmr_md_record_block.index`
    pub const RB_INDEX: usize = 0x24;
    /// `dmr_md_record_block.count`
    pub const RB_COUNT: usize = 0x28;
    /// `dmr_md_record_block.reserved` (up to the records)
    pub const RB_RESERVED: usize = 0x2c;
    /// `dmr_md_record_block.records`
    pub const RB_RECORDS: usize = 0x40;
    /// `dmr_md_record.block` within a record
    pub const REC_BLOCK: usize = 0x0;
    /// `dmr_md_record.state_slot` within a record
    pub const REC_STATE_SLOT: usize = 0x8;
}

use layout as L;

// ---------------------------------------------------------------------------------------------
// Little-endian field access. Offsets are constants or bounded by the block size, and every
// buffer is checked to be a whole metadata block before these are used; out-of-range access
// reads zero / writes nothing instead of panicking.

fn get_u32(b: &[u8], off: usize) -> u32 {
    b.get(off..off.saturating_add(4))
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, u32::from_le_bytes)
}

fn get_u64(b: &[u8], off: usize) -> u64 {
    b.get(off..off.saturating_add(8))
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, u64::from_le_bytes)
}

fn get_array<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    b.get(off..off.saturating_add(N))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .unwrap_or([0; N])
}

fn put_bytes(b: &mut [u8], off: usize, v: &[u8]) {
    if let Some(d) = b.get_mut(off..off.saturating_add(v.len())) {
        d.copy_from_slice(v);
    }
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    put_bytes(b, off, &v.to_le_bytes());
}

fn put_u64(b: &mut [u8], off: usize, v: u64) {
    put_bytes(b, off, &v.to_le_bytes());
}

fn all_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// CRC-32C of a metadata block with its `crc` field (bytes 4..8) taken as zero.
pub fn block_crc(block: &[u8]) -> u32 {
    let c = crc32c::update(0, block.get(..4).unwrap_or(&[]));
    let c = crc32c::update(c, &[0; 4]);
    crc32c::update(c, block.get(8..).unwrap_or(&[]))
}

/// Store [`block_crc`] in a metadata block's `crc` field (superblocks and record blocks alike).
pub fn seal(block: &mut [u8]) {
    let c = block_crc(block);
    put_u32(block, L::SB_CRC, c);
}

fn block_of(buf: &[u8]) -> Option<&[u8]> {
    buf.get(..MD_BLOCK_SIZE)
}

fn block_of_mut(buf: &mut [u8]) -> Option<&mut [u8]> {
    buf.get_mut(..MD_BLOCK_SIZE)
}

// ---------------------------------------------------------------------------------------------
// Names and errors.

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
        }
    }

    fn problem(self) -> &'static str {
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

// ---------------------------------------------------------------------------------------------
// Geometry.

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
fn fit(n: u64, extra: u64, bsec: u64, align: u64, end: u64) -> Option<(u64, u64, u64)> {
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

// ---------------------------------------------------------------------------------------------
// The set and its superblock.

/// The main device a spare belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MainDevice {
    /// Size of the main device in sectors.
    pub sectors: u64,
    /// Sector of the main device where remap block 0 begins (the table's `<main_offset>`).
    pub offset: u64,
    /// Identity string, NUL-padded: the table's `main_id` (the disk's stable identity as
    /// sysfs shows it); in a version 1 superblock the main device's kernel name.
    pub id: [u8; MAIN_ID_LEN],
}

impl MainDevice {
    /// The NUL-padded form of an identity string: 1 to 256 bytes, no NUL inside.
    pub fn id_from(s: &[u8]) -> Option<[u8; MAIN_ID_LEN]> {
        if s.is_empty() || s.len() > MAIN_ID_LEN || s.contains(&0) {
            return None;
        }
        let mut id = [0u8; MAIN_ID_LEN];
        put_bytes(&mut id, 0, s);
        Some(id)
    }

    /// The identity string without its padding.
    pub fn id_bytes(&self) -> &[u8] {
        let n = self.id.iter().position(|&c| c == 0).unwrap_or(MAIN_ID_LEN);
        self.id.get(..n).unwrap_or(&[])
    }

    /// Remap blocks of `bsec` sectors on the main device from `offset` on (the last one may be
    /// partial).
    pub fn blocks(&self, bsec: u64) -> u64 {
        if bsec == 0 {
            return 0;
        }
        self.sectors.saturating_sub(self.offset).div_ceil(bsec)
    }

    fn check(&self) -> Result<(), Field> {
        if self.sectors == 0 {
            return Err(Field::MainSectors);
        }
        if self.offset >= self.sectors {
            return Err(Field::MainOffset);
        }
        // Non-empty, and NUL padding only after the string.
        let n = self.id_bytes().len();
        if n == 0 || !all_zero(self.id.get(n..).unwrap_or(&[])) {
            return Err(Field::MainId);
        }
        Ok(())
    }
}

/// What every commit of a remap set repeats: its identity and its geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetInfo {
    /// UUID of the remap set (not all zero).
    pub uuid: [u8; UUID_LEN],
    /// The main device.
    pub main: MainDevice,
    /// The spare's layout (as [`Geometry::for_spare`] computes it).
    pub geometry: Geometry,
    /// Compatible feature bits (none defined; readers ignore unknown ones).
    pub features_compat: u32,
    /// Device-mapper name the set is activated under, NUL-padded (all zero: none recorded).
    pub name: [u8; NAME_LEN],
    /// Where the target begins in the mapped device, in sectors (its table line's `<start>`).
    pub target_begin: u64,
    /// Length of the target in sectors (0: not recorded, as in version 1).
    pub target_len: u64,
}

impl SetInfo {
    /// Check every field; the error names the first wrong one.
    pub fn validate(&self) -> Result<(), Field> {
        if all_zero(&self.uuid) {
            return Err(Field::Uuid);
        }
        self.main.check()?;
        // At most NAME_LEN - 1 bytes, NUL padding only after the string.
        let n = self.name_bytes().len();
        if n >= NAME_LEN || !all_zero(self.name.get(n..).unwrap_or(&[])) {
            return Err(Field::Name);
        }
        let g = &self.geometry;
        if !valid_block_size(g.block_size) {
            return Err(Field::BlockSize);
        }
        let extra = g
            .record_capacity
            .checked_sub(g.data_slots)
            .ok_or(Field::Geometry)?;
        match Geometry::for_spare(g.spare_sectors, g.block_size, extra) {
            Ok(want) if want == *g => Ok(()),
            _ => Err(Field::Geometry),
        }
    }

    /// The recorded device-mapper name without its padding (empty: none).
    pub fn name_bytes(&self) -> &[u8] {
        let n = self.name.iter().position(|&c| c == 0).unwrap_or(NAME_LEN);
        self.name.get(..n).unwrap_or(&[])
    }

    /// The NUL-padded form of a device-mapper name: at most 127 bytes, no NUL inside.
    pub fn name_from(s: &[u8]) -> Option<[u8; NAME_LEN]> {
        if s.len() >= NAME_LEN || s.contains(&0) {
            return None;
        }
        let mut name = [0u8; NAME_LEN];
        put_bytes(&mut name, 0, s);
        Some(name)
    }

    /// Remap blocks of the main device.
    pub fn main_blocks(&self) -> u64 {
        self.main.blocks(self.geometry.block_sectors())
    }
}

/// A decoded superblock: one copy's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    /// Which copy it heads.
    pub copy: CopyId,
    /// Format version it was read with ([`encode_superblock`] always writes [`VERSION`]).
    pub version: u32,
    /// Commit sequence number (never 0).
    pub seq: u64,
    /// The set.
    pub set: SetInfo,
    /// Records in the copy.
    pub nr_records: u64,
    /// Records in state remapped.
    pub nr_remapped: u64,
    /// Records in state pending.
    pub nr_pending: u64,
    /// CRC-32C over the little-endian `crc` fields of the copy's record blocks, in order.
    pub records_crc: u32,
}

impl Superblock {
    /// Record blocks the copy uses.
    pub fn record_blocks(&self) -> u32 {
        u32::try_from(self.nr_records.div_ceil(RECORDS_PER_BLOCK as u64)).unwrap_or(u32::MAX)
    }
}

/// Encode `sb` into the first [`MD_BLOCK_SIZE`] bytes of `buf`, checksum included.
pub fn encode_superblock(sb: &Superblock, buf: &mut [u8]) -> Result<(), EncodeError> {
    sb.set
        .validate()
        .map_err(|field| EncodeError::Set { field })?;
    if sb.seq == 0 {
        return Err(EncodeError::Seq);
    }
    let b = block_of_mut(buf).ok_or(EncodeError::BufferTooSmall)?;
    b.fill(0);
    let g = &sb.set.geometry;
    put_u32(b, L::SB_MAGIC, SB_MAGIC);
    put_u32(b, L::SB_VERSION, VERSION);
    put_u32(b, L::SB_COPY, sb.copy.disk_id());
    put_u64(b, L::SB_SEQ, sb.seq);
    put_u32(b, L::SB_COMPAT, sb.set.features_compat);
    put_u32(b, L::SB_INCOMPAT, 0);
    put_bytes(b, L::SB_UUID, &sb.set.uuid);
    put_u64(b, L::SB_MAIN_SECTORS, sb.set.main.sectors);
    put_u64(b, L::SB_MAIN_OFFSET, sb.set.main.offset);
    put_bytes(b, L::SB_MAIN_ID, &sb.set.main.id);
    put_bytes(b, L::SB_NAME, &sb.set.name);
    put_u64(b, L::SB_TARGET_BEGIN, sb.set.target_begin);
    put_u64(b, L::SB_TARGET_LEN, sb.set.target_len);
    put_u32(b, L::SB_BLOCK_SIZE, g.block_size);
    put_u32(b, L::SB_MD_BLOCK_SIZE, MD_BLOCK_SIZE as u32);
    put_u64(b, L::SB_SPARE_SECTORS, g.spare_sectors);
    put_u64(b, L::SB_META_A_START, g.meta_a_start);
    put_u64(b, L::SB_META_B_START, g.meta_b_start);
    put_u64(b, L::SB_META_SECTORS, g.meta_sectors);
    put_u64(b, L::SB_DATA_START, g.data_start);
    put_u64(b, L::SB_DATA_SLOTS, g.data_slots);
    put_u64(b, L::SB_RECORD_CAPACITY, g.record_capacity);
    put_u64(b, L::SB_NR_RECORDS, sb.nr_records);
    put_u64(b, L::SB_NR_REMAPPED, sb.nr_remapped);
    put_u64(b, L::SB_NR_PENDING, sb.nr_pending);
    put_u32(b, L::SB_RECORDS_CRC, sb.records_crc);
    put_u32(b, L::SB_RECORD_BLOCKS, sb.record_blocks());
    seal(b);
    Ok(())
}

/// Decode and validate the superblock in `buf`, read from `copy`'s location on a spare of
/// `spare_sectors` sectors. Every field is checked.
pub fn decode_superblock(
    buf: &[u8],
    copy: CopyId,
    spare_sectors: u64,
) -> Result<Superblock, CopyError> {
    let b = block_of(buf).ok_or(CopyError::Short)?;
    let bad = |field| CopyError::Superblock { field };
    if all_zero(b) {
        return Err(CopyError::Blank);
    }
    if get_u32(b, L::SB_MAGIC) != SB_MAGIC {
        return Err(bad(Field::Magic));
    }
    if get_u32(b, L::SB_CRC) != block_crc(b) {
        return Err(bad(Field::Crc));
    }
    let version = get_u32(b, L::SB_VERSION);
    if !(VERSION_MIN..=VERSION).contains(&version) {
        return Err(bad(Field::Version));
    }
    if get_u32(b, L::SB_COPY) != copy.disk_id() {
        return Err(bad(Field::Copy));
    }
    let seq = get_u64(b, L::SB_SEQ);
    if seq == 0 {
        return Err(bad(Field::Seq));
    }
    if get_u32(b, L::SB_INCOMPAT) & !FEATURES_INCOMPAT_SUPPORTED != 0 {
        return Err(bad(Field::Features));
    }
    if get_u32(b, L::SB_MD_BLOCK_SIZE) != MD_BLOCK_SIZE as u32 {
        return Err(bad(Field::MdBlockSize));
    }
    let block_size = get_u32(b, L::SB_BLOCK_SIZE);
    if !valid_block_size(block_size) {
        return Err(bad(Field::BlockSize));
    }
    let recorded = get_u64(b, L::SB_SPARE_SECTORS);
    if recorded != spare_sectors {
        return Err(CopyError::SpareSize {
            recorded,
            actual: spare_sectors,
        });
    }
    let geometry = Geometry {
        spare_sectors: recorded,
        block_size,
        record_capacity: get_u64(b, L::SB_RECORD_CAPACITY),
        meta_a_start: get_u64(b, L::SB_META_A_START),
        meta_b_start: get_u64(b, L::SB_META_B_START),
        meta_sectors: get_u64(b, L::SB_META_SECTORS),
        data_start: get_u64(b, L::SB_DATA_START),
        data_slots: get_u64(b, L::SB_DATA_SLOTS),
    };
    // Version 1 kept a 64-byte identity at 0x040 and had no name; version 2 keeps 0x040 zero.
    let (id, name, target, reserved) = if version == 1 {
        let mut id = [0u8; MAIN_ID_LEN];
        put_bytes(
            &mut id,
            0,
            &get_array::<MAIN_ID_V1_LEN>(b, L::SB_MAIN_ID_V1),
        );
        (id, [0u8; NAME_LEN], (0, 0), L::SB_RESERVED_V1)
    } else {
        if !all_zero(
            b.get(L::SB_MAIN_ID_V1..L::SB_MAIN_ID_V1 + MAIN_ID_V1_LEN)
                .unwrap_or(&[]),
        ) {
            return Err(bad(Field::Reserved));
        }
        (
            get_array(b, L::SB_MAIN_ID),
            get_array(b, L::SB_NAME),
            (get_u64(b, L::SB_TARGET_BEGIN), get_u64(b, L::SB_TARGET_LEN)),
            L::SB_RESERVED,
        )
    };
    let main = MainDevice {
        sectors: get_u64(b, L::SB_MAIN_SECTORS),
        offset: get_u64(b, L::SB_MAIN_OFFSET),
        id,
    };
    let set = SetInfo {
        uuid: get_array(b, L::SB_UUID),
        main,
        geometry,
        features_compat: get_u32(b, L::SB_COMPAT),
        name,
        target_begin: target.0,
        target_len: target.1,
    };
    set.validate().map_err(bad)?;
    let sb = Superblock {
        copy,
        version,
        seq,
        set,
        nr_records: get_u64(b, L::SB_NR_RECORDS),
        nr_remapped: get_u64(b, L::SB_NR_REMAPPED),
        nr_pending: get_u64(b, L::SB_NR_PENDING),
        records_crc: get_u32(b, L::SB_RECORDS_CRC),
    };
    let counts_ok = sb.nr_remapped.checked_add(sb.nr_pending) == Some(sb.nr_records)
        && sb.nr_records <= geometry.record_capacity
        && sb.nr_remapped <= geometry.data_slots
        && sb.nr_records <= set.main_blocks();
    if !counts_ok {
        return Err(bad(Field::Counts));
    }
    if get_u32(b, L::SB_RECORD_BLOCKS) != sb.record_blocks() {
        return Err(bad(Field::RecordBlocks));
    }
    if !all_zero(b.get(reserved..).unwrap_or(&[])) {
        return Err(bad(Field::Reserved));
    }
    Ok(sb)
}

// ---------------------------------------------------------------------------------------------
// Records.

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

fn record_off(pos: usize) -> usize {
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
struct RecordCheck {
    main_blocks: u64,
    data_slots: u64,
    prev: Option<u64>,
}

impl RecordCheck {
    fn new(set: &SetInfo) -> Self {
        RecordCheck {
            main_blocks: set.main_blocks(),
            data_slots: set.geometry.data_slots,
            prev: None,
        }
    }

    fn check(
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

// ---------------------------------------------------------------------------------------------
// Device access.

/// Reads from the spare.
pub trait SpareRead {
    /// Fill `buf` (a whole number of sectors) with the spare's contents from `sector` on.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError>;
    /// Size of the spare in sectors, when known: [`format`] then refuses a geometry computed
    /// for another size.
    fn size_sectors(&self) -> Option<u64> {
        None
    }
}

/// Writes to the spare.
pub trait SpareWrite {
    /// Write `buf` (a whole number of sectors) to the spare from `sector` on.
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), IoError>;
    /// Make everything written so far durable.
    fn flush(&mut self) -> Result<(), IoError> {
        Ok(())
    }
}

/// A spare image held in memory (`&[u8]`, `&mut [u8]`, a vector, ...).
pub struct Image<T>(pub T);

impl<T: AsRef<[u8]>> Image<T> {
    /// Size in whole sectors.
    pub fn sectors(&self) -> u64 {
        self.0.as_ref().len() as u64 / SECTOR_SIZE
    }

    fn range(&self, sector: u64, len: usize) -> Option<core::ops::Range<usize>> {
        let start = usize::try_from(sector.checked_mul(SECTOR_SIZE)?).ok()?;
        let end = start.checked_add(len)?;
        (end <= self.0.as_ref().len()).then_some(start..end)
    }
}

impl<T: AsRef<[u8]>> SpareRead for Image<T> {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let r = self.range(sector, buf.len()).ok_or(IoError)?;
        buf.copy_from_slice(self.0.as_ref().get(r).ok_or(IoError)?);
        Ok(())
    }

    fn size_sectors(&self) -> Option<u64> {
        Some(self.sectors())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> SpareWrite for Image<T> {
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), IoError> {
        let r = self.range(sector, buf.len()).ok_or(IoError)?;
        self.0
            .as_mut()
            .get_mut(r)
            .ok_or(IoError)?
            .copy_from_slice(buf);
        Ok(())
    }
}

fn read_block<D: SpareRead + ?Sized>(
    dev: &mut D,
    sector: u64,
    b: &mut [u8],
) -> Result<(), CopyError> {
    dev.read(sector, b).map_err(|_| CopyError::Io { sector })
}

/// Encode and write a whole copy: record blocks, then the superblock, then a flush. `buf` is one
/// metadata block of scratch space; `bits` as for [`CopyEncoder::new`].
pub fn write_copy<D, I>(
    dev: &mut D,
    set: &SetInfo,
    copy: CopyId,
    seq: u64,
    mut records: I,
    buf: &mut [u8],
    bits: Option<&mut [u64]>,
) -> Result<Superblock, WriteError>
where
    D: SpareWrite + ?Sized,
    I: Iterator<Item = (u64, Entry)>,
{
    let mut enc = CopyEncoder::new(set, copy, seq, bits).map_err(WriteError::Encode)?;
    while let Some(sector) = enc
        .next_block(&mut records, buf)
        .map_err(WriteError::Encode)?
    {
        let b = block_of(buf).ok_or(WriteError::Encode(EncodeError::BufferTooSmall))?;
        dev.write(sector, b)
            .map_err(|_| WriteError::Io { sector })?;
    }
    let (sector, sb) = enc.finish(buf).map_err(WriteError::Encode)?;
    let b = block_of(buf).ok_or(WriteError::Encode(EncodeError::BufferTooSmall))?;
    dev.write(sector, b)
        .map_err(|_| WriteError::Io { sector })?;
    dev.flush()
        .map_err(|_| WriteError::Io { sector: u64::MAX })?;
    Ok(sb)
}

/// Format a blank spare: copy A with sequence 1, then copy B with sequence 2, both holding
/// `records` (usually none). Refuses (writing nothing) unless both superblock blocks are all
/// zeros. Records are checked before anything is written.
pub fn format<D, I>(
    dev: &mut D,
    set: &SetInfo,
    records: I,
    buf: &mut [u8],
    mut bits: Option<&mut [u64]>,
) -> Result<(), FormatError>
where
    D: SpareRead + SpareWrite + ?Sized,
    I: Iterator<Item = (u64, Entry)> + Clone,
{
    set.validate().map_err(|field| FormatError::Set { field })?;
    if dev
        .size_sectors()
        .is_some_and(|s| s != set.geometry.spare_sectors)
    {
        return Err(FormatError::SpareSize);
    }
    let p = probe(dev, set.geometry.spare_sectors, buf).map_err(FormatError::Probe)?;
    if p.a != Err(CopyError::Blank) || p.b != Err(CopyError::Blank) {
        return Err(FormatError::NotBlank);
    }
    // Dry run: encode everything once without writing, so bad records write nothing.
    let mut enc = CopyEncoder::new(set, CopyId::A, 1, bits.as_deref_mut()).map_err(|e| {
        FormatError::Write {
            copy: CopyId::A,
            error: WriteError::Encode(e),
        }
    })?;
    let mut it = records.clone();
    let enc_err = |e| FormatError::Write {
        copy: CopyId::A,
        error: WriteError::Encode(e),
    };
    while enc.next_block(&mut it, buf).map_err(enc_err)?.is_some() {}
    enc.finish(buf).map_err(enc_err)?;
    for (copy, seq) in [(CopyId::A, 1), (CopyId::B, 2)] {
        write_copy(
            dev,
            set,
            copy,
            seq,
            records.clone(),
            buf,
            bits.as_deref_mut(),
        )
        .map_err(|error| FormatError::Write { copy, error })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Loading.

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
    /// Sequence number the next commit must use: above every intact superblock seen.
    pub next_seq: u64,
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
/// against `expect`, then read it again and hand every record to `sink` in block order.
///
/// `buf` is one metadata block of scratch space. `bits` must hold [`words_for`]`(data_slots)`
/// words for the copies found (see [`Probe::bitmap_words`]; the kernel knows its spare's
/// geometry from [`Geometry::for_spare`]); it ends up with the winner's used slots.
///
/// A blank spare gives [`LoadError::Blank`]; a spare with no valid copy
/// [`LoadError::NoValidCopy`] naming each copy's problem. Records reach `sink` only from a copy
/// that validated completely; if the second pass finds it changed ([`LoadError::Changed`]) or
/// `sink` refuses a record, the records delivered so far must be discarded.
pub fn load<D, S>(
    dev: &mut D,
    spare_sectors: u64,
    expect: &Expect<'_>,
    buf: &mut [u8],
    bits: &mut [u64],
    mut sink: S,
) -> Result<Loaded, LoadError>
where
    D: SpareRead + ?Sized,
    S: FnMut(u64, Entry) -> Result<(), SinkError>,
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
    let next_seq = p
        .max_seq
        .max(winner.seq)
        .checked_add(1)
        .ok_or(LoadError::SeqExhausted)?;
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
    Ok(Loaded {
        winner: winner.copy,
        sb: winner,
        other,
        next_seq,
    })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::BTreeMap;
    use std::vec;
    use std::vec::Vec;

    const UUID: [u8; 16] = *b"0123456789abcdef";

    fn set_for(spare_sectors: u64, bs: u32, extra: u64, main_sectors: u64, id: &[u8]) -> SetInfo {
        SetInfo {
            uuid: UUID,
            main: MainDevice {
                sectors: main_sectors,
                offset: 0,
                id: MainDevice::id_from(id).unwrap(),
            },
            geometry: Geometry::for_spare(spare_sectors, bs, extra).unwrap(),
            features_compat: 0,
            name: [0; NAME_LEN],
            target_begin: 0,
            target_len: 0,
        }
    }

    /// The small image: 64 sectors, 4 KiB blocks: one superblock + one record block per copy.
    fn small_set() -> SetInfo {
        set_for(64, 4096, 0, 1 << 20, b"SERIAL-0001")
    }

    /// Two record blocks per copy: 552 sectors of 512-byte slots (504 slots, capacity 504).
    fn two_block_set() -> SetInfo {
        set_for(552, 512, 0, 1 << 20, b"WWN-5000c500a1b2c3d4")
    }

    type Recs = Vec<(u64, Entry)>;

    fn blank(set: &SetInfo) -> Vec<u8> {
        vec![0u8; (set.geometry.spare_sectors * SECTOR_SIZE) as usize]
    }

    fn commit(img: &mut [u8], set: &SetInfo, copy: CopyId, seq: u64, recs: &Recs) -> Superblock {
        let mut buf = vec![0u8; MD_BLOCK_SIZE];
        let mut bits = vec![0u64; words_for(set.geometry.data_slots)];
        write_copy(
            &mut Image(img),
            set,
            copy,
            seq,
            recs.iter().copied(),
            &mut buf,
            Some(&mut bits),
        )
        .unwrap()
    }

    /// An image whose copy A (seq 3) holds `a` and copy B (seq 2) holds `b`.
    fn two_commits(set: &SetInfo, a: &Recs, b: &Recs) -> Vec<u8> {
        let mut img = blank(set);
        commit(&mut img, set, CopyId::B, 2, b);
        commit(&mut img, set, CopyId::A, 3, a);
        img
    }

    fn load_img(img: &[u8], expect: &Expect<'_>) -> Result<(Loaded, Recs, Vec<u64>), LoadError> {
        let mut buf = vec![0u8; MD_BLOCK_SIZE];
        let sectors = img.len() as u64 / SECTOR_SIZE;
        let p = probe(&mut Image(img), sectors, &mut buf)?;
        let mut bits = vec![0u64; p.bitmap_words()];
        let mut out = Vec::new();
        let l = load(
            &mut Image(img),
            sectors,
            expect,
            &mut buf,
            &mut bits,
            |b, e| {
                out.push((b, e));
                Ok(())
            },
        )?;
        Ok((l, out, bits))
    }

    fn recs(n: u64, stride: u64) -> Recs {
        (0..n)
            .map(|i| {
                (
                    i * stride + 1,
                    if i % 5 == 4 {
                        Entry::Pending
                    } else {
                        Entry::Remapped { slot: n - 1 - i }
                    },
                )
            })
            .collect()
    }

    fn le32(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }
    fn le64(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }

    #[test]
    fn geometry_small_spares_by_hand() {
        // 64 sectors, 4 KiB blocks: copy = SB + 1 record block = 16 sectors; 16 + 4*8 + 16 = 64.
        let g = Geometry::for_spare(64, 4096, 0).unwrap();
        assert_eq!(
            g,
            Geometry {
                spare_sectors: 64,
                block_size: 4096,
                record_capacity: 4,
                meta_a_start: 0,
                meta_b_start: 48,
                meta_sectors: 16,
                data_start: 16,
                data_slots: 4,
            }
        );
        assert_eq!((g.sb_sector(CopyId::A), g.sb_sector(CopyId::B)), (0, 56));
        assert_eq!(
            (g.record_sector(CopyId::A, 0), g.record_sector(CopyId::B, 0)),
            (8, 48)
        );
        assert_eq!(
            (g.slot_sector(0), g.slot_sector(3), g.slot_sector(4)),
            (Some(16), Some(40), None)
        );
        // An odd size is rounded down to whole 4 KiB blocks: the same layout, SB B at 56.
        let g2 = Geometry::for_spare(71, 4096, 0).unwrap();
        assert_eq!(
            (g2.meta_b_start, g2.data_slots, g2.sb_sector(CopyId::B)),
            (48, 4, 56)
        );
        // 64 KiB blocks: the data area is aligned to 128 sectors; 128 + 30*128 + 16 <= 4096.
        let g = Geometry::for_spare(4100, 65536, 0).unwrap();
        assert_eq!(
            (g.data_start, g.data_slots, g.meta_b_start, g.meta_sectors),
            (128, 30, 4080, 16)
        );
        // 512-byte blocks over 552 sectors: 504 slots need 2 record blocks (24 sectors per copy).
        let g = two_block_set().geometry;
        assert_eq!(
            (
                g.data_start,
                g.data_slots,
                g.record_capacity,
                g.meta_sectors,
                g.meta_b_start
            ),
            (24, 504, 504, 24, 528)
        );
        assert_eq!(g.record_blocks(), 2);
        // Extra records for pending blocks make the metadata larger.
        let g = Geometry::for_spare(64, 4096, 300).unwrap();
        assert_eq!(
            (g.record_capacity, g.meta_sectors, g.data_slots),
            (300 + g.data_slots, 24, 2)
        );
    }

    #[test]
    fn geometry_refusals() {
        assert_eq!(
            Geometry::for_spare(1 << 20, 1000, 0),
            Err(GeometryError::BlockSize)
        );
        assert_eq!(
            Geometry::for_spare(1 << 20, 256, 0),
            Err(GeometryError::BlockSize)
        );
        assert_eq!(
            Geometry::for_spare(1 << 30, 2 << 20, 0),
            Err(GeometryError::BlockSize)
        );
        // 40 sectors: two copies of 16 sectors leave 8 sectors: exactly one 4 KiB slot.
        assert_eq!(Geometry::for_spare(40, 4096, 0).unwrap().data_slots, 1);
        assert_eq!(
            Geometry::for_spare(39, 4096, 0),
            Err(GeometryError::TooSmall)
        );
        assert_eq!(
            Geometry::for_spare(0, 4096, 0),
            Err(GeometryError::TooSmall)
        );
        assert_eq!(
            Geometry::for_spare(1 << 40, 4096, u64::MAX),
            Err(GeometryError::TooSmall)
        );
        // Record block indexes are 32-bit: that bounds the slots of a huge spare.
        let g = Geometry::for_spare(u64::MAX, 512, 0).unwrap();
        assert_eq!(g.data_slots, RECORDS_PER_BLOCK as u64 * u64::from(u32::MAX));
        assert!(g.data_end() <= g.meta_b_start);
    }

    #[test]
    fn superblock_bytes() {
        let mut set = small_set();
        set.name = SetInfo::name_from(b"r0").unwrap();
        set.target_begin = 8;
        set.target_len = 1 << 19;
        let sb = Superblock {
            copy: CopyId::B,
            version: VERSION,
            seq: 0x0102_0304_0506_0708,
            set,
            nr_records: 3,
            nr_remapped: 2,
            nr_pending: 1,
            records_crc: 0xA1B2_C3D4,
        };
        let mut b = vec![0xEEu8; MD_BLOCK_SIZE + 7];
        encode_superblock(&sb, &mut b).unwrap();
        assert!(
            b[MD_BLOCK_SIZE..].iter().all(|&x| x == 0xEE),
            "nothing past the block"
        );
        let b = &b[..MD_BLOCK_SIZE];
        assert_eq!(&b[0..4], b"DMRM");
        assert_eq!(le32(b, 0x08), 2);
        assert_eq!(&b[0x0c..0x10], &[0x42, 0, 0, 0]);
        assert_eq!(&b[0x10..0x18], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!((le32(b, 0x18), le32(b, 0x1c)), (0, 0));
        assert_eq!(&b[0x20..0x30], b"0123456789abcdef");
        assert_eq!(le64(b, 0x30), 1 << 20);
        assert_eq!(le64(b, 0x38), 0);
        assert!(b[0x40..0x80].iter().all(|&x| x == 0), "main_id_v1 unused");
        assert_eq!(&b[0x80..0x88], &[0x00, 0x10, 0, 0, 0x00, 0x10, 0, 0]);
        let geo: Vec<u64> = (0..8).map(|i| le64(b, 0x88 + 8 * i)).collect();
        assert_eq!(geo, [64, 0, 48, 16, 16, 4, 4, 3]);
        assert_eq!((le64(b, 0xc8), le64(b, 0xd0)), (2, 1));
        assert_eq!(&b[0xd8..0xdc], &[0xD4, 0xC3, 0xB2, 0xA1]);
        assert_eq!(le32(b, 0xdc), 1);
        assert_eq!(&b[0xe0..0xeb], b"SERIAL-0001");
        assert!(b[0xeb..0x1e0].iter().all(|&x| x == 0));
        assert_eq!(&b[0x1e0..0x1e2], b"r0");
        assert!(b[0x1e2..0x260].iter().all(|&x| x == 0));
        assert_eq!((le64(b, 0x260), le64(b, 0x268)), (8, 1 << 19));
        assert!(b[0x270..].iter().all(|&x| x == 0));
        let mut z = b.to_vec();
        z[4..8].fill(0);
        assert_eq!(le32(b, 4), crc32c::crc32c(&z));
        assert_eq!(decode_superblock(b, CopyId::B, 64), Ok(sb));
        assert_eq!(
            decode_superblock(b, CopyId::A, 64),
            Err(CopyError::Superblock { field: Field::Copy })
        );
    }

    /// Rewrite a version 2 superblock block as version 1 wrote it: identity at 0x040 (at most 64
    /// bytes), no name, everything from 0x0e0 zero.
    fn to_v1(b: &mut [u8]) {
        let id: [u8; MAIN_ID_V1_LEN] = get_array(b, L::SB_MAIN_ID);
        assert!(b[L::SB_MAIN_ID + MAIN_ID_V1_LEN..L::SB_NAME]
            .iter()
            .all(|&x| x == 0));
        b[L::SB_MAIN_ID_V1..L::SB_MAIN_ID_V1 + MAIN_ID_V1_LEN].copy_from_slice(&id);
        b[L::SB_RESERVED_V1..MD_BLOCK_SIZE].fill(0);
        put_u32(b, L::SB_VERSION, 1);
        seal(b);
    }

    #[test]
    fn version_1_superblock_decodes() {
        let mut set = small_set();
        set.name = SetInfo::name_from(b"r0").unwrap();
        let sb = Superblock {
            copy: CopyId::A,
            version: VERSION,
            seq: 7,
            set,
            nr_records: 0,
            nr_remapped: 0,
            nr_pending: 0,
            records_crc: crc32c::crc32c(&[]),
        };
        let mut b = vec![0u8; MD_BLOCK_SIZE];
        encode_superblock(&sb, &mut b).unwrap();
        to_v1(&mut b);
        let got = decode_superblock(&b, CopyId::A, 64).unwrap();
        assert_eq!(got.version, 1);
        assert_eq!(got.set.main.id_bytes(), b"SERIAL-0001");
        assert_eq!(got.set.name_bytes(), b"", "version 1 has no name");
        // Version 1 with bytes where version 2 keeps its new fields: reserved, refused.
        let mut bad = b.clone();
        bad[L::SB_NAME] = b'x';
        seal(&mut bad);
        assert_eq!(
            decode_superblock(&bad, CopyId::A, 64),
            Err(CopyError::Superblock {
                field: Field::Reserved
            })
        );
        // Version 2 with bytes in the old identity field: refused.
        let mut v2 = vec![0u8; MD_BLOCK_SIZE];
        encode_superblock(&sb, &mut v2).unwrap();
        v2[L::SB_MAIN_ID_V1] = b'x';
        seal(&mut v2);
        assert_eq!(
            decode_superblock(&v2, CopyId::A, 64),
            Err(CopyError::Superblock {
                field: Field::Reserved
            })
        );
        // Versions outside 1..=2: refused.
        for v in [0, 3, 0xffff_ffff] {
            let mut x = b.clone();
            put_u32(&mut x, L::SB_VERSION, v);
            seal(&mut x);
            assert_eq!(
                decode_superblock(&x, CopyId::A, 64),
                Err(CopyError::Superblock {
                    field: Field::Version
                }),
                "version {v}"
            );
        }
        // A name without its terminating NUL, or with bytes after the NUL: refused.
        let mut x = v2.clone();
        x[L::SB_MAIN_ID_V1] = 0;
        x[L::SB_NAME..L::SB_NAME + NAME_LEN].fill(b'n');
        seal(&mut x);
        assert_eq!(
            decode_superblock(&x, CopyId::A, 64),
            Err(CopyError::Superblock { field: Field::Name })
        );
        assert_eq!(SetInfo::name_from(&[b'n'; NAME_LEN]), None);
        assert!(SetInfo::name_from(&[b'n'; NAME_LEN - 1]).is_some());
    }

    #[test]
    fn identity_check_by_version() {
        let set = small_set();
        let e = Expect {
            main_id: Some(b"wwid-of-the-disk"),
            main_id_v1: Some(b"SERIAL-0001"),
            ..Expect::default()
        };
        // Version 1 recorded the kernel name: checked against main_id_v1.
        assert_eq!(e.check(&set, 1), Ok(()));
        // Version 2 records the stable identity: checked against main_id.
        assert_eq!(e.check(&set, 2), Err(Field::MainId));
        let renamed = Expect {
            main_id: Some(b"SERIAL-0001"),
            main_id_v1: Some(b"nvme1n1"),
            ..Expect::default()
        };
        assert_eq!(
            renamed.check(&set, 2),
            Ok(()),
            "kernel name not part of v2 identity"
        );
        assert_eq!(renamed.check(&set, 1), Err(Field::MainId));
    }

    #[test]
    fn version_1_copies_load_and_migrate() {
        let set = small_set();
        let mut img = vec![0u8; 64 * 512];
        let recs: Recs = [(3, Entry::Remapped { slot: 1 }), (7, Entry::Pending)]
            .into_iter()
            .collect();
        commit(&mut img, &set, CopyId::A, 1, &recs);
        commit(&mut img, &set, CopyId::B, 2, &recs);
        for copy in [CopyId::A, CopyId::B] {
            let at = (set.geometry.sb_sector(copy) * 512) as usize;
            to_v1(&mut img[at..at + MD_BLOCK_SIZE]);
        }
        let e = Expect {
            main_id: Some(b"stable-id"),
            main_id_v1: Some(b"SERIAL-0001"),
            ..Expect::default()
        };
        let (l, got, _) = load_img(&img, &e).unwrap();
        assert_eq!((l.sb.version, l.sb.seq, l.winner), (1, 2, CopyId::B));
        assert_eq!(got, recs);
        let wrong = Expect {
            main_id_v1: Some(b"nvme9n1"),
            ..e
        };
        assert!(matches!(
            load_img(&img, &wrong),
            Err(LoadError::Mismatch {
                field: Field::MainId,
                ..
            })
        ));
        // Migration: the next commit writes version 2 with the stable identity over copy A;
        // it wins, and the old copy B is reported as belonging to another set (rewritten later).
        let mut set2 = l.sb.set;
        set2.main.id = MainDevice::id_from(b"stable-id").unwrap();
        set2.name = SetInfo::name_from(b"r0").unwrap();
        commit(&mut img, &set2, l.commit_target(), l.next_seq, &recs);
        let (l2, got2, _) = load_img(&img, &e).unwrap();
        assert_eq!(
            (l2.sb.version, l2.sb.seq, l2.winner),
            (VERSION, 3, CopyId::A)
        );
        assert_eq!(l2.sb.set.main.id_bytes(), b"stable-id");
        assert_eq!(l2.sb.set.name_bytes(), b"r0");
        assert_eq!(l2.other, CopyStatus::Bad(CopyError::OtherSet));
        assert_eq!(got2, recs);
        commit(&mut img, &set2, l2.commit_target(), l2.next_seq, &recs);
        let (l3, _, _) = load_img(&img, &e).unwrap();
        assert_eq!(l3.other, CopyStatus::Valid { seq: 3 });
    }

    #[test]
    fn record_block_bytes() {
        let set = small_set();
        let mut enc = CopyEncoder::new(&set, CopyId::B, 9, None).unwrap();
        let mut it = [(5u64, Entry::Remapped { slot: 2 }), (9, Entry::Pending)].into_iter();
        let mut b = vec![0xEEu8; MD_BLOCK_SIZE];
        assert_eq!(enc.next_block(&mut it, &mut b), Ok(Some(48)));
        assert_eq!(&b[0..4], b"DMRR");
        assert_eq!(le64(&b, 0x08), 9);
        assert_eq!(&b[0x10..0x20], b"0123456789abcdef");
        assert_eq!(
            (le32(&b, 0x20), le32(&b, 0x24), le32(&b, 0x28)),
            (0x42, 0, 2)
        );
        assert!(b[0x2c..0x40].iter().all(|&x| x == 0));
        assert_eq!(
            &b[0x40..0x50],
            &[5, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(
            &b[0x50..0x60],
            &[9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]
        );
        assert!(b[0x60..].iter().all(|&x| x == 0));
        let rb_crc = le32(&b, 4);
        let mut z = b.clone();
        z[4..8].fill(0);
        assert_eq!(rb_crc, crc32c::crc32c(&z));
        assert_eq!(enc.next_block(&mut it, &mut b), Ok(None));
        let (sector, sb) = enc.finish(&mut b).unwrap();
        assert_eq!(sector, 56);
        assert_eq!((sb.nr_records, sb.nr_remapped, sb.nr_pending), (2, 1, 1));
        assert_eq!(sb.records_crc, crc32c::crc32c(&rb_crc.to_le_bytes()));
        assert_eq!(
            entry_from_disk(0x0100_0000_0000_0007),
            Ok(Entry::Remapped { slot: 7 })
        );
        assert_eq!(entry_from_disk(0x0200_0000_0000_0000), Ok(Entry::Pending));
        assert_eq!(
            entry_from_disk(0x0200_0000_0000_0001),
            Err(RecordProblem::PendingSlot)
        );
        assert_eq!(entry_from_disk(0), Err(RecordProblem::State));
        assert_eq!(
            entry_from_disk(0x0300_0000_0000_0000),
            Err(RecordProblem::State)
        );
    }

    #[test]
    fn format_then_load_round_trip() {
        let set = two_block_set();
        let r = recs(300, 3);
        let mut img = blank(&set);
        let mut buf = vec![0u8; MD_BLOCK_SIZE];
        format(
            &mut Image(&mut img[..]),
            &set,
            r.iter().copied(),
            &mut buf,
            None,
        )
        .unwrap();
        let (l, got, bits) = load_img(&img, &Expect::default()).unwrap();
        assert_eq!(got, r);
        assert_eq!(
            (l.winner, l.sb.seq, l.other, l.next_seq),
            (CopyId::B, 2, CopyStatus::Valid { seq: 1 }, 3)
        );
        assert_eq!(l.commit_target(), CopyId::A);
        assert_eq!(
            (l.sb.nr_records, l.sb.nr_remapped, l.sb.nr_pending),
            (300, 240, 60)
        );
        let used: u64 = bits.iter().map(|w| u64::from(w.count_ones())).sum();
        assert_eq!(used, 240);
        for (_, e) in &r {
            if let Entry::Remapped { slot } = e {
                assert!(bits[(slot / 64) as usize] & (1 << (slot % 64)) != 0);
            }
        }
        // Both copies are complete: blocks 0 and 1 of each, plus the superblocks.
        for s in [0u64, 8, 16, 528, 536, 544] {
            assert_ne!(
                &img[(s * 512) as usize..(s * 512 + 4) as usize],
                &[0, 0, 0, 0],
                "sector {s}"
            );
        }
        // The data area was not touched.
        assert!(img[24 * 512..528 * 512].iter().all(|&x| x == 0));
    }

    #[test]
    fn empty_set_round_trip() {
        let set = small_set();
        let mut img = blank(&set);
        let mut buf = vec![0u8; MD_BLOCK_SIZE];
        format(
            &mut Image(&mut img[..]),
            &set,
            core::iter::empty(),
            &mut buf,
            None,
        )
        .unwrap();
        let (l, got, _) = load_img(&img, &Expect::default()).unwrap();
        assert!(got.is_empty());
        assert_eq!(
            (l.sb.nr_records, l.sb.records_crc, l.winner),
            (0, 0, CopyId::B)
        );
        // Nothing but the two superblocks was written.
        assert!(img[4096..56 * 512].iter().all(|&x| x == 0));
    }

    #[test]
    fn blank_damaged_and_foreign_spares() {
        let set = small_set();
        let mut img = blank(&set);
        assert_eq!(
            load_img(&img, &Expect::default()).err(),
            Some(LoadError::Blank)
        );
        // Data outside the superblock blocks does not make it non-blank.
        img[20 * 512] = 1;
        assert_eq!(
            load_img(&img, &Expect::default()).err(),
            Some(LoadError::Blank)
        );
        let mut buf = vec![0u8; MD_BLOCK_SIZE];
        format(
            &mut Image(&mut img[..]),
            &set,
            core::iter::empty(),
            &mut buf,
            None,
        )
        .unwrap();
        assert!(load_img(&img, &Expect::default()).is_ok());
        // Formatting over metadata is refused and writes nothing.
        let before = img.clone();
        assert_eq!(
            format(
                &mut Image(&mut img[..]),
                &set,
                core::iter::empty(),
                &mut buf,
                None
            ),
            Err(FormatError::NotBlank)
        );
        assert_eq!(img, before);
        // Both superblocks destroyed: damaged, not blank, and not formattable.
        img[100] ^= 0x10;
        img[56 * 512 + 7] ^= 0x01;
        let err = load_img(&img, &Expect::default()).unwrap_err();
        assert_eq!(
            err,
            LoadError::NoValidCopy {
                a: CopyError::Superblock { field: Field::Crc },
                b: CopyError::Superblock { field: Field::Crc }
            }
        );
        let msg = std::format!("{err}");
        assert!(
            msg.contains("copy A: superblock field crc")
                && msg.contains("copy B: superblock field crc"),
            "{msg}"
        );
        assert_eq!(
            format(
                &mut Image(&mut img[..]),
                &set,
                core::iter::empty(),
                &mut buf,
                None
            ),
            Err(FormatError::NotBlank)
        );
        // Foreign data (no magic anywhere).
        let foreign: Vec<u8> = (0..64 * 512).map(|i| (i % 251) as u8).collect();
        assert!(matches!(
            load_img(&foreign, &Expect::default()),
            Err(LoadError::NoValidCopy {
                a: CopyError::Superblock {
                    field: Field::Magic
                },
                b: CopyError::Superblock {
                    field: Field::Magic
                }
            })
        ));
        // Only one superblock blank, the other garbage: damaged.
        let mut one = blank(&set);
        one[56 * 512..].fill(0xAB);
        assert!(matches!(
            load_img(&one, &Expect::default()),
            Err(LoadError::NoValidCopy {
                a: CopyError::Blank,
                ..
            })
        ));
        // Too small to hold anything.
        assert_eq!(
            load_img(&[0u8; 15 * 512], &Expect::default()).err(),
            Some(LoadError::SpareTooSmall { sectors: 15 })
        );
        // A geometry for another size is refused before anything is written.
        let mut small = vec![0u8; 72 * 512];
        assert_eq!(
            format(
                &mut Image(&mut small[..]),
                &set,
                core::iter::empty(),
                &mut buf,
                None
            ),
            Err(FormatError::SpareSize)
        );
        assert!(small.iter().all(|&x| x == 0));
    }

    #[test]
    fn torn_format_leaves_one_copy() {
        // Copy A written, copy B never: A loads, B is reported for rewriting.
        let set = small_set();
        let mut img = blank(&set);
        commit(&mut img, &set, CopyId::A, 1, &recs(3, 2));
        let (l, got, _) = load_img(&img, &Expect::default()).unwrap();
        assert_eq!(
            (l.winner, l.other, got.len()),
            (CopyId::A, CopyStatus::Bad(CopyError::Blank), 3)
        );
        assert!(l.other_bad());
        assert_eq!(l.commit_target(), CopyId::B);
    }

    #[test]
    fn spare_of_another_main_device_is_refused() {
        let set = small_set();
        let img = two_commits(&set, &recs(3, 2), &recs(2, 2));
        let ok = Expect {
            uuid: Some(UUID),
            main_sectors: Some(1 << 20),
            main_offset: Some(0),
            main_id: Some(b"SERIAL-0001"),
            main_id_v1: None,
            block_size: Some(4096),
        };
        assert!(load_img(&img, &ok).is_ok());
        let cases: [(Expect<'_>, Field); 5] = [
            (
                Expect {
                    main_id: Some(b"SERIAL-0002"),
                    ..ok
                },
                Field::MainId,
            ),
            (
                Expect {
                    main_id: Some(b"SERIAL-000"),
                    ..ok
                },
                Field::MainId,
            ),
            (
                Expect {
                    main_sectors: Some((1 << 20) + 8),
                    ..ok
                },
                Field::MainSectors,
            ),
            (
                Expect {
                    main_offset: Some(8),
                    ..ok
                },
                Field::MainOffset,
            ),
            (
                Expect {
                    block_size: Some(8192),
                    ..ok
                },
                Field::BlockSize,
            ),
        ];
        for (e, field) in cases {
            let err = load_img(&img, &e).unwrap_err();
            assert_eq!(
                err,
                LoadError::Mismatch {
                    copy: CopyId::A,
                    field
                }
            );
            if field != Field::BlockSize {
                assert!(
                    std::format!("{err}").contains("another main device"),
                    "{err}"
                );
            }
        }
        let mut u = UUID;
        u[0] ^= 1;
        assert_eq!(
            load_img(
                &img,
                &Expect {
                    uuid: Some(u),
                    ..ok
                }
            )
            .unwrap_err(),
            LoadError::Mismatch {
                copy: CopyId::A,
                field: Field::Uuid
            }
        );
    }

    #[test]
    fn resized_spare_is_refused() {
        let set = small_set();
        let mut img = two_commits(&set, &recs(3, 2), &recs(2, 2));
        img.extend_from_slice(&[0u8; 8 * 512]);
        assert_eq!(
            load_img(&img, &Expect::default()).unwrap_err(),
            LoadError::NoValidCopy {
                a: CopyError::SpareSize {
                    recorded: 64,
                    actual: 72
                },
                b: CopyError::Blank
            }
        );
    }

    #[test]
    fn ping_pong_picks_highest_sequence_and_tracks_next() {
        let set = two_block_set();
        let mut img = blank(&set);
        let mut buf = vec![0u8; MD_BLOCK_SIZE];
        format(
            &mut Image(&mut img[..]),
            &set,
            core::iter::empty(),
            &mut buf,
            None,
        )
        .unwrap();
        let mut model: BTreeMap<u64, Entry> = BTreeMap::new();
        for round in 0..6u64 {
            let (l, got, _) = load_img(&img, &Expect::default()).unwrap();
            assert_eq!(got, model.iter().map(|(&b, &e)| (b, e)).collect::<Vec<_>>());
            assert_eq!(l.sb.seq, round + 2);
            // Add some remaps, commit to the copy the loader names.
            for i in 0..70 {
                let blk = round * 1000 + i * 7;
                let slot = round * 70 + i;
                model.insert(
                    blk,
                    if i % 9 == 0 {
                        Entry::Pending
                    } else {
                        Entry::Remapped { slot }
                    },
                );
            }
            let v: Recs = model.iter().map(|(&b, &e)| (b, e)).collect();
            commit(&mut img, &set, l.commit_target(), l.next_seq, &v);
        }
    }

    /// Bytes covered by a copy's commit in the small image: its superblock and its record block.
    fn small_copy_bytes(copy: CopyId) -> Vec<usize> {
        let (sb, rb) = match copy {
            CopyId::A => (0usize, 8usize),
            CopyId::B => (56, 48),
        };
        (sb * 512..sb * 512 + MD_BLOCK_SIZE)
            .chain(rb * 512..rb * 512 + MD_BLOCK_SIZE)
            .collect()
    }

    /// Corrupt byte `pos` of `img` with `xor` and check that the load falls back to the other copy
    /// (or keeps the winner when the loser was hit), reporting the hit copy as bad.
    fn check_corruption(img: &mut [u8], pos: usize, xor: u8, hit: CopyId, a: &Recs, b: &Recs) {
        img[pos] ^= xor;
        let (l, got, _) = load_img(img, &Expect::default())
            .unwrap_or_else(|e| panic!("byte {pos} ^ {xor:#x}: no copy loaded: {e}"));
        img[pos] ^= xor;
        let (want_winner, want) = match hit {
            CopyId::A => (CopyId::B, b),
            CopyId::B => (CopyId::A, a),
        };
        assert_eq!(l.winner, want_winner, "byte {pos} ^ {xor:#x} not detected");
        assert!(
            matches!(l.other, CopyStatus::Bad(_)),
            "byte {pos} ^ {xor:#x}: {:?}",
            l.other
        );
        assert_eq!(&got, want, "byte {pos} ^ {xor:#x}");
    }

    /// Every byte of both copies of the small image, each changed by one value; the values
    /// rotate through all 255 non-zero xor patterns along the positions. (Every position with
    /// every value: `every_single_byte_value`.)
    #[test]
    fn single_byte_corruption_is_detected_small_image() {
        let set = small_set();
        let (a, b) = (recs(4, 3), recs(3, 5));
        let mut img = two_commits(&set, &a, &b);
        for hit in [CopyId::A, CopyId::B] {
            for (i, pos) in small_copy_bytes(hit).into_iter().enumerate() {
                check_corruption(&mut img, pos, (i % 255) as u8 + 1, hit, &a, &b);
            }
        }
    }

    /// Every byte of both copies with all 255 corrupting values (2 x 8192 x 255 loads). Slow in a
    /// debug build: run with `cargo test --release -p dmremap-core -- --ignored`.
    #[test]
    #[ignore]
    fn every_single_byte_value() {
        let set = small_set();
        let (a, b) = (recs(4, 3), recs(3, 5));
        let mut img = two_commits(&set, &a, &b);
        for hit in [CopyId::A, CopyId::B] {
            for pos in small_copy_bytes(hit) {
                for x in 1..=255u8 {
                    check_corruption(&mut img, pos, x, hit, &a, &b);
                }
            }
        }
    }

    /// A commit in flight: which of its blocks reached the disk (and for a torn block, how many of
    /// its sectors).
    struct Recorder(Vec<(u64, Vec<u8>)>);
    impl SpareWrite for Recorder {
        fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), IoError> {
            self.0.push((sector, buf.to_vec()));
            Ok(())
        }
    }

    fn commit_blocks(set: &SetInfo, copy: CopyId, seq: u64, r: &Recs) -> Vec<(u64, Vec<u8>)> {
        let mut rec = Recorder(Vec::new());
        let mut buf = vec![0u8; MD_BLOCK_SIZE];
        write_copy(&mut rec, set, copy, seq, r.iter().copied(), &mut buf, None).unwrap();
        rec.0
    }

    fn apply(img: &mut [u8], sector: u64, data: &[u8]) {
        let s = (sector * 512) as usize;
        img[s..s + data.len()].copy_from_slice(data);
    }

    #[test]
    fn torn_commit_falls_back_to_previous_sequence() {
        let set = two_block_set();
        let (r3, r2) = (recs(260, 2), recs(255, 3));
        let base = two_commits(&set, &r3, &r2);
        let r4 = recs(480, 2);
        let blocks = commit_blocks(&set, CopyId::B, 4, &r4);
        assert_eq!(blocks.len(), 3, "two record blocks and the superblock");
        // Every subset of whole blocks.
        for mask in 0u32..(1 << blocks.len()) {
            let mut img = base.clone();
            for (i, (s, d)) in blocks.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    apply(&mut img, *s, d);
                }
            }
            let (l, got, _) = load_img(&img, &Expect::default()).unwrap();
            let sb_written = mask & 0b100 != 0;
            if mask == 0b111 {
                assert_eq!((l.winner, l.sb.seq, &got), (CopyId::B, 4, &r4));
                assert_eq!(l.other, CopyStatus::Valid { seq: 3 });
            } else if mask == 0 {
                assert_eq!((l.winner, l.sb.seq, &got), (CopyId::A, 3, &r3));
                assert_eq!(l.other, CopyStatus::Valid { seq: 2 });
            } else {
                assert_eq!(
                    (l.winner, l.sb.seq, &got),
                    (CopyId::A, 3, &r3),
                    "mask {mask:#b}"
                );
                assert!(l.other_bad(), "mask {mask:#b}: {:?}", l.other);
            }
            // A sequence number seen in an intact superblock is never reused.
            assert_eq!(l.next_seq, if sb_written { 5 } else { 4 }, "mask {mask:#b}");
        }
        // Torn inside a block: only the first k sectors of one block are new.
        let mut torn = 0;
        for (i, (s, d)) in blocks.iter().enumerate() {
            for k in 1..8 {
                let mut img = base.clone();
                for (j, (s2, d2)) in blocks.iter().enumerate() {
                    if j != i {
                        apply(&mut img, *s2, d2);
                    }
                }
                apply(&mut img, *s, &d[..k * 512]);
                // When the sectors not written already held the new bytes, the commit is complete.
                let at = (*s * 512) as usize;
                let complete = img[at..at + MD_BLOCK_SIZE] == d[..];
                let (l, got, _) = load_img(&img, &Expect::default()).unwrap();
                if complete {
                    assert_eq!(
                        (l.winner, l.sb.seq, got == r4),
                        (CopyId::B, 4, true),
                        "block {i} after {k} sectors"
                    );
                } else {
                    assert_eq!(
                        (l.winner, l.sb.seq, got == r3),
                        (CopyId::A, 3, true),
                        "block {i} torn after {k} sectors"
                    );
                    assert!(l.other_bad());
                    torn += 1;
                }
            }
        }
        // Both record blocks tear at every sector boundary; the superblock's fields fit in its
        // first sector (the rest is zero in every version), so it cannot tear between sectors.
        assert_eq!(torn, 14);
    }

    #[test]
    fn two_commits_with_the_same_sequence_do_not_mix() {
        // A commit with seq 4 lands completely in B, then another commit that (wrongly) reuses
        // seq 4 only gets its superblock and first record block down. Every block is intact and
        // carries seq 4, index and uuid are right: only records_crc shows the mix.
        let set = two_block_set();
        let (r3, r2) = (recs(260, 2), recs(255, 3));
        let mut img = two_commits(&set, &r3, &r2);
        for (s, d) in commit_blocks(&set, CopyId::B, 4, &recs(300, 4)) {
            apply(&mut img, s, &d);
        }
        let other: Recs = recs(300, 4).into_iter().map(|(b, e)| (b + 1, e)).collect();
        let second = commit_blocks(&set, CopyId::B, 4, &other);
        apply(&mut img, second[0].0, &second[0].1);
        apply(&mut img, second[2].0, &second[2].1);
        let (l, got, _) = load_img(&img, &Expect::default()).unwrap();
        assert_eq!((l.winner, &got), (CopyId::A, &r3));
        assert_eq!(
            l.other,
            CopyStatus::Bad(CopyError::Totals {
                field: Field::RecordsCrc
            })
        );
    }

    /// Overwrite a field of the block at `sector`, reseal it, and load.
    fn forged(
        img: &[u8],
        sector: u64,
        off: usize,
        bytes: &[u8],
    ) -> Result<(Loaded, Recs, Vec<u64>), LoadError> {
        let mut img = img.to_vec();
        let s = (sector * 512) as usize;
        img[s + off..s + off + bytes.len()].copy_from_slice(bytes);
        seal(&mut img[s..s + MD_BLOCK_SIZE]);
        load_img(&img, &Expect::default())
    }

    fn a_error(r: Result<(Loaded, Recs, Vec<u64>), LoadError>, off: usize) -> CopyError {
        let (l, _, _) = r.unwrap();
        assert_eq!(l.winner, CopyId::B, "forged offset {off:#x} not rejected");
        match l.other {
            CopyStatus::Bad(e) => e,
            v => panic!("copy A not rejected: {v:?}"),
        }
    }

    #[test]
    fn every_superblock_field_is_checked() {
        let set = small_set();
        let img = two_commits(&set, &recs(4, 3), &recs(3, 5));
        let sb = |f: Field| CopyError::Superblock { field: f };
        let cases: Vec<(usize, Vec<u8>, CopyError)> = vec![
            (L::SB_MAGIC, b"DMRX".to_vec(), sb(Field::Magic)),
            (
                L::SB_VERSION,
                3u32.to_le_bytes().to_vec(),
                sb(Field::Version),
            ),
            (
                L::SB_VERSION,
                0u32.to_le_bytes().to_vec(),
                sb(Field::Version),
            ),
            // Read as version 1, the identity at 0x040 is empty.
            (
                L::SB_VERSION,
                1u32.to_le_bytes().to_vec(),
                sb(Field::MainId),
            ),
            (L::SB_MAIN_ID_V1, [b'x'].to_vec(), sb(Field::Reserved)),
            (L::SB_NAME + 127, [b'x'].to_vec(), sb(Field::Name)),
            (
                L::SB_COPY,
                COPY_ID_B.to_le_bytes().to_vec(),
                sb(Field::Copy),
            ),
            (L::SB_SEQ, 0u64.to_le_bytes().to_vec(), sb(Field::Seq)),
            (
                L::SB_INCOMPAT,
                1u32.to_le_bytes().to_vec(),
                sb(Field::Features),
            ),
            (L::SB_UUID, [0u8; 16].to_vec(), sb(Field::Uuid)),
            (
                L::SB_MAIN_SECTORS,
                0u64.to_le_bytes().to_vec(),
                sb(Field::MainSectors),
            ),
            (
                L::SB_MAIN_OFFSET,
                (1u64 << 20).to_le_bytes().to_vec(),
                sb(Field::MainOffset),
            ),
            (L::SB_MAIN_ID, [0u8].to_vec(), sb(Field::MainId)),
            (L::SB_MAIN_ID + 20, [b'x'].to_vec(), sb(Field::MainId)),
            (
                L::SB_BLOCK_SIZE,
                3000u32.to_le_bytes().to_vec(),
                sb(Field::BlockSize),
            ),
            (
                L::SB_BLOCK_SIZE,
                8192u32.to_le_bytes().to_vec(),
                sb(Field::Geometry),
            ),
            (
                L::SB_MD_BLOCK_SIZE,
                512u32.to_le_bytes().to_vec(),
                sb(Field::MdBlockSize),
            ),
            (
                L::SB_SPARE_SECTORS,
                72u64.to_le_bytes().to_vec(),
                CopyError::SpareSize {
                    recorded: 72,
                    actual: 64,
                },
            ),
            (
                L::SB_META_A_START,
                8u64.to_le_bytes().to_vec(),
                sb(Field::Geometry),
            ),
            (
                L::SB_META_B_START,
                40u64.to_le_bytes().to_vec(),
                sb(Field::Geometry),
            ),
            (
                L::SB_META_SECTORS,
                24u64.to_le_bytes().to_vec(),
                sb(Field::Geometry),
            ),
            (
                L::SB_DATA_START,
                8u64.to_le_bytes().to_vec(),
                sb(Field::Geometry),
            ),
            (
                L::SB_DATA_SLOTS,
                5u64.to_le_bytes().to_vec(),
                sb(Field::Geometry),
            ),
            (
                L::SB_DATA_SLOTS,
                3u64.to_le_bytes().to_vec(),
                sb(Field::Geometry),
            ),
            (
                L::SB_RECORD_CAPACITY,
                3u64.to_le_bytes().to_vec(),
                sb(Field::Geometry),
            ),
            (
                L::SB_RECORD_CAPACITY,
                300u64.to_le_bytes().to_vec(),
                sb(Field::Geometry),
            ),
            (
                L::SB_NR_RECORDS,
                5u64.to_le_bytes().to_vec(),
                sb(Field::Counts),
            ),
            (
                L::SB_NR_REMAPPED,
                3u64.to_le_bytes().to_vec(),
                sb(Field::Counts),
            ),
            (
                L::SB_NR_PENDING,
                1u64.to_le_bytes().to_vec(),
                sb(Field::Counts),
            ),
            (
                L::SB_RECORD_BLOCKS,
                2u32.to_le_bytes().to_vec(),
                sb(Field::RecordBlocks),
            ),
            (L::SB_RESERVED + 100, [1u8].to_vec(), sb(Field::Reserved)),
            (MD_BLOCK_SIZE - 1, [1u8].to_vec(), sb(Field::Reserved)),
            (
                L::SB_RECORDS_CRC,
                1u32.to_le_bytes().to_vec(),
                CopyError::Totals {
                    field: Field::RecordsCrc,
                },
            ),
        ];
        for (off, bytes, want) in cases {
            assert_eq!(
                a_error(forged(&img, 0, off, &bytes), off),
                want,
                "superblock offset {off:#x}"
            );
        }
        // Consistent counts that do not match the records.
        let mut both = img.clone();
        both[L::SB_NR_REMAPPED] = 2;
        both[L::SB_NR_PENDING] = 2;
        seal(&mut both[..MD_BLOCK_SIZE]);
        assert_eq!(
            a_error(load_img(&both, &Expect::default()), L::SB_NR_PENDING),
            CopyError::Totals {
                field: Field::Counts
            }
        );
    }

    #[test]
    fn sequence_of_an_intact_but_invalid_superblock_is_not_reused() {
        let set = small_set();
        let mut img = two_commits(&set, &recs(4, 3), &recs(3, 5));
        // Copy A's superblock: seq 9, an impossible block size, checksum intact.
        img[L::SB_SEQ] = 9;
        img[L::SB_BLOCK_SIZE..L::SB_BLOCK_SIZE + 4].copy_from_slice(&3000u32.to_le_bytes());
        seal(&mut img[..MD_BLOCK_SIZE]);
        let (l, _, _) = load_img(&img, &Expect::default()).unwrap();
        assert_eq!((l.winner, l.sb.seq, l.next_seq), (CopyId::B, 2, 10));
        // With a broken checksum its seq means nothing.
        img[L::SB_CRC] ^= 1;
        let (l, _, _) = load_img(&img, &Expect::default()).unwrap();
        assert_eq!((l.winner, l.next_seq), (CopyId::B, 3));
    }

    #[test]
    fn every_record_block_field_and_record_is_checked() {
        let set = small_set();
        // Copy A: blocks 1, 4, 7, 10 (slots 3, 2, 1, 0 / pending for i = 4 — not here).
        let a: Recs = vec![
            (1, Entry::Remapped { slot: 3 }),
            (4, Entry::Remapped { slot: 2 }),
            (7, Entry::Pending),
            (10, Entry::Remapped { slot: 0 }),
        ];
        let img = two_commits(&set, &a, &recs(3, 5));
        let rb = |f: Field| CopyError::RecordBlock { index: 0, field: f };
        let rec = |pos: u32, block: u64, p: RecordProblem| CopyError::Record {
            index: 0,
            pos,
            block,
            problem: p,
        };
        let r0 = L::RB_RECORDS;
        let state = |s: u64, slot: u64| ((s << 56) | slot).to_le_bytes().to_vec();
        let cases: Vec<(usize, Vec<u8>, CopyError)> = vec![
            (L::RB_MAGIC, b"DMRM".to_vec(), rb(Field::Magic)),
            (L::RB_SEQ, 2u64.to_le_bytes().to_vec(), rb(Field::Seq)),
            (L::RB_UUID + 3, [0u8].to_vec(), rb(Field::Uuid)),
            (
                L::RB_COPY,
                COPY_ID_B.to_le_bytes().to_vec(),
                rb(Field::Copy),
            ),
            (L::RB_INDEX, 1u32.to_le_bytes().to_vec(), rb(Field::Index)),
            (L::RB_COUNT, 3u32.to_le_bytes().to_vec(), rb(Field::Count)),
            (L::RB_RESERVED, [1u8].to_vec(), rb(Field::Reserved)),
            (0x3f, [1u8].to_vec(), rb(Field::Reserved)),
            (r0 + 8, state(3, 3), rec(0, 1, RecordProblem::State)),
            (r0 + 8, state(0, 3), rec(0, 1, RecordProblem::State)),
            (
                r0 + 32 + 8,
                state(2, 1),
                rec(2, 7, RecordProblem::PendingSlot),
            ),
            (
                r0 + 8,
                state(1, 4),
                rec(0, 1, RecordProblem::SlotOutOfRange),
            ),
            (r0 + 8, state(1, 2), rec(1, 4, RecordProblem::SlotInUse)),
            (
                r0,
                4u64.to_le_bytes().to_vec(),
                rec(1, 4, RecordProblem::Order),
            ),
            (
                r0 + 16,
                0u64.to_le_bytes().to_vec(),
                rec(1, 0, RecordProblem::Order),
            ),
            (
                r0 + 48,
                (1u64 << 17).to_le_bytes().to_vec(),
                rec(3, 1 << 17, RecordProblem::BlockOutOfRange),
            ),
            (
                r0 + 64 + 8,
                state(1, 1),
                rec(4, 0, RecordProblem::UnusedNotZero),
            ),
            (
                MD_BLOCK_SIZE - 1,
                [1u8].to_vec(),
                rec(251, 0, RecordProblem::UnusedNotZero),
            ),
        ];
        for (off, bytes, want) in cases {
            assert_eq!(
                a_error(forged(&img, 8, off, &bytes), off),
                want,
                "record block offset {off:#x}"
            );
        }
        // Display names the copy, the block and the field.
        let mut bad = img.clone();
        bad[8 * 512 + L::RB_SEQ] = 9;
        seal(&mut bad[8 * 512..9 * 512 + 3584]);
        bad[56 * 512] ^= 1;
        let err = load_img(&bad, &Expect::default()).unwrap_err();
        let msg = std::format!("{err}");
        assert!(
            msg.contains("copy A: record block 0: field seq")
                && msg.contains("copy B: superblock field magic"),
            "{msg}"
        );
    }

    #[test]
    fn encoder_refuses_bad_input_and_format_writes_nothing() {
        let set = small_set();
        let mut buf = vec![0u8; MD_BLOCK_SIZE];
        let mut bits = vec![0u64; 1];
        let go = |r: Recs, bits: Option<&mut [u64]>| -> Result<Superblock, WriteError> {
            let mut img = blank(&set);
            let mut buf = vec![0u8; MD_BLOCK_SIZE];
            write_copy(
                &mut Image(&mut img[..]),
                &set,
                CopyId::A,
                1,
                r.into_iter(),
                &mut buf,
                bits,
            )
        };
        let rec = |block, problem| WriteError::Encode(EncodeError::Record { block, problem });
        let rm = |slot| Entry::Remapped { slot };
        assert_eq!(
            go(vec![(5, rm(0)), (5, rm(1))], None),
            Err(rec(5, RecordProblem::Order))
        );
        assert_eq!(
            go(vec![(5, rm(0)), (4, rm(1))], None),
            Err(rec(4, RecordProblem::Order))
        );
        assert_eq!(
            go(vec![(5, rm(4))], None),
            Err(rec(5, RecordProblem::SlotOutOfRange))
        );
        assert_eq!(
            go(vec![(5, rm(MAX_SLOT_TEST))], None),
            Err(rec(5, RecordProblem::SlotOutOfRange))
        );
        assert_eq!(
            go(vec![(1 << 17, rm(0))], None),
            Err(rec(1 << 17, RecordProblem::BlockOutOfRange))
        );
        assert_eq!(
            go(vec![(1, rm(2)), (2, rm(2))], Some(&mut bits)),
            Err(rec(2, RecordProblem::SlotInUse))
        );
        assert!(
            go(vec![(1, rm(2)), (2, rm(2))], None).is_ok(),
            "without a bitmap only the loader checks slots"
        );
        let five: Recs = (0..5).map(|i| (i, Entry::Pending)).collect();
        assert_eq!(
            go(five, None),
            Err(WriteError::Encode(EncodeError::TooManyRecords))
        );
        assert_eq!(
            CopyEncoder::new(&set, CopyId::A, 0, None).err().map(|_| ()),
            Some(()),
            "seq 0 refused"
        );
        let mut short = [0u64; 0];
        assert_eq!(
            CopyEncoder::new(&set, CopyId::A, 1, Some(&mut short)).err(),
            Some(EncodeError::BitmapTooSmall { need: 1 })
        );
        let mut bad = set;
        bad.geometry.data_slots += 1;
        assert_eq!(
            CopyEncoder::new(&bad, CopyId::A, 1, None).err(),
            Some(EncodeError::Set {
                field: Field::Geometry
            })
        );
        // A short buffer; finish before the iterator is exhausted, or after an error.
        let mut enc = CopyEncoder::new(&set, CopyId::A, 1, None).unwrap();
        let mut it = [(1u64, Entry::Pending)].into_iter();
        assert_eq!(
            enc.next_block(&mut it, &mut buf[..100]),
            Err(EncodeError::BufferTooSmall)
        );
        assert_eq!(enc.finish(&mut buf).err(), Some(EncodeError::Unfinished));
        let mut enc = CopyEncoder::new(&set, CopyId::A, 1, None).unwrap();
        let mut it = [(2u64, Entry::Pending), (1, Entry::Pending)].into_iter();
        assert!(enc.next_block(&mut it, &mut buf).is_err());
        assert_eq!(
            enc.next_block(&mut it, &mut buf),
            Err(EncodeError::Unfinished)
        );
        assert_eq!(enc.finish(&mut buf).err(), Some(EncodeError::Unfinished));
        // format with a bad record writes nothing.
        let mut img = blank(&set);
        let r = [(3u64, rm(0)), (2, rm(1))];
        assert!(matches!(
            format(
                &mut Image(&mut img[..]),
                &set,
                r.iter().copied(),
                &mut buf,
                None
            ),
            Err(FormatError::Write {
                copy: CopyId::A,
                error: WriteError::Encode(EncodeError::Record { .. })
            })
        ));
        assert!(img.iter().all(|&x| x == 0));
    }

    const MAX_SLOT_TEST: u64 = SLOT_MASK + 1;

    #[test]
    fn io_errors_name_the_sector_and_fall_back() {
        struct Failing<'a>(&'a [u8], u64);
        impl SpareRead for Failing<'_> {
            fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
                if sector == self.1 {
                    return Err(IoError);
                }
                Image(self.0).read(sector, buf)
            }
        }
        let set = small_set();
        let (a, b) = (recs(4, 3), recs(3, 5));
        let img = two_commits(&set, &a, &b);
        let mut buf = vec![0u8; MD_BLOCK_SIZE];
        let mut bits = vec![0u64; 1];
        let mut out = Vec::new();
        let l = load(
            &mut Failing(&img, 8),
            64,
            &Expect::default(),
            &mut buf,
            &mut bits,
            |blk, e| {
                out.push((blk, e));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(
            (l.winner, l.other, &out),
            (CopyId::B, CopyStatus::Bad(CopyError::Io { sector: 8 }), &b)
        );
        let r = load(
            &mut Failing(&img, 0),
            64,
            &Expect::default(),
            &mut buf,
            &mut [0u64; 0],
            |_, _| Ok(()),
        );
        assert_eq!(r.err(), Some(LoadError::BitmapTooSmall { need: 1 }));
        // The sink can stop the load.
        let r = load(
            &mut Image(&img[..]),
            64,
            &Expect::default(),
            &mut buf,
            &mut bits,
            |blk, _| {
                if blk == 4 {
                    Err(SinkError)
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(r.err(), Some(LoadError::Sink { block: 4 }));
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        /// A random remap set for a set of `slots` data slots and `main_blocks` main blocks.
        fn remap_set(slots: u64, main_blocks: u64, max: usize) -> impl Strategy<Value = Recs> {
            (
                proptest::collection::btree_map(0..main_blocks, any::<bool>(), 0..max),
                Just(slots),
            )
                .prop_flat_map(|(blocks, slots)| {
                    let n = blocks.len();
                    let all: Vec<u64> = (0..slots).collect();
                    (
                        Just(blocks),
                        proptest::sample::subsequence(all, n.min(slots as usize)).prop_shuffle(),
                    )
                })
                .prop_map(|(blocks, slots)| {
                    let mut free = slots.into_iter();
                    blocks
                        .into_iter()
                        .map(|(b, pending)| match (pending, free.next()) {
                            (false, Some(slot)) => (b, Entry::Remapped { slot }),
                            _ => (b, Entry::Pending),
                        })
                        .collect()
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// Random geometries: the copies and the data area never overlap, the record area holds
            /// the capacity, and one more slot would not fit.
            #[test]
            fn geometry_invariants(spare in 40u64..(1 << 34), shift in 0u32..12, extra in 0u64..5000) {
                let bs = 512u32 << shift;
                let Ok(g) = Geometry::for_spare(spare, bs, extra) else {
                    prop_assert!(fit(1, extra, u64::from(bs) / 512, (u64::from(bs) / 512).max(8), spare & !7).is_none());
                    return Ok(());
                };
                let end = spare & !7;
                prop_assert_eq!(g.meta_a_start, 0);
                prop_assert!(g.meta_sectors <= g.data_start);
                prop_assert_eq!(g.data_start % g.block_sectors().max(8), 0);
                prop_assert!(g.data_end() <= g.meta_b_start);
                prop_assert_eq!(g.meta_b_start + g.meta_sectors, end);
                prop_assert_eq!(g.sb_sector(CopyId::B), end - 8);
                prop_assert!(g.record_blocks() * RECORDS_PER_BLOCK as u64 >= g.record_capacity);
                prop_assert_eq!(g.record_capacity, g.data_slots + extra);
                prop_assert!(fit(g.data_slots + 1, extra, g.block_sectors(), g.block_sectors().max(8), end).is_none());
                prop_assert_eq!(Geometry::for_spare(spare, bs, g.extra_records()), Ok(g));
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            /// Random remap sets survive format + load exactly.
            #[test]
            fn random_sets_round_trip(r in remap_set(504, 3000, 504)) {
                let set = two_block_set();
                let mut img = blank(&set);
                let mut buf = vec![0u8; MD_BLOCK_SIZE];
                let mut bits = vec![0u64; 8];
                format(&mut Image(&mut img[..]), &set, r.iter().copied(), &mut buf, Some(&mut bits)).unwrap();
                let (l, got, bits) = load_img(&img, &Expect::default()).unwrap();
                prop_assert_eq!(&got, &r);
                let remapped = r.iter().filter(|(_, e)| matches!(e, Entry::Remapped { .. })).count() as u64;
                prop_assert_eq!(l.sb.nr_remapped, remapped);
                prop_assert_eq!(bits.iter().map(|w| u64::from(w.count_ones())).sum::<u64>(), remapped);
            }

            /// A byte anywhere in the winning copy of a two-record-block image, changed to any other
            /// value, makes the load fall back to the older copy.
            #[test]
            fn corrupt_winner_falls_back(pos in 0usize..(3 * MD_BLOCK_SIZE), x in 1u8..=255, a in remap_set(504, 3000, 504), b in remap_set(504, 3000, 504)) {
                let set = two_block_set();
                prop_assume!(a.len() > RECORDS_PER_BLOCK);
                let img = two_commits(&set, &a, &b);
                // Copy A's blocks: sectors 0, 8, 16.
                let mut img2 = img.clone();
                img2[pos] ^= x;
                let (l, got, _) = load_img(&img2, &Expect::default()).unwrap();
                prop_assert_eq!(l.winner, CopyId::B);
                prop_assert!(l.other_bad());
                prop_assert_eq!(&got, &b);
                // And in copy B (the older one): the winner stays A.
                let bpos = 528 * 512 + pos;
                let mut img3 = img;
                img3[bpos] ^= x;
                let (l, got, _) = load_img(&img3, &Expect::default()).unwrap();
                prop_assert_eq!(l.winner, CopyId::A);
                prop_assert_eq!(&got, &a);
                // Copy B: record block 0, record block 1, superblock. A record block past the
                // commit's records is not part of the copy.
                let used = match pos / MD_BLOCK_SIZE {
                    0 => !b.is_empty(),
                    1 => b.len() > RECORDS_PER_BLOCK,
                    _ => true,
                };
                if used {
                    prop_assert!(l.other_bad(), "{:?}", l.other);
                } else {
                    prop_assert_eq!(l.other, CopyStatus::Valid { seq: 2 });
                }
            }

            /// Arbitrary bytes in the superblock positions never panic the loader, and whatever loads
            /// is internally consistent.
            #[test]
            fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..(80 * 512)), reseal in any::<bool>()) {
                let mut img = data;
                if reseal && img.len() >= MD_BLOCK_SIZE {
                    seal(&mut img[..MD_BLOCK_SIZE]);
                }
                if let Ok((l, got, _)) = load_img(&img, &Expect::default()) {
                    prop_assert_eq!(got.len() as u64, l.sb.nr_records);
                }
            }
        }
    }
}

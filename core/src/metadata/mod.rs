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
//! * Journal (version 3): the record blocks the newest copy does not use (from its
//!   `record_blocks` to the end of its record area) hold a journal of the commits made since
//!   that copy was written. A commit of k changes appends `ceil(k / 252)` journal blocks with one
//!   write with preflush and FUA; each block names the copy's sequence number (`base_seq`) and
//!   the previous commit's (`prev_seq`), and carries a CRC-32C over all entries of its commit,
//!   so a torn or stale commit ends the journal. Loading replays the chain of complete commits
//!   on top of the winning copy. When the journal runs full a checkpoint writes the whole index
//!   as the other copy with a new sequence number, and the journal restarts behind it.
//! * Both copies' record areas are sized for `data_slots + extra` records (one per spare slot plus
//!   room for pending blocks), so the number of remaps is bounded only by the spare.
//!
//! The module's files, by concern: [`layout`] (field offsets), `block` (field access and block
//! CRC), `error` (copy and field names, errors), `geometry`, `superblock`, `records` (record
//! codec and the copy encoder), `journal` (journal blocks: encoder and replay), `io` (spare
//! access, writing a copy, formatting) and `load`.
//!
//! No allocation, no panics, no floating point: these files are compiled into the kernel module.

/// Bytes per sector: every sector number in the metadata counts 512-byte units.
pub const SECTOR_SIZE: u64 = 512;
/// Size of every metadata block (superblocks and record blocks).
pub const MD_BLOCK_SIZE: usize = 4096;
/// Sectors per metadata block.
pub const MD_BLOCK_SECTORS: u64 = 8;
/// Format version this code writes (version 3: a journal may follow the newest copy's records).
pub const VERSION: u32 = 3;
/// Oldest format version whose newest copy may be followed by a journal.
pub const VERSION_JOURNAL: u32 = 3;
/// Oldest format version this code reads (version 1 named the main device by its kernel name;
/// the kernel migrates such a spare to [`VERSION`] when it loads it).
pub const VERSION_MIN: u32 = 1;
/// Superblock magic; on disk the bytes read "DMRM".
pub const SB_MAGIC: u32 = 0x4D52_4D44;
/// Record block magic; on disk the bytes read "DMRR".
pub const RB_MAGIC: u32 = 0x5252_4D44;
/// Journal block magic; on disk the bytes read "DMRJ".
pub const JB_MAGIC: u32 = 0x4A52_4D44;
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
/// Journal entry state: the block has no record any more (unremapped); bits 55..0 are zero.
pub const STATE_REMOVED: u64 = 3;
/// Bytes of a journal block's header.
pub const JB_HEADER_SIZE: usize = 64;
/// Entries in one journal block (16 bytes each, the record encoding).
pub const JOURNAL_ENTRIES_PER_BLOCK: usize = (MD_BLOCK_SIZE - JB_HEADER_SIZE) / RECORD_SIZE;
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

mod block;
mod error;
mod geometry;
mod io;
mod journal;
pub mod layout;
mod load;
mod records;
mod superblock;
#[cfg(test)]
mod tests;

pub use block::*;
pub use error::*;
pub use geometry::*;
pub use io::*;
pub use journal::*;
pub use load::*;
pub use records::*;
pub use superblock::*;

//! Byte offsets of the on-disk fields, as documented in `include/dm_remap.h`.

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

/// `dmr_md_journal_block.magic`
pub const JB_MAGIC: usize = 0x00;
/// `dmr_md_journal_block.crc`
pub const JB_CRC: usize = 0x04;
/// `dmr_md_journal_block.seq` (the commit's sequence number)
pub const JB_SEQ: usize = 0x08;
/// `dmr_md_journal_block.uuid`
pub const JB_UUID: usize = 0x10;
/// `dmr_md_journal_block.base_seq` (sequence number of the copy the journal follows)
pub const JB_BASE_SEQ: usize = 0x20;
/// `dmr_md_journal_block.prev_seq` (previous commit of the journal, or `base_seq`)
pub const JB_PREV_SEQ: usize = 0x28;
/// `dmr_md_journal_block.index` (of the block within its commit)
pub const JB_INDEX: usize = 0x30;
/// `dmr_md_journal_block.blocks` (of the commit)
pub const JB_BLOCKS: usize = 0x34;
/// `dmr_md_journal_block.count` (entries in the block)
pub const JB_COUNT: usize = 0x38;
/// `dmr_md_journal_block.commit_crc` (CRC-32C over the entry areas of all blocks of the commit)
pub const JB_COMMIT_CRC: usize = 0x3c;
/// `dmr_md_journal_block.entries`
pub const JB_ENTRIES: usize = 0x40;

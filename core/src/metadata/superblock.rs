//! The remap set and its superblock: encoder and decoder.

use super::block::{
    all_zero, block_of, block_of_mut, get_array, get_u32, get_u64, put_bytes, put_u32, put_u64,
};
use super::layout as L;
use super::{
    block_crc, seal, valid_block_size, CopyError, CopyId, EncodeError, Field, Geometry,
    FEATURES_INCOMPAT_SUPPORTED, MAIN_ID_LEN, MAIN_ID_V1_LEN, MD_BLOCK_SIZE, NAME_LEN,
    RECORDS_PER_BLOCK, SB_MAGIC, UUID_LEN, VERSION, VERSION_MIN,
};

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
    // Version 1 kept a 64-byte identity at 0x040 and had no name; versions 2 and 3 keep 0x040
    // zero (version 3's superblock is version 2's: it adds the journal behind the copy).
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

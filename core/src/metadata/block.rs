//! Little-endian field access to one metadata block and its CRC. Offsets are constants or bounded
//! by the block size, and every buffer is checked to be a whole metadata block before these are
//! used; out-of-range access reads zero / writes nothing instead of panicking.

use super::layout as L;
use super::MD_BLOCK_SIZE;
use crate::crc32c;

pub(super) fn get_u32(b: &[u8], off: usize) -> u32 {
    b.get(off..off.saturating_add(4))
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, u32::from_le_bytes)
}

pub(super) fn get_u64(b: &[u8], off: usize) -> u64 {
    b.get(off..off.saturating_add(8))
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, u64::from_le_bytes)
}

pub(super) fn get_array<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    b.get(off..off.saturating_add(N))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .unwrap_or([0; N])
}

pub(super) fn put_bytes(b: &mut [u8], off: usize, v: &[u8]) {
    if let Some(d) = b.get_mut(off..off.saturating_add(v.len())) {
        d.copy_from_slice(v);
    }
}

pub(super) fn put_u32(b: &mut [u8], off: usize, v: u32) {
    put_bytes(b, off, &v.to_le_bytes());
}

pub(super) fn put_u64(b: &mut [u8], off: usize, v: u64) {
    put_bytes(b, off, &v.to_le_bytes());
}

pub(super) fn all_zero(b: &[u8]) -> bool {
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

pub(super) fn block_of(buf: &[u8]) -> Option<&[u8]> {
    buf.get(..MD_BLOCK_SIZE)
}

pub(super) fn block_of_mut(buf: &mut [u8]) -> Option<&mut [u8]> {
    buf.get_mut(..MD_BLOCK_SIZE)
}

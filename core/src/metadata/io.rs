//! Device access: reading and writing the spare, writing a copy and formatting a spare.

use super::block::block_of;
use super::{
    probe, CopyEncoder, CopyError, CopyId, EncodeError, FormatError, IoError, SetInfo, Superblock,
    WriteError, SECTOR_SIZE,
};
use crate::remap::Entry;

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

pub(super) fn read_block<D: SpareRead + ?Sized>(
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

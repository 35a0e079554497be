//! Error Information log page (log identifier 01h): a sequence of 64-byte entries.
//!
//! Entry layout (NVM Express Base Specification, "Error Information Log Entry"):
//!
//! | bytes | field |
//! |-------|-------|
//! | 7:0   | Error Count (unique, increasing; 0 = empty entry) |
//! | 9:8   | Submission Queue ID |
//! | 11:10 | Command ID |
//! | 13:12 | Status Field (bit 0 = phase tag, bits 15:1 = status of the failed command) |
//! | 15:14 | Parameter Error Location |
//! | 23:16 | LBA |
//! | 27:24 | Namespace |
//! | 28    | Vendor Specific Information Available (log page id, 0 = none) |
//! | 29    | Transport Type |
//! | 30    | Command Set Indicator |
//! | 31    | Opcode of the failed command |
//! | 39:32 | Command Specific Information |
//! | 41:40 | Transport Type Specific Information |
//! | 62:42 | reserved |
//! | 63    | Log Page Version |
//!
//! The controller returns as many entries as were asked for (up to Identify's ELPE + 1), newest
//! first; entries whose Error Count is 0 are empty.

use super::{le16, le32, le64, put_le16, put_le32, put_le64, put_u8, u8_at, NvmeError, Page};

/// Size of one Error Information log entry.
pub const ERROR_ENTRY_LEN: usize = 64;

/// One Error Information log entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorLogEntry {
    /// Error Count; 0 marks an empty entry.
    pub error_count: u64,
    /// Submission Queue ID of the failed command (0xFFFF = not specific to a command).
    pub sqid: u16,
    /// Command ID of the failed command (0xFFFF = not specific to a command).
    pub cmdid: u16,
    /// Raw Status Field: bit 0 phase tag, bits 15:1 the command's status.
    pub status_field: u16,
    /// Parameter Error Location (byte in bits 7:0, bit in bits 10:8; 0xFFFF = not applicable).
    pub parm_error_location: u16,
    /// First LBA that experienced the error.
    pub lba: u64,
    /// Namespace of the error.
    pub nsid: u32,
    /// Vendor Specific Information Available: log page id with more information, or 0.
    pub vs: u8,
    /// Transport Type (0 when the error is not transport related).
    pub trtype: u8,
    /// Command Set Indicator of the failed command.
    pub csi: u8,
    /// Opcode of the failed command.
    pub opcode: u8,
    /// Command Specific Information.
    pub cs: u64,
    /// Transport Type Specific Information.
    pub trtype_spec_info: u16,
    /// Log Page Version.
    pub log_page_version: u8,
}

impl ErrorLogEntry {
    /// Decode one 64-byte entry.
    pub fn decode(buf: &[u8]) -> Result<Self, NvmeError> {
        if buf.len() != ERROR_ENTRY_LEN {
            return Err(NvmeError::Length {
                page: Page::ErrorLog,
                expected: ERROR_ENTRY_LEN,
                actual: buf.len(),
            });
        }
        Ok(ErrorLogEntry {
            error_count: le64(buf, 0)?,
            sqid: le16(buf, 8)?,
            cmdid: le16(buf, 10)?,
            status_field: le16(buf, 12)?,
            parm_error_location: le16(buf, 14)?,
            lba: le64(buf, 16)?,
            nsid: le32(buf, 24)?,
            vs: u8_at(buf, 28)?,
            trtype: u8_at(buf, 29)?,
            csi: u8_at(buf, 30)?,
            opcode: u8_at(buf, 31)?,
            cs: le64(buf, 32)?,
            trtype_spec_info: le16(buf, 40)?,
            log_page_version: u8_at(buf, 63)?,
        })
    }

    /// Write the entry into a 64-byte buffer (reserved bytes zeroed); for fixtures.
    pub fn encode(&self, buf: &mut [u8]) -> Result<(), NvmeError> {
        if buf.len() != ERROR_ENTRY_LEN {
            return Err(NvmeError::Length {
                page: Page::ErrorLog,
                expected: ERROR_ENTRY_LEN,
                actual: buf.len(),
            });
        }
        buf.fill(0);
        put_le64(buf, 0, self.error_count)?;
        put_le16(buf, 8, self.sqid)?;
        put_le16(buf, 10, self.cmdid)?;
        put_le16(buf, 12, self.status_field)?;
        put_le16(buf, 14, self.parm_error_location)?;
        put_le64(buf, 16, self.lba)?;
        put_le32(buf, 24, self.nsid)?;
        put_u8(buf, 28, self.vs)?;
        put_u8(buf, 29, self.trtype)?;
        put_u8(buf, 30, self.csi)?;
        put_u8(buf, 31, self.opcode)?;
        put_le64(buf, 32, self.cs)?;
        put_le16(buf, 40, self.trtype_spec_info)?;
        put_u8(buf, 63, self.log_page_version)?;
        Ok(())
    }

    /// True for an unused entry (Error Count 0).
    pub fn is_empty(&self) -> bool {
        self.error_count == 0
    }

    /// Phase tag (bit 0 of the status field).
    pub fn phase_tag(&self) -> u8 {
        (self.status_field & 1) as u8
    }

    /// The failed command's status: the status field without the phase tag (bits 15:1 shifted
    /// down), i.e. SC in bits 7:0, SCT in 10:8, CRD in 12:11, More in 13, DNR in 14.
    pub fn status(&self) -> u16 {
        self.status_field >> 1
    }

    /// Status Code of the failed command.
    pub fn status_code(&self) -> u8 {
        (self.status() & 0xff) as u8
    }

    /// Status Code Type of the failed command.
    pub fn status_code_type(&self) -> u8 {
        ((self.status() >> 8) & 0x7) as u8
    }

    /// Do Not Retry bit of the failed command's status.
    pub fn dnr(&self) -> bool {
        self.status() & (1 << 14) != 0
    }

    /// More bit of the failed command's status.
    pub fn more(&self) -> bool {
        self.status() & (1 << 13) != 0
    }
}

/// A validated Error Information log buffer: `len / 64` entries.
#[derive(Clone, Copy, Debug)]
pub struct ErrorLog<'a> {
    buf: &'a [u8],
}

impl<'a> ErrorLog<'a> {
    /// Check that `buf` holds a whole, non-zero number of 64-byte entries.
    pub fn new(buf: &'a [u8]) -> Result<Self, NvmeError> {
        if buf.is_empty() || !buf.len().is_multiple_of(ERROR_ENTRY_LEN) {
            return Err(NvmeError::EntrySize {
                page: Page::ErrorLog,
                entry: ERROR_ENTRY_LEN,
                actual: buf.len(),
            });
        }
        Ok(ErrorLog { buf })
    }

    /// Number of entries (empty ones included).
    pub fn len(&self) -> usize {
        self.buf.len() / ERROR_ENTRY_LEN
    }

    /// Always false: a validated log has at least one entry slot.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Entry `index`.
    pub fn entry(&self, index: usize) -> Result<ErrorLogEntry, NvmeError> {
        let range = NvmeError::IndexOutOfRange {
            what: "error log entry",
            index,
            limit: self.len(),
        };
        let start = index.checked_mul(ERROR_ENTRY_LEN).ok_or(range)?;
        let end = start.checked_add(ERROR_ENTRY_LEN).ok_or(range)?;
        let raw = self.buf.get(start..end).ok_or(range)?;
        ErrorLogEntry::decode(raw)
    }

    /// All entries in page order (empty ones included).
    pub fn entries(&self) -> impl Iterator<Item = ErrorLogEntry> + 'a {
        self.buf
            .chunks_exact(ERROR_ENTRY_LEN)
            .filter_map(|c| ErrorLogEntry::decode(c).ok())
    }

    /// Entries whose Error Count is non-zero.
    pub fn non_empty(&self) -> impl Iterator<Item = ErrorLogEntry> + 'a {
        self.entries().filter(|e| !e.is_empty())
    }

    /// The largest Error Count in the log (0 if every entry is empty).
    pub fn max_error_count(&self) -> u64 {
        self.entries().map(|e| e.error_count).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry_bytes(count: u64, seed: u8) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..8].copy_from_slice(&count.to_le_bytes());
        b[8..10].copy_from_slice(&(0x0100u16 + seed as u16).to_le_bytes());
        b[10..12].copy_from_slice(&0xBEEFu16.to_le_bytes());
        // status 0x4281 << 1 | phase 1: DNR, SCT 2, SC 0x81 (unrecovered read error)
        b[12..14].copy_from_slice(&((0x4281u16 << 1) | 1).to_le_bytes());
        b[14..16].copy_from_slice(&0x0203u16.to_le_bytes());
        b[16..24].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
        b[24..28].copy_from_slice(&7u32.to_le_bytes());
        b[28] = 0xC1;
        b[29] = 3;
        b[30] = 0;
        b[31] = 0x02; // read
        b[32..40].copy_from_slice(&0xCAFE_F00Du64.to_le_bytes());
        b[40..42].copy_from_slice(&0x0910u16.to_le_bytes());
        b[42..63].fill(0x5A); // reserved garbage
        b[63] = 1;
        b
    }

    #[test]
    fn decodes_entry_fields_at_spec_offsets() {
        let e = ErrorLogEntry::decode(&entry_bytes(42, 3)).unwrap();
        assert_eq!(e.error_count, 42);
        assert_eq!(e.sqid, 0x0103);
        assert_eq!(e.cmdid, 0xBEEF);
        assert_eq!(e.status_field, (0x4281 << 1) | 1);
        assert_eq!(e.phase_tag(), 1);
        assert_eq!(e.status(), 0x4281);
        assert_eq!(e.status_code(), 0x81);
        assert_eq!(e.status_code_type(), 2);
        assert!(e.dnr());
        assert!(!e.more());
        assert_eq!(e.parm_error_location, 0x0203);
        assert_eq!(e.lba, 0x1122_3344_5566_7788);
        assert_eq!(e.nsid, 7);
        assert_eq!(e.vs, 0xC1);
        assert_eq!(e.trtype, 3);
        assert_eq!(e.csi, 0);
        assert_eq!(e.opcode, 0x02);
        assert_eq!(e.cs, 0xCAFE_F00D);
        assert_eq!(e.trtype_spec_info, 0x0910);
        assert_eq!(e.log_page_version, 1);
        assert!(!e.is_empty());
    }

    #[test]
    fn log_of_several_entries_with_empty_ones() {
        let mut buf = [0u8; 4 * 64];
        buf[0..64].copy_from_slice(&entry_bytes(9, 0));
        buf[64..128].copy_from_slice(&entry_bytes(8, 1));
        // entry 2 stays all zero (empty)
        buf[192..256].copy_from_slice(&entry_bytes(5, 3));
        let log = ErrorLog::new(&buf).unwrap();
        assert_eq!(log.len(), 4);
        assert_eq!(log.entries().count(), 4);
        let counts: [u64; 3] = [9, 8, 5];
        assert!(log
            .non_empty()
            .map(|e| e.error_count)
            .eq(counts.iter().copied()));
        assert!(log.entry(2).unwrap().is_empty());
        assert_eq!(log.entry(3).unwrap().sqid, 0x0103);
        assert_eq!(
            log.entry(4),
            Err(NvmeError::IndexOutOfRange {
                what: "error log entry",
                index: 4,
                limit: 4
            })
        );
        assert!(log.entry(usize::MAX).is_err());
        assert_eq!(log.max_error_count(), 9);
    }

    #[test]
    fn rejects_partial_or_empty_buffers() {
        let buf = [0u8; 130];
        for len in [0usize, 1, 63, 65, 127, 129] {
            assert_eq!(
                ErrorLog::new(&buf[..len]).unwrap_err(),
                NvmeError::EntrySize {
                    page: Page::ErrorLog,
                    entry: 64,
                    actual: len
                }
            );
        }
        assert!(ErrorLog::new(&buf[..128]).is_ok());
        assert!(ErrorLogEntry::decode(&buf[..63]).is_err());
        assert!(ErrorLogEntry::decode(&buf[..65]).is_err());
    }

    #[test]
    fn encode_matches_hand_built_layout_except_reserved() {
        let raw = entry_bytes(77, 9);
        let e = ErrorLogEntry::decode(&raw).unwrap();
        let mut out = [0xFFu8; 64];
        e.encode(&mut out).unwrap();
        let mut expect = raw;
        expect[42..63].fill(0);
        assert_eq!(out, expect);
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..700)) {
            match ErrorLog::new(&data) {
                Ok(log) => {
                    prop_assert_eq!(data.len() % 64, 0);
                    prop_assert_eq!(log.entries().count(), data.len() / 64);
                    for i in 0..log.len() + 2 {
                        let _ = log.entry(i);
                    }
                }
                Err(_) => prop_assert!(data.is_empty() || data.len() % 64 != 0),
            }
            let _ = ErrorLogEntry::decode(&data);
        }

        #[test]
        fn round_trip(
            a in (any::<u64>(), any::<u16>(), any::<u16>(), any::<u16>(), any::<u16>(), any::<u64>(), any::<u32>()),
            b in (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<u64>(), any::<u16>(), any::<u8>()),
        ) {
            let e = ErrorLogEntry {
                error_count: a.0, sqid: a.1, cmdid: a.2, status_field: a.3,
                parm_error_location: a.4, lba: a.5, nsid: a.6,
                vs: b.0, trtype: b.1, csi: b.2, opcode: b.3, cs: b.4,
                trtype_spec_info: b.5, log_page_version: b.6,
            };
            let mut buf = [0u8; 64];
            e.encode(&mut buf).unwrap();
            prop_assert_eq!(ErrorLogEntry::decode(&buf).unwrap(), e);
        }
    }
}

//! Decoders (and fixture encoders) for the NVMe pages dm-remap reads.
//!
//! Every decoder takes a byte slice exactly as the controller returned it, checks its length
//! (and magic, where the page has one) and returns either a decoded value or an [`NvmeError`].
//! Nothing here allocates, uses floating point, panics or needs `unsafe`: all reads go through
//! the bounds-checked helpers in this file, which return an error instead of indexing past the
//! end of a buffer.
//!
//! Pages:
//! - [`smart`]: SMART / Health Information (log identifier 02h, 512 bytes).
//! - [`error_log`]: Error Information (log identifier 01h, 64-byte entries).
//! - [`identify`]: Identify Controller data structure (CNS 01h, 4096 bytes).
//! - [`aws`]: the Amazon vendor statistics page (log identifier D0h) of EBS volumes (4096 bytes)
//!   and EC2 instance-store volumes (8192 bytes, with per-I/O-size latency histograms).

pub mod aws;
pub mod error_log;
pub mod identify;
pub mod smart;

use core::fmt;

/// Get Log Page admin opcode.
pub const OPC_GET_LOG_PAGE: u8 = 0x02;
/// Identify admin opcode.
pub const OPC_IDENTIFY: u8 = 0x06;
/// Identify CNS value selecting the Identify Controller data structure.
pub const CNS_CONTROLLER: u8 = 0x01;
/// Namespace identifier meaning "all namespaces / the controller" in Get Log Page.
pub const NSID_ALL: u32 = 0xFFFF_FFFF;

/// Log identifier of the Error Information log page.
pub const LID_ERROR_INFO: u8 = 0x01;
/// Log identifier of the SMART / Health Information log page.
pub const LID_SMART: u8 = 0x02;
/// Log identifier of the Amazon vendor statistics page.
pub const LID_AWS_STATS: u8 = 0xD0;

/// Which page a buffer was meant to hold; carried in errors so they say what failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    /// SMART / Health Information log.
    Smart,
    /// Error Information log.
    ErrorLog,
    /// Identify Controller data structure.
    IdentifyController,
    /// Amazon statistics page of an EBS volume.
    AwsEbs,
    /// Amazon statistics page of an EC2 instance-store volume.
    AwsInstanceStore,
    /// Amazon statistics page whose kind is not known yet (magic not read).
    AwsStats,
}

impl Page {
    /// Short human-readable name of the page.
    pub const fn name(self) -> &'static str {
        match self {
            Page::Smart => "SMART / health log (0x02)",
            Page::ErrorLog => "error information log (0x01)",
            Page::IdentifyController => "identify controller",
            Page::AwsEbs => "EBS statistics page (0xd0)",
            Page::AwsInstanceStore => "instance store statistics page (0xd0)",
            Page::AwsStats => "Amazon statistics page (0xd0)",
        }
    }
}

/// Why a page could not be decoded (or encoded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NvmeError {
    /// The buffer does not have the length the page requires.
    Length {
        /// Page being decoded.
        page: Page,
        /// Required length in bytes.
        expected: usize,
        /// Length of the buffer handed in.
        actual: usize,
    },
    /// The buffer length is not a non-zero multiple of the page's entry size.
    EntrySize {
        /// Page being decoded.
        page: Page,
        /// Entry size in bytes.
        entry: usize,
        /// Length of the buffer handed in.
        actual: usize,
    },
    /// The page's magic number is not one this decoder knows.
    BadMagic {
        /// Page being decoded.
        page: Page,
        /// Magic value found in the buffer.
        found: u32,
    },
    /// The page's magic belongs to a different kind of device than the one expected.
    MagicMismatch {
        /// Page that was expected.
        page: Page,
        /// Magic of the expected page.
        expected: u32,
        /// Magic found in the buffer.
        found: u32,
    },
    /// A count field in the page is larger than the page has room for.
    CountTooLarge {
        /// Page being decoded.
        page: Page,
        /// Which field.
        field: &'static str,
        /// Value found.
        found: u64,
        /// Largest value the layout allows.
        max: u64,
    },
    /// A read or write would have gone past the end of the buffer. The length checks make this
    /// unreachable for well-formed calls; it exists so no access can panic.
    OutOfBounds {
        /// Byte offset of the access.
        offset: usize,
        /// Size of the access in bytes.
        size: usize,
        /// Length of the buffer.
        len: usize,
    },
    /// An index argument (entry, bin or histogram number) is outside the page's range.
    IndexOutOfRange {
        /// What was indexed.
        what: &'static str,
        /// Index passed.
        index: usize,
        /// Number of valid indices.
        limit: usize,
    },
}

impl fmt::Display for NvmeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            NvmeError::Length {
                page,
                expected,
                actual,
            } => write!(
                f,
                "{}: buffer is {} bytes, the page is {} bytes",
                page.name(),
                actual,
                expected
            ),
            NvmeError::EntrySize {
                page,
                entry,
                actual,
            } => write!(
                f,
                "{}: buffer is {} bytes, not a non-zero multiple of the {}-byte entry size",
                page.name(),
                actual,
                entry
            ),
            NvmeError::BadMagic { page, found } => {
                write!(f, "{}: unknown magic 0x{:08x}", page.name(), found)
            }
            NvmeError::MagicMismatch {
                page,
                expected,
                found,
            } => write!(
                f,
                "{}: magic 0x{:08x} does not match the expected 0x{:08x}",
                page.name(),
                found,
                expected
            ),
            NvmeError::CountTooLarge {
                page,
                field,
                found,
                max,
            } => write!(
                f,
                "{}: {} is {}, the layout allows at most {}",
                page.name(),
                field,
                found,
                max
            ),
            NvmeError::OutOfBounds { offset, size, len } => write!(
                f,
                "access of {} bytes at offset {} is outside a {}-byte buffer",
                size, offset, len
            ),
            NvmeError::IndexOutOfRange { what, index, limit } => {
                write!(f, "{} index {} is out of range (0..{})", what, index, limit)
            }
        }
    }
}

/// Require `buf.len() == expected`.
pub(crate) fn check_len(page: Page, buf: &[u8], expected: usize) -> Result<(), NvmeError> {
    if buf.len() == expected {
        Ok(())
    } else {
        Err(NvmeError::Length {
            page,
            expected,
            actual: buf.len(),
        })
    }
}

/// The `N` bytes at `off`, or an error if they are not all inside `buf`.
pub(crate) fn bytes_at<const N: usize>(buf: &[u8], off: usize) -> Result<[u8; N], NvmeError> {
    let oob = NvmeError::OutOfBounds {
        offset: off,
        size: N,
        len: buf.len(),
    };
    let end = off.checked_add(N).ok_or(oob)?;
    let s = buf.get(off..end).ok_or(oob)?;
    <[u8; N]>::try_from(s).map_err(|_| oob)
}

pub(crate) fn u8_at(buf: &[u8], off: usize) -> Result<u8, NvmeError> {
    buf.get(off).copied().ok_or(NvmeError::OutOfBounds {
        offset: off,
        size: 1,
        len: buf.len(),
    })
}

pub(crate) fn le16(buf: &[u8], off: usize) -> Result<u16, NvmeError> {
    bytes_at::<2>(buf, off).map(u16::from_le_bytes)
}

pub(crate) fn le32(buf: &[u8], off: usize) -> Result<u32, NvmeError> {
    bytes_at::<4>(buf, off).map(u32::from_le_bytes)
}

pub(crate) fn le64(buf: &[u8], off: usize) -> Result<u64, NvmeError> {
    bytes_at::<8>(buf, off).map(u64::from_le_bytes)
}

pub(crate) fn le128(buf: &[u8], off: usize) -> Result<u128, NvmeError> {
    bytes_at::<16>(buf, off).map(u128::from_le_bytes)
}

/// Copy `src` into `buf` at `off`, or fail without writing anything.
pub(crate) fn put_bytes(buf: &mut [u8], off: usize, src: &[u8]) -> Result<(), NvmeError> {
    let len = buf.len();
    let oob = NvmeError::OutOfBounds {
        offset: off,
        size: src.len(),
        len,
    };
    let end = off.checked_add(src.len()).ok_or(oob)?;
    let dst = buf.get_mut(off..end).ok_or(oob)?;
    dst.copy_from_slice(src);
    Ok(())
}

pub(crate) fn put_u8(buf: &mut [u8], off: usize, v: u8) -> Result<(), NvmeError> {
    put_bytes(buf, off, &[v])
}

pub(crate) fn put_le16(buf: &mut [u8], off: usize, v: u16) -> Result<(), NvmeError> {
    put_bytes(buf, off, &v.to_le_bytes())
}

pub(crate) fn put_le32(buf: &mut [u8], off: usize, v: u32) -> Result<(), NvmeError> {
    put_bytes(buf, off, &v.to_le_bytes())
}

pub(crate) fn put_le64(buf: &mut [u8], off: usize, v: u64) -> Result<(), NvmeError> {
    put_bytes(buf, off, &v.to_le_bytes())
}

pub(crate) fn put_le128(buf: &mut [u8], off: usize, v: u128) -> Result<(), NvmeError> {
    put_bytes(buf, off, &v.to_le_bytes())
}

/// A fixed-width ASCII field (serial number, model, firmware revision, NQN) with trailing
/// spaces and NUL bytes trimmed off.
///
/// The bytes are kept as the device sent them (minus the trimmed tail); [`AsciiField::as_str`]
/// returns them as `&str` when they are valid UTF-8, and `Display` prints printable ASCII
/// as-is and every other byte as `.`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AsciiField<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> AsciiField<N> {
    /// An empty field.
    pub const EMPTY: Self = AsciiField {
        bytes: [0; N],
        len: 0,
    };

    /// Build a field from raw bytes: at most `N` bytes are taken, then trailing spaces and NULs
    /// are trimmed.
    pub fn from_raw(raw: &[u8]) -> Self {
        let mut bytes = [0u8; N];
        let mut len = 0;
        for (dst, src) in bytes.iter_mut().zip(raw.iter()) {
            *dst = *src;
            len += 1;
        }
        while len > 0 {
            match bytes.get(len - 1) {
                Some(b' ') | Some(0) => len -= 1,
                _ => break,
            }
        }
        // Keep the storage canonical (zero past the end) so equal fields compare equal.
        for b in bytes.iter_mut().skip(len) {
            *b = 0;
        }
        AsciiField { bytes, len }
    }

    /// The trimmed bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }

    /// The trimmed bytes as a string, if they are valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        core::str::from_utf8(self.as_bytes()).ok()
    }

    /// Number of bytes after trimming.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing is left after trimming.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Write the field padded with spaces to its full width `N` into `out` (the on-wire form).
    pub(crate) fn encode(&self, buf: &mut [u8], off: usize) -> Result<(), NvmeError> {
        let mut padded = [b' '; N];
        for (dst, src) in padded.iter_mut().zip(self.as_bytes().iter()) {
            *dst = *src;
        }
        put_bytes(buf, off, &padded)
    }
}

impl<const N: usize> fmt::Display for AsciiField<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        for &b in self.as_bytes() {
            let c = if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            };
            f.write_char(c)?;
        }
        Ok(())
    }
}

impl<const N: usize> fmt::Debug for AsciiField<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self)
    }
}

/// Name of an NVMe completion status, as the Linux passthrough ioctl reports it (status code in
/// bits 7:0, status code type in bits 10:8; the CRD/More/DNR bits above are ignored).
///
/// Covers the generic command status values and the command-specific ones an admin Identify or
/// Get Log Page can return; anything else is "Unknown status".
pub fn status_name(status: u16) -> &'static str {
    let sct = (status >> 8) & 0x7;
    let sc = status & 0xff;
    match (sct, sc) {
        (0, 0x00) => "Successful Completion",
        (0, 0x01) => "Invalid Command Opcode",
        (0, 0x02) => "Invalid Field in Command",
        (0, 0x03) => "Command ID Conflict",
        (0, 0x04) => "Data Transfer Error",
        (0, 0x05) => "Commands Aborted due to Power Loss Notification",
        (0, 0x06) => "Internal Error",
        (0, 0x07) => "Command Abort Requested",
        (0, 0x08) => "Command Aborted due to SQ Deletion",
        (0, 0x0b) => "Invalid Namespace or Format",
        (0, 0x0c) => "Command Sequence Error",
        (0, 0x0f) => "Invalid Use of Controller Memory Buffer",
        (0, 0x10) => "Invalid PRP Offset",
        (0, 0x15) => "Operation Denied",
        (0, 0x1d) => "Command Interrupted",
        (0, 0x80) => "LBA Out of Range",
        (0, 0x81) => "Capacity Exceeded",
        (0, 0x82) => "Namespace Not Ready",
        (1, 0x09) => "Invalid Log Page",
        (2, 0x81) => "Unrecovered Read Error",
        (2, 0x86) => "Access Denied",
        _ => "Unknown status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_field_trims_trailing_spaces_and_nuls_only() {
        let f = AsciiField::<8>::from_raw(b" AB C \0 ");
        assert_eq!(f.as_bytes(), b" AB C");
        assert_eq!(f.len(), 5);
        assert_eq!(f.as_str(), Some(" AB C"));
        let e = AsciiField::<4>::from_raw(b"    ");
        assert!(e.is_empty());
        let short = AsciiField::<4>::from_raw(b"ab");
        assert_eq!(short.as_bytes(), b"ab");
        // Longer input is cut at N.
        let long = AsciiField::<3>::from_raw(b"abcdef");
        assert_eq!(long.as_bytes(), b"abc");
    }

    #[test]
    fn ascii_field_non_utf8_is_reported_and_displayed_safely() {
        extern crate std;
        use std::string::ToString;
        let f = AsciiField::<4>::from_raw(&[b'a', 0xff, b'b', b' ']);
        assert_eq!(f.as_str(), None);
        assert_eq!(f.to_string(), "a.b");
    }

    #[test]
    fn helpers_refuse_out_of_bounds() {
        let buf = [1u8, 2, 3];
        assert_eq!(le16(&buf, 1), Ok(0x0302));
        assert_eq!(
            le16(&buf, 2),
            Err(NvmeError::OutOfBounds {
                offset: 2,
                size: 2,
                len: 3
            })
        );
        assert!(le64(&buf, usize::MAX).is_err());
        let mut out = [0u8; 3];
        assert!(put_le32(&mut out, 0, 7).is_err());
        assert_eq!(out, [0, 0, 0], "a failed write leaves the buffer untouched");
    }

    #[test]
    fn status_names() {
        assert_eq!(status_name(0x0002), "Invalid Field in Command");
        // DNR (bit 14) and More (bit 13) do not change the name.
        assert_eq!(status_name(0x4002), "Invalid Field in Command");
        assert_eq!(status_name(0x0109), "Invalid Log Page");
        assert_eq!(status_name(0x07ff), "Unknown status");
    }

    #[test]
    fn error_display_names_the_page() {
        extern crate std;
        use std::string::ToString;
        let e = NvmeError::Length {
            page: Page::Smart,
            expected: 512,
            actual: 12,
        };
        assert_eq!(
            e.to_string(),
            "SMART / health log (0x02): buffer is 12 bytes, the page is 512 bytes"
        );
        let m = NvmeError::BadMagic {
            page: Page::AwsStats,
            found: 0xdead_beef,
        };
        assert_eq!(
            m.to_string(),
            "Amazon statistics page (0xd0): unknown magic 0xdeadbeef"
        );
    }
}

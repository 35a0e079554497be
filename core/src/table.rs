//! Parsing of the `remap` table line, shared by the kernel constructor and userspace.
//!
//! Table line (after `<start> <len> remap`):
//! `<main_dev> <main_offset> <spare_dev> [<#opt_args> <opt>...]` with options `block_size:<bytes>`,
//! `read_retries:<n>` and `main_id:<id>` (the main device's stable identity, recorded in and
//! checked against the spare's metadata). Device arguments are resolved by the caller (the kernel's
//! `dm_get_device`); this module validates everything else and names each problem.

use core::ffi::CStr;

/// Default remap granularity in bytes.
pub const DEFAULT_BLOCK_SIZE: u32 = 4096;
/// Smallest remap granularity: one 512-byte sector.
pub const MIN_BLOCK_SIZE: u32 = 512;
/// Largest remap granularity.
pub const MAX_BLOCK_SIZE: u32 = 1 << 20;
/// Default number of retries of a failed read.
pub const DEFAULT_READ_RETRIES: u32 = 3;
/// Most retries a table may ask for.
pub const MAX_READ_RETRIES: u32 = 16;
/// Number of positional arguments.
pub const POSITIONAL_ARGS: usize = 3;
/// Longest `main_id` value in bytes (the superblock's `main_id` field).
pub const MAX_MAIN_ID_LEN: usize = 256;

/// What is wrong with a table line. Each variant has a message for `ti->error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    /// Fewer than three arguments, or arguments after the options.
    ArgCount,
    /// The main offset is not a decimal sector number.
    BadOffset,
    /// `<#opt_args>` is not a number or does not match the arguments that follow.
    OptCount,
    /// An option that is not `block_size` or `read_retries`.
    UnknownOption,
    /// An option given twice.
    DuplicateOption,
    /// `block_size` is not a power of two in range.
    BadBlockSize,
    /// `read_retries` is not a number in range.
    BadReadRetries,
    /// `main_id` is empty, too long or holds a character outside `!`..`~`.
    BadMainId,
}

impl TableError {
    /// The message the constructor reports (`ti->error`).
    pub fn message(self) -> &'static CStr {
        match self {
            TableError::ArgCount => {
                c"Invalid argument count: need <main_dev> <main_offset> <spare_dev> [<#opts> <opt>...]"
            }
            TableError::BadOffset => c"Invalid main device offset: expected a sector number",
            TableError::OptCount => {
                c"Invalid optional argument count: <#opts> must equal the number of options given"
            }
            TableError::UnknownOption => {
                c"Unknown option: expected block_size:<bytes>, read_retries:<n> or main_id:<id>"
            }
            TableError::DuplicateOption => c"Option given more than once",
            TableError::BadBlockSize => {
                c"Invalid block_size: must be a power of two from 512 to 1048576 bytes"
            }
            TableError::BadReadRetries => c"Invalid read_retries: must be a number from 0 to 16",
            TableError::BadMainId => {
                c"Invalid main_id: must be 1 to 256 printable ASCII characters without spaces"
            }
        }
    }
}

impl core::fmt::Display for TableError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.message().to_str().unwrap_or("invalid table"))
    }
}

/// Parse an unsigned decimal number: digits only, no sign, no spaces, no overflow.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

/// Optional settings of a table line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Remap granularity in bytes (power of two).
    pub block_size: u32,
    /// Retries of a failed read before the block is declared unreadable.
    pub read_retries: u32,
    /// `block_size` appeared in the table line.
    pub block_size_given: bool,
    /// `read_retries` appeared in the table line.
    pub read_retries_given: bool,
    /// `main_id` value, `main_id_len` bytes long (0: not given).
    pub main_id_buf: [u8; MAX_MAIN_ID_LEN],
    /// Length of the `main_id` value.
    pub main_id_len: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            block_size: DEFAULT_BLOCK_SIZE,
            read_retries: DEFAULT_READ_RETRIES,
            block_size_given: false,
            read_retries_given: false,
            main_id_buf: [0; MAX_MAIN_ID_LEN],
            main_id_len: 0,
        }
    }
}

impl Options {
    /// Number of options given, as `<#opt_args>` of the table line.
    pub fn count_given(&self) -> u32 {
        u32::from(self.block_size_given)
            + u32::from(self.read_retries_given)
            + u32::from(self.main_id().is_some())
    }

    /// The `main_id` value, if the table line has one.
    pub fn main_id(&self) -> Option<&[u8]> {
        match self.main_id_buf.get(..self.main_id_len) {
            Some(id) if !id.is_empty() => Some(id),
            _ => None,
        }
    }

    /// Write the options part of the table line (` <n> opt...`, empty when none were given).
    pub fn emit(&self, w: &mut dyn core::fmt::Write) -> core::fmt::Result {
        let n = self.count_given();
        if n == 0 {
            return Ok(());
        }
        write!(w, " {}", n)?;
        if self.block_size_given {
            write!(w, " block_size:{}", self.block_size)?;
        }
        if self.read_retries_given {
            write!(w, " read_retries:{}", self.read_retries)?;
        }
        if let Some(id) = self.main_id() {
            // Validated as printable ASCII when parsed.
            w.write_str(" main_id:")?;
            w.write_str(core::str::from_utf8(id).map_err(|_| core::fmt::Error)?)?;
        }
        Ok(())
    }

    /// Block size in 512-byte sectors.
    pub fn block_sectors(&self) -> u64 {
        u64::from(self.block_size >> 9)
    }
}

/// A `main_id` value: 1 to [`MAX_MAIN_ID_LEN`] bytes, each printable ASCII other than space.
pub fn valid_main_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_MAIN_ID_LEN && id.iter().all(|&c| (0x21..=0x7e).contains(&c))
}

fn parse_option(opts: &mut Options, opt: &[u8]) -> Result<(), TableError> {
    let colon = opt
        .iter()
        .position(|&c| c == b':')
        .ok_or(TableError::UnknownOption)?;
    let (key, value) = (&opt[..colon], &opt[colon + 1..]);
    match key {
        b"block_size" => {
            if opts.block_size_given {
                return Err(TableError::DuplicateOption);
            }
            let v = parse_u64(value).ok_or(TableError::BadBlockSize)?;
            if !v.is_power_of_two()
                || v < u64::from(MIN_BLOCK_SIZE)
                || v > u64::from(MAX_BLOCK_SIZE)
            {
                return Err(TableError::BadBlockSize);
            }
            opts.block_size = v as u32;
            opts.block_size_given = true;
        }
        b"read_retries" => {
            if opts.read_retries_given {
                return Err(TableError::DuplicateOption);
            }
            let v = parse_u64(value).ok_or(TableError::BadReadRetries)?;
            if v > u64::from(MAX_READ_RETRIES) {
                return Err(TableError::BadReadRetries);
            }
            opts.read_retries = v as u32;
            opts.read_retries_given = true;
        }
        b"main_id" => {
            if opts.main_id().is_some() {
                return Err(TableError::DuplicateOption);
            }
            if !valid_main_id(value) {
                return Err(TableError::BadMainId);
            }
            opts.main_id_buf
                .get_mut(..value.len())
                .ok_or(TableError::BadMainId)?
                .copy_from_slice(value);
            opts.main_id_len = value.len();
        }
        _ => return Err(TableError::UnknownOption),
    }
    Ok(())
}

/// The validated non-device parts of a table line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableArgs {
    /// Offset on the main device, in sectors.
    pub main_offset: u64,
    /// Optional settings.
    pub options: Options,
}

/// Check the table arguments (`args[0]` main device, `args[1]` offset, `args[2]` spare device,
/// then options). Device names are not looked at; the caller resolves them.
pub fn parse_args<'a, I>(args: I) -> Result<TableArgs, TableError>
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: ExactSizeIterator,
{
    let mut it = args.into_iter();
    let argc = it.len();
    if argc < POSITIONAL_ARGS {
        return Err(TableError::ArgCount);
    }
    let _main = it.next();
    let main_offset = it.next().and_then(parse_u64).ok_or(TableError::BadOffset)?;
    let _spare = it.next();
    let mut options = Options::default();
    if let Some(n) = it.next() {
        let n = parse_u64(n).ok_or(TableError::OptCount)?;
        let rest = (argc - POSITIONAL_ARGS - 1) as u64;
        if n != rest {
            return Err(TableError::OptCount);
        }
        for opt in it {
            parse_option(&mut options, opt)?;
        }
    }
    Ok(TableArgs {
        main_offset,
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<TableArgs, TableError> {
        let mut words = [&b""[..]; 16];
        let mut n = 0;
        for w in line.split_whitespace() {
            words[n] = w.as_bytes();
            n += 1;
        }
        parse_args(words[..n].iter().copied())
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        for bad in [&b""[..], b"-1", b"+1", b"1x", b" 1", b"0x10", b"1.5"] {
            assert_eq!(parse_u64(bad), None, "{:?}", bad);
        }
    }

    #[test]
    fn minimal_line_takes_defaults() {
        let t = parse("/dev/a 2048 /dev/b").unwrap();
        assert_eq!(t.main_offset, 2048);
        assert_eq!(t.options, Options::default());
        assert_eq!(t.options.count_given(), 0);
    }

    #[test]
    fn options_parse_and_emit_canonically() {
        let t = parse("/dev/a 0 /dev/b 2 read_retries:5 block_size:65536").unwrap();
        assert_eq!(t.options.block_size, 65536);
        assert_eq!(t.options.read_retries, 5);
        let mut s = [0u8; 64];
        let mut w = Buf { b: &mut s, n: 0 };
        t.options.emit(&mut w).unwrap();
        let n = w.n;
        assert_eq!(&s[..n], b" 2 block_size:65536 read_retries:5");
        assert_eq!(
            parse("/dev/a 0 /dev/b 0").unwrap().options,
            Options::default()
        );
    }

    #[test]
    fn main_id_parses_and_emits() {
        let t =
            parse("/dev/a 0 /dev/b 2 main_id:nvme-eui.0025385b71b2c3d4 block_size:8192").unwrap();
        assert_eq!(t.options.main_id(), Some(&b"nvme-eui.0025385b71b2c3d4"[..]));
        assert_eq!(t.options.count_given(), 2);
        let mut s = [0u8; 128];
        let mut w = Buf { b: &mut s, n: 0 };
        t.options.emit(&mut w).unwrap();
        let n = w.n;
        assert_eq!(
            &s[..n],
            &b" 2 block_size:8192 main_id:nvme-eui.0025385b71b2c3d4"[..]
        );
        // Longest accepted, one longer refused, control and non-ASCII bytes refused.
        let long = [b'x'; MAX_MAIN_ID_LEN + 1];
        let mut opt = [0u8; 8 + MAX_MAIN_ID_LEN + 1];
        opt[..8].copy_from_slice(b"main_id:");
        opt[8..].copy_from_slice(&long);
        let args = |o: &'static [u8]| [&b"/dev/a"[..], b"0", b"/dev/b", b"1", o];
        let ok = parse_args([&b"/dev/a"[..], b"0", b"/dev/b", b"1", &opt[..opt.len() - 1]]);
        assert_eq!(
            ok.unwrap().options.main_id().map(|i| i.len()),
            Some(MAX_MAIN_ID_LEN)
        );
        assert_eq!(
            parse_args([&b"/dev/a"[..], b"0", b"/dev/b", b"1", &opt[..]]),
            Err(TableError::BadMainId)
        );
        for bad in [
            &b"main_id:a\x01b"[..],
            b"main_id:caf\xc3\xa9",
            b"main_id:a\tb",
        ] {
            assert_eq!(
                parse_args(args(bad)),
                Err(TableError::BadMainId),
                "{:?}",
                bad
            );
        }
    }

    struct Buf<'a> {
        b: &'a mut [u8],
        n: usize,
    }
    impl core::fmt::Write for Buf<'_> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let end = self.n + s.len();
            self.b
                .get_mut(self.n..end)
                .ok_or(core::fmt::Error)?
                .copy_from_slice(s.as_bytes());
            self.n = end;
            Ok(())
        }
    }

    #[test]
    fn every_bad_line_is_named() {
        use TableError::*;
        let cases = [
            ("", ArgCount),
            ("/dev/a", ArgCount),
            ("/dev/a 0", ArgCount),
            ("/dev/a x /dev/b", BadOffset),
            ("/dev/a -5 /dev/b", BadOffset),
            ("/dev/a 0 /dev/b x", OptCount),
            ("/dev/a 0 /dev/b 1", OptCount),
            ("/dev/a 0 /dev/b 1 block_size:4096 read_retries:1", OptCount),
            ("/dev/a 0 /dev/b 2 block_size:4096", OptCount),
            ("/dev/a 0 /dev/b 1 colour:blue", UnknownOption),
            ("/dev/a 0 /dev/b 1 block_size", UnknownOption),
            ("/dev/a 0 /dev/b 1 block_size:3000", BadBlockSize),
            ("/dev/a 0 /dev/b 1 block_size:256", BadBlockSize),
            ("/dev/a 0 /dev/b 1 block_size:2097152", BadBlockSize),
            ("/dev/a 0 /dev/b 1 block_size:", BadBlockSize),
            ("/dev/a 0 /dev/b 1 read_retries:17", BadReadRetries),
            ("/dev/a 0 /dev/b 1 read_retries:-1", BadReadRetries),
            (
                "/dev/a 0 /dev/b 2 read_retries:1 read_retries:2",
                DuplicateOption,
            ),
            ("/dev/a 0 /dev/b 1 main_id:", BadMainId),
            ("/dev/a 0 /dev/b 2 main_id:a main_id:a", DuplicateOption),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line), Err(want), "line {:?}", line);
            assert!(!want.message().to_bytes().is_empty());
        }
    }
}

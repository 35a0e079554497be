//! Amazon vendor statistics page (log identifier D0h) of EBS volumes and EC2 instance-store
//! volumes.
//!
//! Both kinds share a 4096-byte base layout (little-endian). EBS volumes return just the base
//! (magic 0x3C23B510); instance-store volumes (model "Amazon EC2 NVMe Instance Storage", magic
//! 0xEC2C0D7E) return 8192 bytes: the base followed by latency histograms broken down by I/O
//! size.
//!
//! | bytes       | field |
//! |-------------|-------|
//! | 3:0         | magic |
//! | 7:4         | version (1 = the instance-store I/O-size histograms are present) |
//! | 15:8        | total read operations |
//! | 23:16       | total write operations |
//! | 31:24       | total bytes read |
//! | 39:32       | total bytes written |
//! | 47:40       | total read time (µs) |
//! | 55:48       | total write time (µs) |
//! | 63:56       | time IOPS demand exceeded the EBS volume's provisioned IOPS (µs) |
//! | 71:64       | time throughput demand exceeded the EBS volume's provisioned throughput (µs) |
//! | 79:72       | time IOPS demand exceeded the instance's limit (µs); on instance store, the volume's |
//! | 87:80       | time throughput demand exceeded the instance's limit (µs); on instance store, the volume's |
//! | 95:88       | queue length (point in time) |
//! | 511:96      | reserved |
//! | 2055:512    | read latency histogram: number of bins (u64), then 64 bins of {lower u64, upper u64, count u32, reserved u32} (µs bounds) |
//! | 3599:2056   | write latency histogram, same layout |
//! | 3603:3600   | number of I/O-size histograms (≤ 8) |
//! | 3635:3604   | upper I/O-size bound of each of the 8 histograms (bytes; u32::MAX = no bound) |
//! | 4095:3636   | reserved |
//! | 8191:4096   | instance store only: 8 × {32 read counts u64, 32 write counts u64} |
//!
//! I/O-size histogram `i` covers sizes in (bound[i-1], bound[i]] (the first starts at 0) and
//! uses the bin bounds of the write latency histogram. The decoder rejects bin and histogram
//! counts larger than the layout has room for instead of clamping them.

use super::{check_len, le32, le64, put_le32, put_le64, NvmeError, Page};

/// Magic of the EBS statistics page.
pub const EBS_MAGIC: u32 = 0x3C23_B510;
/// Magic of the EC2 instance-store statistics page.
pub const INSTANCE_STORE_MAGIC: u32 = 0xEC2C_0D7E;
/// Length of the EBS statistics page.
pub const EBS_PAGE_LEN: usize = 4096;
/// Length of the instance-store statistics page.
pub const INSTANCE_STORE_PAGE_LEN: usize = 8192;
/// Model number prefix of EBS volumes.
pub const EBS_MODEL: &str = "Amazon Elastic Block Store";
/// Model number prefix of EC2 instance-store volumes.
pub const INSTANCE_STORE_MODEL: &str = "Amazon EC2 NVMe Instance Storage";
/// Page version that carries the per-I/O-size histograms.
pub const DETAIL_IO_VERSION: u32 = 1;
/// Bins per latency histogram in the base page.
pub const MAX_BINS: usize = 64;
/// Number of I/O-size histograms the instance-store page has room for.
pub const MAX_IO_SIZE_HISTOGRAMS: usize = 8;
/// Count slots per direction in each I/O-size histogram.
pub const MAX_DETAIL_BINS: usize = 32;

const OFF_VERSION: usize = 4;
const OFF_COUNTERS: usize = 8;
const OFF_READ_HIST: usize = 512;
const OFF_WRITE_HIST: usize = 2056;
const HIST_LEN: usize = 8 + MAX_BINS * BIN_LEN;
const BIN_LEN: usize = 24;
const OFF_NUM_HISTS: usize = 3600;
const OFF_IO_SIZES: usize = 3604;
const OFF_DETAIL: usize = 4096;
const DETAIL_HIST_LEN: usize = 2 * MAX_DETAIL_BINS * 8;

/// Which kind of Amazon volume a page (or a controller) belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AwsDeviceKind {
    /// Amazon EBS volume.
    Ebs,
    /// Amazon EC2 instance-store volume.
    InstanceStore,
}

impl AwsDeviceKind {
    /// Magic number of this kind's statistics page.
    pub const fn magic(self) -> u32 {
        match self {
            AwsDeviceKind::Ebs => EBS_MAGIC,
            AwsDeviceKind::InstanceStore => INSTANCE_STORE_MAGIC,
        }
    }

    /// Length in bytes of this kind's statistics page.
    pub const fn page_len(self) -> usize {
        match self {
            AwsDeviceKind::Ebs => EBS_PAGE_LEN,
            AwsDeviceKind::InstanceStore => INSTANCE_STORE_PAGE_LEN,
        }
    }

    /// The [`Page`] this kind's statistics page is reported as in errors.
    pub const fn page(self) -> Page {
        match self {
            AwsDeviceKind::Ebs => Page::AwsEbs,
            AwsDeviceKind::InstanceStore => Page::AwsInstanceStore,
        }
    }

    /// Short name ("ebs" / "instance-store").
    pub const fn name(self) -> &'static str {
        match self {
            AwsDeviceKind::Ebs => "ebs",
            AwsDeviceKind::InstanceStore => "instance-store",
        }
    }

    /// The kind whose page carries `magic`.
    pub const fn from_magic(magic: u32) -> Option<Self> {
        match magic {
            EBS_MAGIC => Some(AwsDeviceKind::Ebs),
            INSTANCE_STORE_MAGIC => Some(AwsDeviceKind::InstanceStore),
            _ => None,
        }
    }
}

/// The kind a controller claims to be from its PCI vendor id and model number: the vendor must
/// be Amazon's (0x1D0F) and the model must start with the EBS or instance-store model string.
/// This is a guess to be confirmed by the magic of the page the controller returns.
pub fn expected_kind(vid: u16, model: &[u8]) -> Option<AwsDeviceKind> {
    if vid != super::identify::VID_AMAZON {
        return None;
    }
    if model.starts_with(INSTANCE_STORE_MODEL.as_bytes()) {
        Some(AwsDeviceKind::InstanceStore)
    } else if model.starts_with(EBS_MODEL.as_bytes()) {
        Some(AwsDeviceKind::Ebs)
    } else {
        None
    }
}

/// Read or write direction of a latency histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Read I/O.
    Read,
    /// Write I/O.
    Write,
}

/// Scalar fields of the statistics page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AwsStatsHeader {
    /// Page version.
    pub version: u32,
    /// Completed read operations.
    pub total_read_ops: u64,
    /// Completed write operations.
    pub total_write_ops: u64,
    /// Bytes read.
    pub total_read_bytes: u64,
    /// Bytes written.
    pub total_write_bytes: u64,
    /// Time spent in completed reads, µs.
    pub total_read_time: u64,
    /// Time spent in completed writes, µs.
    pub total_write_time: u64,
    /// Time IOPS demand exceeded the EBS volume's provisioned IOPS, µs.
    pub ebs_volume_performance_exceeded_iops: u64,
    /// Time throughput demand exceeded the EBS volume's provisioned throughput, µs.
    pub ebs_volume_performance_exceeded_tp: u64,
    /// Time IOPS demand exceeded the instance's EBS limit (instance store: the volume's), µs.
    pub ec2_instance_ebs_performance_exceeded_iops: u64,
    /// Time throughput demand exceeded the instance's EBS limit (instance store: the volume's), µs.
    pub ec2_instance_ebs_performance_exceeded_tp: u64,
    /// Queue length at the time of the read.
    pub volume_queue_length: u64,
    /// Number of I/O-size histograms (instance store, version 1).
    pub num_of_hists: u32,
    /// Upper I/O-size bound of each I/O-size histogram, bytes.
    pub hist_io_sizes: [u32; MAX_IO_SIZE_HISTOGRAMS],
}

impl AwsStatsHeader {
    fn counters(&self) -> [u64; 11] {
        [
            self.total_read_ops,
            self.total_write_ops,
            self.total_read_bytes,
            self.total_write_bytes,
            self.total_read_time,
            self.total_write_time,
            self.ebs_volume_performance_exceeded_iops,
            self.ebs_volume_performance_exceeded_tp,
            self.ec2_instance_ebs_performance_exceeded_iops,
            self.ec2_instance_ebs_performance_exceeded_tp,
            self.volume_queue_length,
        ]
    }

    fn decode(buf: &[u8]) -> Result<Self, NvmeError> {
        let mut c = [0u64; 11];
        let mut off = OFF_COUNTERS;
        for v in c.iter_mut() {
            *v = le64(buf, off)?;
            off += 8;
        }
        let mut hist_io_sizes = [0u32; MAX_IO_SIZE_HISTOGRAMS];
        let mut off = OFF_IO_SIZES;
        for v in hist_io_sizes.iter_mut() {
            *v = le32(buf, off)?;
            off += 4;
        }
        let [total_read_ops, total_write_ops, total_read_bytes, total_write_bytes, total_read_time, total_write_time, ebs_volume_performance_exceeded_iops, ebs_volume_performance_exceeded_tp, ec2_instance_ebs_performance_exceeded_iops, ec2_instance_ebs_performance_exceeded_tp, volume_queue_length] =
            c;
        Ok(AwsStatsHeader {
            version: le32(buf, OFF_VERSION)?,
            total_read_ops,
            total_write_ops,
            total_read_bytes,
            total_write_bytes,
            total_read_time,
            total_write_time,
            ebs_volume_performance_exceeded_iops,
            ebs_volume_performance_exceeded_tp,
            ec2_instance_ebs_performance_exceeded_iops,
            ec2_instance_ebs_performance_exceeded_tp,
            volume_queue_length,
            num_of_hists: le32(buf, OFF_NUM_HISTS)?,
            hist_io_sizes,
        })
    }
}

/// One latency bin: I/Os whose latency fell in [lower, upper) µs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencyBin {
    /// Lower bound, µs.
    pub lower: u64,
    /// Upper bound, µs.
    pub upper: u64,
    /// Number of I/Os.
    pub count: u32,
}

/// A validated statistics page (borrowed; nothing is copied until a field is read).
#[derive(Clone, Copy, Debug)]
pub struct AwsStats<'a> {
    buf: &'a [u8],
    kind: AwsDeviceKind,
    header: AwsStatsHeader,
    read_bins: usize,
    write_bins: usize,
}

fn bins_at(buf: &[u8], page: Page, off: usize, field: &'static str) -> Result<usize, NvmeError> {
    let n = le64(buf, off)?;
    if n > MAX_BINS as u64 {
        return Err(NvmeError::CountTooLarge {
            page,
            field,
            found: n,
            max: MAX_BINS as u64,
        });
    }
    // n <= 64, so the conversion is exact.
    Ok(n as usize)
}

impl<'a> AwsStats<'a> {
    /// Validate and wrap a statistics page of either kind: the magic picks the kind, and the
    /// length must then be exactly that kind's page length.
    pub fn parse(buf: &'a [u8]) -> Result<Self, NvmeError> {
        let magic = le32(buf, 0).map_err(|_| NvmeError::Length {
            page: Page::AwsStats,
            expected: EBS_PAGE_LEN,
            actual: buf.len(),
        })?;
        let kind = AwsDeviceKind::from_magic(magic).ok_or(NvmeError::BadMagic {
            page: Page::AwsStats,
            found: magic,
        })?;
        let page = kind.page();
        check_len(page, buf, kind.page_len())?;
        let header = AwsStatsHeader::decode(buf)?;
        let read_bins = bins_at(buf, page, OFF_READ_HIST, "read histogram bin count")?;
        let write_bins = bins_at(buf, page, OFF_WRITE_HIST, "write histogram bin count")?;
        let stats = AwsStats {
            buf,
            kind,
            header,
            read_bins,
            write_bins,
        };
        if stats.has_io_size_histograms() {
            if header.num_of_hists as usize > MAX_IO_SIZE_HISTOGRAMS {
                return Err(NvmeError::CountTooLarge {
                    page,
                    field: "I/O-size histogram count",
                    found: u64::from(header.num_of_hists),
                    max: MAX_IO_SIZE_HISTOGRAMS as u64,
                });
            }
            if write_bins > MAX_DETAIL_BINS {
                return Err(NvmeError::CountTooLarge {
                    page,
                    field: "bin count of the I/O-size histograms (write histogram bins)",
                    found: write_bins as u64,
                    max: MAX_DETAIL_BINS as u64,
                });
            }
        }
        Ok(stats)
    }

    /// Like [`AwsStats::parse`], but the page must be of kind `expected`.
    pub fn parse_expecting(buf: &'a [u8], expected: AwsDeviceKind) -> Result<Self, NvmeError> {
        let magic = le32(buf, 0).map_err(|_| NvmeError::Length {
            page: expected.page(),
            expected: expected.page_len(),
            actual: buf.len(),
        })?;
        if magic != expected.magic() {
            return Err(NvmeError::MagicMismatch {
                page: expected.page(),
                expected: expected.magic(),
                found: magic,
            });
        }
        Self::parse(buf)
    }

    /// Kind of volume the page belongs to.
    pub fn kind(&self) -> AwsDeviceKind {
        self.kind
    }

    /// Scalar fields.
    pub fn header(&self) -> &AwsStatsHeader {
        &self.header
    }

    /// The read or write latency histogram.
    pub fn histogram(&self, dir: Direction) -> LatencyHistogram<'a> {
        match dir {
            Direction::Read => LatencyHistogram {
                buf: self.buf,
                off: OFF_READ_HIST,
                len: self.read_bins,
            },
            Direction::Write => LatencyHistogram {
                buf: self.buf,
                off: OFF_WRITE_HIST,
                len: self.write_bins,
            },
        }
    }

    /// True if the page carries per-I/O-size histograms (instance store, version 1).
    pub fn has_io_size_histograms(&self) -> bool {
        self.kind == AwsDeviceKind::InstanceStore && self.header.version == DETAIL_IO_VERSION
    }

    /// Number of per-I/O-size histograms (0 when the page has none).
    pub fn io_size_histogram_count(&self) -> usize {
        if self.has_io_size_histograms() {
            self.header.num_of_hists as usize
        } else {
            0
        }
    }

    /// Per-I/O-size histogram `index`.
    pub fn io_size_histogram(&self, index: usize) -> Result<IoSizeHistogram<'a>, NvmeError> {
        let limit = self.io_size_histogram_count();
        let range = NvmeError::IndexOutOfRange {
            what: "I/O-size histogram",
            index,
            limit,
        };
        if index >= limit {
            return Err(range);
        }
        let high = *self.header.hist_io_sizes.get(index).ok_or(range)?;
        let low = match index.checked_sub(1) {
            Some(prev) => *self.header.hist_io_sizes.get(prev).ok_or(range)?,
            None => 0,
        };
        let off = index
            .checked_mul(DETAIL_HIST_LEN)
            .and_then(|o| o.checked_add(OFF_DETAIL))
            .ok_or(range)?;
        Ok(IoSizeHistogram {
            index,
            io_size_low: low,
            io_size_high: high,
            bounds: self.histogram(Direction::Write),
            buf: self.buf,
            off,
        })
    }

    /// All per-I/O-size histograms in page order.
    pub fn io_size_histograms(&self) -> impl Iterator<Item = IoSizeHistogram<'a>> + 'a {
        let this = *self;
        (0..this.io_size_histogram_count()).filter_map(move |i| this.io_size_histogram(i).ok())
    }
}

/// One latency histogram of the base page.
#[derive(Clone, Copy, Debug)]
pub struct LatencyHistogram<'a> {
    buf: &'a [u8],
    off: usize,
    len: usize,
}

impl<'a> LatencyHistogram<'a> {
    /// Number of bins in use.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no bin is in use.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bin `index`.
    pub fn bin(&self, index: usize) -> Result<LatencyBin, NvmeError> {
        let range = NvmeError::IndexOutOfRange {
            what: "latency bin",
            index,
            limit: self.len,
        };
        if index >= self.len {
            return Err(range);
        }
        let off = index
            .checked_mul(BIN_LEN)
            .and_then(|o| o.checked_add(self.off))
            .and_then(|o| o.checked_add(8))
            .ok_or(range)?;
        let upper_off = off.checked_add(8).ok_or(range)?;
        let count_off = off.checked_add(16).ok_or(range)?;
        Ok(LatencyBin {
            lower: le64(self.buf, off)?,
            upper: le64(self.buf, upper_off)?,
            count: le32(self.buf, count_off)?,
        })
    }

    /// All bins in use.
    pub fn bins(&self) -> impl Iterator<Item = LatencyBin> + 'a {
        let this = *self;
        (0..this.len).filter_map(move |i| this.bin(i).ok())
    }

    /// Sum of the bin counts.
    pub fn total(&self) -> u64 {
        self.bins()
            .map(|b| u64::from(b.count))
            .fold(0u64, u64::saturating_add)
    }
}

/// One bin of a per-I/O-size histogram: bounds from the write latency histogram, 64-bit count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoSizeBin {
    /// Lower latency bound, µs.
    pub lower: u64,
    /// Upper latency bound, µs.
    pub upper: u64,
    /// Number of I/Os.
    pub count: u64,
}

/// Latency histograms (read and write) of I/Os whose size is in (io_size_low, io_size_high].
#[derive(Clone, Copy, Debug)]
pub struct IoSizeHistogram<'a> {
    /// Position in the page (0-based).
    pub index: usize,
    /// Exclusive lower I/O-size bound, bytes.
    pub io_size_low: u32,
    /// Inclusive upper I/O-size bound, bytes (u32::MAX = unbounded).
    pub io_size_high: u32,
    bounds: LatencyHistogram<'a>,
    buf: &'a [u8],
    off: usize,
}

impl<'a> IoSizeHistogram<'a> {
    /// Number of bins (the write latency histogram's bin count).
    pub fn len(&self) -> usize {
        self.bounds.len()
    }

    /// True if there are no bins.
    pub fn is_empty(&self) -> bool {
        self.bounds.is_empty()
    }

    /// Bin `index` of direction `dir`.
    pub fn bin(&self, dir: Direction, index: usize) -> Result<IoSizeBin, NvmeError> {
        let b = self.bounds.bin(index)?;
        let dir_off = match dir {
            Direction::Read => 0,
            Direction::Write => MAX_DETAIL_BINS * 8,
        };
        let range = NvmeError::IndexOutOfRange {
            what: "I/O-size bin",
            index,
            limit: self.len(),
        };
        let off = index
            .checked_mul(8)
            .and_then(|o| o.checked_add(self.off))
            .and_then(|o| o.checked_add(dir_off))
            .ok_or(range)?;
        Ok(IoSizeBin {
            lower: b.lower,
            upper: b.upper,
            count: le64(self.buf, off)?,
        })
    }

    /// All bins of direction `dir`.
    pub fn bins(&self, dir: Direction) -> impl Iterator<Item = IoSizeBin> + 'a {
        let this = *self;
        (0..this.len()).filter_map(move |i| this.bin(dir, i).ok())
    }
}

/// Builds statistics pages in a caller's buffer; for fixtures, fuzz seeds and simulated devices.
pub struct AwsStatsWriter<'a> {
    buf: &'a mut [u8],
    kind: AwsDeviceKind,
}

impl<'a> AwsStatsWriter<'a> {
    /// Zero `buf` (which must be exactly `kind`'s page length) and write `kind`'s magic.
    pub fn new(buf: &'a mut [u8], kind: AwsDeviceKind) -> Result<Self, NvmeError> {
        check_len(kind.page(), buf, kind.page_len())?;
        buf.fill(0);
        put_le32(buf, 0, kind.magic())?;
        Ok(AwsStatsWriter { buf, kind })
    }

    /// Write the scalar fields (version, counters, histogram count and I/O sizes).
    pub fn header(&mut self, h: &AwsStatsHeader) -> Result<(), NvmeError> {
        put_le32(self.buf, OFF_VERSION, h.version)?;
        let mut off = OFF_COUNTERS;
        for v in h.counters() {
            put_le64(self.buf, off, v)?;
            off += 8;
        }
        put_le32(self.buf, OFF_NUM_HISTS, h.num_of_hists)?;
        let mut off = OFF_IO_SIZES;
        for v in h.hist_io_sizes {
            put_le32(self.buf, off, v)?;
            off += 4;
        }
        Ok(())
    }

    /// Write a latency histogram: its bin count and its bins (at most 64).
    pub fn histogram(&mut self, dir: Direction, bins: &[LatencyBin]) -> Result<(), NvmeError> {
        if bins.len() > MAX_BINS {
            return Err(NvmeError::CountTooLarge {
                page: self.kind.page(),
                field: "latency bins",
                found: bins.len() as u64,
                max: MAX_BINS as u64,
            });
        }
        let base = match dir {
            Direction::Read => OFF_READ_HIST,
            Direction::Write => OFF_WRITE_HIST,
        };
        put_le64(self.buf, base, bins.len() as u64)?;
        // At most 64 bins: every offset below stays inside the 1544-byte histogram.
        let mut off = base + 8;
        for b in bins {
            put_le64(self.buf, off, b.lower)?;
            put_le64(self.buf, off + 8, b.upper)?;
            put_le32(self.buf, off + 16, b.count)?;
            off += BIN_LEN;
        }
        Ok(())
    }

    /// Write the counts of direction `dir` of I/O-size histogram `hist` (at most 32 counts;
    /// instance-store pages only).
    pub fn io_size_counts(
        &mut self,
        hist: usize,
        dir: Direction,
        counts: &[u64],
    ) -> Result<(), NvmeError> {
        if self.kind != AwsDeviceKind::InstanceStore || hist >= MAX_IO_SIZE_HISTOGRAMS {
            return Err(NvmeError::IndexOutOfRange {
                what: "I/O-size histogram",
                index: hist,
                limit: if self.kind == AwsDeviceKind::InstanceStore {
                    MAX_IO_SIZE_HISTOGRAMS
                } else {
                    0
                },
            });
        }
        if counts.len() > MAX_DETAIL_BINS {
            return Err(NvmeError::CountTooLarge {
                page: self.kind.page(),
                field: "I/O-size histogram counts",
                found: counts.len() as u64,
                max: MAX_DETAIL_BINS as u64,
            });
        }
        let dir_off = match dir {
            Direction::Read => 0,
            Direction::Write => MAX_DETAIL_BINS * 8,
        };
        // hist < 8 and at most 32 counts: every offset stays inside the 8192-byte page.
        let mut off = OFF_DETAIL + hist * DETAIL_HIST_LEN + dir_off;
        for c in counts {
            put_le64(self.buf, off, *c)?;
            off += 8;
        }
        Ok(())
    }
}

// Layout self-checks (evaluated at compile time).
const _: () = assert!(OFF_READ_HIST + HIST_LEN == OFF_WRITE_HIST);
const _: () = assert!(OFF_WRITE_HIST + HIST_LEN == OFF_NUM_HISTS);
const _: () = assert!(OFF_IO_SIZES + 4 * MAX_IO_SIZE_HISTOGRAMS + 460 == EBS_PAGE_LEN);
const _: () =
    assert!(OFF_DETAIL + MAX_IO_SIZE_HISTOGRAMS * DETAIL_HIST_LEN == INSTANCE_STORE_PAGE_LEN);

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use proptest::prelude::*;
    use std::vec;
    use std::vec::Vec;

    fn w64(b: &mut [u8], off: usize, v: u64) {
        b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }
    fn w32(b: &mut [u8], off: usize, v: u32) {
        b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// Base page written at literal offsets (independent of the module's constants).
    fn base_fixture(b: &mut [u8], magic: u32, version: u32) {
        w32(b, 0, magic);
        w32(b, 4, version);
        for (i, off) in (8..96).step_by(8).enumerate() {
            w64(b, off, 1000 + i as u64);
        }
        b[96..512].fill(0xAB); // reserved
                               // read histogram: 3 bins
        w64(b, 512, 3);
        for i in 0..3u64 {
            let off = 520 + 24 * i as usize;
            w64(b, off, i * 100);
            w64(b, off + 8, (i + 1) * 100);
            w32(b, off + 16, 10 + i as u32);
            w32(b, off + 20, 0xFFFF_FFFF); // reserved half of the bin
        }
        // write histogram: 4 bins
        w64(b, 2056, 4);
        for i in 0..4u64 {
            let off = 2064 + 24 * i as usize;
            w64(b, off, i * 50);
            w64(b, off + 8, (i + 1) * 50);
            w32(b, off + 16, 20 + i as u32);
        }
        w32(b, 3600, 2);
        w32(b, 3604, 4096);
        w32(b, 3608, u32::MAX);
    }

    #[test]
    fn ebs_page_fields_at_documented_offsets() {
        let mut b = vec![0u8; 4096];
        base_fixture(&mut b, 0x3C23_B510, 0);
        let s = AwsStats::parse(&b).unwrap();
        assert_eq!(s.kind(), AwsDeviceKind::Ebs);
        let h = s.header();
        assert_eq!(h.version, 0);
        assert_eq!(h.total_read_ops, 1000);
        assert_eq!(h.total_write_ops, 1001);
        assert_eq!(h.total_read_bytes, 1002);
        assert_eq!(h.total_write_bytes, 1003);
        assert_eq!(h.total_read_time, 1004);
        assert_eq!(h.total_write_time, 1005);
        assert_eq!(h.ebs_volume_performance_exceeded_iops, 1006);
        assert_eq!(h.ebs_volume_performance_exceeded_tp, 1007);
        assert_eq!(h.ec2_instance_ebs_performance_exceeded_iops, 1008);
        assert_eq!(h.ec2_instance_ebs_performance_exceeded_tp, 1009);
        assert_eq!(h.volume_queue_length, 1010);
        let r = s.histogram(Direction::Read);
        assert_eq!(r.len(), 3);
        let bins: Vec<LatencyBin> = r.bins().collect();
        assert_eq!(
            bins,
            vec![
                LatencyBin {
                    lower: 0,
                    upper: 100,
                    count: 10
                },
                LatencyBin {
                    lower: 100,
                    upper: 200,
                    count: 11
                },
                LatencyBin {
                    lower: 200,
                    upper: 300,
                    count: 12
                },
            ]
        );
        assert_eq!(r.total(), 33);
        assert!(r.bin(3).is_err());
        let w = s.histogram(Direction::Write);
        assert_eq!(w.len(), 4);
        assert_eq!(
            w.bin(3).unwrap(),
            LatencyBin {
                lower: 150,
                upper: 200,
                count: 23
            }
        );
        // EBS pages never carry I/O-size histograms.
        assert!(!s.has_io_size_histograms());
        assert_eq!(s.io_size_histograms().count(), 0);
        assert!(s.io_size_histogram(0).is_err());
    }

    #[test]
    fn instance_store_page_with_io_size_histograms() {
        let mut b = vec![0u8; 8192];
        base_fixture(&mut b, 0xEC2C_0D7E, 1);
        // histogram 0: read counts 1..4, write counts 11..14; histogram 1: read 21.., write 31..
        for h in 0..2usize {
            for bin in 0..4usize {
                let base = 4096 + h * 512;
                w64(&mut b, base + bin * 8, (h * 20 + bin + 1) as u64);
                w64(&mut b, base + 256 + bin * 8, (h * 20 + bin + 11) as u64);
            }
        }
        // Data past num_of_hists must not be read as histograms.
        w64(&mut b, 4096 + 2 * 512, 999);
        let s = AwsStats::parse(&b).unwrap();
        assert_eq!(s.kind(), AwsDeviceKind::InstanceStore);
        assert!(s.has_io_size_histograms());
        assert_eq!(s.io_size_histogram_count(), 2);
        let hs: Vec<IoSizeHistogram> = s.io_size_histograms().collect();
        assert_eq!(hs.len(), 2);
        assert_eq!((hs[0].io_size_low, hs[0].io_size_high), (0, 4096));
        assert_eq!((hs[1].io_size_low, hs[1].io_size_high), (4096, u32::MAX));
        let r0: Vec<IoSizeBin> = hs[0].bins(Direction::Read).collect();
        assert_eq!(r0.len(), 4, "bin count comes from the write histogram");
        assert_eq!(
            r0[0],
            IoSizeBin {
                lower: 0,
                upper: 50,
                count: 1
            }
        );
        assert_eq!(
            r0[3],
            IoSizeBin {
                lower: 150,
                upper: 200,
                count: 4
            }
        );
        let w1: Vec<u64> = hs[1].bins(Direction::Write).map(|b| b.count).collect();
        assert_eq!(w1, vec![31, 32, 33, 34]);
        assert!(s.io_size_histogram(2).is_err());
    }

    #[test]
    fn instance_store_version_0_has_no_io_size_histograms() {
        let mut b = vec![0u8; 8192];
        base_fixture(&mut b, 0xEC2C_0D7E, 0);
        let s = AwsStats::parse(&b).unwrap();
        assert!(!s.has_io_size_histograms());
        assert_eq!(s.io_size_histogram_count(), 0);
    }

    #[test]
    fn strict_length_magic_and_count_checks() {
        // Too short to hold a magic.
        assert_eq!(
            AwsStats::parse(&[0x10, 0xB5]).unwrap_err(),
            NvmeError::Length {
                page: Page::AwsStats,
                expected: 4096,
                actual: 2
            }
        );
        // Unknown magic.
        let mut b = vec![0u8; 4096];
        w32(&mut b, 0, 0x1234_5678);
        assert_eq!(
            AwsStats::parse(&b).unwrap_err(),
            NvmeError::BadMagic {
                page: Page::AwsStats,
                found: 0x1234_5678
            }
        );
        // EBS magic, instance-store length.
        let mut b = vec![0u8; 8192];
        w32(&mut b, 0, EBS_MAGIC);
        assert_eq!(
            AwsStats::parse(&b).unwrap_err(),
            NvmeError::Length {
                page: Page::AwsEbs,
                expected: 4096,
                actual: 8192
            }
        );
        // Instance-store magic, EBS length.
        let mut b = vec![0u8; 4096];
        w32(&mut b, 0, INSTANCE_STORE_MAGIC);
        assert_eq!(
            AwsStats::parse(&b).unwrap_err(),
            NvmeError::Length {
                page: Page::AwsInstanceStore,
                expected: 8192,
                actual: 4096
            }
        );
        // Bin count above 64.
        let mut b = vec![0u8; 4096];
        base_fixture(&mut b, EBS_MAGIC, 0);
        w64(&mut b, 2056, 65);
        assert!(matches!(
            AwsStats::parse(&b).unwrap_err(),
            NvmeError::CountTooLarge {
                found: 65,
                max: 64,
                ..
            }
        ));
        w64(&mut b, 2056, u64::MAX);
        assert!(AwsStats::parse(&b).is_err());
        // I/O-size histogram count above 8 on a version-1 instance-store page.
        let mut b = vec![0u8; 8192];
        base_fixture(&mut b, INSTANCE_STORE_MAGIC, 1);
        w32(&mut b, 3600, 9);
        assert!(matches!(
            AwsStats::parse(&b).unwrap_err(),
            NvmeError::CountTooLarge {
                found: 9,
                max: 8,
                ..
            }
        ));
        // Write histogram with more bins than the I/O-size histograms have slots.
        let mut b = vec![0u8; 8192];
        base_fixture(&mut b, INSTANCE_STORE_MAGIC, 1);
        w64(&mut b, 2056, 33);
        assert!(matches!(
            AwsStats::parse(&b).unwrap_err(),
            NvmeError::CountTooLarge {
                found: 33,
                max: 32,
                ..
            }
        ));
        // ...which is fine on an EBS page.
        let mut b = vec![0u8; 4096];
        base_fixture(&mut b, EBS_MAGIC, 1);
        w64(&mut b, 2056, 64);
        assert!(AwsStats::parse(&b).is_ok());
    }

    #[test]
    fn parse_expecting_reports_kind_mismatch() {
        let mut b = vec![0u8; 4096];
        base_fixture(&mut b, EBS_MAGIC, 0);
        assert!(AwsStats::parse_expecting(&b, AwsDeviceKind::Ebs).is_ok());
        assert_eq!(
            AwsStats::parse_expecting(&b, AwsDeviceKind::InstanceStore).unwrap_err(),
            NvmeError::MagicMismatch {
                page: Page::AwsInstanceStore,
                expected: INSTANCE_STORE_MAGIC,
                found: EBS_MAGIC
            }
        );
        assert!(AwsStats::parse_expecting(&[], AwsDeviceKind::Ebs).is_err());
    }

    #[test]
    fn expected_kind_from_vendor_and_model() {
        assert_eq!(
            expected_kind(0x1D0F, b"Amazon Elastic Block Store              "),
            Some(AwsDeviceKind::Ebs)
        );
        assert_eq!(
            expected_kind(0x1D0F, b"Amazon EC2 NVMe Instance Storage        "),
            Some(AwsDeviceKind::InstanceStore)
        );
        assert_eq!(expected_kind(0x1B36, b"Amazon Elastic Block Store"), None);
        assert_eq!(expected_kind(0x1D0F, b"QEMU NVMe Ctrl"), None);
        assert_eq!(expected_kind(0x1D0F, b""), None);
    }

    #[test]
    fn writer_output_matches_hand_built_page() {
        let mut hand = vec![0u8; 8192];
        base_fixture(&mut hand, INSTANCE_STORE_MAGIC, 1);
        hand[96..512].fill(0);
        for bin in 0..4usize {
            w32(&mut hand, 520 + 24 * bin + 20, 0);
        }
        w64(&mut hand, 4096 + 512 + 256 + 8, 77);
        let parsed = AwsStats::parse(&hand).unwrap();
        let mut out = vec![0xCCu8; 8192];
        let mut w = AwsStatsWriter::new(&mut out, AwsDeviceKind::InstanceStore).unwrap();
        w.header(parsed.header()).unwrap();
        let rb: Vec<LatencyBin> = parsed.histogram(Direction::Read).bins().collect();
        let wb: Vec<LatencyBin> = parsed.histogram(Direction::Write).bins().collect();
        w.histogram(Direction::Read, &rb).unwrap();
        w.histogram(Direction::Write, &wb).unwrap();
        w.io_size_counts(1, Direction::Write, &[0, 77]).unwrap();
        assert_eq!(out, hand);
    }

    #[test]
    fn writer_rejects_bad_arguments() {
        let mut b = vec![0u8; 4096];
        let mut w = AwsStatsWriter::new(&mut b, AwsDeviceKind::Ebs).unwrap();
        assert!(w
            .histogram(Direction::Read, &[LatencyBin::default(); 65])
            .is_err());
        assert!(
            w.io_size_counts(0, Direction::Read, &[1]).is_err(),
            "EBS has no detail area"
        );
        let mut b = vec![0u8; 8192];
        let mut w = AwsStatsWriter::new(&mut b, AwsDeviceKind::InstanceStore).unwrap();
        assert!(w.io_size_counts(8, Direction::Read, &[1]).is_err());
        assert!(w.io_size_counts(0, Direction::Read, &[1; 33]).is_err());
        let mut small = vec![0u8; 100];
        assert!(AwsStatsWriter::new(&mut small, AwsDeviceKind::Ebs).is_err());
    }

    fn arb_bins(max: usize) -> impl Strategy<Value = Vec<LatencyBin>> {
        proptest::collection::vec(
            (any::<u64>(), any::<u64>(), any::<u32>()).prop_map(|(lower, upper, count)| {
                LatencyBin {
                    lower,
                    upper,
                    count,
                }
            }),
            0..=max,
        )
    }

    proptest! {
        #[test]
        fn parse_never_panics(mut data in proptest::collection::vec(any::<u8>(), 0..9000), magic in 0u8..3) {
            // Steer a share of the inputs past the magic check.
            if data.len() >= 4 {
                let m = match magic { 0 => EBS_MAGIC, 1 => INSTANCE_STORE_MAGIC, _ => u32::from_le_bytes([data[0], data[1], data[2], data[3]]) };
                data[..4].copy_from_slice(&m.to_le_bytes());
            }
            if let Ok(s) = AwsStats::parse(&data) {
                for dir in [Direction::Read, Direction::Write] {
                    let h = s.histogram(dir);
                    prop_assert!(h.len() <= MAX_BINS);
                    prop_assert_eq!(h.bins().count(), h.len());
                }
                for hs in s.io_size_histograms() {
                    prop_assert_eq!(hs.bins(Direction::Read).count(), hs.len());
                    prop_assert_eq!(hs.bins(Direction::Write).count(), hs.len());
                }
            }
        }

        #[test]
        fn page_sized_random_bytes_never_panic(mut data in proptest::collection::vec(any::<u8>(), 8192), small in 0u64..40, hists in 0u32..10) {
            data[..4].copy_from_slice(&INSTANCE_STORE_MAGIC.to_le_bytes());
            data[4..8].copy_from_slice(&1u32.to_le_bytes());
            data[512..520].copy_from_slice(&small.to_le_bytes());
            data[2056..2064].copy_from_slice(&small.to_le_bytes());
            data[3600..3604].copy_from_slice(&hists.to_le_bytes());
            let r = AwsStats::parse(&data);
            prop_assert_eq!(r.is_ok(), small <= 32 && hists <= 8);
            if let Ok(s) = r {
                prop_assert_eq!(s.io_size_histograms().count(), hists as usize);
            }
        }

        #[test]
        fn writer_then_parse_round_trips(
            counters in proptest::array::uniform11(any::<u64>()),
            sizes in proptest::array::uniform8(any::<u32>()),
            nh in 0u32..=8,
            rb in arb_bins(64),
            wb in arb_bins(32),
            detail in proptest::collection::vec(any::<u64>(), 32),
        ) {
            let h = AwsStatsHeader {
                version: 1,
                total_read_ops: counters[0], total_write_ops: counters[1],
                total_read_bytes: counters[2], total_write_bytes: counters[3],
                total_read_time: counters[4], total_write_time: counters[5],
                ebs_volume_performance_exceeded_iops: counters[6],
                ebs_volume_performance_exceeded_tp: counters[7],
                ec2_instance_ebs_performance_exceeded_iops: counters[8],
                ec2_instance_ebs_performance_exceeded_tp: counters[9],
                volume_queue_length: counters[10],
                num_of_hists: nh,
                hist_io_sizes: sizes,
            };
            let mut buf = vec![0u8; 8192];
            let mut w = AwsStatsWriter::new(&mut buf, AwsDeviceKind::InstanceStore).unwrap();
            w.header(&h).unwrap();
            w.histogram(Direction::Read, &rb).unwrap();
            w.histogram(Direction::Write, &wb).unwrap();
            for i in 0..nh as usize {
                w.io_size_counts(i, Direction::Read, &detail[..wb.len()]).unwrap();
                w.io_size_counts(i, Direction::Write, &detail[..wb.len()]).unwrap();
            }
            let s = AwsStats::parse(&buf).unwrap();
            prop_assert_eq!(s.header(), &h);
            prop_assert_eq!(s.histogram(Direction::Read).bins().collect::<Vec<_>>(), rb);
            prop_assert_eq!(s.histogram(Direction::Write).bins().collect::<Vec<_>>(), wb.clone());
            prop_assert_eq!(s.io_size_histograms().count(), nh as usize);
            for hs in s.io_size_histograms() {
                let got: Vec<u64> = hs.bins(Direction::Write).map(|b| b.count).collect();
                prop_assert_eq!(&got[..], &detail[..wb.len()]);
            }
        }
    }
}

//! The event schema shared by `dmremap events --json` and the daemon's JSON-lines sink.
//!
//! An [`Event`] is small and owns no per-event heap memory: the source and device names are
//! shared `Arc<str>`s that sources create once and clone per event (a reference-count increment),
//! and every kind carries fixed-size fields. Serialized as one JSON object, keys in this order:
//!
//! ```json
//! {"ts":"2026-11-23T13:40:00.123456Z","seq":7,"source":"kernel","device":"r0",
//!  "kind":"remap_done","fields":{"sector":2048,"sectors":8,"spare_slot":3,"cause":"unknown"},
//!  "kernel":{"seq":12,"dev":"253:0","arg":3}}
//! ```
//!
//! `kernel` is present only on events read from the module's event ring: the record's sequence
//! number, device number and raw type-specific value. [`kernel_kind`] maps a ring record to its
//! kind; README.md ("Events") lists every kind and its fields.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::io::Write as _;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

use crate::control::{self, EventType};

/// Wall-clock time in nanoseconds since the Unix epoch; serialized as RFC 3339 UTC with
/// microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

/// Length of `YYYY-MM-DDTHH:MM:SS.uuuuuuZ`.
const TS_LEN: usize = 27;

impl Timestamp {
    pub fn now() -> Timestamp {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_nanos() as u64)
    }

    /// Parses an RFC 3339 UTC time (`YYYY-MM-DDTHH:MM:SS[.f]Z`, fraction of 0..=9 digits) as
    /// written by `Display`; times before 1970 are refused.
    pub fn parse(s: &str) -> Option<Timestamp> {
        if !s.ends_with('Z') {
            return None;
        }
        let t: jiff::Timestamp = s.parse().ok()?;
        u64::try_from(t.as_nanosecond()).ok().map(Timestamp)
    }

    /// Renders `YYYY-MM-DDTHH:MM:SS.uuuuuuZ`. The date and time of day come from `jiff` and are
    /// cached per thread for the last second seen (events arrive in bursts within one second),
    /// so most calls only render the microseconds.
    fn render(self) -> [u8; TS_LEN] {
        thread_local! {
            static LAST: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
        }
        let secs = self.0 / 1_000_000_000;
        let head = LAST.with(|last| {
            let (s, h) = last.get();
            if s == secs {
                return h;
            }
            let mut h = [0u8; 19];
            // The u64 nanosecond range ends in 2554, well inside jiff's range; `{:.0}` prints
            // `YYYY-MM-DDTHH:MM:SSZ`, of which the `Z` does not fit and is not wanted here.
            let t = jiff::Timestamp::from_second(secs as i64).unwrap_or(jiff::Timestamp::MAX);
            let _ = write!(&mut h[..], "{t:.0}");
            last.set((secs, h));
            h
        });
        let mut out = [0u8; TS_LEN];
        out[..19].copy_from_slice(&head);
        out[19] = b'.';
        let mut micros = (self.0 % 1_000_000_000) / 1_000;
        for i in (20..26).rev() {
            out[i] = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        out[26] = b'Z';
        out
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let b = self.render();
        s.serialize_str(ascii(&b))
    }
}

/// `b` as a `str`; for the digits and punctuation rendered in this module.
fn ascii(b: &[u8]) -> &str {
    debug_assert!(b.is_ascii());
    // SAFETY: every caller passes bytes it rendered from ASCII digits and punctuation only
    // (`Timestamp::render`, `KernelRef::serialize`), which are valid UTF-8.
    unsafe { std::str::from_utf8_unchecked(b) }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        Timestamp::parse(&s).ok_or_else(|| de::Error::custom(format!("bad timestamp `{s}`")))
    }
}

/// RFC 3339 UTC with microseconds: `YYYY-MM-DDTHH:MM:SS.uuuuuuZ`.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(ascii(&self.render()))
    }
}

/// Why a block was remapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemapCause {
    WriteError,
    ReadRecovered,
    PendingRewrite,
    Manual,
    /// The kernel's event does not say (its ABI carries no cause).
    Unknown,
}

/// Which I/O failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoOp {
    Read,
    Write,
    Flush,
}

/// Which device of a dm-remap target an error came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Main,
    Spare,
}

/// Daemon lifecycle phases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Started,
    Reloaded,
    Stopping,
}

/// What changed in an NVMe health snapshot, as a bit set; serialized as a list of names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NvmeChanges(pub u8);

impl NvmeChanges {
    /// First snapshot of this device since the daemon started.
    pub const INITIAL: u8 = 1;
    /// The critical warning bits differ from the previous snapshot.
    pub const CRITICAL_WARNING: u8 = 2;
    /// Available spare dropped below its threshold.
    pub const SPARE_BELOW_THRESHOLD: u8 = 4;
    /// The media/data integrity error count grew.
    pub const MEDIA_ERRORS: u8 = 8;
    const NAMES: [(u8, &'static str); 4] = [
        (Self::INITIAL, "initial"),
        (Self::CRITICAL_WARNING, "critical_warning"),
        (Self::SPARE_BELOW_THRESHOLD, "spare_below_threshold"),
        (Self::MEDIA_ERRORS, "media_errors"),
    ];

    pub fn contains(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl Serialize for NvmeChanges {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = Self::NAMES
            .iter()
            .filter(|(b, _)| self.contains(*b))
            .count();
        let mut seq = s.serialize_seq(Some(n))?;
        for (b, name) in Self::NAMES {
            if self.contains(b) {
                seq.serialize_element(name)?;
            }
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for NvmeChanges {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NvmeChanges;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of change names")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<NvmeChanges, A::Error> {
                let mut bits = 0;
                while let Some(name) = a.next_element::<Cow<'de, str>>()? {
                    let bit = NvmeChanges::NAMES
                        .iter()
                        .find(|(_, n)| *n == name)
                        .map(|(b, _)| *b)
                        .ok_or_else(|| de::Error::custom(format!("unknown change `{name}`")))?;
                    bits |= bit;
                }
                Ok(NvmeChanges(bits))
            }
        }
        d.deserialize_seq(V)
    }
}

/// The kind of an event and its fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "fields", rename_all = "snake_case")]
pub enum EventKind {
    /// A block now lives on the spare.
    RemapDone {
        sector: u64,
        sectors: u32,
        spare_slot: u64,
        cause: RemapCause,
    },
    /// A block could not be read or recovered and waits for a rewrite.
    PendingMarked { sector: u64, sectors: u32 },
    /// Spare usage crossed the low-water mark.
    SpareLow { used: u64, total: u64 },
    /// No spare slot was left for the block at `sector`.
    SpareExhausted { sector: u64, total: u64 },
    /// Writing a metadata copy failed (`copy`: `None` when the kernel does not say which).
    MetadataWriteError { copy: Option<u32>, errno: i32 },
    /// An I/O error on the main or the spare device.
    IoError {
        op: IoOp,
        role: Role,
        sector: u64,
        sectors: u32,
        errno: i32,
    },
    /// The kernel event ring overflowed (or sequence numbers jumped): `count` events were lost.
    KernelEventsLost { count: u64 },
    /// An NVMe SMART/health snapshot changed in a way worth reporting; carries the current values.
    NvmeHealth {
        changes: NvmeChanges,
        critical_warning: u8,
        critical_warning_prev: u8,
        available_spare: u8,
        available_spare_threshold: u8,
        percentage_used: u8,
        media_errors: u64,
        media_errors_prev: u64,
    },
    /// Scrubber progress.
    ScrubProgress {
        offset: u64,
        total: u64,
        bytes_per_sec: u64,
        unreadable: u64,
        done: bool,
    },
    /// The scrubber found a block it cannot read, even after retries.
    ScrubUnreadable {
        offset: u64,
        len: u32,
        marked_pending: bool,
    },
    /// Daemon lifecycle.
    Lifecycle {
        phase: Phase,
        detail: Cow<'static, str>,
    },
    /// A block moved back from the spare to main; its slot is free again.
    UnremapDone {
        sector: u64,
        sectors: u32,
        spare_slot: u64,
    },
}

impl EventKind {
    /// All kind names, in declaration order (index = [`EventKind::index`]).
    pub const NAMES: [&'static str; 12] = [
        "remap_done",
        "pending_marked",
        "spare_low",
        "spare_exhausted",
        "metadata_write_error",
        "io_error",
        "kernel_events_lost",
        "nvme_health",
        "scrub_progress",
        "scrub_unreadable",
        "lifecycle",
        "unremap_done",
    ];

    pub fn index(&self) -> usize {
        match self {
            EventKind::RemapDone { .. } => 0,
            EventKind::PendingMarked { .. } => 1,
            EventKind::SpareLow { .. } => 2,
            EventKind::SpareExhausted { .. } => 3,
            EventKind::MetadataWriteError { .. } => 4,
            EventKind::IoError { .. } => 5,
            EventKind::KernelEventsLost { .. } => 6,
            EventKind::NvmeHealth { .. } => 7,
            EventKind::ScrubProgress { .. } => 8,
            EventKind::ScrubUnreadable { .. } => 9,
            EventKind::Lifecycle { .. } => 10,
            EventKind::UnremapDone { .. } => 11,
        }
    }

    pub fn name(&self) -> &'static str {
        Self::NAMES[self.index()]
    }
}

/// Where an event of the module's event ring came from: the record's own numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelRef {
    /// The ring's module-wide sequence number (from 1).
    pub seq: NonZeroU64,
    /// The device-mapper device, `major << 20 | minor` as the kernel encodes it.
    pub dev: u32,
    /// The record's type-specific value (see [`EventType`]).
    pub arg: u64,
}

impl KernelRef {
    /// The reference of a ring record (`None` for sequence number 0, which the ring never
    /// uses).
    pub fn of(e: &control::Event) -> Option<KernelRef> {
        Some(KernelRef {
            seq: NonZeroU64::new(e.seq)?,
            dev: e.dev,
            arg: e.arg,
        })
    }

    pub fn major(&self) -> u32 {
        self.dev >> 20
    }

    pub fn minor(&self) -> u32 {
        self.dev & 0xfffff
    }
}

impl Serialize for KernelRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // `major:minor` without going through `fmt`.
        let (mut a, mut b) = (itoa::Buffer::new(), itoa::Buffer::new());
        let (major, minor) = (a.format(self.major()), b.format(self.minor()));
        let mut dev = [0u8; 21];
        dev[..major.len()].copy_from_slice(major.as_bytes());
        dev[major.len()] = b':';
        let n = major.len() + 1 + minor.len();
        dev[major.len() + 1..n].copy_from_slice(minor.as_bytes());
        let mut m = s.serialize_struct("KernelRef", 3)?;
        m.serialize_field("seq", &self.seq)?;
        m.serialize_field("dev", ascii(&dev[..n]))?;
        m.serialize_field("arg", &self.arg)?;
        m.end()
    }
}

impl<'de> Deserialize<'de> for KernelRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw<'a> {
            seq: NonZeroU64,
            #[serde(borrow)]
            dev: Cow<'a, str>,
            arg: u64,
        }
        let r = Raw::deserialize(d)?;
        let bad = || de::Error::custom(format!("bad device number `{}`", r.dev));
        let (ma, mi) = r.dev.split_once(':').ok_or_else(bad)?;
        let (ma, mi): (u32, u32) = (
            ma.parse().map_err(|_| bad())?,
            mi.parse().map_err(|_| bad())?,
        );
        if ma >= 1 << 12 || mi >= 1 << 20 {
            return Err(bad());
        }
        Ok(KernelRef {
            seq: r.seq,
            dev: ma << 20 | mi,
            arg: r.arg,
        })
    }
}

/// One event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When the source observed it (wall clock).
    pub ts: Timestamp,
    /// Position in the output stream: in `events.jsonl` assigned by the daemon's pipeline when
    /// the event is dequeued (0 before that); in `dmremap events` the ring's sequence number.
    #[serde(default)]
    pub seq: u64,
    /// Which source produced it.
    pub source: Arc<str>,
    /// The device it is about (`dm-remap` name, NVMe controller, scrubbed path, or `dmremapd`).
    pub device: Arc<str>,
    #[serde(flatten)]
    pub kind: EventKind,
    /// The ring record it was made from, for events of the module's event ring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelRef>,
    /// Monotonic time at which the daemon's pipeline accepted it; not serialized.
    #[serde(skip)]
    pub enqueued_ns: u64,
}

impl Event {
    /// An event stamped with the current wall-clock time.
    pub fn new(source: Arc<str>, device: Arc<str>, kind: EventKind) -> Event {
        Event {
            ts: Timestamp::now(),
            seq: 0,
            source,
            device,
            kind,
            kernel: None,
            enqueued_ns: 0,
        }
    }
}

/// Appends `ev` as one JSON line (serde_json, then `\n`) to `buf`, as `events.jsonl` and
/// `dmremap events --json` write it.
pub fn write_line(buf: &mut Vec<u8>, ev: &Event) -> serde_json::Result<()> {
    serde_json::to_writer(LineWriter(buf), ev)?;
    buf.push(b'\n');
    Ok(())
}

/// A `Vec<u8>` writer for serde_json's many one-byte writes (quotes, colons, commas): those
/// become a `push` instead of a `memcpy` call.
struct LineWriter<'a>(&'a mut Vec<u8>);

impl std::io::Write for LineWriter<'_> {
    #[inline]
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.write_all(b)?;
        Ok(b.len())
    }

    #[inline]
    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match b {
            [c] => self.0.push(*c),
            _ => self.0.extend_from_slice(b),
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Records of the module's event ring

/// Per-device facts the kernel's records do not carry, read from the device's table and status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetFacts {
    /// Remap granularity in sectors (0 = unknown).
    pub block_sectors: u32,
    /// Spare slots of the segment (0 = unknown).
    pub spare_total: u64,
}

impl TargetFacts {
    /// The facts of the remap segment of device `name` that holds `sector` (or its first remap
    /// segment); `None` when the device cannot be read.
    pub fn read(dm: &crate::dm::Dm, name: &str, sector: u64) -> Option<TargetFacts> {
        let d = dm.device(name).ok()?;
        let seg = d
            .segment_at(sector)
            .filter(|s| s.table.is_some())
            .or_else(|| d.remap_segments().next())?;
        Some(TargetFacts {
            block_sectors: seg.table.as_ref().map(|t| t.block_size / 512).unwrap_or(0),
            spare_total: seg.status.as_ref().map(|s| s.spare_total).unwrap_or(0),
        })
    }
}

/// The device-mapper name of block device `major:minor` (from sysfs).
pub fn dm_name(major: u32, minor: u32) -> Option<String> {
    let s = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/dm/name")).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// The errno a block-layer status stands for (`blk_status_to_errno`).
pub fn blk_status_errno(status: u64) -> i32 {
    match status {
        0 => 0,
        1 => libc::EOPNOTSUPP,
        2 => libc::ETIMEDOUT,
        3 => libc::ENOSPC,
        4 => libc::ENOLINK,
        5 => libc::EREMOTEIO,
        6 => libc::EBADE,
        7 => libc::ENODATA,
        8 => libc::EILSEQ,
        9 => libc::ENOMEM,
        11 => libc::EREMCHG,
        12 => libc::EAGAIN,
        13 => libc::EBUSY,
        14 => libc::ETOOMANYREFS,
        15 => libc::EOVERFLOW,
        16 => libc::ENODEV,
        17 => libc::ETIME,
        19 => libc::EINVAL,
        _ => libc::EIO,
    }
}

/// The kind of one ring record. An overflow record (read() only) is `kernel_events_lost`;
/// `None` for types this build does not know (a newer module).
pub fn kernel_kind(e: &control::Event, facts: TargetFacts) -> Option<EventKind> {
    Some(match e.kind {
        EventType::Remap => EventKind::RemapDone {
            sector: e.sector,
            sectors: facts.block_sectors,
            spare_slot: e.arg,
            cause: RemapCause::Unknown,
        },
        EventType::Unremap => EventKind::UnremapDone {
            sector: e.sector,
            sectors: facts.block_sectors,
            spare_slot: e.arg,
        },
        EventType::Pending => EventKind::PendingMarked {
            sector: e.sector,
            sectors: facts.block_sectors,
        },
        EventType::SpareLow => EventKind::SpareLow {
            used: facts.spare_total.saturating_sub(e.arg),
            total: facts.spare_total,
        },
        EventType::SpareExhausted => EventKind::SpareExhausted {
            sector: e.sector,
            total: facts.spare_total,
        },
        EventType::MetadataError => EventKind::MetadataWriteError {
            copy: None,
            errno: e.arg as i32,
        },
        EventType::IoError => EventKind::IoError {
            op: if e.write { IoOp::Write } else { IoOp::Read },
            role: if e.spare { Role::Spare } else { Role::Main },
            sector: e.sector,
            sectors: 0,
            errno: blk_status_errno(e.arg),
        },
        EventType::Overflow => EventKind::KernelEventsLost { count: e.arg },
        EventType::Unknown(_) => return None,
    })
}

/// Wall clock minus CLOCK_MONOTONIC, in ns: added to a record's `time_ns` it gives wall time.
pub fn mono_to_wall_ns() -> i128 {
    let ns = |c| {
        nix::time::clock_gettime(c)
            .map(|ts| ts.tv_sec() as i128 * 1_000_000_000 + ts.tv_nsec() as i128)
            .unwrap_or(0)
    };
    ns(nix::time::ClockId::CLOCK_REALTIME) - ns(nix::time::ClockId::CLOCK_MONOTONIC)
}

/// The wall-clock time of a record's `time_ns` given [`mono_to_wall_ns`].
pub fn record_time(e: &control::Event, mono_to_wall: i128) -> Timestamp {
    Timestamp((e.time_ns as i128 + mono_to_wall).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_format_known_values() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000000Z");
        // 2000-02-29T12:34:56.789012Z (leap day)
        let t = Timestamp(951_827_696_789_012_000);
        assert_eq!(t.to_string(), "2000-02-29T12:34:56.789012Z");
        // 2026-11-23T00:00:00Z
        assert_eq!(
            Timestamp(1_795_392_000 * 1_000_000_000).to_string(),
            "2026-11-23T00:00:00.000000Z"
        );
        // The cached second is not reused for another second, nor the fraction.
        assert_eq!(
            Timestamp(1_795_392_000 * 1_000_000_000 + 999_999_999).to_string(),
            "2026-11-23T00:00:00.999999Z"
        );
        assert_eq!(
            Timestamp(1_795_392_001 * 1_000_000_000 + 1_000).to_string(),
            "2026-11-23T00:00:01.000001Z"
        );
        // The last second a u64 holds.
        assert_eq!(
            Timestamp(u64::MAX).to_string(),
            "2554-07-21T23:34:33.709551Z"
        );
    }

    #[test]
    fn timestamp_matches_jiff_everywhere() {
        // Oracle: jiff's own RFC 3339 rendering, over ~300 years in irregular steps.
        let mut ns = 0u64;
        while ns < 10_000_000_000_000_000_000 {
            let j = jiff::Timestamp::from_nanosecond(i128::from(ns)).unwrap();
            assert_eq!(Timestamp(ns).to_string(), format!("{j:.6}"), "{ns}");
            ns += 7_777_777_777_777_777;
        }
    }

    #[test]
    fn timestamp_parse_round_trip() {
        for secs in [0u64, 59, 86_399, 951_782_400, 1_795_392_000, 4_102_444_800] {
            let t = Timestamp(secs * 1_000_000_000 + 123_456_000);
            assert_eq!(Timestamp::parse(&t.to_string()), Some(t), "{t}");
        }
        assert_eq!(
            Timestamp::parse("1970-01-01T00:00:01Z"),
            Some(Timestamp(1_000_000_000))
        );
        assert_eq!(
            Timestamp::parse("1970-01-01T00:00:01.5Z"),
            Some(Timestamp(1_500_000_000))
        );
        assert!(Timestamp::parse("1970-13-01T00:00:00Z").is_none());
        assert!(Timestamp::parse("garbage").is_none());
    }

    fn remap_event() -> Event {
        Event {
            ts: Timestamp(1_795_392_000_000_000_000),
            seq: 5,
            source: "kernel".into(),
            device: "dm-0".into(),
            kind: EventKind::RemapDone {
                sector: 2048,
                sectors: 8,
                spare_slot: 3,
                cause: RemapCause::WriteError,
            },
            kernel: None,
            enqueued_ns: 99,
        }
    }

    #[test]
    fn event_json_shape_and_round_trip() {
        assert_eq!(EventKind::NAMES.len(), 12);
        let ev = remap_event();
        let s = serde_json::to_string(&ev).unwrap();
        assert_eq!(
            s,
            r#"{"ts":"2026-11-23T00:00:00.000000Z","seq":5,"source":"kernel","device":"dm-0","kind":"remap_done","fields":{"sector":2048,"sectors":8,"spare_slot":3,"cause":"write_error"}}"#
        );
        let back: Event = serde_json::from_str(&s).unwrap();
        assert_eq!(back.kind, ev.kind);
        assert_eq!(back.ts, ev.ts);
        assert_eq!(back.kernel, None);
        assert_eq!(back.enqueued_ns, 0);
    }

    #[test]
    fn kernel_reference_is_serialized_last_and_read_back() {
        let mut ev = remap_event();
        ev.kernel = Some(KernelRef {
            seq: NonZeroU64::new(12).unwrap(),
            dev: 253 << 20 | 4,
            arg: 3,
        });
        let s = serde_json::to_string(&ev).unwrap();
        assert!(
            s.ends_with(r#""cause":"write_error"},"kernel":{"seq":12,"dev":"253:4","arg":3}}"#),
            "{s}"
        );
        let back: Event = serde_json::from_str(&s).unwrap();
        assert_eq!(back.kernel, ev.kernel);
        assert_eq!(
            (back.kernel.unwrap().major(), back.kernel.unwrap().minor()),
            (253, 4)
        );
        for bad in [r#""253""#, r#""253:x""#, r#""4096:0""#, r#""1:1048576""#] {
            let s = format!(r#"{{"seq":1,"dev":{bad},"arg":0}}"#);
            assert!(serde_json::from_str::<KernelRef>(&s).is_err(), "{s}");
        }
        assert!(serde_json::from_str::<KernelRef>(r#"{"seq":0,"dev":"1:1","arg":0}"#).is_err());
    }

    /// One event of every kind.
    fn every_kind() -> Vec<EventKind> {
        vec![
            EventKind::RemapDone {
                sector: u64::MAX,
                sectors: 8,
                spare_slot: 0,
                cause: RemapCause::PendingRewrite,
            },
            EventKind::PendingMarked {
                sector: 1,
                sectors: 8,
            },
            EventKind::SpareLow {
                used: 91,
                total: 100,
            },
            EventKind::SpareExhausted {
                sector: 614_400,
                total: 256,
            },
            EventKind::MetadataWriteError {
                copy: None,
                errno: -5,
            },
            EventKind::IoError {
                op: IoOp::Flush,
                role: Role::Spare,
                sector: 80,
                sectors: 0,
                errno: 61,
            },
            EventKind::KernelEventsLost { count: 78 },
            EventKind::NvmeHealth {
                changes: NvmeChanges(NvmeChanges::INITIAL | NvmeChanges::SPARE_BELOW_THRESHOLD),
                critical_warning: 255,
                critical_warning_prev: 0,
                available_spare: 5,
                available_spare_threshold: 10,
                percentage_used: 100,
                media_errors: 3,
                media_errors_prev: 1,
            },
            EventKind::ScrubProgress {
                offset: 4096,
                total: 1 << 40,
                bytes_per_sec: 0,
                unreadable: 2,
                done: true,
            },
            EventKind::ScrubUnreadable {
                offset: 8192,
                len: 4096,
                marked_pending: false,
            },
            EventKind::Lifecycle {
                phase: Phase::Reloaded,
                detail: "config \"a\\b\"\nline two, ünïcode \u{1}".into(),
            },
            EventKind::UnremapDone {
                sector: 4096,
                sectors: 8,
                spare_slot: 3,
            },
        ]
    }

    #[test]
    fn write_line_is_serde_json_and_reads_back() {
        // Oracle: serde_json's own writer and parser, for every kind, with and without a ring
        // record, with names that need escaping.
        let kinds = every_kind();
        assert_eq!(kinds.len(), EventKind::NAMES.len());
        let mut buf = Vec::new();
        for (i, kind) in kinds.into_iter().enumerate() {
            for kernel in [
                None,
                Some(KernelRef {
                    seq: NonZeroU64::new(u64::MAX).unwrap(),
                    dev: u32::MAX,
                    arg: i as u64,
                }),
            ] {
                let ev = Event {
                    ts: Timestamp(1_795_392_000_123_456_000 + i as u64 * 999_999_000),
                    seq: i as u64,
                    source: "scrub".into(),
                    device: "/dev/disk/by-id/\"odd\"\\name\t".into(),
                    kind: kind.clone(),
                    kernel,
                    enqueued_ns: 0,
                };
                buf.clear();
                write_line(&mut buf, &ev).unwrap();
                let line = std::str::from_utf8(&buf).unwrap();
                assert_eq!(line, serde_json::to_string(&ev).unwrap() + "\n");
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let mut keys: Vec<&str> =
                    v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
                keys.sort_unstable();
                let mut want = vec!["ts", "seq", "source", "device", "kind", "fields"];
                if kernel.is_some() {
                    want.push("kernel");
                    assert_eq!(v["kernel"]["dev"], "4095:1048575");
                }
                let mut sorted = want.clone();
                sorted.sort_unstable();
                assert_eq!(keys, sorted, "{line}");
                assert!(line.starts_with(r#"{"ts":""#), "{line}");
                assert_eq!(v["kind"], kind.name());
                assert_eq!(v["ts"], ev.ts.to_string());
                let back: Event = serde_json::from_str(line).unwrap();
                assert_eq!(back, ev, "{line}");
                // The documented order of the keys.
                let pos: Vec<usize> = want
                    .iter()
                    .map(|k| line.find(&format!("\"{k}\":")).unwrap())
                    .collect();
                assert!(pos.windows(2).all(|w| w[0] < w[1]), "{line}");
            }
        }
    }

    #[test]
    fn nvme_changes_serialize_as_names() {
        let k = EventKind::NvmeHealth {
            changes: NvmeChanges(NvmeChanges::CRITICAL_WARNING | NvmeChanges::MEDIA_ERRORS),
            critical_warning: 4,
            critical_warning_prev: 0,
            available_spare: 90,
            available_spare_threshold: 10,
            percentage_used: 1,
            media_errors: 3,
            media_errors_prev: 1,
        };
        let v = serde_json::to_value(&k).unwrap();
        assert_eq!(v["kind"], "nvme_health");
        assert_eq!(
            v["fields"]["changes"],
            serde_json::json!(["critical_warning", "media_errors"])
        );
        let back: EventKind = serde_json::from_value(v).unwrap();
        assert_eq!(back, k);
        assert!(serde_json::from_str::<NvmeChanges>(r#"["nope"]"#).is_err());
    }

    #[test]
    fn event_stays_small() {
        // Queue slots hold events by value; this keeps a 16K queue under 2 MB.
        assert!(
            std::mem::size_of::<Event>() <= 120,
            "{}",
            std::mem::size_of::<Event>()
        );
    }

    #[test]
    fn kind_names_match_serde() {
        let kinds = [
            EventKind::PendingMarked {
                sector: 1,
                sectors: 1,
            },
            EventKind::SpareExhausted {
                sector: 8,
                total: 4,
            },
            EventKind::KernelEventsLost { count: 2 },
            EventKind::Lifecycle {
                phase: Phase::Started,
                detail: "x".into(),
            },
        ];
        for k in kinds {
            let v = serde_json::to_value(&k).unwrap();
            assert_eq!(v["kind"], k.name());
        }
    }

    fn record(kind: EventType, sector: u64, arg: u64, write: bool, spare: bool) -> control::Event {
        control::Event {
            seq: 7,
            time_ns: 5_000_000_000,
            kind,
            dev: 253 << 20 | 4,
            sector,
            arg,
            write,
            spare,
        }
    }

    #[test]
    fn every_kernel_record_type_maps() {
        let f = TargetFacts {
            block_sectors: 8,
            spare_total: 100,
        };
        let m = |k, s, a, w, sp| kernel_kind(&record(k, s, a, w, sp), f).unwrap();
        let r = record(EventType::Remap, 4096, 3, false, false);
        assert_eq!(record_time(&r, 1_000), Timestamp(5_000_001_000));
        assert_eq!(record_time(&r, -6_000_000_000), Timestamp(0));
        let k = KernelRef::of(&r).unwrap();
        assert_eq!((k.seq.get(), k.major(), k.minor(), k.arg), (7, 253, 4, 3));
        assert_eq!(
            m(EventType::Remap, 4096, 3, false, false),
            EventKind::RemapDone {
                sector: 4096,
                sectors: 8,
                spare_slot: 3,
                cause: RemapCause::Unknown
            }
        );
        assert_eq!(
            m(EventType::Unremap, 4096, 3, false, false),
            EventKind::UnremapDone {
                sector: 4096,
                sectors: 8,
                spare_slot: 3
            }
        );
        assert_eq!(
            m(EventType::Pending, 80, 0, false, false),
            EventKind::PendingMarked {
                sector: 80,
                sectors: 8
            }
        );
        assert_eq!(
            m(EventType::SpareLow, 0, 9, false, false),
            EventKind::SpareLow {
                used: 91,
                total: 100
            }
        );
        assert_eq!(
            m(EventType::SpareExhausted, 600, 0, false, false),
            EventKind::SpareExhausted {
                sector: 600,
                total: 100
            }
        );
        assert_eq!(
            m(EventType::MetadataError, 0, 5, false, false),
            EventKind::MetadataWriteError {
                copy: None,
                errno: 5
            }
        );
        assert_eq!(
            m(EventType::IoError, 80, 7, true, true),
            EventKind::IoError {
                op: IoOp::Write,
                role: Role::Spare,
                sector: 80,
                sectors: 0,
                errno: libc::ENODATA
            }
        );
        assert_eq!(
            m(EventType::IoError, 80, 10, false, false),
            EventKind::IoError {
                op: IoOp::Read,
                role: Role::Main,
                sector: 80,
                sectors: 0,
                errno: libc::EIO
            }
        );
        assert_eq!(
            m(EventType::Overflow, 0, 78, false, false),
            EventKind::KernelEventsLost { count: 78 }
        );
        assert!(kernel_kind(&record(EventType::Unknown(99), 0, 0, false, false), f).is_none());
    }

    #[test]
    fn blk_status_errnos() {
        assert_eq!(blk_status_errno(0), 0);
        assert_eq!(blk_status_errno(7), libc::ENODATA);
        assert_eq!(blk_status_errno(10), libc::EIO);
        assert_eq!(blk_status_errno(2), libc::ETIMEDOUT);
        assert_eq!(blk_status_errno(1234), libc::EIO);
    }
}

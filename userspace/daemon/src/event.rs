//! The event type that flows from sources through the pipeline to the sinks.
//!
//! An [`Event`] is small and owns no per-event heap memory: the source and device names are
//! shared `Arc<str>`s that sources create once and clone per event (a reference-count increment),
//! and every kind carries fixed-size fields. Serialized as one JSON object:
//!
//! ```json
//! {"ts":"2026-11-23T13:40:00.123456Z","seq":7,"source":"kernel","device":"dm-0",
//!  "kind":"remap_done","fields":{"sector":2048,"sectors":8,"spare_slot":3,"cause":"write_error"}}
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// Wall-clock time in nanoseconds since the Unix epoch; serialized as RFC 3339 UTC with
/// microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn now() -> Timestamp {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_nanos() as u64)
    }

    /// Writes `YYYY-MM-DDTHH:MM:SS.uuuuuuZ` (27 bytes) into `out` and returns it as a str.
    pub fn format_into(self, out: &mut [u8; 27]) -> &str {
        let secs = self.0 / 1_000_000_000;
        let micros = (self.0 % 1_000_000_000) / 1000;
        let days = (secs / 86_400) as i64;
        let sod = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        let fields: [(u64, usize); 7] = [
            (y as u64, 4),
            (m as u64, 2),
            (d as u64, 2),
            (sod / 3600, 2),
            (sod / 60 % 60, 2),
            (sod % 60, 2),
            (micros, 6),
        ];
        let seps = [b'-', b'-', b'T', b':', b':', b'.', b'Z'];
        let mut pos = 0;
        for (i, (v, width)) in fields.iter().enumerate() {
            let mut v = *v;
            for k in (0..*width).rev() {
                out[pos + k] = b'0' + (v % 10) as u8;
                v /= 10;
            }
            pos += width;
            out[pos] = seps[i];
            pos += 1;
        }
        // All bytes written are ASCII digits or separators.
        std::str::from_utf8(&out[..]).unwrap_or("")
    }

    /// Parses the format written by [`Timestamp::format_into`] (fraction of 0..=9 digits).
    pub fn parse(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b'T'
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<u64> { s.get(r)?.parse().ok() };
        let (y, mo, d) = (num(0..4)? as i64, num(5..7)? as u32, num(8..10)? as u32);
        let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let rest = s.get(19..)?;
        let rest = rest.strip_suffix('Z')?;
        let nanos = if let Some(frac) = rest.strip_prefix('.') {
            if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            frac.parse::<u64>().ok()? * 10u64.pow(9 - frac.len() as u32)
        } else if rest.is_empty() {
            0
        } else {
            return None;
        };
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
            return None;
        }
        let days = days_from_civil(y, mo, d);
        if days < 0 {
            return None;
        }
        Some(Timestamp(
            (days as u64 * 86_400 + h * 3600 + mi * 60 + se) * 1_000_000_000 + nanos,
        ))
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar, computed
/// by 400-year eras (146097 days each).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468; // shift the epoch to 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0..399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year
    let mp = (5 * doy + 2) / 153; // March = 0
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 27];
        s.serialize_str(self.format_into(&mut buf))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        Timestamp::parse(&s).ok_or_else(|| de::Error::custom(format!("bad timestamp `{s}`")))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 27];
        f.write_str(self.format_into(&mut buf))
    }
}

/// Monotonic nanoseconds since the first call in this process (used for latency measurement).
pub fn mono_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
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
    /// No spare slot is left.
    SpareExhausted { total: u64 },
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

/// One event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When the source observed it (wall clock).
    pub ts: Timestamp,
    /// Position in the output stream, assigned by the pipeline when the event is dequeued
    /// (0 before that).
    #[serde(default)]
    pub seq: u64,
    /// Which source produced it.
    pub source: Arc<str>,
    /// The device it is about (`dm-remap` name, NVMe controller, scrubbed path, or `dmremapd`).
    pub device: Arc<str>,
    #[serde(flatten)]
    pub kind: EventKind,
    /// Monotonic time ([`mono_ns`]) at which the pipeline accepted it; not serialized.
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
            enqueued_ns: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_format_known_values() {
        let mut b = [0u8; 27];
        assert_eq!(
            Timestamp(0).format_into(&mut b),
            "1970-01-01T00:00:00.000000Z"
        );
        // 2000-02-29T12:34:56.789012Z (leap day)
        let t = Timestamp(951_827_696_789_012_000);
        assert_eq!(t.format_into(&mut b), "2000-02-29T12:34:56.789012Z");
        // 2026-11-23T00:00:00Z
        assert_eq!(
            Timestamp(1_795_392_000 * 1_000_000_000).to_string(),
            "2026-11-23T00:00:00.000000Z"
        );
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

    #[test]
    fn event_json_shape_and_round_trip() {
        assert_eq!(EventKind::NAMES.len(), 12);
        let ev = Event {
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
            enqueued_ns: 99,
        };
        let s = serde_json::to_string(&ev).unwrap();
        assert_eq!(
            s,
            r#"{"ts":"2026-11-23T00:00:00.000000Z","seq":5,"source":"kernel","device":"dm-0","kind":"remap_done","fields":{"sector":2048,"sectors":8,"spare_slot":3,"cause":"write_error"}}"#
        );
        let back: Event = serde_json::from_str(&s).unwrap();
        assert_eq!(back.kind, ev.kind);
        assert_eq!(back.ts, ev.ts);
        assert_eq!(back.enqueued_ns, 0);
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
        // Queue slots hold events by value; this keeps a 16K queue near 1.5 MB.
        assert!(
            std::mem::size_of::<Event>() <= 96,
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
            EventKind::SpareExhausted { total: 4 },
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
}

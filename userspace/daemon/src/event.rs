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

    /// As a `jiff` timestamp (which does the calendar arithmetic and RFC 3339 formatting).
    fn to_jiff(self) -> jiff::Timestamp {
        jiff::Timestamp::from_nanosecond(i128::from(self.0)).unwrap_or(jiff::Timestamp::MAX)
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
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
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
        write!(f, "{:.6}", self.to_jiff())
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
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000000Z");
        // 2000-02-29T12:34:56.789012Z (leap day)
        let t = Timestamp(951_827_696_789_012_000);
        assert_eq!(t.to_string(), "2000-02-29T12:34:56.789012Z");
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

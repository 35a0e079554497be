//! What device-mapper reports about a device: its info, segments (table and status lines
//! combined) and the loaded target types.

use devicemapper::DmFlags;
use serde::Serialize;

use super::{DevNo, Error, RemapStatus, RemapTable, Result, TableLine, TARGET_TYPE};

/// What `DM_DEV_STATUS` says about a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DevInfo {
    pub name: String,
    pub uuid: Option<String>,
    pub dev: DevNo,
    pub open_count: i32,
    pub event_nr: u32,
    pub suspended: bool,
    pub read_only: bool,
    /// The device has a live table.
    pub active: bool,
}

impl DevInfo {
    pub(super) fn from_dm(i: &devicemapper::DeviceInfo, fallback_name: &str) -> DevInfo {
        let f = i.flags();
        DevInfo {
            name: i
                .name()
                .map(|n| n.to_string())
                .unwrap_or_else(|| fallback_name.to_string()),
            uuid: i.uuid().map(|u| u.to_string()).filter(|u| !u.is_empty()),
            dev: i.device().into(),
            open_count: i.open_count(),
            event_nr: i.event_nr(),
            suspended: f.contains(DmFlags::DM_SUSPEND),
            read_only: f.contains(DmFlags::DM_READONLY),
            active: f.contains(DmFlags::DM_ACTIVE_PRESENT),
        }
    }
}

/// One segment of a device: the table line and, for `remap` targets, the parsed table and status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Segment {
    pub start: u64,
    pub length: u64,
    pub target_type: String,
    /// Parsed `remap` table; `None` for other target types.
    pub table: Option<RemapTable>,
    /// Parsed `remap` status; `None` for other target types.
    pub status: Option<RemapStatus>,
    /// The table parameters as the kernel reports them.
    pub params: String,
    /// The status INFO as the kernel reports it.
    pub info: String,
}

/// A device with its table and status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Device {
    #[serde(flatten)]
    pub info: DevInfo,
    /// Total length in sectors.
    pub sectors: u64,
    pub segments: Vec<Segment>,
}

impl Device {
    /// The device has at least one `remap` segment.
    pub fn is_remap(&self) -> bool {
        self.segments.iter().any(|s| s.target_type == TARGET_TYPE)
    }

    /// The `remap` segments.
    pub fn remap_segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments
            .iter()
            .filter(|s| s.target_type == TARGET_TYPE)
    }

    /// The status counters of the `remap` segments, summed.
    pub fn totals(&self) -> SegmentTotals {
        let mut t = SegmentTotals::default();
        for s in self.remap_segments().filter_map(|s| s.status.as_ref()) {
            t.add(s);
        }
        t
    }

    /// The segment holding device sector `sector`.
    pub fn segment_at(&self, sector: u64) -> Option<&Segment> {
        self.segments
            .iter()
            .find(|s| sector >= s.start && sector - s.start < s.length)
    }
}

/// Status counters of a device summed over its `remap` segments, with the states they report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentTotals {
    pub remapped: u64,
    pub pending: u64,
    pub spare_used: u64,
    pub spare_total: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    /// The segments' states, each once, in segment order.
    pub states: Vec<String>,
}

impl SegmentTotals {
    /// Adds one segment's status.
    pub fn add(&mut self, s: &RemapStatus) {
        self.remapped += s.remapped;
        self.pending += s.pending;
        self.spare_used += s.spare_used;
        self.spare_total += s.spare_total;
        self.read_errors += s.read_errors;
        self.write_errors += s.write_errors;
        if !self.states.contains(&s.state) {
            self.states.push(s.state.clone());
        }
    }

    /// The worst of the states: `metadata_error` (or a state this version does not know) over
    /// `spare_exhausted` over `active`; of equally bad ones the first; empty without segments.
    pub fn worst_state(&self) -> &str {
        let rank = |s: &str| match s {
            "active" => 0,
            "spare_exhausted" => 1,
            _ => 2,
        };
        let mut worst: Option<&str> = None;
        for s in &self.states {
            if worst.is_none_or(|w| rank(s) > rank(w)) {
                worst = Some(s);
            }
        }
        worst.unwrap_or("")
    }
}

/// Combines the table and the status lines of one device into segments.
pub fn combine_segments(table: &[TableLine], status: &[TableLine]) -> Result<Vec<Segment>> {
    if table.len() != status.len()
        || table.iter().zip(status).any(|(t, s)| {
            (t.start, t.length, &t.target_type) != (s.start, s.length, &s.target_type)
        })
    {
        return Err(Error::Parse(
            "the table changed between reading it and reading its status; try again".into(),
        ));
    }
    table
        .iter()
        .zip(status)
        .map(|(t, s)| {
            let remap = t.target_type == TARGET_TYPE;
            Ok(Segment {
                start: t.start,
                length: t.length,
                target_type: t.target_type.clone(),
                table: if remap { Some(t.params.parse()?) } else { None },
                status: if remap { Some(s.params.parse()?) } else { None },
                params: t.params.clone(),
                info: s.params.clone(),
            })
        })
        .collect()
}

/// A loaded target type and its version (`DM_LIST_VERSIONS`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TargetVersion {
    pub name: String,
    pub version: [u32; 3],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_combine_table_and_status() {
        let tl = |s, l, t: &str, p: &str| TableLine {
            start: s,
            length: l,
            target_type: t.into(),
            params: p.into(),
        };
        let table = [
            tl(0, 100, "remap", "259:0 0 253:0"),
            tl(100, 50, "linear", "8:0 0"),
        ];
        let status = [
            tl(0, 100, "remap", "1 0 1/10 0 0 0 active"),
            tl(100, 50, "linear", ""),
        ];
        let segs = combine_segments(&table, &status).unwrap();
        assert_eq!(segs[0].status.as_ref().unwrap().spare_total, 10);
        assert!(segs[1].table.is_none() && segs[1].status.is_none());
        let dev = Device {
            info: DevInfo {
                name: "r".into(),
                uuid: None,
                dev: DevNo {
                    major: 253,
                    minor: 3,
                },
                open_count: 0,
                event_nr: 0,
                suspended: false,
                read_only: false,
                active: true,
            },
            sectors: 150,
            segments: segs,
        };
        assert!(dev.is_remap());
        let t = dev.totals();
        assert_eq!((t.remapped, t.spare_used, t.spare_total), (1, 1, 10));
        assert_eq!(
            (t.states.as_slice(), t.worst_state()),
            (&["active".to_string()][..], "active")
        );
        assert_eq!(dev.segment_at(99).unwrap().start, 0);
        assert_eq!(dev.segment_at(100).unwrap().target_type, "linear");
        assert!(dev.segment_at(150).is_none());
        assert!(combine_segments(&table, &status[..1]).is_err());
        let moved = [
            tl(0, 90, "remap", "1 0 1/10 0 0 0 active"),
            tl(90, 60, "linear", ""),
        ];
        assert!(combine_segments(&table, &moved).is_err());
    }

    #[test]
    fn totals_sum_segments_and_rank_states() {
        let st = |remapped, state: &str| -> RemapStatus {
            format!("{remapped} 1 {remapped}/100 2 3 0 {state}")
                .parse()
                .unwrap()
        };
        let mut t = SegmentTotals::default();
        assert_eq!(t.worst_state(), "");
        t.add(&st(5, "active"));
        assert_eq!(t.worst_state(), "active");
        t.add(&st(7, "spare_exhausted"));
        t.add(&st(1, "active"));
        assert_eq!(
            (t.remapped, t.pending, t.spare_used, t.spare_total),
            (13, 3, 13, 300)
        );
        assert_eq!((t.read_errors, t.write_errors), (6, 9));
        assert_eq!(t.states, ["active", "spare_exhausted"]);
        assert_eq!(t.worst_state(), "spare_exhausted");
        t.add(&st(0, "metadata_error"));
        t.add(&st(0, "something_new"));
        assert_eq!(
            t.worst_state(),
            "metadata_error",
            "the first of equally bad states"
        );
    }
}

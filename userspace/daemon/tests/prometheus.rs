//! The Prometheus sink and collector output, parsed.

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::*;
use dmremapd::event::{Event, EventKind, NvmeChanges, RemapCause};
use dmremapd::metrics::{self, DaemonCollector, DaemonCounters, EventMetrics, PromSink};
use dmremapd::pipeline::{Pipeline, PipelineConfig, Policy};

/// One segment of `dm-0` on nvme3n1 with its spare on vdb.
struct OneDevice;
impl dmremapd::field::DeviceStatus for OneDevice {
    fn segments(&self) -> std::io::Result<Vec<dmremapd::field::SegmentStatus>> {
        Ok(vec![dmremapd::field::SegmentStatus {
            dm: "dm-0".into(),
            main: "nvme3n1".into(),
            spare: "vdb".into(),
            controller: "nvme3".into(),
            status: dmremap_lib::dm::RemapStatus {
                remapped: 11,
                pending: 3,
                spare_used: 12,
                spare_total: 100,
                read_errors: 4,
                write_errors: 5,
                metadata_seq: 0,
                state: "spare_exhausted".into(),
                extra: vec![],
            },
        }])
    }
}

fn remap(src: &Arc<str>, dev: &Arc<str>) -> Event {
    Event::new(
        src.clone(),
        dev.clone(),
        EventKind::RemapDone {
            sector: 0,
            sectors: 8,
            spare_slot: 0,
            cause: RemapCause::Manual,
        },
    )
}

#[test]
fn counters_gauges_and_pipeline_figures() {
    let m = EventMetrics::default();
    let p = Pipeline::start(
        &PipelineConfig {
            capacity: 64,
            batch_max: 16,
            policy: Policy::Block,
            ..Default::default()
        },
        vec![Box::new(PromSink::new(m.clone()))],
        Box::new(|| {}),
    )
    .unwrap();
    let reg = metrics::registry(
        &m,
        DaemonCollector {
            shared: p.shared().clone(),
            counters: Arc::new(DaemonCounters::default()),
            started: Instant::now(),
            nvme: None,
        },
        Some(dmremapd::field::DeviceCollector {
            status: Box::new(OneDevice),
        }),
    );
    let e = p.emitter("kernel");
    let dev: Arc<str> = Arc::from("dm-0");
    for _ in 0..100 {
        e.push(remap(e.source(), &dev));
    }
    // Same names in fresh allocations count into the same series.
    for _ in 0..50 {
        e.push(remap(&Arc::from("kernel"), &Arc::from("dm-0")));
    }
    // Label values that need escaping.
    let odd: Arc<str> = Arc::from("we\"ird\\dev\nname");
    e.push(remap(e.source(), &odd));
    e.emit(
        &Arc::from("nvme3"),
        EventKind::NvmeHealth {
            changes: NvmeChanges(NvmeChanges::INITIAL),
            critical_warning: 0x11,
            critical_warning_prev: 0,
            available_spare: 7,
            available_spare_threshold: 10,
            percentage_used: 42,
            media_errors: 9,
            media_errors_prev: 0,
        },
    );
    e.emit(
        &Arc::from("/dev/sdb"),
        EventKind::ScrubProgress {
            offset: 10,
            total: 100,
            bytes_per_sec: 1,
            unreadable: 0,
            done: false,
        },
    );
    e.emit(
        &Arc::from("/dev/sdb"),
        EventKind::ScrubUnreadable {
            offset: 4096,
            len: 4096,
            marked_pending: false,
        },
    );
    e.emit(
        &Arc::from("/dev/sdb"),
        EventKind::ScrubUnreadable {
            offset: 8192,
            len: 4096,
            marked_pending: false,
        },
    );
    e.emit(
        &Arc::from("dm-0"),
        EventKind::SpareLow {
            used: 95,
            total: 100,
        },
    );
    assert!(wait_for(5, || p.stats().events_out == 156));

    let text = metrics::encode(&reg);
    let x = parse_openmetrics(&text).unwrap_or_else(|err| panic!("{err}\n{text}"));
    assert_eq!(
        x.get(
            "dmremapd_events_total",
            &[
                ("source", "kernel"),
                ("device", "dm-0"),
                ("kind", "remap_done")
            ]
        ),
        Some(150.0)
    );
    assert_eq!(
        x.get("dmremapd_events_total", &[("device", "we\"ird\\dev\nname")]),
        Some(1.0)
    );
    assert_eq!(x.sum("dmremapd_events_total"), 156.0);
    assert_eq!(
        x.get("dmremapd_nvme_critical_warning", &[("device", "nvme3")]),
        Some(17.0)
    );
    assert_eq!(
        x.get(
            "dmremapd_nvme_available_spare_percent",
            &[("device", "nvme3")]
        ),
        Some(7.0)
    );
    assert_eq!(
        x.get(
            "dmremapd_nvme_available_spare_threshold_percent",
            &[("device", "nvme3")]
        ),
        Some(10.0)
    );
    assert_eq!(
        x.get("dmremapd_nvme_percentage_used", &[("device", "nvme3")]),
        Some(42.0)
    );
    assert_eq!(
        x.get("dmremapd_nvme_media_errors_total", &[("device", "nvme3")]),
        Some(9.0)
    );
    assert_eq!(
        x.get("dmremapd_scrub_position_bytes", &[("device", "/dev/sdb")]),
        Some(10.0)
    );
    assert_eq!(
        x.get("dmremapd_scrub_size_bytes", &[("device", "/dev/sdb")]),
        Some(100.0)
    );
    assert_eq!(
        x.get(
            "dmremapd_scrub_unreadable_blocks_total",
            &[("device", "/dev/sdb")]
        ),
        Some(2.0)
    );
    // Read from the target's status at scrape time, not from the spare events.
    assert_eq!(
        x.get("dmremapd_spare_used_blocks", &[("device", "dm-0")]),
        Some(12.0)
    );
    assert_eq!(
        x.get("dmremapd_spare_total_blocks", &[("device", "dm-0")]),
        Some(100.0)
    );
    assert_eq!(
        x.get("dmremapd_remapped_blocks", &[("device", "dm-0")]),
        Some(11.0)
    );
    assert_eq!(
        x.get("dmremapd_pending_blocks", &[("device", "dm-0")]),
        Some(3.0)
    );
    assert_eq!(
        x.get("dmremapd_read_errors_total", &[("device", "dm-0")]),
        Some(4.0)
    );
    assert_eq!(
        x.get("dmremapd_write_errors_total", &[("device", "dm-0")]),
        Some(5.0)
    );
    assert_eq!(
        x.get(
            "dmremapd_device_state",
            &[("device", "dm-0"), ("state", "spare_exhausted")]
        ),
        Some(1.0)
    );
    assert_eq!(
        x.get(
            "dmremapd_device_info",
            &[
                ("dm", "dm-0"),
                ("main", "nvme3n1"),
                ("spare", "vdb"),
                ("controller", "nvme3")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(x.types["dmremapd_build_info"], "gauge");
    assert!(x.get("process_start_time_seconds", &[]).unwrap() > 1.7e9);
    assert_eq!(
        x.get(
            "dmremapd_source_events_accepted_total",
            &[("source", "kernel")]
        ),
        Some(156.0)
    );
    assert_eq!(
        x.get(
            "dmremapd_sink_events_written_total",
            &[("sink", "prometheus")]
        ),
        Some(156.0)
    );
    assert_eq!(x.get("dmremapd_queue_capacity", &[]), Some(64.0));
    assert_eq!(
        x.get("dmremapd_event_latency_seconds_count", &[]),
        Some(156.0)
    );
    assert_eq!(x.types["dmremapd_scrub_unreadable_blocks"], "counter");
    assert_eq!(x.types["dmremapd_nvme_media_errors"], "counter");
    p.close();
}

#[test]
fn parser_rejects_malformed_text() {
    assert!(
        parse_openmetrics("x 1\n# EOF\n").is_err(),
        "sample without TYPE"
    );
    assert!(
        parse_openmetrics("# TYPE x counter\nx 1\n# EOF\n").is_err(),
        "counter without _total"
    );
    assert!(
        parse_openmetrics("# TYPE x gauge\nx 1\n").is_err(),
        "no EOF"
    );
    assert!(
        parse_openmetrics("# TYPE x gauge\nx{a=\"1} 1\n# EOF\n").is_err(),
        "broken label"
    );
    assert!(parse_openmetrics("# TYPE x gauge\nx{a=\"1\"} 1\n# EOF\n").is_ok());
}

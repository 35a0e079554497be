//! The daemon in-process: sources with fake backends, sinks, /metrics, /debug/stats, reload,
//! tuning.

mod common;

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use dmremap_lib::tune;
use dmremapd::config::Config;
use dmremapd::daemon::{Backends, Daemon};
use dmremapd::event::{EventKind, RemapCause};
use dmremapd::http;
use dmremapd::kernel::{DevId, KernelEvent, KernelEvents};
use dmremapd::nvme::HealthSnapshot;
use dmremapd::pipeline::Policy;

/// Hands out scripted batches, then times out like an idle ring.
struct ScriptedKernel(Arc<Mutex<VecDeque<Vec<KernelEvent>>>>);

impl KernelEvents for ScriptedKernel {
    fn read_batch(&mut self, out: &mut Vec<KernelEvent>, timeout: Duration) -> io::Result<()> {
        let next = self.0.lock().unwrap().pop_front();
        match next {
            Some(b) => out.extend(b),
            None => std::thread::sleep(timeout),
        }
        Ok(())
    }
}

// An unlikely major number, so that the name falls back to "major:minor" on any host.
const MAJOR: u32 = 4095;

fn kev(seq: u64, kind: EventKind) -> KernelEvent {
    KernelEvent {
        seq,
        dev: DevId {
            major: MAJOR,
            minor: 0,
        },
        arg: 0,
        ts: None,
        kind,
    }
}

fn base_config(dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.sinks.jsonl.path = dir.join("events.jsonl").display().to_string();
    c.sinks.prometheus.listen = "127.0.0.1:0".into();
    c.sources.kernel.poll_timeout_ms = 20;
    c.sources.nvme.interval_s = 1;
    c
}

#[test]
fn end_to_end_events_metrics_and_debug_stats() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = base_config(dir.path());
    let probe = FakeProbe::default();
    probe.0.lock().unwrap().insert("nvme0".into(), healthy());
    probe.0.lock().unwrap().insert(
        "nvme1".into(),
        HealthSnapshot {
            critical_warning: 4,
            media_errors: 2,
            ..healthy()
        },
    );
    let script = Arc::new(Mutex::new(VecDeque::from(vec![
        vec![
            kev(
                1,
                EventKind::RemapDone {
                    sector: 8,
                    sectors: 8,
                    spare_slot: 0,
                    cause: RemapCause::WriteError,
                },
            ),
            kev(
                2,
                EventKind::RemapDone {
                    sector: 16,
                    sectors: 8,
                    spare_slot: 1,
                    cause: RemapCause::WriteError,
                },
            ),
        ],
        vec![
            kev(
                3,
                EventKind::RemapDone {
                    sector: 24,
                    sectors: 8,
                    spare_slot: 2,
                    cause: RemapCause::ReadRecovered,
                },
            ),
            kev(
                4,
                EventKind::PendingMarked {
                    sector: 32,
                    sectors: 8,
                },
            ),
        ],
    ])));
    let d = Daemon::start(
        cfg,
        Backends {
            nvme_probe: Some(Box::new(probe.clone())),
            kernel_events: Some(Box::new(ScriptedKernel(script.clone()))),
            ..Default::default()
        },
    )
    .unwrap();
    let addr = d.http_addr().expect("http");
    let jsonl = dir.path().join("events.jsonl");
    // started + 2 initial NVMe snapshots + 4 kernel events
    assert!(
        wait_for(10, || d.stats().events_out >= 7),
        "{:?}",
        d.stats()
    );

    let (status, body) = http::get(addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    let m = parse_openmetrics(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    let dev = format!("{MAJOR}:0");
    assert_eq!(m.types["dmremapd_events"], "counter");
    assert_eq!(
        m.get(
            "dmremapd_events_total",
            &[
                ("source", "kernel"),
                ("device", &dev),
                ("kind", "remap_done")
            ]
        ),
        Some(3.0)
    );
    assert_eq!(
        m.get(
            "dmremapd_events_total",
            &[("source", "kernel"), ("kind", "pending_marked")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.get("dmremapd_nvme_critical_warning", &[("device", "nvme1")]),
        Some(4.0)
    );
    assert_eq!(
        m.get("dmremapd_nvme_media_errors_total", &[("device", "nvme1")]),
        Some(2.0)
    );
    assert_eq!(
        m.get(
            "dmremapd_nvme_available_spare_percent",
            &[("device", "nvme0")]
        ),
        Some(100.0)
    );
    assert_eq!(
        m.get(
            "dmremapd_source_events_accepted_total",
            &[("source", "kernel")]
        ),
        Some(4.0)
    );
    assert_eq!(
        m.get(
            "dmremapd_source_events_dropped_total",
            &[("source", "kernel")]
        ),
        Some(0.0)
    );
    assert_eq!(m.get("dmremapd_queue_capacity", &[]), Some(16384.0));
    assert!(
        m.get("dmremapd_sink_events_written_total", &[("sink", "jsonl")])
            .unwrap()
            >= 7.0
    );
    assert!(m.get("dmremapd_resident_memory_bytes", &[]).unwrap() > 1e6);
    // Histogram: buckets cumulative, +Inf equals the count.
    assert_eq!(m.types["dmremapd_event_latency_seconds"], "histogram");
    let buckets: Vec<f64> = m
        .samples
        .iter()
        .filter(|s| s.name == "dmremapd_event_latency_seconds_bucket")
        .map(|s| s.value)
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(
        m.get("dmremapd_event_latency_seconds_bucket", &[("le", "+Inf")]),
        m.get("dmremapd_event_latency_seconds_count", &[])
    );
    assert!(m.get("dmremapd_event_latency_seconds_count", &[]).unwrap() >= 7.0);
    // Every family has help text.
    assert!(m.types.keys().all(|k| m.help.contains_key(k)));

    let (status, body) = http::get(addr, "/debug/stats").unwrap();
    assert_eq!(status, 200);
    let s: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(s["process"]["rss_kb"].as_u64().unwrap() > 0);
    assert!(s["process"]["threads"].as_u64().unwrap() >= 5);
    assert!(s["pipeline"]["end_to_end"]["p99_ms"].is_number());
    assert!(s["pipeline"]["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["name"] == "jsonl"));
    let names: Vec<&str> = s["threads"]["threads"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for want in ["dmremapd-sink", "dmremapd-http", "src-kernel", "src-nvme"] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    assert!(s["nvme"]["cycles"].as_u64().unwrap() >= 1);
    assert!(s["nvme"]["cycle"]["max_ms"].is_number());
    assert!(m.get("dmremapd_nvme_scrape_cycles_total", &[]).unwrap() >= 1.0);
    assert_eq!(m.types["dmremapd_nvme_scrape_seconds"], "histogram");
    assert_eq!(http::get(addr, "/nope").unwrap().0, 404);

    // A media error increase is reported on the next scrape.
    probe.0.lock().unwrap().insert(
        "nvme1".into(),
        HealthSnapshot {
            critical_warning: 4,
            media_errors: 5,
            ..healthy()
        },
    );
    assert!(wait_for(10, || read_jsonl(&jsonl).iter().any(|v| v
        ["kind"]
        == "nvme_health"
        && v["device"] == "nvme1"
        && v["fields"]["changes"]
            == serde_json::json!(["media_errors"])
        && v["fields"]["media_errors_prev"] == 2)));

    let rep = d.shutdown();
    let lines = read_jsonl(&jsonl);
    assert_eq!(
        lines.len() as u64,
        rep.pipeline.accepted(),
        "every accepted event is in the file"
    );
    assert_eq!(rep.pipeline.dropped(), 0);
    assert_eq!(lines.first().unwrap()["fields"]["phase"], "started");
    assert_eq!(lines.last().unwrap()["fields"]["phase"], "stopping");
    let seqs: Vec<u64> = lines.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=lines.len() as u64).collect::<Vec<_>>());
    assert!(rep.stuck_sources.is_empty());
    // The HTTP server is gone.
    assert!(http::get(addr, "/metrics").is_err());
}

#[test]
fn reload_applies_runtime_keys_and_reports_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = base_config(dir.path());
    cfg.sinks.prometheus.enabled = false;
    cfg.sources.kernel.enabled = false;
    cfg.sources.nvme.enabled = false;
    cfg.tune.events.nice = Some(1);
    cfg.tune.events.ioprio = Some("be:5".into());
    let mut d = Daemon::start(cfg.clone(), Backends::default()).unwrap();
    assert!(d.http_addr().is_none());

    let mut new = cfg.clone();
    new.queue.policy = Policy::Drop;
    new.queue.capacity = 99;
    new.queue.batch_max = 50;
    new.sinks.jsonl.path = dir.path().join("b.jsonl").display().to_string();
    new.sinks.prometheus.listen = "127.0.0.1:1".into();
    new.tune.events.nice = Some(3);
    let rep = d.reload(new);
    let has = |v: &[String], k: &str| v.iter().any(|s| s.starts_with(k));
    assert!(has(&rep.applied, "queue.policy: Block -> Drop"), "{rep:?}");
    assert!(has(&rep.applied, "queue.batch_max"));
    assert!(has(&rep.applied, "sinks.jsonl.path"));
    assert!(has(&rep.applied, "tune.events"));
    assert!(
        has(&rep.needs_restart, "queue.capacity: 16384 -> 99"),
        "{rep:?}"
    );
    assert!(has(&rep.needs_restart, "sinks.prometheus.listen"));
    assert!(rep.errors.is_empty(), "{rep:?}");
    assert_eq!(d.config().queue.capacity, 16384, "restart-only value kept");
    assert_eq!(d.config().queue.policy, Policy::Drop);
    assert_eq!(d.stats().policy, Policy::Drop);
    assert_eq!(d.stats().capacity, 16384);

    // Re-tuned: the dispatcher thread now runs at nice 3 (raising nice needs no privilege).
    let sink = d
        .workers()
        .into_iter()
        .find(|w| w.name == "dmremapd-sink")
        .expect("dispatcher registered");
    assert_eq!(tune::get_nice(sink.tid).unwrap(), 3);
    assert_eq!(
        tune::get_ioprio(sink.tid).unwrap(),
        tune::Ioprio::best_effort(5)
    );

    // A reopen to a path that cannot be opened keeps the previous file and says so.
    let mut bad = d.config().clone();
    bad.sinks.jsonl.path = dir.path().join("no/such/dir.jsonl").display().to_string();
    let rep2 = d.reload(bad);
    assert_eq!(rep2.errors.len(), 1, "{rep2:?}");
    assert!(rep2.errors[0].contains("no/such/dir.jsonl"));
    assert!(d.config().sinks.jsonl.path.ends_with("b.jsonl"));

    d.shutdown();
    let a = read_jsonl(&dir.path().join("events.jsonl"));
    let b = read_jsonl(&dir.path().join("b.jsonl"));
    assert_eq!(
        a.iter()
            .map(|v| v["fields"]["phase"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["started"]
    );
    assert_eq!(
        b.iter()
            .map(|v| v["fields"]["phase"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["reloaded", "reloaded", "stopping"]
    );
}

#[test]
fn tuning_is_applied_or_degrades() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = base_config(dir.path());
    cfg.sinks.prometheus.enabled = false;
    cfg.sources.kernel.enabled = false;
    cfg.sources.nvme.enabled = false;
    cfg.tune.events.nice = Some(-3);
    cfg.tune.events.ioprio = Some("rt:6".into());
    let cpu = *tune::get_affinity(0).unwrap().last().unwrap();
    cfg.tune.events.cpus = vec![cpu];
    let d = Daemon::start(cfg, Backends::default()).unwrap();
    assert!(wait_for(5, || !d.workers().is_empty()));
    let w = d
        .workers()
        .into_iter()
        .find(|w| w.name == "dmremapd-sink")
        .unwrap();
    let st = tune::thread_state(std::process::id() as i32, w.tid).unwrap();
    let caps = tune::capabilities(std::process::id() as i32, Some(w.tid)).unwrap();
    assert_eq!(
        st.cpus,
        vec![cpu],
        "pinning needs no privilege for our own threads"
    );
    if caps.cap_sys_nice {
        assert_eq!(st.nice, -3);
        assert_eq!(st.ioprio, tune::Ioprio::real_time(6));
    } else {
        assert!(st.nice >= 0, "nice -3 must have been refused");
        assert_eq!(
            st.ioprio,
            tune::Ioprio::best_effort(6),
            "rt falls back to be at the same level"
        );
    }
    d.shutdown();
}

#[test]
fn scrub_source_runs_a_pass_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    std::fs::write(&img, vec![0xa5u8; 3 << 20]).unwrap();
    let mut cfg = base_config(dir.path());
    cfg.sinks.prometheus.enabled = false;
    cfg.sources.kernel.enabled = false;
    cfg.sources.nvme.enabled = false;
    cfg.scrub.enabled = true;
    cfg.scrub.devices = vec![img.display().to_string()];
    cfg.scrub.state_dir = dir.path().display().to_string();
    cfg.scrub.rate_mb_s = 1000.0;
    let got = Arc::new(Mutex::new(Vec::new()));
    let d = Daemon::start(
        cfg,
        Backends {
            extra_sinks: vec![Box::new(Collect(got.clone()))],
            ..Default::default()
        },
    )
    .unwrap();
    assert!(wait_for(20, || {
        got
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e.kind, EventKind::ScrubProgress { done: true, total, offset, .. } if total == 3 << 20 && offset == total))
    }));
    let w = d
        .workers()
        .into_iter()
        .find(|w| w.name == "src-scrub")
        .expect("scrub worker");
    assert_eq!(tune::get_ioprio(w.tid).unwrap(), tune::Ioprio::IDLE);
    d.shutdown();
    let ck = dir
        .path()
        .join(dmremapd::scrub_source::checkpoint_name(&img));
    let c = dmremapd::scrub::load_checkpoint(&ck)
        .unwrap()
        .expect("checkpoint written");
    assert!(c.complete);
    assert_eq!(c.size, 3 << 20);
}

#[test]
fn invalid_config_refuses_to_start() {
    let mut c = Config::default();
    c.queue.capacity = 0;
    let e = Daemon::start(c, Backends::default()).err().unwrap();
    assert!(e.to_string().contains("queue.capacity: must be > 0"), "{e}");
}

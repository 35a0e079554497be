//! Prometheus metrics: a sink that turns events into counters and gauges, and a collector that
//! exports the pipeline's own counters, latency and process figures at scrape time. Encoded in
//! the OpenMetrics text format by `prometheus-client`; metric names start with `dmremapd_`.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::event::{Event, EventKind};
use crate::hist::Snapshot;
use crate::nvme::NvmeStats;
use crate::pipeline::{Shared, Sink};
use crate::procfs;

/// Escapes a label value for the text format (`\\`, `\"`, `\n`). The encoder of
/// `prometheus-client` writes label values verbatim, so every value is stored escaped.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Label values are stored escaped ([`escape_label`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub source: String,
    pub device: String,
    pub kind: String,
}

/// The label value is stored escaped ([`escape_label`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeviceLabels {
    pub device: String,
}

/// Metrics derived from events. Cloning shares the underlying values.
#[derive(Clone, Debug, Default)]
pub struct EventMetrics {
    pub events: Family<EventLabels, Counter>,
    pub nvme_critical_warning: Family<DeviceLabels, Gauge>,
    pub nvme_available_spare: Family<DeviceLabels, Gauge>,
    pub nvme_available_spare_threshold: Family<DeviceLabels, Gauge>,
    pub nvme_percentage_used: Family<DeviceLabels, Gauge>,
    /// The device's own cumulative count (SMART `media_errors`), exported as a counter.
    pub nvme_media_errors: Family<DeviceLabels, Counter>,
    pub scrub_position: Family<DeviceLabels, Gauge>,
    pub scrub_size: Family<DeviceLabels, Gauge>,
    pub scrub_unreadable: Family<DeviceLabels, Counter>,
    pub scrub_passes: Family<DeviceLabels, Counter>,
    pub kernel_events_lost: Family<DeviceLabels, Counter>,
}

impl EventMetrics {
    fn register(&self, r: &mut Registry) {
        r.register(
            "events",
            "Events delivered by the pipeline, by source, device and kind",
            self.events.clone(),
        );
        r.register(
            "nvme_critical_warning",
            "NVMe SMART critical warning bits (last reported)",
            self.nvme_critical_warning.clone(),
        );
        r.register(
            "nvme_available_spare_percent",
            "NVMe available spare, percent",
            self.nvme_available_spare.clone(),
        );
        r.register(
            "nvme_available_spare_threshold_percent",
            "NVMe available spare threshold, percent",
            self.nvme_available_spare_threshold.clone(),
        );
        r.register(
            "nvme_percentage_used",
            "NVMe endurance used, percent",
            self.nvme_percentage_used.clone(),
        );
        r.register(
            "nvme_media_errors",
            "NVMe media and data integrity errors (the controller's SMART count)",
            self.nvme_media_errors.clone(),
        );
        r.register(
            "scrub_position_bytes",
            "Scrubber position in the current pass",
            self.scrub_position.clone(),
        );
        r.register(
            "scrub_size_bytes",
            "Size of the device being scrubbed",
            self.scrub_size.clone(),
        );
        r.register(
            "scrub_unreadable_blocks",
            "Blocks the scrubber could not read",
            self.scrub_unreadable.clone(),
        );
        r.register(
            "scrub_passes",
            "Completed scrub passes",
            self.scrub_passes.clone(),
        );
        r.register(
            "kernel_events_lost",
            "Kernel events lost (ring overflow)",
            self.kernel_events_lost.clone(),
        );
    }

    fn dev(device: &str) -> DeviceLabels {
        DeviceLabels {
            device: escape_label(device),
        }
    }

    /// Updates the gauges an event carries values for (counters by kind are handled by the sink).
    fn apply_values(&self, ev: &Event) {
        let d = &*ev.device;
        match &ev.kind {
            EventKind::NvmeHealth {
                critical_warning,
                available_spare,
                available_spare_threshold,
                percentage_used,
                media_errors,
                ..
            } => {
                let l = Self::dev(d);
                self.nvme_critical_warning
                    .get_or_create(&l)
                    .set(*critical_warning as i64);
                self.nvme_available_spare
                    .get_or_create(&l)
                    .set(*available_spare as i64);
                self.nvme_available_spare_threshold
                    .get_or_create(&l)
                    .set(*available_spare_threshold as i64);
                self.nvme_percentage_used
                    .get_or_create(&l)
                    .set(*percentage_used as i64);
                // The controller's count only grows; follow it.
                let c = self.nvme_media_errors.get_or_create(&l);
                let seen = c.get();
                if *media_errors > seen {
                    c.inc_by(*media_errors - seen);
                }
            }
            EventKind::ScrubProgress {
                offset,
                total,
                done,
                ..
            } => {
                let l = Self::dev(d);
                self.scrub_position.get_or_create(&l).set(*offset as i64);
                self.scrub_size.get_or_create(&l).set(*total as i64);
                if *done {
                    self.scrub_passes.get_or_create(&l).inc();
                }
            }
            EventKind::ScrubUnreadable { .. } => {
                self.scrub_unreadable.get_or_create(&Self::dev(d)).inc();
            }
            EventKind::KernelEventsLost { count } => {
                self.kernel_events_lost
                    .get_or_create(&Self::dev(d))
                    .inc_by(*count);
            }
            _ => {}
        }
    }
}

const CACHE_LIMIT: usize = 4096;

/// (source name address, device name address, kind index)
type CacheKey = (usize, usize, usize);

/// The Prometheus sink: counts events by (source, device, kind) and updates value gauges.
///
/// Counter handles are cached by the addresses of the event's shared name strings; the cache
/// keeps a clone of each name so an address cannot be reused for another string while cached.
/// Events whose names are not shared (a new allocation per event) fall back to a lookup by
/// content once the cache is full.
pub struct PromSink {
    m: EventMetrics,
    cache: HashMap<CacheKey, (Arc<str>, Arc<str>, Counter)>,
}

impl PromSink {
    pub fn new(m: EventMetrics) -> PromSink {
        PromSink {
            m,
            cache: HashMap::new(),
        }
    }

    fn counter(&mut self, ev: &Event) -> Counter {
        let k = ev.kind.index();
        let key = (
            Arc::as_ptr(&ev.source) as *const u8 as usize,
            Arc::as_ptr(&ev.device) as *const u8 as usize,
            k,
        );
        if let Some((_, _, c)) = self.cache.get(&key) {
            return c.clone();
        }
        let labels = EventLabels {
            source: escape_label(&ev.source),
            device: escape_label(&ev.device),
            kind: EventKind::NAMES[k].to_string(),
        };
        let c = self.m.events.get_or_create_owned(&labels);
        if self.cache.len() < CACHE_LIMIT {
            self.cache
                .insert(key, (ev.source.clone(), ev.device.clone(), c.clone()));
        }
        c
    }
}

impl Sink for PromSink {
    fn name(&self) -> &str {
        "prometheus"
    }

    fn write_batch(&mut self, batch: &[Event]) -> io::Result<()> {
        // Runs of events with the same labels (the common case under load) cost one increment.
        let mut i = 0;
        while i < batch.len() {
            let ev = &batch[i];
            let mut j = i + 1;
            while j < batch.len()
                && Arc::ptr_eq(&batch[j].source, &ev.source)
                && Arc::ptr_eq(&batch[j].device, &ev.device)
                && batch[j].kind.index() == ev.kind.index()
                && !has_values(&batch[j].kind)
            {
                j += 1;
            }
            self.counter(ev).inc_by((j - i) as u64);
            self.m.apply_values(ev);
            i = j;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn has_values(k: &EventKind) -> bool {
    matches!(
        k,
        EventKind::NvmeHealth { .. }
            | EventKind::ScrubProgress { .. }
            | EventKind::ScrubUnreadable { .. }
            | EventKind::KernelEventsLost { .. }
    )
}

/// Daemon-level counters that are not events.
#[derive(Debug, Default)]
pub struct DaemonCounters {
    pub reloads: AtomicU64,
    pub reload_errors: AtomicU64,
    pub jsonl_reopens: Arc<AtomicU64>,
}

/// Exports pipeline and process figures at scrape time.
#[derive(Debug)]
pub struct DaemonCollector {
    pub shared: Arc<Shared>,
    pub counters: Arc<DaemonCounters>,
    pub started: Instant,
    /// Scrape statistics of the NVMe source, when it runs.
    pub nvme: Option<Arc<NvmeStats>>,
}

/// Upper bounds (seconds) of the exported latency histograms.
const LATENCY_BOUNDS_S: [f64; 12] = [
    1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 1.0,
];

impl Collector for DaemonCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let st = self.shared.stats();
        gauge(
            &mut enc,
            "queue_depth",
            "Events waiting in the pipeline queue",
            st.queue_depth as i64,
        )?;
        gauge(
            &mut enc,
            "queue_capacity",
            "Pipeline queue capacity",
            st.capacity as i64,
        )?;
        labelled_counter(
            &mut enc,
            "source_events_accepted",
            "Events accepted into the pipeline, by source",
            "source",
            st.sources.iter().map(|s| (s.name.as_str(), s.accepted)),
        )?;
        labelled_counter(
            &mut enc,
            "source_events_dropped",
            "Events dropped because the queue was full (drop policy), by source",
            "source",
            st.sources.iter().map(|s| (s.name.as_str(), s.dropped)),
        )?;
        labelled_counter(
            &mut enc,
            "sink_events_written",
            "Events written by each sink",
            "sink",
            st.sinks.iter().map(|s| (s.name.as_str(), s.written)),
        )?;
        labelled_counter(
            &mut enc,
            "sink_errors",
            "Failed batch writes, by sink",
            "sink",
            st.sinks.iter().map(|s| (s.name.as_str(), s.errors)),
        )?;
        histogram(
            &mut enc,
            "event_latency_seconds",
            "Time from enqueue until every sink wrote and flushed the event",
            &self.shared.end_to_end_ns.snapshot(),
        )?;
        if let Some(n) = &self.nvme {
            counter(
                &mut enc,
                "nvme_scrape_cycles",
                "NVMe scrape cycles over all controllers",
                n.cycles.load(Ordering::Relaxed),
            )?;
            counter(
                &mut enc,
                "nvme_scrape_errors",
                "Failed NVMe listings or health log reads",
                n.errors.load(Ordering::Relaxed),
            )?;
            histogram(
                &mut enc,
                "nvme_scrape_seconds",
                "Duration of one scrape of all controllers",
                &n.cycle_ns.snapshot(),
            )?;
        }
        let ps = procfs::status();
        gauge(
            &mut enc,
            "resident_memory_bytes",
            "Resident set size of the daemon",
            (ps.rss_kb * 1024) as i64,
        )?;
        gauge(
            &mut enc,
            "threads",
            "Threads of the daemon",
            ps.threads as i64,
        )?;
        gauge(
            &mut enc,
            "uptime_seconds",
            "Seconds since the daemon started",
            self.started.elapsed().as_secs() as i64,
        )?;
        counter(
            &mut enc,
            "config_reloads",
            "Successful configuration reloads",
            self.counters.reloads.load(Ordering::Relaxed),
        )?;
        counter(
            &mut enc,
            "config_reload_errors",
            "Rejected configuration reloads",
            self.counters.reload_errors.load(Ordering::Relaxed),
        )?;
        counter(
            &mut enc,
            "jsonl_reopens",
            "Times the JSON-lines file was reopened",
            self.counters.jsonl_reopens.load(Ordering::Relaxed),
        )?;
        Ok(())
    }
}

/// A counter family with one label, one sample per `(label value, count)`.
fn labelled_counter<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: impl Iterator<Item = (&'a str, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in values {
        let value = escape_label(value);
        let l = [(label, value.as_str())];
        ConstCounter::new(count).encode(m.encode_family(&l)?)?;
    }
    Ok(())
}

fn histogram(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    snap: &Snapshot,
) -> Result<(), std::fmt::Error> {
    let bounds_ns: Vec<u64> = LATENCY_BOUNDS_S.iter().map(|s| (s * 1e9) as u64).collect();
    let cum = snap.cumulative(&bounds_ns);
    let mut buckets = Vec::with_capacity(cum.len() + 1);
    let mut prev = 0;
    for (b, c) in LATENCY_BOUNDS_S.iter().zip(&cum) {
        buckets.push((*b, c - prev));
        prev = *c;
    }
    buckets.push((f64::MAX, snap.count - prev));
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
        snap.sum as f64 / 1e9,
        snap.count,
        &buckets,
        None,
    )
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: i64,
) -> Result<(), std::fmt::Error> {
    let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}

/// Builds the registry: the event metrics, the daemon collector and, when given, the per-device
/// collector under the prefix `dmremapd`, plus the unprefixed `process_start_time_seconds`.
pub fn registry(
    m: &EventMetrics,
    collector: DaemonCollector,
    devices: Option<crate::field::DeviceCollector>,
) -> Registry {
    let mut top = Registry::default();
    top.register_collector(Box::new(crate::field::ProcessCollector::now()));
    let r = top.sub_registry_with_prefix("dmremapd");
    m.register(r);
    r.register_collector(Box::new(collector));
    if let Some(d) = devices {
        r.register_collector(Box::new(d));
    }
    top
}

/// Encodes the registry in the OpenMetrics text format.
pub fn encode(r: &Registry) -> String {
    let mut s = String::with_capacity(8192);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut s, r);
    s
}

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

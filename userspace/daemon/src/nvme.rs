//! Periodic NVMe health scraping.
//!
//! [`NvmeSource`] asks a [`HealthProbe`] for a SMART/health snapshot of each controller every
//! `interval`, compares it with the previous one and emits an `nvme_health` event when the
//! critical warning bits change, the available spare falls below its threshold (on the crossing),
//! the media error count grows, or on the first snapshot of a device (so metrics start with
//! values). A device that fails to answer is logged once when it starts failing and once when it
//! recovers.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::event::{mono_ns, EventKind, NvmeChanges};
use crate::hist::Histogram;
use crate::source::{Source, SourceContext};

/// The SMART/health values the daemon watches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSnapshot {
    /// Critical warning bit field (byte 0 of the SMART log).
    pub critical_warning: u8,
    /// Available spare, percent.
    pub available_spare: u8,
    /// Available spare threshold, percent.
    pub available_spare_threshold: u8,
    /// Endurance used, percent (may exceed 100).
    pub percentage_used: u8,
    /// Media and data integrity errors (saturated to u64).
    pub media_errors: u64,
    /// Error information log entries (saturated to u64).
    pub num_err_log_entries: u64,
    /// Composite temperature, kelvin.
    pub temperature_kelvin: u16,
}

/// Something that can read NVMe health: the real implementation reads the SMART log page over
/// the admin command ioctl; tests use a fake.
pub trait HealthProbe: Send {
    /// Controllers to scrape (names such as `nvme0`).
    fn devices(&mut self) -> io::Result<Vec<String>>;
    /// A snapshot of one controller.
    fn snapshot(&mut self, device: &str) -> io::Result<HealthSnapshot>;
}

/// What changed between two snapshots (`prev == None`: first snapshot).
pub fn diff(prev: Option<&HealthSnapshot>, cur: &HealthSnapshot) -> NvmeChanges {
    let below = |s: &HealthSnapshot| s.available_spare < s.available_spare_threshold;
    let mut bits = 0;
    match prev {
        None => {
            bits |= NvmeChanges::INITIAL;
            if cur.critical_warning != 0 {
                bits |= NvmeChanges::CRITICAL_WARNING;
            }
            if below(cur) {
                bits |= NvmeChanges::SPARE_BELOW_THRESHOLD;
            }
        }
        Some(p) => {
            if cur.critical_warning != p.critical_warning {
                bits |= NvmeChanges::CRITICAL_WARNING;
            }
            if below(cur) && !below(p) {
                bits |= NvmeChanges::SPARE_BELOW_THRESHOLD;
            }
            if cur.media_errors > p.media_errors {
                bits |= NvmeChanges::MEDIA_ERRORS;
            }
        }
    }
    NvmeChanges(bits)
}

/// Settings that can change at run time (config reload).
#[derive(Clone, Debug, PartialEq)]
pub struct NvmeSettings {
    pub interval: Duration,
    /// Only these controllers; empty = every controller the probe lists.
    pub devices: Vec<String>,
}

/// Scrape counters.
#[derive(Debug, Default)]
pub struct NvmeStats {
    pub cycles: AtomicU64,
    pub snapshots: AtomicU64,
    pub errors: AtomicU64,
    /// Duration of one scrape cycle over all devices.
    pub cycle_ns: Histogram,
}

struct DevState {
    name: Arc<str>,
    last: Option<HealthSnapshot>,
    failing: bool,
}

/// The periodic NVMe scrape source.
pub struct NvmeSource {
    probe: Box<dyn HealthProbe>,
    settings: Arc<Mutex<NvmeSettings>>,
    devs: HashMap<String, DevState>,
    stats: Arc<NvmeStats>,
    list_failing: bool,
}

impl NvmeSource {
    pub fn new(probe: Box<dyn HealthProbe>, settings: Arc<Mutex<NvmeSettings>>) -> NvmeSource {
        NvmeSource {
            probe,
            settings,
            devs: HashMap::new(),
            stats: Arc::new(NvmeStats::default()),
            list_failing: false,
        }
    }

    pub fn stats(&self) -> Arc<NvmeStats> {
        self.stats.clone()
    }

    /// One scrape of every selected device; emits events for changes.
    pub fn scrape_once(&mut self, ctx: &SourceContext) {
        let t0 = mono_ns();
        let wanted = self
            .settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .devices
            .clone();
        let list = match self.probe.devices() {
            Ok(l) => {
                if self.list_failing {
                    log::info!("nvme: listing controllers works again");
                    self.list_failing = false;
                }
                l
            }
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                if !self.list_failing {
                    log::warn!("nvme: cannot list controllers: {e}");
                    self.list_failing = true;
                }
                return;
            }
        };
        for dev in list
            .into_iter()
            .filter(|d| wanted.is_empty() || wanted.contains(d))
        {
            let res = self.probe.snapshot(&dev);
            let st = self.devs.entry(dev.clone()).or_insert_with(|| DevState {
                name: Arc::from(dev.as_str()),
                last: None,
                failing: false,
            });
            match res {
                Ok(cur) => {
                    self.stats.snapshots.fetch_add(1, Ordering::Relaxed);
                    if st.failing {
                        log::info!("nvme: {dev}: health log readable again");
                        st.failing = false;
                    }
                    let changes = diff(st.last.as_ref(), &cur);
                    if !changes.is_empty() {
                        let prev = st.last.unwrap_or(cur);
                        ctx.emitter.emit(
                            &st.name,
                            EventKind::NvmeHealth {
                                changes,
                                critical_warning: cur.critical_warning,
                                critical_warning_prev: prev.critical_warning,
                                available_spare: cur.available_spare,
                                available_spare_threshold: cur.available_spare_threshold,
                                percentage_used: cur.percentage_used,
                                media_errors: cur.media_errors,
                                media_errors_prev: prev.media_errors,
                            },
                        );
                    }
                    st.last = Some(cur);
                }
                Err(e) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    if !st.failing {
                        log::warn!("nvme: {dev}: cannot read health log: {e}");
                        st.failing = true;
                    }
                }
            }
        }
        self.stats.cycles.fetch_add(1, Ordering::Relaxed);
        self.stats.cycle_ns.record(mono_ns().saturating_sub(t0));
    }
}

impl Source for NvmeSource {
    fn name(&self) -> &str {
        "nvme"
    }

    fn run(&mut self, ctx: &SourceContext) -> io::Result<()> {
        loop {
            self.scrape_once(ctx);
            let interval = self
                .settings
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .interval;
            if ctx.stop.wait(interval) {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Pipeline, PipelineConfig};
    use crate::source::StopToken;

    /// A probe whose answers the test scripts per cycle.
    pub struct FakeProbe {
        pub script: Arc<Mutex<HashMap<String, io::Result<HealthSnapshot>>>>,
    }

    impl HealthProbe for FakeProbe {
        fn devices(&mut self) -> io::Result<Vec<String>> {
            let mut v: Vec<String> = self.script.lock().unwrap().keys().cloned().collect();
            v.sort();
            Ok(v)
        }
        fn snapshot(&mut self, device: &str) -> io::Result<HealthSnapshot> {
            match self.script.lock().unwrap().get(device) {
                Some(Ok(s)) => Ok(*s),
                Some(Err(e)) => Err(io::Error::new(e.kind(), e.to_string())),
                None => Err(io::Error::from(io::ErrorKind::NotFound)),
            }
        }
    }

    use crate::sinks::MemorySink as Collect;

    fn healthy() -> HealthSnapshot {
        HealthSnapshot {
            available_spare: 100,
            available_spare_threshold: 10,
            temperature_kelvin: 310,
            ..Default::default()
        }
    }

    #[test]
    fn diff_rules() {
        let h = healthy();
        assert_eq!(diff(None, &h), NvmeChanges(NvmeChanges::INITIAL));
        assert!(diff(Some(&h), &h).is_empty());
        let warn = HealthSnapshot {
            critical_warning: 0x4,
            ..h
        };
        assert_eq!(
            diff(Some(&h), &warn),
            NvmeChanges(NvmeChanges::CRITICAL_WARNING)
        );
        assert_eq!(
            diff(Some(&warn), &h),
            NvmeChanges(NvmeChanges::CRITICAL_WARNING),
            "clearing is a change too"
        );
        let low = HealthSnapshot {
            available_spare: 5,
            ..h
        };
        assert_eq!(
            diff(Some(&h), &low),
            NvmeChanges(NvmeChanges::SPARE_BELOW_THRESHOLD)
        );
        assert!(
            diff(Some(&low), &low).is_empty(),
            "reported on the crossing only"
        );
        let me = HealthSnapshot {
            media_errors: 2,
            ..h
        };
        assert_eq!(diff(Some(&h), &me), NvmeChanges(NvmeChanges::MEDIA_ERRORS));
        assert!(
            diff(Some(&me), &h).is_empty(),
            "a counter going down is not an increase"
        );
        assert_eq!(
            diff(
                None,
                &HealthSnapshot {
                    critical_warning: 1,
                    ..low
                }
            ),
            NvmeChanges(
                NvmeChanges::INITIAL
                    | NvmeChanges::CRITICAL_WARNING
                    | NvmeChanges::SPARE_BELOW_THRESHOLD
            )
        );
    }

    #[test]
    fn scrapes_emit_only_changes() {
        let script = Arc::new(Mutex::new(HashMap::new()));
        script
            .lock()
            .unwrap()
            .insert("nvme0".to_string(), Ok(healthy()));
        script
            .lock()
            .unwrap()
            .insert("nvme1".to_string(), Ok(healthy()));
        let got = Arc::new(Mutex::new(Vec::new()));
        let p = Pipeline::start(
            &PipelineConfig::default(),
            vec![Box::new(Collect(got.clone()))],
            Box::new(|| {}),
        )
        .unwrap();
        let settings = Arc::new(Mutex::new(NvmeSettings {
            interval: Duration::from_secs(60),
            devices: vec![],
        }));
        let mut src = NvmeSource::new(
            Box::new(FakeProbe {
                script: script.clone(),
            }),
            settings.clone(),
        );
        let ctx = SourceContext {
            emitter: p.emitter("nvme"),
            stop: StopToken::new(),
        };

        src.scrape_once(&ctx); // 2 initial events
        src.scrape_once(&ctx); // nothing changed
        script.lock().unwrap().insert(
            "nvme1".to_string(),
            Ok(HealthSnapshot {
                critical_warning: 0x1,
                available_spare: 4,
                media_errors: 7,
                ..healthy()
            }),
        );
        script.lock().unwrap().insert(
            "nvme0".to_string(),
            Err(io::Error::other("admin command timed out")),
        );
        src.scrape_once(&ctx); // nvme1 changed, nvme0 fails
        settings.lock().unwrap().devices = vec!["nvme0".to_string()];
        src.scrape_once(&ctx); // only nvme0, still failing
        let stats = src.stats();
        drop(ctx);
        p.close();

        let got = got.lock().unwrap();
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(got[..2].iter().all(|e| matches!(e.kind, EventKind::NvmeHealth { changes, .. } if changes == NvmeChanges(NvmeChanges::INITIAL))));
        match &got[2].kind {
            EventKind::NvmeHealth {
                changes,
                critical_warning,
                critical_warning_prev,
                media_errors,
                media_errors_prev,
                available_spare,
                ..
            } => {
                assert_eq!(&*got[2].device, "nvme1");
                assert_eq!(
                    *changes,
                    NvmeChanges(
                        NvmeChanges::CRITICAL_WARNING
                            | NvmeChanges::SPARE_BELOW_THRESHOLD
                            | NvmeChanges::MEDIA_ERRORS
                    )
                );
                assert_eq!((*critical_warning, *critical_warning_prev), (1, 0));
                assert_eq!((*media_errors, *media_errors_prev), (7, 0));
                assert_eq!(*available_spare, 4);
            }
            k => panic!("unexpected {k:?}"),
        }
        assert_eq!(&*got[0].source, "nvme");
        assert_eq!(stats.cycles.load(Ordering::Relaxed), 4);
        assert_eq!(stats.errors.load(Ordering::Relaxed), 2);
        assert_eq!(stats.snapshots.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn run_stops_promptly() {
        let script = Arc::new(Mutex::new(HashMap::new()));
        script
            .lock()
            .unwrap()
            .insert("nvme0".to_string(), Ok(healthy()));
        let p = Pipeline::start(
            &PipelineConfig::default(),
            vec![Box::new(Collect(Default::default()))],
            Box::new(|| {}),
        )
        .unwrap();
        let settings = Arc::new(Mutex::new(NvmeSettings {
            interval: Duration::from_millis(5),
            devices: vec![],
        }));
        let mut src = NvmeSource::new(Box::new(FakeProbe { script }), settings);
        let stats = src.stats();
        let stop = StopToken::new();
        let ctx = SourceContext {
            emitter: p.emitter("nvme"),
            stop: stop.clone(),
        };
        let h = std::thread::spawn(move || src.run(&ctx));
        std::thread::sleep(Duration::from_millis(100));
        stop.stop();
        h.join().unwrap().unwrap();
        assert!(stats.cycles.load(Ordering::Relaxed) >= 5);
        p.close();
    }
}

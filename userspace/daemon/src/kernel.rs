//! The kernel event source.
//!
//! The module keeps a bounded ring of sequence-numbered events per module (see DESIGN §4);
//! [`KernelEvents`] is the blocking reader of that ring (the control-device implementation lives
//! with the control ABI). [`KernelSource`] reads batches with a timeout so that it notices a stop
//! request within one timeout, turns device numbers into device-mapper names (sysfs, cached for a
//! minute), reports gaps in the sequence numbers as `kernel_events_lost`, and retries failed reads
//! with a backoff of 1 s doubling up to 30 s, logging the failure once.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event::{Event, EventKind, KernelRef, Timestamp};
use crate::source::{Source, SourceContext};

/// A block device number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DevId {
    pub major: u32,
    pub minor: u32,
}

/// One event as read from the kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelEvent {
    /// The ring's sequence number (consecutive unless events were lost).
    pub seq: u64,
    /// The dm-remap device it is about.
    pub dev: DevId,
    /// The record's type-specific value.
    pub arg: u64,
    /// Wall-clock time the kernel recorded, if it did.
    pub ts: Option<Timestamp>,
    pub kind: EventKind,
}

/// Blocking reader of kernel events.
pub trait KernelEvents: Send {
    /// Waits up to `timeout` for events and appends the ones available to `out`. Returning `Ok`
    /// with nothing appended means the timeout passed (or the reader was woken).
    fn read_batch(&mut self, out: &mut Vec<KernelEvent>, timeout: Duration) -> io::Result<()>;
    /// A function that makes a `read_batch` in progress return at once. A reader that has one
    /// is called without a timeout (no periodic wake-ups while idle) and woken on stop.
    fn waker(&self) -> Option<crate::source::StopHook> {
        None
    }
    /// Start at sequence number `seq` (a cursor kept from an earlier run) instead of the end of
    /// the ring. Events before the oldest one still held are reported as lost.
    fn start_at(&mut self, _seq: u64) {}
    /// The sequence number of the next event to read, once known.
    fn cursor(&self) -> Option<u64> {
        None
    }
}

/// How long a wakeable reader waits at most when idle (it is woken on stop anyway).
const IDLE_WAIT: Duration = Duration::from_secs(3600);

/// Reads the kept cursor: the decimal sequence number of the next event to read.
pub fn load_cursor(path: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Keeps the cursor: written to a temporary file, synced, and renamed over `path`.
pub fn save_cursor(path: &std::path::Path, seq: u64) -> io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{seq}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Maps device numbers to names.
pub trait DeviceNames: Send {
    fn name(&mut self, dev: DevId) -> Arc<str>;
}

/// Names from `/sys/dev/block/M:m/dm/name` (falls back to `M:m`), cached for `ttl`.
pub struct SysfsNames {
    root: std::path::PathBuf,
    ttl: Duration,
    cache: HashMap<DevId, (Arc<str>, Instant)>,
}

impl SysfsNames {
    pub fn new() -> SysfsNames {
        SysfsNames::with_root("/sys/dev/block".into(), Duration::from_secs(60))
    }

    pub fn with_root(root: std::path::PathBuf, ttl: Duration) -> SysfsNames {
        SysfsNames {
            root,
            ttl,
            cache: HashMap::new(),
        }
    }
}

impl Default for SysfsNames {
    fn default() -> Self {
        Self::new()
    }
}

impl DeviceNames for SysfsNames {
    fn name(&mut self, dev: DevId) -> Arc<str> {
        if let Some((n, t)) = self.cache.get(&dev) {
            if t.elapsed() < self.ttl {
                return n.clone();
            }
        }
        let p = self
            .root
            .join(format!("{}:{}/dm/name", dev.major, dev.minor));
        let name: Arc<str> = match std::fs::read_to_string(&p) {
            Ok(s) if !s.trim().is_empty() => Arc::from(s.trim()),
            _ => Arc::from(format!("{}:{}", dev.major, dev.minor).as_str()),
        };
        self.cache.insert(dev, (name.clone(), Instant::now()));
        name
    }
}

/// The kernel event source.
pub struct KernelSource {
    reader: Box<dyn KernelEvents>,
    names: Box<dyn DeviceNames>,
    timeout: Duration,
    last_seq: Option<u64>,
    module: Arc<str>,
    buf: Vec<KernelEvent>,
    /// Where the cursor is kept across restarts.
    cursor_file: Option<std::path::PathBuf>,
    saved: Option<u64>,
    cursor_warned: bool,
}

impl KernelSource {
    pub fn new(
        reader: Box<dyn KernelEvents>,
        names: Box<dyn DeviceNames>,
        timeout: Duration,
    ) -> KernelSource {
        KernelSource {
            reader,
            names,
            timeout,
            last_seq: None,
            module: Arc::from("dm-remap"),
            buf: Vec::with_capacity(256),
            cursor_file: None,
            saved: None,
            cursor_warned: false,
        }
    }

    /// Keep the cursor in `path`: on start, reading resumes there (events raised while the
    /// daemon was down are reported; those the ring no longer holds as `kernel_events_lost`);
    /// after each batch accepted into the pipeline it is updated.
    pub fn with_cursor_file(mut self, path: std::path::PathBuf) -> KernelSource {
        self.cursor_file = Some(path);
        self
    }

    fn resume(&mut self) {
        let Some(p) = &self.cursor_file else { return };
        if let Some(seq) = load_cursor(p).filter(|&s| s >= 1) {
            log::info!(
                "kernel events: resuming at sequence number {seq} ({})",
                p.display()
            );
            self.reader.start_at(seq);
            self.last_seq = Some(seq - 1);
            self.saved = Some(seq);
        }
    }

    fn keep_cursor(&mut self) {
        let (Some(p), Some(c)) = (&self.cursor_file, self.reader.cursor()) else {
            return;
        };
        if self.saved == Some(c) {
            return;
        }
        match save_cursor(p, c) {
            Ok(()) => self.saved = Some(c),
            Err(e) => {
                if !self.cursor_warned {
                    log::warn!(
                        "kernel events: cannot keep the cursor in {}: {e}",
                        p.display()
                    );
                    self.cursor_warned = true;
                }
            }
        }
    }

    fn forward(&mut self, ctx: &SourceContext) {
        for kev in self.buf.drain(..) {
            if let Some(last) = self.last_seq {
                if kev.seq > last + 1 {
                    ctx.emitter.emit(
                        &self.module,
                        EventKind::KernelEventsLost {
                            count: kev.seq - last - 1,
                        },
                    );
                }
            }
            // Events come in order; a lower number means the module was reloaded.
            self.last_seq = Some(kev.seq);
            let device = self.names.name(kev.dev);
            let mut ev = Event::new(ctx.emitter.source().clone(), device, kev.kind);
            if let Some(ts) = kev.ts {
                ev.ts = ts;
            }
            ev.kernel = std::num::NonZeroU64::new(kev.seq).map(|seq| KernelRef {
                seq,
                dev: kev.dev.major << 20 | kev.dev.minor,
                arg: kev.arg,
            });
            ctx.emitter.push(ev);
        }
        // The events are accepted (a stop drains them to the sinks): move the kept cursor.
        self.keep_cursor();
    }
}

impl Source for KernelSource {
    fn name(&self) -> &str {
        "kernel"
    }

    fn run(&mut self, ctx: &SourceContext) -> io::Result<()> {
        let mut backoff = Duration::from_secs(1);
        let mut failing = false;
        self.resume();
        let timeout = match self.reader.waker() {
            Some(w) => {
                ctx.stop.on_stop(w);
                IDLE_WAIT
            }
            None => self.timeout,
        };
        while !ctx.stop.is_stopped() {
            match self.reader.read_batch(&mut self.buf, timeout) {
                Ok(()) => {
                    if failing {
                        log::info!("kernel events: reading works again");
                        failing = false;
                        backoff = Duration::from_secs(1);
                    }
                    self.forward(ctx);
                }
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.kind() == io::ErrorKind::WouldBlock =>
                {
                    self.forward(ctx);
                }
                Err(e) => {
                    self.forward(ctx);
                    if !failing {
                        log::warn!("kernel events: read failed: {e}; retrying");
                        failing = true;
                    }
                    if ctx.stop.wait(backoff) {
                        break;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::RemapCause;
    use crate::pipeline::{Pipeline, PipelineConfig};
    use crate::source::StopToken;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// Replays scripted reads; an empty script sleeps for the timeout (no events).
    struct Script(Arc<Mutex<VecDeque<io::Result<Vec<KernelEvent>>>>>);

    impl KernelEvents for Script {
        fn read_batch(&mut self, out: &mut Vec<KernelEvent>, timeout: Duration) -> io::Result<()> {
            let next = self.0.lock().unwrap().pop_front();
            match next {
                Some(Ok(v)) => {
                    out.extend(v);
                    Ok(())
                }
                Some(Err(e)) => Err(e),
                None => {
                    std::thread::sleep(timeout);
                    Ok(())
                }
            }
        }
    }

    struct Names;
    impl DeviceNames for Names {
        fn name(&mut self, dev: DevId) -> Arc<str> {
            Arc::from(format!("dm-{}", dev.minor).as_str())
        }
    }

    use crate::sinks::MemorySink as Collect;

    fn kev(seq: u64, minor: u32) -> KernelEvent {
        KernelEvent {
            seq,
            dev: DevId { major: 253, minor },
            arg: seq,
            ts: Some(Timestamp(seq * 1_000_000_000)),
            kind: EventKind::RemapDone {
                sector: seq * 8,
                sectors: 8,
                spare_slot: seq,
                cause: RemapCause::WriteError,
            },
        }
    }

    #[test]
    fn forwards_names_gaps_and_survives_errors() {
        let script = Arc::new(Mutex::new(VecDeque::from(vec![
            Ok(vec![kev(1, 0), kev(2, 1)]),
            Err(io::Error::from_raw_os_error(libc::EINTR)),
            Ok(vec![kev(5, 0)]), // 3 and 4 were lost
            Err(io::Error::from_raw_os_error(libc::EIO)),
            Ok(vec![kev(6, 2)]),
        ])));
        let got = Arc::new(Mutex::new(Vec::new()));
        let p = Pipeline::start(
            &PipelineConfig::default(),
            vec![Box::new(Collect(got.clone()))],
            Box::new(|| {}),
        )
        .unwrap();
        let stop = StopToken::new();
        let ctx = SourceContext {
            emitter: p.emitter("kernel"),
            stop: stop.clone(),
        };
        let mut src = KernelSource::new(
            Box::new(Script(script.clone())),
            Box::new(Names),
            Duration::from_millis(10),
        );
        let h = std::thread::spawn(move || src.run(&ctx));
        // The EIO costs one 1 s backoff.
        let t0 = Instant::now();
        while !script.lock().unwrap().is_empty() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(50));
        stop.stop();
        h.join().unwrap().unwrap();
        p.close();
        let got = got.lock().unwrap();
        let summary: Vec<(String, &str)> = got
            .iter()
            .map(|e| (e.device.to_string(), e.kind.name()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("dm-0".to_string(), "remap_done"),
                ("dm-1".to_string(), "remap_done"),
                ("dm-remap".to_string(), "kernel_events_lost"),
                ("dm-0".to_string(), "remap_done"),
                ("dm-2".to_string(), "remap_done"),
            ]
        );
        assert_eq!(got[2].kind, EventKind::KernelEventsLost { count: 2 });
        assert_eq!(got[0].ts, Timestamp(1_000_000_000), "kernel timestamp kept");
        let k = got[3].kernel.expect("record reference");
        assert_eq!((k.seq.get(), k.major(), k.minor(), k.arg), (5, 253, 0, 5));
        assert_eq!(got[2].kernel, None, "a counted gap has no record");
        assert!(got.iter().all(|e| &*e.source == "kernel"));
    }

    #[test]
    fn stops_within_a_timeout() {
        let p = Pipeline::start(
            &PipelineConfig::default(),
            vec![Box::new(Collect(Default::default()))],
            Box::new(|| {}),
        )
        .unwrap();
        let stop = StopToken::new();
        let ctx = SourceContext {
            emitter: p.emitter("kernel"),
            stop: stop.clone(),
        };
        let mut src = KernelSource::new(
            Box::new(Script(Default::default())),
            Box::new(Names),
            Duration::from_millis(50),
        );
        let h = std::thread::spawn(move || src.run(&ctx));
        std::thread::sleep(Duration::from_millis(20));
        let t = Instant::now();
        stop.stop();
        h.join().unwrap().unwrap();
        assert!(t.elapsed() < Duration::from_millis(500));
    }

    /// A ring holding events `first..next`, read from a cursor; wakeable.
    struct Ring {
        first: u64,
        next: u64,
        at: Option<u64>,
        started_at: Arc<Mutex<Option<u64>>>,
        woken: Arc<std::sync::atomic::AtomicBool>,
    }

    impl KernelEvents for Ring {
        fn read_batch(&mut self, out: &mut Vec<KernelEvent>, timeout: Duration) -> io::Result<()> {
            let at = self.at.unwrap_or(self.next).max(self.first);
            if at < self.next {
                out.extend((at..self.next).map(|s| kev(s, 0)));
                self.at = Some(self.next);
                return Ok(());
            }
            self.at = Some(at);
            // Idle: a wakeable reader is called without a timeout.
            assert!(
                timeout >= Duration::from_secs(60),
                "idle wait of {timeout:?}"
            );
            let t = Instant::now();
            while !self.woken.load(std::sync::atomic::Ordering::SeqCst)
                && t.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        }
        fn waker(&self) -> Option<crate::source::StopHook> {
            let w = self.woken.clone();
            Some(Arc::new(move || {
                w.store(true, std::sync::atomic::Ordering::SeqCst)
            }))
        }
        fn start_at(&mut self, seq: u64) {
            self.at = Some(seq);
            *self.started_at.lock().unwrap() = Some(seq);
        }
        fn cursor(&self) -> Option<u64> {
            self.at
        }
    }

    fn run_ring(cursor: &std::path::Path, first: u64, next: u64) -> (Vec<Event>, Option<u64>) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let p = Pipeline::start(
            &PipelineConfig::default(),
            vec![Box::new(Collect(got.clone()))],
            Box::new(|| {}),
        )
        .unwrap();
        let stop = StopToken::new();
        let ctx = SourceContext {
            emitter: p.emitter("kernel"),
            stop: stop.clone(),
        };
        let started_at = Arc::new(Mutex::new(None));
        let ring = Ring {
            first,
            next,
            at: None,
            started_at: started_at.clone(),
            woken: Default::default(),
        };
        let mut src = KernelSource::new(Box::new(ring), Box::new(Names), Duration::from_millis(10))
            .with_cursor_file(cursor.to_path_buf());
        let h = std::thread::spawn(move || src.run(&ctx));
        std::thread::sleep(Duration::from_millis(200));
        let t = Instant::now();
        stop.stop();
        h.join().unwrap().unwrap();
        assert!(t.elapsed() < Duration::from_secs(2), "woken on stop");
        p.close();
        let got = got.lock().unwrap().clone();
        let s = *started_at.lock().unwrap();
        (got, s)
    }

    #[test]
    fn cursor_is_kept_and_resumed_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let cursor = dir.path().join("kernel-events.cursor");
        // First run without a cursor: starts at the end of the ring (nothing replayed).
        let (got, started) = run_ring(&cursor, 1, 4);
        assert!(got.is_empty() && started.is_none());
        assert_eq!(load_cursor(&cursor), Some(4));
        // Events 4..9 were raised while the daemon was down: all reported, none twice.
        let (got, started) = run_ring(&cursor, 1, 9);
        assert_eq!(started, Some(4));
        let seqs: Vec<u64> = got
            .iter()
            .map(|e| match e.kind {
                EventKind::RemapDone { spare_slot, .. } => spare_slot,
                _ => 0,
            })
            .collect();
        assert_eq!(seqs, vec![4, 5, 6, 7, 8]);
        assert_eq!(load_cursor(&cursor), Some(9));
        // Down while the ring overflowed: 9..12 are gone; reported as lost, then 12..14.
        let (got, _) = run_ring(&cursor, 12, 14);
        assert_eq!(got[0].kind, EventKind::KernelEventsLost { count: 3 });
        assert_eq!(got.len(), 3);
        assert_eq!(load_cursor(&cursor), Some(14));
    }

    #[test]
    fn sysfs_names_fall_back_to_numbers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("253:3/dm")).unwrap();
        std::fs::write(dir.path().join("253:3/dm/name"), "remap-a\n").unwrap();
        let mut n = SysfsNames::with_root(dir.path().into(), Duration::from_secs(60));
        assert_eq!(
            &*n.name(DevId {
                major: 253,
                minor: 3
            }),
            "remap-a"
        );
        assert_eq!(
            &*n.name(DevId {
                major: 253,
                minor: 9
            }),
            "253:9"
        );
        // Cached: a rename is seen only after the TTL.
        std::fs::write(dir.path().join("253:3/dm/name"), "remap-b\n").unwrap();
        assert_eq!(
            &*n.name(DevId {
                major: 253,
                minor: 3
            }),
            "remap-a"
        );
        let mut n0 = SysfsNames::with_root(dir.path().into(), Duration::ZERO);
        assert_eq!(
            &*n0.name(DevId {
                major: 253,
                minor: 3
            }),
            "remap-b"
        );
    }
}

//! The load generator source: synthetic events at a fixed offered rate (open loop) or as fast as
//! the pipeline takes them.
//!
//! The schedule is open loop: after `t` seconds the generator has offered `rate * t` events. It
//! wakes at most every millisecond and offers what is due in one burst (at most 8192 at a time).
//! Under the `block` policy a full queue holds the generator back; how far it fell behind its
//! schedule is reported as `max_lag` so that latency figures measured from enqueue can be read
//! with that in mind.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event::{EventKind, IoOp, RemapCause, Role};
use crate::pipeline::Push;
use crate::source::{Source, SourceContext};

/// Counters of one generator.
#[derive(Debug, Default)]
pub struct LoadGenStats {
    pub offered: AtomicU64,
    pub accepted: AtomicU64,
    pub dropped: AtomicU64,
    pub max_lag_ns: AtomicU64,
    pub active_ns: AtomicU64,
}

/// A synthetic event source.
pub struct LoadGen {
    name: String,
    /// Events per second; 0 = unthrottled.
    rate: f64,
    duration: Duration,
    devices: Vec<Arc<str>>,
    stats: Arc<LoadGenStats>,
}

const BURST: u64 = 8192;

impl LoadGen {
    pub fn new(name: &str, rate: f64, duration: Duration, devices: usize) -> LoadGen {
        LoadGen {
            name: name.to_string(),
            rate,
            duration,
            devices: (0..devices.max(1))
                .map(|i| Arc::from(format!("dm-{i}").as_str()))
                .collect(),
            stats: Arc::new(LoadGenStats::default()),
        }
    }

    pub fn stats(&self) -> Arc<LoadGenStats> {
        self.stats.clone()
    }

    /// The i-th synthetic event kind: a rotating mix of what the kernel reports.
    #[inline]
    pub fn kind(i: u64) -> EventKind {
        match i % 4 {
            0 => EventKind::RemapDone {
                sector: i * 8,
                sectors: 8,
                spare_slot: i,
                cause: RemapCause::WriteError,
            },
            1 => EventKind::IoError {
                op: IoOp::Read,
                role: Role::Main,
                sector: i * 8,
                sectors: 8,
                errno: 5,
            },
            2 => EventKind::PendingMarked {
                sector: i * 8,
                sectors: 8,
            },
            _ => EventKind::RemapDone {
                sector: i * 8,
                sectors: 8,
                spare_slot: i,
                cause: RemapCause::ReadRecovered,
            },
        }
    }
}

impl Source for LoadGen {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(&mut self, ctx: &SourceContext) -> io::Result<()> {
        let t0 = Instant::now();
        let nd = self.devices.len() as u64;
        let (mut sent, mut acc, mut drop) = (0u64, 0u64, 0u64);
        let mut max_lag = 0u64;
        'outer: loop {
            let el = t0.elapsed();
            if el >= self.duration || ctx.stop.is_stopped() {
                break;
            }
            let to_send = if self.rate > 0.0 {
                let due = (el.as_secs_f64() * self.rate) as u64;
                let behind = due.saturating_sub(sent);
                if behind == 0 {
                    let next = Duration::from_secs_f64((sent + 1) as f64 / self.rate);
                    let wait = next
                        .saturating_sub(el)
                        .clamp(Duration::from_micros(20), Duration::from_millis(1));
                    std::thread::sleep(wait);
                    continue;
                }
                // How late the oldest due event is.
                let lag = el.as_nanos() as u64 - ((sent as f64 / self.rate) * 1e9) as u64;
                max_lag = max_lag.max(lag);
                behind.min(BURST)
            } else {
                1024
            };
            for _ in 0..to_send {
                let i = sent;
                match ctx
                    .emitter
                    .emit(&self.devices[(i % nd) as usize], Self::kind(i))
                {
                    Push::Accepted => acc += 1,
                    Push::Dropped => drop += 1,
                    // Refused without being counted anywhere: not an offer.
                    Push::Closed => break 'outer,
                }
                sent += 1;
            }
        }
        let st = &self.stats;
        st.offered.store(sent, Ordering::Relaxed);
        st.accepted.store(acc, Ordering::Relaxed);
        st.dropped.store(drop, Ordering::Relaxed);
        st.max_lag_ns.store(max_lag, Ordering::Relaxed);
        st.active_ns
            .store(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Pipeline, PipelineConfig};
    use crate::sinks::NullSink;
    use crate::source::StopToken;

    #[test]
    fn offers_the_scheduled_number_of_events() {
        let sink = NullSink::new();
        let count = sink.count.clone();
        let p = Pipeline::start(
            &PipelineConfig::default(),
            vec![Box::new(sink)],
            Box::new(|| {}),
        )
        .unwrap();
        let mut g = LoadGen::new("lg", 20_000.0, Duration::from_millis(300), 3);
        let st = g.stats();
        let ctx = SourceContext {
            emitter: p.emitter("lg"),
            stop: StopToken::new(),
        };
        g.run(&ctx).unwrap();
        drop(ctx);
        let s = p.close();
        let offered = st.offered.load(Ordering::Relaxed);
        // 20k/s for 0.3 s = 6000, less whatever was due after the generator's last wake-up.
        assert!((5_000..=6_000).contains(&offered), "offered {offered}");
        assert_eq!(s.accepted(), offered);
        assert_eq!(count.load(Ordering::Relaxed), offered);
    }
}

//! Serializes N events the way the daemon's JSON-lines sink does ([`event::write_line`] into a
//! reused buffer, written out every 64 KiB) and reports the rate; run under
//! `valgrind --tool=callgrind` for a repeatable instruction count.
//!
//! `cargo run --release -p dmremap-lib --example event_json -- [N] [--kernel]`

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Instant;

use dmremap_lib::event::{self, Event, EventKind, KernelRef, RemapCause, Timestamp};

fn main() {
    let mut n: u64 = 100_000;
    let mut kernel = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--kernel" => kernel = true,
            s => n = s.parse().expect("usage: event_json [N] [--kernel]"),
        }
    }
    let source: Arc<str> = Arc::from("kernel");
    let device: Arc<str> = Arc::from("r0");
    let mut buf = Vec::with_capacity(1 << 17);
    let mut bytes = 0usize;
    let t0 = 1_795_392_000_000_000_000u64;
    let start = Instant::now();
    for i in 0..n {
        let mut e = Event::new(
            source.clone(),
            device.clone(),
            EventKind::RemapDone {
                sector: i * 8,
                sectors: 8,
                spare_slot: i,
                cause: RemapCause::WriteError,
            },
        );
        // One event per microsecond: a new second every 10^6 events.
        e.ts = Timestamp(t0 + i * 1_000);
        e.seq = i + 1;
        if kernel {
            e.kernel = NonZeroU64::new(i + 1).map(|seq| KernelRef {
                seq,
                dev: 253 << 20,
                arg: i,
            });
        }
        event::write_line(&mut buf, &e).expect("serialize");
        if buf.len() >= 1 << 16 {
            bytes += buf.len();
            buf.clear();
        }
    }
    bytes += buf.len();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{n} events, {bytes} bytes in {secs:.3} s: {:.0} events/s",
        n as f64 / secs
    );
}

//! The event type that flows from sources through the pipeline to the sinks: the schema shared
//! with `dmremap events --json` ([`dmremap_lib::event`]), plus the pipeline's monotonic clock.

use std::sync::OnceLock;
use std::time::Instant;

pub use dmremap_lib::event::{
    Event, EventKind, IoOp, KernelRef, NvmeChanges, Phase, RemapCause, Role, Timestamp,
};

/// Monotonic nanoseconds since the first call in this process (used for latency measurement).
pub fn mono_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

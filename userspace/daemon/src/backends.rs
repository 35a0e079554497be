//! The real implementations of the daemon's backend traits, one file each:
//!
//! - [`ControlEvents`] ([`crate::kernel::KernelEvents`], `kernel_ring.rs`): the module's event
//!   ring on `/dev/dm-remap`;
//! - [`ScraperProbe`] ([`crate::nvme::HealthProbe`], `nvme_probe.rs`): NVMe scrape cycles and
//!   the error log's new media errors;
//! - [`DmMarker`] ([`crate::scrub::PendingMarker`], `pending_marker.rs`): the `pending` target
//!   message;
//! - `main_ranges.rs`: from main-device ranges and NVMe error log entries to remap device
//!   sectors ([`map_main_range`], [`error_log_targets`]).

use std::io;

mod kernel_ring;
mod main_ranges;
mod nvme_probe;
mod pending_marker;

pub use kernel_ring::{map_event, ControlEvents};
pub use main_ranges::{
    error_log_targets, map_main_range, remap_uses, NamespaceDev, PendingTarget, RemapUse,
};
pub use nvme_probe::{
    controller_key, load_error_log_state, mark_error_log, save_error_log_state, ErrorLogOutcome,
    ProbeStats, ScraperProbe, ERROR_LOG_ENTRIES, SMART_PARALLEL,
};
pub use pending_marker::DmMarker;

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

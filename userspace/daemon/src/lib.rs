//! `dmremapd`: the dm-remap health daemon.
//!
//! Sources (kernel events, NVMe health scrapes, the scrubber; the load generator of the
//! `devtools` feature) push
//! [`event::Event`]s into a bounded [`pipeline`] with an explicit backpressure policy; a
//! dispatcher hands batches to the sinks (JSON lines, Prometheus). See the README beside this
//! crate for running it.

pub mod backends;
#[cfg(feature = "devtools")]
pub mod bench;
pub mod config;
pub mod daemon;
pub mod event;
pub mod field;
pub mod hist;
pub mod http;
pub mod kernel;
#[cfg(feature = "devtools")]
pub mod loadgen;
#[cfg(feature = "devtools")]
pub mod loadtest;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod nvme;
pub mod pipeline;
pub mod procfs;
pub mod queue;
pub mod scrub;
pub mod scrub_source;
pub mod sinks;
pub mod source;

//! `dmremapd`: the dm-remap health daemon.
//!
//! Sources (kernel events, NVMe health scrapes, the scrubber, the load generator) push
//! [`event::Event`]s into a bounded [`pipeline`] with an explicit backpressure policy; a
//! dispatcher hands batches to the sinks (JSON lines, Prometheus). See the README beside this
//! crate for running it.

pub mod backends;
pub mod bench;
pub mod config;
pub mod daemon;
pub mod event;
pub mod field;
pub mod hist;
pub mod http;
pub mod jsonfmt;
pub mod kernel;
pub mod loadgen;
pub mod loadtest;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod nvme;
pub mod pipeline;
pub mod procfs;
pub mod queue;
pub mod scrub;
pub mod scrubsrc;
pub mod sinks;
pub mod source;

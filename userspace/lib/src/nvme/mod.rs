//! NVMe access: controller discovery from sysfs, admin commands (Identify, Get Log Page)
//! through `NVME_IOCTL_ADMIN_CMD`, a device-type cache and a scraper that
//! reads every controller's health pages in one cycle.
//!
//! Page decoding lives in the no_std core ([`dmremap_core::nvme`], re-exported here as
//! [`pages`]); this module moves bytes between devices and those decoders. Everything that
//! touches the system is behind a parameter or a trait so it can be tested without devices:
//! the sysfs root is a path ([`sysfs::discover`]), and commands go through an
//! [`admin::AdminTransport`] ([`admin::IoctlTransport`] for real devices,
//! [`fake::FakeTransport`] for tests and simulations, with the `fake` feature).

pub mod admin;
pub mod cache;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod scraper;
pub mod sysfs;

pub use dmremap_core::nvme as pages;

pub use admin::{
    AdminCommand, AdminError, AdminTransport, DeviceError, DeviceErrorCause, IoctlTransport,
};
pub use cache::{CacheStats, Detection, DeviceType, TypeCache};
pub use scraper::{
    AwsSnapshot, BudgetWarning, ControllerReport, CycleReport, Discovery, LatencySummary, Scraper,
    ScraperConfig,
};
pub use sysfs::{discover, resolve_controller, Controller, Namespace};

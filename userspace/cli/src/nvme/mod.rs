//! `dmremap nvme ...`: list controllers, show the SMART / health log, the error log and the
//! Amazon statistics page, and benchmark scrape cycles.
//!
//! JSON output uses the key names of nvme-cli's `-o json` output where nvme-cli has the field
//! (`nvme list`, `nvme smart-log`, `nvme error-log`, and the Amazon plugin's `stats`), so the two
//! can be compared key by key. 128-bit SMART counters are printed as plain JSON integers.
//!
//! The sysfs root and the device directory default to `/sys` and `/dev`; the environment
//! variables `DMREMAP_SYSFS_ROOT` and `DMREMAP_DEV_DIR` override them (used by tests).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde::Serialize;

use dmremap_lib::nvme::admin::{AdminError, DeviceError, DeviceErrorCause};
use dmremap_lib::nvme::sysfs::{discover, resolve_controller, Controller};

use crate::error::{CliError, Kind};

mod aws;
mod errors;
mod list;
mod smart;

use aws::cmd_aws_stats;
use errors::cmd_errors;
use list::cmd_list;
use smart::cmd_smart;

/// `dmremap nvme` subcommands.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum NvmeCmd {
    /// List NVMe controllers and their namespaces (from sysfs).
    List,
    /// Show the SMART / health log of a controller.
    Smart {
        /// Device: /dev/nvme0, /dev/nvme0n1 or nvme0.
        dev: String,
    },
    /// Show the error information log of a controller.
    Errors {
        /// Device: /dev/nvme0, /dev/nvme0n1 or nvme0.
        dev: String,
        /// Entries to read (default 64), capped at what the controller keeps (ELPE + 1).
        #[arg(long)]
        entries: Option<u16>,
    },
    /// Show the Amazon EBS / EC2 instance-store statistics page (log page 0xd0).
    AwsStats {
        /// Device: /dev/nvme0, /dev/nvme0n1 or nvme0.
        dev: String,
    },
    /// Time scrape cycles over every controller, with a cold and a warm type cache.
    #[cfg(feature = "devtools")]
    Bench(crate::nvme_bench::BenchArgs),
}

/// Run one `dmremap nvme` subcommand.
pub fn run(cmd: &NvmeCmd, json: bool) -> Result<(), CliError> {
    match cmd {
        NvmeCmd::List => cmd_list(&sysfs_root(), json),
        NvmeCmd::Smart { dev } => cmd_smart(dev, json),
        NvmeCmd::Errors { dev, entries } => cmd_errors(dev, *entries, json),
        NvmeCmd::AwsStats { dev } => cmd_aws_stats(dev, json),
        #[cfg(feature = "devtools")]
        NvmeCmd::Bench(a) => crate::nvme_bench::run(a, json),
    }
}

pub(crate) fn sysfs_root() -> PathBuf {
    std::env::var_os("DMREMAP_SYSFS_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/sys"))
}

pub(crate) fn dev_dir() -> PathBuf {
    std::env::var_os("DMREMAP_DEV_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/dev"))
}

pub(crate) fn discover_all(root: &Path) -> Result<Vec<Controller>, CliError> {
    discover(root).map_err(|e| CliError::failed(format!("NVMe discovery: {e}")))
}

/// The controller name for a device argument.
pub(super) fn resolve(dev: &str) -> Result<String, CliError> {
    let ctrls = discover_all(&sysfs_root())?;
    resolve_controller(&ctrls, dev)
        .map(|c| c.name.clone())
        .map_err(|m| CliError::new(Kind::NoDevice, m))
}

pub(super) fn device_error(e: DeviceError) -> CliError {
    let kind = match &e.cause {
        DeviceErrorCause::Unsupported(_) => Kind::Unsupported,
        DeviceErrorCause::Admin(AdminError::Io(io))
            if io.kind() == std::io::ErrorKind::NotFound =>
        {
            Kind::NoDevice
        }
        _ => Kind::Failed,
    };
    CliError::new(kind, e.to_string())
}

pub(super) fn print_json<T: Serialize>(v: &T) -> Result<(), CliError> {
    let s = serde_json::to_string_pretty(v)
        .map_err(|e| CliError::failed(format!("JSON output: {e}")))?;
    println!("{s}");
    Ok(())
}

/// The keys of a JSON object, in order.
#[cfg(test)]
fn keys(v: &serde_json::Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

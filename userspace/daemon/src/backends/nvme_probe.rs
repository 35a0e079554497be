//! [`ScraperProbe`] ([`HealthProbe`]): one NVMe scrape cycle (sysfs discovery, cached type
//! detection, SMART/health, the error log when its count moved) per interval; new media errors in
//! the error log are mapped onto the remap devices built on the namespace and marked pending.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dmremap_core::nvme::error_log::ErrorLogEntry;
use dmremap_lib::nvme::admin::IoctlTransport;
use dmremap_lib::nvme::scraper::{Discovery, Scraper, ScraperConfig};
use serde::Serialize;

use crate::nvme::{HealthProbe, HealthSnapshot};

use super::main_ranges::{error_log_targets, NamespaceDev, PendingTarget, RemapUse};
use super::other;
use super::pending_marker::DmMarker;

/// `major:minor` of a block device by its name (`nvme0n1`), from sysfs.
fn sysfs_devno(sys: &Path, block: &str) -> Option<String> {
    std::fs::read_to_string(sys.join("class/block").join(block).join("dev"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// What one controller's new error log entries did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ErrorLogOutcome {
    pub controller: String,
    /// New media-error entries seen.
    pub entries: usize,
    pub targets: Vec<PendingTarget>,
    /// Blocks the kernel reported as newly marked.
    pub marked: u64,
    pub errors: Vec<String>,
}

/// Maps `entries` of `controller` onto remap devices and marks them (unless `marker` is None).
pub fn mark_error_log(
    sys: &Path,
    controller: &str,
    namespaces: &[dmremap_lib::nvme::sysfs::Namespace],
    entries: &[ErrorLogEntry],
    marker: Option<&mut DmMarker>,
    uses: &[RemapUse],
) -> ErrorLogOutcome {
    let ns: Vec<NamespaceDev> = namespaces
        .iter()
        .filter_map(|n| {
            Some(NamespaceDev {
                nsid: n.nsid,
                dev: sysfs_devno(sys, &n.block_device)?,
                lba_size: n.logical_block_size,
            })
        })
        .collect();
    let mut out = ErrorLogOutcome {
        controller: controller.to_string(),
        entries: entries.len(),
        targets: error_log_targets(entries, &ns, uses),
        ..Default::default()
    };
    if let Some(m) = marker {
        for t in out.targets.clone() {
            match m.mark_target(&t) {
                Ok(n) => out.marked += n,
                Err(e) => out.errors.push(e.to_string()),
            }
        }
    }
    out
}

/// Health snapshots from a [`Scraper`] over the NVMe admin ioctl. [`HealthProbe::devices`]
/// runs one scrape cycle of every controller and keeps the snapshots that
/// [`HealthProbe::snapshot`] then hands out, so a daemon cycle costs one scraper cycle. With
/// a marker, media errors new in a controller's error log (read when the SMART error count
/// moved) are mapped onto the remap devices on that namespace and marked pending.
pub struct ScraperProbe {
    scraper: Scraper<IoctlTransport>,
    sys: PathBuf,
    last: HashMap<String, io::Result<HealthSnapshot>>,
    /// Highest error log Error Count handled per controller, by [`controller_key`].
    seen_errors: HashMap<String, u64>,
    /// Where `seen_errors` is kept across restarts.
    state: Option<PathBuf>,
    marker: Option<DmMarker>,
    pub stats: Arc<ProbeStats>,
}

/// The key a controller's error-log position is kept under: its serial number (kernel names
/// change between boots), or its name when sysfs has none.
pub fn controller_key(sys: &Path, name: &str) -> String {
    std::fs::read_to_string(sys.join("class/nvme").join(name).join("serial"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .map(|s| format!("serial:{s}"))
        .unwrap_or_else(|| format!("name:{name}"))
}

/// Reads kept error-log positions (a JSON object of key -> highest Error Count handled).
pub fn load_error_log_state(path: &Path) -> HashMap<String, u64> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

/// Keeps error-log positions: written to a temporary file, synced, renamed over `path`.
pub fn save_error_log_state(path: &Path, seen: &HashMap<String, u64>) -> io::Result<()> {
    use std::io::Write;
    let sorted: std::collections::BTreeMap<&String, &u64> = seen.iter().collect();
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(
        serde_json::to_string_pretty(&sorted)
            .map_err(other)?
            .as_bytes(),
    )?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Error-log marking counters.
#[derive(Debug, Default)]
pub struct ProbeStats {
    pub error_entries: std::sync::atomic::AtomicU64,
    pub marked_blocks: std::sync::atomic::AtomicU64,
    pub mark_errors: std::sync::atomic::AtomicU64,
}

/// SMART reads in flight at once, over different controllers. One: `make bench BENCH=nvme`
/// measured overlapped reads (4 threads) 4.4× slower per cycle than one after the other in the
/// QEMU VM (thread start-up and the emulated controllers' serialisation cost more than they hide).
pub const SMART_PARALLEL: usize = 1;

/// Error log entries read per controller when its count moves.
pub const ERROR_LOG_ENTRIES: u16 = 64;

impl ScraperProbe {
    pub fn new(sys: &Path, dev_dir: &Path, marker: Option<DmMarker>) -> ScraperProbe {
        let cfg = ScraperConfig {
            error_log_entries: if marker.is_some() {
                ERROR_LOG_ENTRIES
            } else {
                0
            },
            error_log_on_change: true,
            read_aws_stats: false,
            ..ScraperConfig::default()
        };
        let mut transport = IoctlTransport::new(dev_dir);
        transport.parallel = SMART_PARALLEL;
        ScraperProbe {
            scraper: Scraper::new(Discovery::Sysfs(sys.to_path_buf()), transport, cfg),
            sys: sys.to_path_buf(),
            last: HashMap::new(),
            seen_errors: HashMap::new(),
            state: None,
            marker,
            stats: Arc::default(),
        }
    }

    /// Keep the error-log positions in `path` (loaded now, saved whenever they move), so an
    /// entry handled before a restart is not marked again after it.
    pub fn with_state(mut self, path: PathBuf) -> ScraperProbe {
        self.seen_errors = load_error_log_state(&path);
        self.state = Some(path);
        self
    }
}

fn sat(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

impl HealthProbe for ScraperProbe {
    fn devices(&mut self) -> io::Result<Vec<String>> {
        use std::sync::atomic::Ordering::Relaxed;
        let r = self.scraper.scrape_cycle()?;
        self.last.clear();
        let mut names = Vec::with_capacity(r.controllers.len());
        let mut uses: Option<Vec<RemapUse>> = None;
        for c in r.controllers {
            let snap = c.smart.map(|s| HealthSnapshot {
                critical_warning: s.critical_warning,
                available_spare: s.avail_spare,
                available_spare_threshold: s.spare_thresh,
                percentage_used: s.percent_used,
                media_errors: sat(s.media_errors),
                num_err_log_entries: sat(s.num_err_log_entries),
                temperature_kelvin: s.temperature,
            });
            if let Some(Ok(entries)) = &c.errors {
                let key = controller_key(&self.sys, &c.name);
                let seen = self.seen_errors.get(&key).copied().unwrap_or(0);
                let new: Vec<ErrorLogEntry> = entries
                    .iter()
                    .filter(|e| e.error_count > seen)
                    .copied()
                    .collect();
                let max = entries.iter().map(|e| e.error_count).max().unwrap_or(0);
                if max > seen {
                    self.seen_errors.insert(key, max);
                }
                if !new.is_empty() {
                    if uses.is_none() {
                        uses = Some(match self.marker.as_mut().map(|m| m.uses()) {
                            Some(Ok(u)) => u,
                            Some(Err(e)) => {
                                log::warn!("nvme: cannot list remap devices: {e}");
                                Vec::new()
                            }
                            None => Vec::new(),
                        });
                    }
                    let o = mark_error_log(
                        &self.sys,
                        &c.name,
                        &c.namespace_list,
                        &new,
                        self.marker.as_mut(),
                        uses.as_deref().unwrap_or(&[]),
                    );
                    self.stats
                        .error_entries
                        .fetch_add(new.len() as u64, Relaxed);
                    self.stats.marked_blocks.fetch_add(o.marked, Relaxed);
                    self.stats
                        .mark_errors
                        .fetch_add(o.errors.len() as u64, Relaxed);
                    for t in &o.targets {
                        log::info!(
                            "nvme: {}: error log names {} sectors {}+{}",
                            c.name,
                            t.dm_name,
                            t.sector,
                            t.sectors
                        );
                    }
                    for e in &o.errors {
                        log::warn!("nvme: {}: marking pending failed: {e}", c.name);
                    }
                }
                if max > seen {
                    if let Some(p) = &self.state {
                        if let Err(e) = save_error_log_state(p, &self.seen_errors) {
                            log::warn!(
                                "nvme: cannot keep error-log positions in {}: {e}",
                                p.display()
                            );
                        }
                    }
                }
            }
            self.last.insert(
                c.name.clone(),
                snap.map_err(|e| io::Error::other(e.to_string())),
            );
            names.push(c.name);
        }
        Ok(names)
    }

    fn snapshot(&mut self, device: &str) -> io::Result<HealthSnapshot> {
        match self.last.get(device) {
            Some(Ok(s)) => Ok(*s),
            Some(Err(e)) => Err(io::Error::new(e.kind(), e.to_string())),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{device}: not in the last scrape"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_log_positions_are_kept_by_serial() {
        let d = tempfile::tempdir().unwrap();
        let sys = d.path();
        std::fs::create_dir_all(sys.join("class/nvme/nvme0")).unwrap();
        std::fs::write(sys.join("class/nvme/nvme0/serial"), "S3EVNX0K123456  \n").unwrap();
        std::fs::create_dir_all(sys.join("class/nvme/nvme1")).unwrap();
        assert_eq!(controller_key(sys, "nvme0"), "serial:S3EVNX0K123456");
        assert_eq!(controller_key(sys, "nvme1"), "name:nvme1");
        let state = d.path().join("nvme-error-log.json");
        assert!(load_error_log_state(&state).is_empty());
        let mut m = HashMap::new();
        m.insert("serial:S3EVNX0K123456".to_string(), 17u64);
        save_error_log_state(&state, &m).unwrap();
        assert_eq!(load_error_log_state(&state), m);
        std::fs::write(&state, "not json").unwrap();
        assert!(
            load_error_log_state(&state).is_empty(),
            "a damaged file starts over"
        );
    }
}

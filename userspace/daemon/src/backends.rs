//! The real implementations of the daemon's backend traits:
//!
//! - [`ControlEvents`] ([`KernelEvents`]): reads the module's event ring with `DMR_IOC_EVENTS`
//!   on `/dev/dm-remap`, sleeps in poll() on it while the ring has nothing new, and maps every
//!   event type to a daemon event;
//! - [`ScraperProbe`] ([`HealthProbe`]): one NVMe scrape cycle (sysfs discovery, cached type
//!   detection, SMART/health, the error log when its count moved) per interval; new media errors
//!   in the error log are mapped onto the remap devices built on the namespace and marked
//!   pending;
//! - [`DmMarker`] ([`PendingMarker`]): the `pending <sector> <count>` target message, sent with
//!   `DM_TARGET_MSG` through [`dmremap_lib::dm`].
//!
//! The mapping from a main-device range (or an NVMe error log entry) to remap device sectors is
//! pure ([`map_main_range`], [`error_log_targets`]) and tested with fixtures.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dmremap_core::nvme::error_log::ErrorLogEntry;
use dmremap_lib::control::{Control, Event as CtlEvent, EventType};
use dmremap_lib::dm::Dm;
use dmremap_lib::event::{dm_name, kernel_kind, mono_to_wall_ns, record_time, TargetFacts};
use dmremap_lib::nvme::admin::IoctlTransport;
use dmremap_lib::nvme::scraper::{Discovery, Scraper, ScraperConfig};
use serde::Serialize;

use crate::kernel::{DevId, KernelEvent, KernelEvents};
use crate::nvme::{HealthProbe, HealthSnapshot};
use crate::scrub::PendingMarker;

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Kernel events

/// Maps one control-device record to a daemon event. `None` for types this build does not know
/// (a newer module; the caller counts them) and for overflow records, which only read()
/// delivers: this reader uses the ioctl and counts gaps in the sequence numbers itself.
pub fn map_event(e: &CtlEvent, facts: TargetFacts, mono_to_wall: i128) -> Option<KernelEvent> {
    if e.kind == EventType::Overflow {
        return None;
    }
    Some(KernelEvent {
        seq: e.seq,
        dev: DevId {
            major: e.major(),
            minor: e.minor(),
        },
        arg: e.arg,
        ts: Some(record_time(e, mono_to_wall)),
        kind: kernel_kind(e, facts)?,
    })
}

/// Reads the module's event ring through the control device, polling every `poll` while it is
/// empty. It starts at the end of the ring: events raised before the daemon started are not
/// replayed (a restarted daemon would report them twice). Device facts (block size, spare
/// slots) come from the device's table and status, cached for a minute.
pub struct ControlEvents {
    path: PathBuf,
    ctl: Option<Control>,
    next_seq: Option<u64>,
    /// Where this file's read() cursor was put (poll() reports events from there on).
    seeked: Option<u64>,
    /// Fallback sleep when the cursor cannot be moved.
    poll: Duration,
    facts: HashMap<DevId, (TargetFacts, Instant)>,
    dm: Option<Dm>,
    unknown: u64,
    /// An eventfd that wakes a poll() in progress (on stop); without one (out of descriptors)
    /// the reader is called with a timeout instead.
    wake: Option<Arc<std::os::fd::OwnedFd>>,
}

impl ControlEvents {
    /// A reader of `path` (normally `/dev/dm-remap`), opened on the first read and reopened
    /// after a failure, so the daemon may start before the module is loaded. `poll` is the
    /// sleep between reads only when the file's read cursor cannot be moved (otherwise the
    /// reader sleeps in poll() until an event is raised or it is woken).
    pub fn new(path: &Path, poll: Duration) -> ControlEvents {
        // SAFETY: eventfd(2) with valid flags; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        // SAFETY: `fd` is a new descriptor owned by nobody else.
        let wake = (fd >= 0).then(|| {
            Arc::new(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
        });
        ControlEvents {
            path: path.to_path_buf(),
            ctl: None,
            next_seq: None,
            seeked: None,
            poll,
            facts: HashMap::new(),
            dm: None,
            unknown: 0,
            wake,
        }
    }

    /// Sleeps until the ring has an event at or after `next_seq`, `timeout` passes, or the
    /// reader is woken; `true` when woken.
    fn wait(&mut self, timeout: Duration) -> io::Result<bool> {
        use std::os::fd::AsRawFd;
        let next = self.next_seq.unwrap_or(1);
        if self.seeked != Some(next) {
            // poll() reports EPOLLIN while read() from the file's cursor has a record: keep
            // that cursor at the next event this reader wants.
            match self
                .ctl()?
                .seek_events(dmremap_lib::control::Seek::Seq(next))
            {
                Ok(_) => self.seeked = Some(next),
                Err(e) => {
                    log::debug!("kernel events: cannot move the read cursor to {next}: {e}");
                    std::thread::sleep(self.poll.min(timeout));
                    return Ok(false);
                }
            }
        }
        let ctl_fd = self.ctl()?.file().as_raw_fd();
        // Without an eventfd the second entry is ignored (negative fd).
        let wake_fd = self.wake.as_ref().map_or(-1, |w| w.as_raw_fd());
        let mut fds = [
            libc::pollfd {
                fd: ctl_fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: wake_fd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: two valid pollfds for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            };
        }
        if fds[1].revents & libc::POLLIN != 0 {
            let mut v = [0u8; 8];
            // SAFETY: reads the eventfd's 8-byte counter into `v`, resetting it.
            unsafe { libc::read(wake_fd, v.as_mut_ptr().cast(), 8) };
            return Ok(true);
        }
        if fds[0].revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
            self.ctl = None;
            self.seeked = None;
            return Err(other("poll on the control device failed"));
        }
        Ok(false)
    }

    /// Events of types this build does not know, skipped so far.
    pub fn unknown(&self) -> u64 {
        self.unknown
    }

    fn facts(&mut self, dev: DevId, sector: u64) -> TargetFacts {
        if let Some((f, t)) = self.facts.get(&dev) {
            if t.elapsed() < Duration::from_secs(60) {
                return *f;
            }
        }
        let f = self.read_facts(dev, sector).unwrap_or_default();
        self.facts.insert(dev, (f, Instant::now()));
        f
    }

    fn read_facts(&mut self, dev: DevId, sector: u64) -> Option<TargetFacts> {
        let name = dm_name(dev.major, dev.minor)?;
        if self.dm.is_none() {
            self.dm = Dm::open().ok();
        }
        TargetFacts::read(self.dm.as_ref()?, &name, sector)
    }

    fn ctl(&mut self) -> io::Result<&Control> {
        if self.ctl.is_none() {
            self.ctl = Some(Control::open_path(&self.path).map_err(other)?);
        }
        Ok(self.ctl.as_ref().expect("opened"))
    }
}

impl KernelEvents for ControlEvents {
    fn read_batch(&mut self, out: &mut Vec<KernelEvent>, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let since = self.next_seq.unwrap_or(0);
            let batch = match self.ctl()?.events(since, 256) {
                Ok(b) => b,
                Err(e) => {
                    // Reopen on the next call (the module may have been reloaded).
                    self.ctl = None;
                    self.seeked = None;
                    return Err(other(e));
                }
            };
            if self.next_seq.is_none() {
                // First read: skip what the ring already holds (see the type's docs).
                let mut next = batch.next_seq;
                let mut n = batch.events.len();
                while n == 256 {
                    let b = self.ctl()?.events(next, 256).map_err(other)?;
                    n = b.events.len();
                    next = b.next_seq;
                }
                self.next_seq = Some(next.max(1));
                continue;
            }
            if batch.next_seq < since && batch.oldest_seq.max(1) < since {
                // The ring's numbers went back: the module was reloaded. Its ring holds only
                // events raised since, all new to us.
                log::info!(
                    "kernel events: sequence numbers restarted ({} after {since}); reading the new ring from {}",
                    batch.next_seq,
                    batch.oldest_seq
                );
                self.next_seq = Some(batch.oldest_seq.max(1));
                continue;
            }
            self.next_seq = Some(batch.next_seq.max(since));
            if !batch.events.is_empty() {
                let off = mono_to_wall_ns();
                for e in &batch.events {
                    let dev = DevId {
                        major: e.major(),
                        minor: e.minor(),
                    };
                    let dev_facts = self.facts(dev, e.sector);
                    match map_event(e, dev_facts, off) {
                        Some(k) => out.push(k),
                        None => {
                            self.unknown += 1;
                            log::debug!("kernel events: unknown event type {:?}", e.kind);
                        }
                    }
                }
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            if self.wait(deadline - now)? {
                return Ok(());
            }
        }
    }

    fn waker(&self) -> Option<crate::source::StopHook> {
        let wake = self.wake.clone()?;
        Some(Arc::new(move || {
            use std::os::fd::AsRawFd;
            let one = 1u64.to_ne_bytes();
            // SAFETY: writes 8 bytes from `one` to the eventfd (adds 1 to its counter).
            unsafe { libc::write(wake.as_raw_fd(), one.as_ptr().cast(), 8) };
        }))
    }

    fn start_at(&mut self, seq: u64) {
        self.next_seq = Some(seq);
    }

    fn cursor(&self) -> Option<u64> {
        self.next_seq
    }
}

// ---------------------------------------------------------------------------------------------
// Mapping main-device ranges onto remap devices

/// One `remap` segment and the main device it sits on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemapUse {
    /// Device-mapper name of the remap device.
    pub dm_name: String,
    /// First sector of the segment in the remap device.
    pub start: u64,
    /// Length of the segment in sectors.
    pub length: u64,
    /// Main device as `major:minor`.
    pub main: String,
    /// Offset of the segment on the main device, in sectors.
    pub main_offset: u64,
}

/// A range of a remap device to mark pending.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PendingTarget {
    pub dm_name: String,
    /// First sector, in the remap device.
    pub sector: u64,
    pub sectors: u64,
}

/// The `remap` segments of every device-mapper device.
pub fn remap_uses(dm: &Dm) -> io::Result<Vec<RemapUse>> {
    let mut out = Vec::new();
    for d in dm.list_remap_devices().map_err(other)? {
        for s in d.remap_segments() {
            if let Some(t) = &s.table {
                out.push(RemapUse {
                    dm_name: d.info.name.clone(),
                    start: s.start,
                    length: s.length,
                    main: t.main.clone(),
                    main_offset: t.main_offset,
                });
            }
        }
    }
    Ok(out)
}

/// Where sectors `[sector, sector + sectors)` of main device `main` (`major:minor`) appear in
/// remap devices: one range per overlapping segment, clipped to it.
pub fn map_main_range(
    uses: &[RemapUse],
    main: &str,
    sector: u64,
    sectors: u64,
) -> Vec<PendingTarget> {
    let end = sector.saturating_add(sectors);
    uses.iter()
        .filter(|u| u.main == main)
        .filter_map(|u| {
            let lo = sector.max(u.main_offset);
            let hi = end.min(u.main_offset.saturating_add(u.length));
            (lo < hi).then(|| PendingTarget {
                dm_name: u.dm_name.clone(),
                sector: u.start + (lo - u.main_offset),
                sectors: hi - lo,
            })
        })
        .collect()
}

/// One namespace as the mapping needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceDev {
    pub nsid: u32,
    /// Block device as `major:minor`.
    pub dev: String,
    /// Logical block (LBA) size in bytes.
    pub lba_size: u32,
}

/// Status Code Type "Media and Data Integrity Errors".
const SCT_MEDIA: u8 = 2;

/// Remap device ranges for the media errors in `entries` (NVMe Error Information log) of one
/// controller: each entry with a media-error status names an LBA of namespace `nsid`, which is
/// `lba * lba_size / 512` on the namespace's block device; entries of other status types, of no
/// particular namespace (0, 0xFFFFFFFF) or of a namespace not in `namespaces` are skipped.
/// Duplicates (the same LBA logged twice) are marked once.
pub fn error_log_targets(
    entries: &[ErrorLogEntry],
    namespaces: &[NamespaceDev],
    uses: &[RemapUse],
) -> Vec<PendingTarget> {
    let mut out: Vec<PendingTarget> = Vec::new();
    for e in entries {
        if e.is_empty() || e.status_code_type() != SCT_MEDIA || e.nsid == 0 || e.nsid == u32::MAX {
            continue;
        }
        let Some(ns) = namespaces.iter().find(|n| n.nsid == e.nsid) else {
            continue;
        };
        let per = u64::from(ns.lba_size.max(512) / 512);
        let Some(sector) = e.lba.checked_mul(per) else {
            continue;
        };
        for t in map_main_range(uses, &ns.dev, sector, per) {
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

/// `major:minor` of a block device node, or `None` if `path` is not one.
fn block_devno(path: &Path) -> io::Result<Option<String>> {
    let m = std::fs::metadata(path)?;
    if !m.file_type().is_block_device() {
        return Ok(None);
    }
    Ok(Some(
        dmremap_lib::dm::DevNo::from_dev_t(m.rdev()).to_string(),
    ))
}

// ---------------------------------------------------------------------------------------------
// Pending marker

/// Marks blocks pending with the `pending` target message (`DM_TARGET_MSG`).
#[derive(Default)]
pub struct DmMarker {
    dm: Option<Dm>,
}

impl DmMarker {
    pub fn new() -> DmMarker {
        DmMarker { dm: None }
    }

    fn dm(&mut self) -> io::Result<&Dm> {
        if self.dm.is_none() {
            self.dm = Some(Dm::open().map_err(other)?);
        }
        Ok(self.dm.as_ref().expect("opened"))
    }

    /// The remap segments of all devices.
    pub fn uses(&mut self) -> io::Result<Vec<RemapUse>> {
        remap_uses(self.dm()?)
    }

    /// Sends `pending <sector> <sectors>` to `t`'s device; returns the blocks newly marked.
    pub fn mark_target(&mut self, t: &PendingTarget) -> io::Result<u64> {
        self.dm()?
            .pending(&t.dm_name, t.sector, t.sectors)
            .map_err(|e| {
                other(format!(
                    "{}: pending {} {}: {e}",
                    t.dm_name, t.sector, t.sectors
                ))
            })
    }

    /// Where a range of `device` (a remap device, or a main device under remap devices) lands.
    pub fn resolve(
        &mut self,
        device: &str,
        sector: u64,
        sectors: u64,
    ) -> io::Result<Vec<PendingTarget>> {
        let path = Path::new(device);
        let devno = block_devno(path)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{device}: not a block device; nothing to mark"),
            )
        })?;
        let dm_name = std::fs::read_to_string(format!("/sys/dev/block/{devno}/dm/name"))
            .ok()
            .map(|s| s.trim().to_string());
        let uses = self.uses()?;
        if let Some(n) = dm_name.filter(|n| uses.iter().any(|u| &u.dm_name == n)) {
            return Ok(vec![PendingTarget {
                dm_name: n,
                sector,
                sectors,
            }]);
        }
        let t = map_main_range(&uses, &devno, sector, sectors);
        if t.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{device} ({devno}): sectors {sector}+{sectors} are in no remap device (not a remap device, nor its main device)"
                ),
            ));
        }
        Ok(t)
    }
}

impl PendingMarker for DmMarker {
    fn mark_pending(&mut self, device: &str, sector: u64, sectors: u32) -> io::Result<()> {
        for t in self.resolve(device, sector, u64::from(sectors))? {
            let n = self.mark_target(&t)?;
            log::info!(
                "{device}: sectors {sector}+{sectors}: marked {n} blocks pending on {} at {}",
                t.dm_name,
                t.sector
            );
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// NVMe health

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
    use crate::event::{EventKind, RemapCause, Timestamp};
    use dmremap_core::nvme::error_log::{ErrorLog, ERROR_ENTRY_LEN};

    fn ctl_event(kind: EventType, sector: u64, arg: u64) -> CtlEvent {
        CtlEvent {
            seq: 7,
            time_ns: 5_000_000_000,
            kind,
            dev: 253 << 20 | 4,
            sector,
            arg,
            write: false,
            spare: false,
        }
    }

    #[test]
    fn records_map_to_kernel_events() {
        // The kinds themselves are mapped (and tested) in dmremap_lib::event.
        let f = TargetFacts {
            block_sectors: 8,
            spare_total: 100,
        };
        let r = map_event(&ctl_event(EventType::Remap, 4096, 3), f, 1_000).unwrap();
        assert_eq!(
            r.dev,
            DevId {
                major: 253,
                minor: 4
            }
        );
        assert_eq!((r.seq, r.arg, r.ts), (7, 3, Some(Timestamp(5_000_001_000))));
        assert_eq!(
            r.kind,
            EventKind::RemapDone {
                sector: 4096,
                sectors: 8,
                spare_slot: 3,
                cause: RemapCause::Unknown
            }
        );
        assert!(map_event(&ctl_event(EventType::Unknown(99), 0, 0), f, 0).is_none());
        assert!(map_event(&ctl_event(EventType::Overflow, 0, 5), f, 0).is_none());
    }

    fn uses() -> Vec<RemapUse> {
        vec![
            // r0: main 259:0 sectors 2048.. as r0 0..1000
            RemapUse {
                dm_name: "r0".into(),
                start: 0,
                length: 1000,
                main: "259:0".into(),
                main_offset: 2048,
            },
            // r1: two segments on the same main disk
            RemapUse {
                dm_name: "r1".into(),
                start: 0,
                length: 100,
                main: "259:0".into(),
                main_offset: 10_000,
            },
            RemapUse {
                dm_name: "r1".into(),
                start: 100,
                length: 100,
                main: "259:0".into(),
                main_offset: 20_000,
            },
            RemapUse {
                dm_name: "other".into(),
                start: 0,
                length: 1 << 30,
                main: "8:0".into(),
                main_offset: 0,
            },
        ]
    }

    #[test]
    fn main_ranges_map_through_offsets_and_segment_starts() {
        let u = uses();
        assert_eq!(
            map_main_range(&u, "259:0", 2048 + 16, 8),
            vec![PendingTarget {
                dm_name: "r0".into(),
                sector: 16,
                sectors: 8
            }]
        );
        // Clipped at the segment's end.
        assert_eq!(
            map_main_range(&u, "259:0", 2048 + 996, 8),
            vec![PendingTarget {
                dm_name: "r0".into(),
                sector: 996,
                sectors: 4
            }]
        );
        // The second segment of r1 starts at device sector 100.
        assert_eq!(
            map_main_range(&u, "259:0", 20_008, 8),
            vec![PendingTarget {
                dm_name: "r1".into(),
                sector: 108,
                sectors: 8
            }]
        );
        assert!(
            map_main_range(&u, "259:0", 0, 2048).is_empty(),
            "below main_offset"
        );
        assert!(
            map_main_range(&u, "259:1", 2048, 8).is_empty(),
            "another disk"
        );
    }

    /// A 64-byte Error Information entry, written byte by byte as the NVMe specification lays
    /// it out (not with the codec, so the test checks the decoder too).
    fn entry_bytes(count: u64, status_field: u16, lba: u64, nsid: u32) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..8].copy_from_slice(&count.to_le_bytes());
        b[8..10].copy_from_slice(&1u16.to_le_bytes()); // SQID
        b[10..12].copy_from_slice(&0x22u16.to_le_bytes()); // CID
        b[12..14].copy_from_slice(&status_field.to_le_bytes());
        b[14..16].copy_from_slice(&0xffffu16.to_le_bytes());
        b[16..24].copy_from_slice(&lba.to_le_bytes());
        b[24..28].copy_from_slice(&nsid.to_le_bytes());
        b
    }

    /// Status field: phase bit 0, SC bits 8:1, SCT bits 11:9.
    fn status(sct: u16, sc: u16) -> u16 {
        (sct << 9) | (sc << 1) | 1
    }

    #[test]
    fn error_log_fixture_maps_lbas_with_the_namespace_lba_size() {
        let mut log = Vec::new();
        // Unrecovered read error (SCT 2, SC 0x81) on nsid 1, LBA 258 (4K LBAs): main sectors
        // 2064..2072, r0 sectors 16..24.
        log.extend_from_slice(&entry_bytes(4, status(2, 0x81), 258, 1));
        // The same LBA logged again: marked once.
        log.extend_from_slice(&entry_bytes(3, status(2, 0x81), 258, 1));
        // Invalid field (SCT 0): not a media error, skipped.
        log.extend_from_slice(&entry_bytes(2, status(0, 0x02), 300, 1));
        // Media error on nsid 2 (512-byte LBAs) at LBA 20_001: r1 sector 101.
        log.extend_from_slice(&entry_bytes(1, status(2, 0x81), 20_001, 2));
        // Empty slot.
        log.extend_from_slice(&[0u8; ERROR_ENTRY_LEN]);
        let entries: Vec<ErrorLogEntry> = ErrorLog::new(&log).unwrap().non_empty().collect();
        assert_eq!(entries.len(), 4);
        let ns = vec![
            NamespaceDev {
                nsid: 1,
                dev: "259:0".into(),
                lba_size: 4096,
            },
            // Not the remap main device: "259:0" is shared in this fixture only by nsid 1.
            NamespaceDev {
                nsid: 2,
                dev: "259:0".into(),
                lba_size: 512,
            },
        ];
        let t = error_log_targets(&entries, &ns, &uses());
        assert_eq!(
            t,
            vec![
                PendingTarget {
                    dm_name: "r0".into(),
                    sector: 16,
                    sectors: 8
                },
                PendingTarget {
                    dm_name: "r1".into(),
                    sector: 101,
                    sectors: 1
                },
            ]
        );
        // An unknown namespace and a broadcast nsid map to nothing.
        let other_ns = [
            entry_bytes(9, status(2, 0x81), 258, 3),
            entry_bytes(9, status(2, 0x81), 258, u32::MAX),
        ];
        let e: Vec<ErrorLogEntry> = other_ns
            .iter()
            .map(|b| ErrorLogEntry::decode(b).unwrap())
            .collect();
        assert!(error_log_targets(&e, &ns, &uses()).is_empty());
    }

    #[test]
    fn marker_refuses_a_regular_file() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut m = DmMarker::new();
        let e = m
            .mark_pending(f.path().to_str().unwrap(), 0, 8)
            .unwrap_err();
        assert!(e.to_string().contains("not a block device"), "{e}");
    }

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

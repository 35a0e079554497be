//! The scrubber as a daemon source: scrubs the configured devices one after the other, then
//! waits for the next pass. Each device has its own checkpoint in the state directory, so a
//! restarted daemon resumes where it stopped. Progress events go out at most every 10 seconds;
//! every unreadable block is an event.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::event::EventKind;
use crate::scrub::{self, FileReader, PendingMarker, ScrubEvent, ScrubOptions};
use crate::source::{Source, SourceContext, WorkerRole};
use dmremap_lib::bufpool::BufferPool;

/// Settings that can change at run time; they apply from the next device scrubbed.
#[derive(Clone, Debug, PartialEq)]
pub struct ScrubSettings {
    /// Bytes per second.
    pub rate: u64,
    /// Between the starts of two passes.
    pub interval: Duration,
}

pub struct ScrubSource {
    devices: Vec<PathBuf>,
    state_dir: PathBuf,
    base: ScrubOptions,
    direct: bool,
    settings: Arc<Mutex<ScrubSettings>>,
    marker: Option<Box<dyn PendingMarker>>,
    pool: BufferPool,
}

/// Checkpoint file name for a device path: the path with `/` turned into `_`.
pub fn checkpoint_name(dev: &Path) -> String {
    let s = dev.to_string_lossy();
    let s = s.trim_start_matches('/').replace('/', "_");
    format!("scrub-{s}.json")
}

impl ScrubSource {
    pub fn new(
        devices: Vec<PathBuf>,
        state_dir: PathBuf,
        base: ScrubOptions,
        direct: bool,
        settings: Arc<Mutex<ScrubSettings>>,
        marker: Option<Box<dyn PendingMarker>>,
    ) -> ScrubSource {
        let pool = BufferPool::new(base.read_size, 4096, 1);
        ScrubSource {
            devices,
            state_dir,
            base,
            direct,
            settings,
            marker,
            pool,
        }
    }

    fn one(&mut self, dev: &Path, ctx: &SourceContext) -> io::Result<()> {
        let s = self
            .settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut opts = self.base.clone();
        opts.rate = Some(s.rate);
        opts.checkpoint = Some(self.state_dir.join(checkpoint_name(dev)));
        opts.progress_every = Duration::from_secs(10);
        let mut reader = FileReader::open(dev, self.direct)?;
        let name: Arc<str> = Arc::from(dev.to_string_lossy().as_ref());
        let em = &ctx.emitter;
        let marker = self
            .marker
            .as_mut()
            .map(|m| m.as_mut() as &mut dyn PendingMarker);
        let rep = scrub::scrub(
            &mut reader,
            &name,
            &opts,
            marker,
            &self.pool,
            &ctx.stop,
            &mut |e| {
                let kind = match *e {
                    ScrubEvent::Progress {
                        offset,
                        total,
                        bytes_per_sec,
                        unreadable,
                        done,
                    } => EventKind::ScrubProgress {
                        offset,
                        total,
                        bytes_per_sec,
                        unreadable,
                        done,
                    },
                    ScrubEvent::Unreadable {
                        offset,
                        len,
                        marked_pending,
                    } => EventKind::ScrubUnreadable {
                        offset,
                        len,
                        marked_pending,
                    },
                };
                em.emit(&name, kind);
            },
        )?;
        log::info!(
            "scrub {}: {} at {:.1} MB/s, {} unreadable block(s){}",
            rep.device,
            if rep.complete {
                "pass complete"
            } else {
                "stopped"
            },
            rep.mb_per_s,
            rep.unreadable.len(),
            if rep.resumed {
                format!(" (resumed at byte {})", rep.start_offset)
            } else {
                String::new()
            }
        );
        Ok(())
    }
}

impl Source for ScrubSource {
    fn name(&self) -> &str {
        "scrub"
    }

    fn role(&self) -> WorkerRole {
        WorkerRole::Scrub
    }

    fn run(&mut self, ctx: &SourceContext) -> io::Result<()> {
        loop {
            let started = std::time::Instant::now();
            for dev in self.devices.clone() {
                if ctx.stop.is_stopped() {
                    return Ok(());
                }
                if let Err(e) = self.one(&dev, ctx) {
                    log::error!("scrub {}: {e}", dev.display());
                }
            }
            let interval = self
                .settings
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .interval;
            if ctx.stop.wait(interval.saturating_sub(started.elapsed())) {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_names_are_flat() {
        assert_eq!(
            checkpoint_name(Path::new("/dev/mapper/data")),
            "scrub-dev_mapper_data.json"
        );
        assert_eq!(
            checkpoint_name(Path::new("disk.img")),
            "scrub-disk.img.json"
        );
    }
}

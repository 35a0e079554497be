//! [`ControlEvents`] ([`KernelEvents`]): reads the module's event ring with `DMR_IOC_EVENTS` on
//! `/dev/dm-remap`, sleeps in poll() on it while the ring has nothing new, and maps every record
//! to a daemon event ([`dmremap_lib::event::kernel_kind`]).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dmremap_lib::control::{Control, Event as CtlEvent, EventType};
use dmremap_lib::dm::Dm;
use dmremap_lib::event::{dm_name, kernel_kind, mono_to_wall_ns, record_time, TargetFacts};

use crate::kernel::{DevId, KernelEvent, KernelEvents};

use super::other;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, RemapCause, Timestamp};

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
}

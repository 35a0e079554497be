//! The scrubber: reads a block device (or file) end to end to find unreadable blocks before an
//! application does.
//!
//! - Reads sequentially in `read_size` chunks into aligned buffers from a [`BufferPool`], with
//!   `O_DIRECT` when the device or file system accepts it; otherwise buffered, with
//!   `POSIX_FADV_SEQUENTIAL` on open and `POSIX_FADV_WILLNEED` readahead of the next chunk.
//! - The calling thread should run with the idle I/O class (the daemon and `dmremapd scrub` set
//!   it) so scrubbing yields to every other I/O.
//! - Rate limit in bytes per second, enforced after every chunk.
//! - A failed chunk is re-read `block_size` at a time (each block tried `1 + retries` times) to
//!   pinpoint the unreadable blocks; each one is reported through the observer and, when a
//!   [`PendingMarker`] is given, marked pending so the next write to it is remapped.
//! - Progress is saved to a checkpoint file (JSON, replaced atomically: temporary file, fsync,
//!   rename, fsync of the directory) every few seconds and at the end, and a later run resumes
//!   from it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dmremap_lib::bufpool::{AlignedBuf, BufferPool};
use dmremap_lib::{dm, tune};
use serde::{Deserialize, Serialize};

use crate::event::Timestamp;
use crate::source::StopToken;

// ---------------------------------------------------------------------------------------------
// Readers

/// Random-access reads of a device or file.
pub trait BlockReader: Send {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Reads must start and end on multiples of this (and buffers be aligned to it).
    fn alignment(&self) -> usize;
    /// Reads up to `buf.len()` bytes at `offset`; returns the count (short only at the end).
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// The region `[offset, offset + len)` will be read next.
    fn will_read(&mut self, _offset: u64, _len: u64) {}
    /// `O_DIRECT` or `buffered`.
    fn mode(&self) -> &'static str;
}

/// Reads a block device or regular file.
pub struct FileReader {
    path: PathBuf,
    file: File,
    size: u64,
    align: usize,
    direct: bool,
}

fn open_ro(path: &Path, direct: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true);
    o.custom_flags(libc::O_CLOEXEC | if direct { libc::O_DIRECT } else { 0 });
    o.open(path)
}

impl FileReader {
    /// Opens `path` with `O_DIRECT` when possible (`prefer_direct`), else buffered.
    pub fn open(path: &Path, prefer_direct: bool) -> io::Result<FileReader> {
        let err = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let (file, direct) = match prefer_direct.then(|| open_ro(path, true)) {
            Some(Ok(f)) => (f, true),
            Some(Err(e)) if e.raw_os_error() == Some(libc::EINVAL) => {
                (open_ro(path, false).map_err(err)?, false)
            }
            Some(Err(e)) => return Err(err(e)),
            None => (open_ro(path, false).map_err(err)?, false),
        };
        let md = file.metadata().map_err(err)?;
        let (size, lbs) = if md.file_type().is_block_device() {
            let size = dm::block_device_bytes(&file).map_err(err)?;
            let lbs = dm::logical_block_size(&file)
                .ok()
                .filter(|&l| l > 0)
                .unwrap_or(512);
            (size, lbs as usize)
        } else if md.file_type().is_file() {
            (md.len(), 512)
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a block device or regular file", path.display()),
            ));
        };
        let mut r = FileReader {
            path: path.to_path_buf(),
            file,
            size,
            align: if direct { lbs.max(4096) } else { lbs },
            direct,
        };
        if !direct {
            r.advise_sequential();
        }
        Ok(r)
    }

    fn advise_sequential(&mut self) {
        let _ = tune::fadvise(self.file.as_raw_fd(), 0, 0, tune::FileAdvice::Sequential);
    }

    fn fall_back_to_buffered(&mut self) -> io::Result<()> {
        self.file = open_ro(&self.path, false)?;
        self.direct = false;
        self.advise_sequential();
        Ok(())
    }
}

impl BlockReader for FileReader {
    fn size(&self) -> u64 {
        self.size
    }

    fn alignment(&self) -> usize {
        self.align
    }

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let want = buf.len().min(self.size.saturating_sub(offset) as usize);
        if want == 0 {
            return Ok(0);
        }
        // O_DIRECT needs whole logical blocks; the tail of a file that is not a multiple is read
        // as a full block and trimmed.
        let len = if self.direct {
            want.next_multiple_of(self.align).min(buf.len())
        } else {
            want
        };
        match self.file.read_at(&mut buf[..len], offset) {
            Ok(n) => Ok(n.min(want)),
            Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                // The file system refused direct I/O at this alignment: continue buffered.
                log::info!(
                    "{}: O_DIRECT read refused ({e}); continuing with buffered reads",
                    self.path.display()
                );
                self.fall_back_to_buffered()?;
                self.read_at(buf, offset)
            }
            Err(e) => Err(e),
        }
    }

    fn will_read(&mut self, offset: u64, len: u64) {
        if !self.direct {
            let _ = tune::fadvise(
                self.file.as_raw_fd(),
                offset,
                len,
                tune::FileAdvice::WillNeed,
            );
        }
    }

    fn mode(&self) -> &'static str {
        if self.direct {
            "O_DIRECT"
        } else {
            "buffered"
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pending marker

/// Marks blocks the scrubber could not read as pending on the dm-remap device, so the next
/// write to them goes to a spare slot.
pub trait PendingMarker: Send {
    /// Marks `sectors` 512-byte sectors starting at `sector` of `device` pending.
    fn mark_pending(&mut self, device: &str, sector: u64, sectors: u32) -> io::Result<()>;
}

// ---------------------------------------------------------------------------------------------
// Checkpoint

/// Saved scrub position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub device: String,
    pub size: u64,
    pub block_size: u64,
    /// Everything below this offset was read in the current pass.
    pub offset: u64,
    /// The pass reached the end; the next run starts a new pass.
    pub complete: bool,
    /// Unreadable blocks found so far in this pass.
    pub unreadable: u64,
    pub updated: Timestamp,
}

/// Reads a checkpoint; `Ok(None)` when the file does not exist.
pub fn load_checkpoint(path: &Path) -> io::Result<Option<Checkpoint>> {
    match std::fs::read_to_string(path) {
        Ok(s) => serde_json::from_str(&s).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: bad checkpoint: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}

/// Writes a checkpoint atomically: a temporary file in the same directory, fsync, rename over
/// the old one, fsync of the directory.
pub fn save_checkpoint(path: &Path, c: &Checkpoint) -> io::Result<()> {
    let err = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "checkpoint path has no file name",
        )
    })?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        let mut s = serde_json::to_vec_pretty(c).map_err(io::Error::other)?;
        s.push(b'\n');
        f.write_all(&s).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The scrub pass

/// Scrub settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ScrubOptions {
    /// Bytes per sequential read.
    pub read_size: usize,
    /// Granularity of bad-block pinpointing and pending marks (the dm-remap block size).
    pub block_size: usize,
    /// Bytes per second; `None` = unlimited.
    pub rate: Option<u64>,
    pub checkpoint: Option<PathBuf>,
    pub checkpoint_every: Duration,
    pub progress_every: Duration,
    /// Extra attempts per block when pinpointing.
    pub retries: u32,
}

impl Default for ScrubOptions {
    fn default() -> Self {
        ScrubOptions {
            read_size: 1 << 20,
            block_size: 4096,
            rate: None,
            checkpoint: None,
            checkpoint_every: Duration::from_secs(5),
            progress_every: Duration::from_secs(1),
            retries: 2,
        }
    }
}

impl ScrubOptions {
    /// Checks the sizes against each other and against the reader's alignment.
    pub fn validate(&self, align: usize) -> Result<(), String> {
        if !self.block_size.is_power_of_two() || self.block_size < 512 {
            return Err(format!(
                "block size {} must be a power of two >= 512",
                self.block_size
            ));
        }
        if !self.block_size.is_multiple_of(align) {
            return Err(format!(
                "block size {} is not a multiple of the device's alignment {align}",
                self.block_size
            ));
        }
        if self.read_size == 0 || !self.read_size.is_multiple_of(self.block_size) {
            return Err(format!(
                "read size {} must be a non-zero multiple of the block size {}",
                self.read_size, self.block_size
            ));
        }
        if self.rate == Some(0) {
            return Err("rate must be > 0".into());
        }
        Ok(())
    }
}

/// What the scrubber reports while running.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ScrubEvent {
    Progress {
        offset: u64,
        total: u64,
        bytes_per_sec: u64,
        unreadable: u64,
        done: bool,
    },
    Unreadable {
        offset: u64,
        len: u32,
        marked_pending: bool,
    },
}

/// The result of one run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScrubReport {
    pub device: String,
    pub size: u64,
    pub mode: String,
    pub start_offset: u64,
    pub end_offset: u64,
    pub resumed: bool,
    /// The pass reached the end of the device (false when stopped early).
    pub complete: bool,
    pub bytes_read: u64,
    pub elapsed_s: f64,
    pub mb_per_s: f64,
    /// Unreadable blocks found in this run: (offset, length).
    pub unreadable: Vec<(u64, u32)>,
    pub marked_pending: u64,
    pub mark_errors: u64,
}

fn is_media_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO) | Some(libc::ENODATA) | Some(libc::EILSEQ) | Some(libc::EBADMSG)
    )
}

/// Runs one scrub pass (or resumes one) over `reader`, named `device` in reports and pending
/// marks. Stops early, saving the checkpoint, when `stop` is set.
pub fn scrub(
    reader: &mut dyn BlockReader,
    device: &str,
    opts: &ScrubOptions,
    mut marker: Option<&mut dyn PendingMarker>,
    pool: &BufferPool,
    stop: &StopToken,
    observe: &mut dyn FnMut(&ScrubEvent),
) -> io::Result<ScrubReport> {
    let align = reader.alignment();
    opts.validate(align)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{device}: {e}")))?;
    if pool.unit() < opts.read_size {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "buffer pool buffers smaller than the read size",
        ));
    }
    let size = reader.size();
    let bs = opts.block_size as u64;

    let prev = match &opts.checkpoint {
        Some(p) => load_checkpoint(p)?,
        None => None,
    };
    let (mut offset, resumed, mut unreadable_total) = match prev {
        Some(c)
            if c.device == device
                && c.size == size
                && c.block_size == bs
                && !c.complete
                && c.offset <= size =>
        {
            (c.offset / bs * bs, c.offset > 0, c.unreadable)
        }
        Some(c) if c.device != device || c.size != size || c.block_size != bs => {
            log::warn!(
                "{device}: checkpoint is for {} (size {}, block size {}); starting a new pass",
                c.device,
                c.size,
                c.block_size
            );
            (0, false, 0)
        }
        _ => (0, false, 0),
    };
    let start_offset = offset;

    let mut block = AlignedBuf::new(opts.block_size, align.max(512))?;
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut last_ckpt = Instant::now();
    let mut bytes_read: u64 = 0;
    let mut found: Vec<(u64, u32)> = Vec::new();
    let (mut marked, mut mark_errors) = (0u64, 0u64);

    let save = |offset: u64, complete: bool, unreadable: u64| -> io::Result<()> {
        if let Some(p) = &opts.checkpoint {
            save_checkpoint(
                p,
                &Checkpoint {
                    device: device.to_string(),
                    size,
                    block_size: bs,
                    offset,
                    complete,
                    unreadable,
                    updated: Timestamp::now(),
                },
            )?;
        }
        Ok(())
    };

    while offset < size {
        if stop.is_stopped() {
            break;
        }
        let len = (opts.read_size as u64).min(size - offset) as usize;
        if offset + (len as u64) < size {
            let next = (opts.read_size as u64).min(size - offset - len as u64);
            reader.will_read(offset + len as u64, next);
        }
        // One pool buffer per read: with a pool that keeps buffers this is the same memory every
        // time; `dmremapd bench scrub` compares it with a pool that keeps none.
        let mut buf = pool.try_lease(pool.unit())?;
        let chunk = &mut buf[..len.next_multiple_of(align).min(opts.read_size)];
        match reader.read_at(chunk, offset) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{device}: read returned nothing at offset {offset} of {size}"),
                ))
            }
            Ok(n) => {
                let n = (n as u64).min(len as u64);
                offset += n;
                bytes_read += n;
            }
            Err(e) if is_media_error(&e) => {
                // Pinpoint: every block of the chunk, with retries.
                let end = offset + len as u64;
                let mut b = offset;
                while b < end {
                    let blen = bs.min(end - b) as usize;
                    let mut ok = false;
                    let mut last_err = None;
                    for _ in 0..=opts.retries {
                        let rlen = blen.next_multiple_of(align).min(opts.block_size);
                        match reader.read_at(&mut block.as_mut_slice()[..rlen], b) {
                            Ok(_) => {
                                ok = true;
                                break;
                            }
                            Err(e) if is_media_error(&e) => last_err = Some(e),
                            Err(e) => {
                                return Err(io::Error::new(
                                    e.kind(),
                                    format!("{device}: read at {b}: {e}"),
                                ))
                            }
                        }
                    }
                    if !ok {
                        let mut marked_now = false;
                        if let Some(m) = marker.as_deref_mut() {
                            match m.mark_pending(
                                device,
                                b / 512,
                                (blen as u64).div_ceil(512) as u32,
                            ) {
                                Ok(()) => {
                                    marked += 1;
                                    marked_now = true;
                                }
                                Err(me) => {
                                    mark_errors += 1;
                                    log::warn!(
                                        "{device}: marking block at {b} pending failed: {me}"
                                    );
                                }
                            }
                        }
                        log::warn!(
                            "{device}: unreadable block at byte {b} (+{blen}): {}",
                            last_err.map(|e| e.to_string()).unwrap_or_default()
                        );
                        found.push((b, blen as u32));
                        unreadable_total += 1;
                        observe(&ScrubEvent::Unreadable {
                            offset: b,
                            len: blen as u32,
                            marked_pending: marked_now,
                        });
                    }
                    bytes_read += blen as u64;
                    b += blen as u64;
                }
                offset = end;
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("{device}: read at {offset}: {e}"),
                ))
            }
        }

        if let Some(rate) = opts.rate {
            let due = Duration::from_secs_f64(bytes_read as f64 / rate as f64);
            let el = started.elapsed();
            if due > el && stop.wait(due - el) {
                break;
            }
        }
        if last_progress.elapsed() >= opts.progress_every && offset < size {
            last_progress = Instant::now();
            let bps = (bytes_read as f64 / started.elapsed().as_secs_f64().max(1e-9)) as u64;
            observe(&ScrubEvent::Progress {
                offset,
                total: size,
                bytes_per_sec: bps,
                unreadable: unreadable_total,
                done: false,
            });
        }
        if last_ckpt.elapsed() >= opts.checkpoint_every {
            last_ckpt = Instant::now();
            save(offset, false, unreadable_total)?;
        }
    }

    let complete = offset >= size;
    save(offset.min(size), complete, unreadable_total)?;
    let el = started.elapsed().as_secs_f64();
    let bps = bytes_read as f64 / el.max(1e-9);
    observe(&ScrubEvent::Progress {
        offset: offset.min(size),
        total: size,
        bytes_per_sec: bps as u64,
        unreadable: unreadable_total,
        done: complete,
    });
    Ok(ScrubReport {
        device: device.to_string(),
        size,
        mode: reader.mode().to_string(),
        start_offset,
        end_offset: offset.min(size),
        resumed,
        complete,
        bytes_read,
        elapsed_s: el,
        mb_per_s: bps / 1e6,
        unreadable: found,
        marked_pending: marked,
        mark_errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    /// A scrub without a pending marker, stop request or event observer.
    fn scrub_plain(
        r: &mut dyn BlockReader,
        device: &str,
        o: &ScrubOptions,
        pool: &BufferPool,
    ) -> io::Result<ScrubReport> {
        scrub(r, device, o, None, pool, &StopToken::new(), &mut |_| {})
    }

    /// Wraps a FileReader and fails reads overlapping chosen byte ranges; a range can heal after
    /// a number of failures (to exercise retries).
    struct Faulty {
        inner: FileReader,
        /// start -> (len, failures left; u32::MAX = forever)
        bad: HashMap<u64, (u64, u32)>,
        errno: i32,
        reads: usize,
    }

    impl BlockReader for Faulty {
        fn size(&self) -> u64 {
            self.inner.size()
        }
        fn alignment(&self) -> usize {
            self.inner.alignment()
        }
        fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            self.reads += 1;
            let end = offset + buf.len() as u64;
            for (start, (len, left)) in self.bad.iter_mut() {
                if offset < start + *len && *start < end && *left > 0 {
                    if *left != u32::MAX {
                        *left -= 1;
                    }
                    return Err(io::Error::from_raw_os_error(self.errno));
                }
            }
            self.inner.read_at(buf, offset)
        }
        fn mode(&self) -> &'static str {
            self.inner.mode()
        }
    }

    #[derive(Default, Clone)]
    struct Marks(Arc<Mutex<Vec<(String, u64, u32)>>>);
    impl PendingMarker for Marks {
        fn mark_pending(&mut self, device: &str, sector: u64, sectors: u32) -> io::Result<()> {
            self.0
                .lock()
                .unwrap()
                .push((device.to_string(), sector, sectors));
            Ok(())
        }
    }

    fn file(dir: &Path, size: usize) -> PathBuf {
        let p = dir.join("disk.img");
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&p, data).unwrap();
        p
    }

    fn opts(read: usize, block: usize) -> ScrubOptions {
        ScrubOptions {
            read_size: read,
            block_size: block,
            progress_every: Duration::ZERO,
            ..Default::default()
        }
    }

    #[test]
    fn clean_pass_reads_everything() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(dir.path(), 3 * 65536 + 4096);
        let mut r = FileReader::open(&p, true).unwrap();
        let pool = BufferPool::new(65536, 4096, 2);
        let mut events = Vec::new();
        let rep = scrub(
            &mut r,
            "disk",
            &opts(65536, 4096),
            None,
            &pool,
            &StopToken::new(),
            &mut |e| events.push(e.clone()),
        )
        .unwrap();
        assert!(rep.complete);
        assert_eq!(rep.bytes_read, 3 * 65536 + 4096);
        assert_eq!(rep.end_offset, rep.size);
        assert!(rep.unreadable.is_empty());
        assert!(
            matches!(events.last(), Some(ScrubEvent::Progress { done: true, offset, .. }) if *offset == rep.size)
        );
        assert!(
            events.len() >= 4,
            "progress after every chunk with progress_every = 0"
        );
        // The same pool buffer serves a second pass.
        let mut r = FileReader::open(&p, false).unwrap();
        scrub_plain(&mut r, "disk", &opts(65536, 4096), &pool).unwrap();
        assert_eq!(pool.stats().allocated, 1);
        assert_eq!(r.mode(), "buffered");
    }

    #[test]
    fn odd_sized_file_with_direct_io() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(dir.path(), 10_000); // not a multiple of 512
        let mut r = FileReader::open(&p, true).unwrap();
        let pool = BufferPool::new(8192, 4096, 1);
        let rep = scrub_plain(&mut r, "odd", &opts(8192, 4096), &pool).unwrap();
        assert!(rep.complete);
        assert_eq!(rep.bytes_read, 10_000);
    }

    #[test]
    fn pinpoints_unreadable_blocks_and_marks_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(dir.path(), 8 * 65536);
        let inner = FileReader::open(&p, false).unwrap();
        let mut bad = HashMap::new();
        bad.insert(65536 + 8192, (100, u32::MAX)); // inside block 18 of 4 KiB
        bad.insert(5 * 65536, (4096 * 2, u32::MAX)); // blocks 80 and 81
        bad.insert(7 * 65536 + 4096, (4096, 2)); // heals after 2 failures: chunk read + 1 retry
        let mut r = Faulty {
            inner,
            bad,
            errno: libc::ENODATA,
            reads: 0,
        };
        let marks = Marks::default();
        let mut m = marks.clone();
        let pool = BufferPool::new(65536, 4096, 1);
        let mut events = Vec::new();
        let rep = scrub(
            &mut r,
            "dm-7",
            &opts(65536, 4096),
            Some(&mut m),
            &pool,
            &StopToken::new(),
            &mut |e| events.push(e.clone()),
        )
        .unwrap();
        assert!(rep.complete);
        assert_eq!(
            rep.unreadable,
            vec![
                (65536 + 8192, 4096),
                (5 * 65536, 4096),
                (5 * 65536 + 4096, 4096)
            ]
        );
        assert_eq!(rep.bytes_read, 8 * 65536);
        assert_eq!(rep.marked_pending, 3);
        let marks = marks.0.lock().unwrap();
        assert_eq!(
            *marks,
            vec![
                ("dm-7".to_string(), (65536 + 8192) / 512, 8),
                ("dm-7".to_string(), 5 * 65536 / 512, 8),
                ("dm-7".to_string(), (5 * 65536 + 4096) / 512, 8)
            ]
        );
        let unread: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                ScrubEvent::Unreadable {
                    offset,
                    marked_pending: true,
                    ..
                } => Some(*offset),
                _ => None,
            })
            .collect();
        assert_eq!(unread.len(), 3);
        assert!(matches!(
            events.last(),
            Some(ScrubEvent::Progress {
                unreadable: 3,
                done: true,
                ..
            })
        ));
    }

    #[test]
    fn non_media_errors_abort_with_the_device_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(dir.path(), 65536);
        let mut bad = HashMap::new();
        bad.insert(0, (1, u32::MAX));
        let mut r = Faulty {
            inner: FileReader::open(&p, false).unwrap(),
            bad,
            errno: libc::ENXIO,
            reads: 0,
        };
        let pool = BufferPool::new(65536, 4096, 1);
        let e = scrub_plain(&mut r, "gone", &opts(65536, 4096), &pool).unwrap_err();
        assert!(e.to_string().contains("gone"), "{e}");
    }

    #[test]
    fn checkpoint_resume_and_new_pass() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(dir.path(), 16 * 65536);
        let ck = dir.path().join("state/ck.json");
        std::fs::create_dir_all(ck.parent().unwrap()).unwrap();
        let pool = BufferPool::new(65536, 4096, 1);
        let mut o = opts(65536, 4096);
        o.checkpoint = Some(ck.clone());
        o.checkpoint_every = Duration::ZERO;

        // Stop after 5 chunks.
        let stop = StopToken::new();
        let mut n = 0;
        let mut r = FileReader::open(&p, true).unwrap();
        let rep = scrub(&mut r, "disk", &o, None, &pool, &stop, &mut |e| {
            if let ScrubEvent::Progress { .. } = e {
                n += 1;
                if n == 5 {
                    stop.stop();
                }
            }
        })
        .unwrap();
        assert!(!rep.complete);
        assert_eq!(rep.end_offset, 5 * 65536);
        let c = load_checkpoint(&ck).unwrap().unwrap();
        assert_eq!(
            (c.offset, c.complete, c.size),
            (5 * 65536, false, 16 * 65536)
        );
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(ck.parent().unwrap()).unwrap().count(), 1);

        // Resume: reads only the rest.
        let mut r = FileReader::open(&p, true).unwrap();
        let rep = scrub_plain(&mut r, "disk", &o, &pool).unwrap();
        assert!(rep.resumed && rep.complete);
        assert_eq!(rep.start_offset, 5 * 65536);
        assert_eq!(rep.bytes_read, 11 * 65536);
        assert!(load_checkpoint(&ck).unwrap().unwrap().complete);

        // A complete checkpoint starts a new pass from 0.
        let mut r = FileReader::open(&p, true).unwrap();
        let rep = scrub_plain(&mut r, "disk", &o, &pool).unwrap();
        assert!(!rep.resumed);
        assert_eq!(rep.bytes_read, 16 * 65536);

        // A checkpoint of another device is ignored.
        save_checkpoint(
            &ck,
            &Checkpoint {
                device: "other".into(),
                size: 1,
                block_size: 4096,
                offset: 0,
                complete: false,
                unreadable: 0,
                updated: Timestamp(0),
            },
        )
        .unwrap();
        let mut r = FileReader::open(&p, true).unwrap();
        let rep = scrub_plain(&mut r, "disk", &o, &pool).unwrap();
        assert_eq!(rep.start_offset, 0);

        // A corrupt checkpoint is an error naming the file.
        std::fs::write(&ck, "{not json").unwrap();
        let mut r = FileReader::open(&p, true).unwrap();
        let e = scrub_plain(&mut r, "disk", &o, &pool).unwrap_err();
        assert!(e.to_string().contains("ck.json"), "{e}");
    }

    #[test]
    fn rate_limit_is_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(dir.path(), 1 << 20);
        let mut r = FileReader::open(&p, false).unwrap();
        let pool = BufferPool::new(65536, 4096, 1);
        let mut o = opts(65536, 4096);
        o.rate = Some(4 << 20); // 1 MiB at 4 MiB/s: 250 ms
        let t = Instant::now();
        let rep = scrub_plain(&mut r, "disk", &o, &pool).unwrap();
        let el = t.elapsed();
        assert!(el >= Duration::from_millis(240), "{el:?}");
        assert!(el < Duration::from_secs(3), "{el:?}");
        assert!(rep.mb_per_s <= 4.4, "{}", rep.mb_per_s);
    }

    #[test]
    fn bad_options_are_rejected() {
        assert!(opts(65536, 1000).validate(512).is_err());
        assert!(opts(65536, 256).validate(512).is_err());
        assert!(opts(6000, 4096).validate(512).is_err());
        assert!(opts(65536, 512).validate(4096).is_err());
        assert!(opts(65536, 4096).validate(4096).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let e = FileReader::open(dir.path(), false).err().unwrap();
        assert!(e.to_string().contains("not a block device"), "{e}");
        let e = FileReader::open(&dir.path().join("missing"), true)
            .err()
            .unwrap();
        assert!(e.to_string().contains("missing"), "{e}");
    }
}

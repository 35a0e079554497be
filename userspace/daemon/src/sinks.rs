//! Sinks that write events out: JSON lines (file or stdout) and a counting null sink.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::event::Event;
use crate::pipeline::{Sink, SinkControl};
use dmremap_lib::event::write_line;

/// Where JSON lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JsonlTarget {
    Stdout,
    File(PathBuf),
}

impl JsonlTarget {
    /// `-` means standard output; anything else is a file path.
    pub fn from_config(path: &str) -> JsonlTarget {
        if path == "-" {
            JsonlTarget::Stdout
        } else {
            JsonlTarget::File(PathBuf::from(path))
        }
    }
}

enum Out {
    Stdout(io::Stdout),
    File(File),
}

impl Out {
    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        match self {
            Out::Stdout(s) => {
                let mut l = s.lock();
                l.write_all(b)?;
                l.flush()
            }
            Out::File(f) => f.write_all(b),
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Writes one JSON object per line ([`write_line`]: serde_json, the `Serialize` form of
/// [`Event`]). Events are serialized into a reused in-memory buffer that is written to the file
/// whenever it exceeds the buffer size and at every flush (once per batch),
/// so a line is never split across two writes of different batches. The file is opened with
/// `O_APPEND` and reopened on request (SIGHUP, for logrotate).
pub struct JsonlSink {
    target: JsonlTarget,
    out: Out,
    buf: Vec<u8>,
    limit: usize,
    reopens: Arc<AtomicU64>,
}

impl JsonlSink {
    /// Opens the target; `buffer_bytes` is how much is collected before a write.
    pub fn open(target: JsonlTarget, buffer_bytes: usize) -> io::Result<JsonlSink> {
        let out = match &target {
            JsonlTarget::Stdout => Out::Stdout(io::stdout()),
            JsonlTarget::File(p) => Out::File(open_append(p)?),
        };
        Ok(JsonlSink {
            target,
            out,
            buf: Vec::with_capacity(buffer_bytes.max(4096) + 1024),
            limit: buffer_bytes.max(4096),
            reopens: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Count of successful reopens.
    pub fn reopen_counter(&self) -> Arc<AtomicU64> {
        self.reopens.clone()
    }

    fn write_out(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let r = self.out.write_all(&self.buf);
        // On failure the buffered lines are discarded (the pipeline counts the error) so that a
        // full disk cannot make memory grow without bound.
        self.buf.clear();
        r
    }

    fn reopen(&mut self, path: Option<&PathBuf>) -> io::Result<()> {
        self.write_out()?;
        let target = match path {
            Some(p) => JsonlTarget::from_config(&p.to_string_lossy()),
            None => self.target.clone(),
        };
        // If the new file cannot be opened the old descriptor and target stay in use.
        self.out = match &target {
            JsonlTarget::Stdout => Out::Stdout(io::stdout()),
            JsonlTarget::File(p) => Out::File(open_append(p)?),
        };
        self.target = target;
        self.reopens.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl Sink for JsonlSink {
    fn name(&self) -> &str {
        "jsonl"
    }

    fn write_batch(&mut self, batch: &[Event]) -> io::Result<()> {
        for ev in batch {
            write_line(&mut self.buf, ev)?;
            if self.buf.len() >= self.limit {
                self.write_out()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_out()
    }

    fn control(&mut self, req: &SinkControl) -> io::Result<()> {
        match req {
            SinkControl::Reopen { path } => self.reopen(path.as_ref()),
        }
    }
}

/// Counts events and discards them (for measuring the pipeline without output cost).
pub struct NullSink {
    pub count: Arc<AtomicU64>,
}

impl NullSink {
    pub fn new() -> NullSink {
        NullSink {
            count: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Default for NullSink {
    fn default() -> Self {
        Self::new()
    }
}

impl Sink for NullSink {
    fn name(&self) -> &str {
        "null"
    }
    fn write_batch(&mut self, batch: &[Event]) -> io::Result<()> {
        self.count.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Keeps every event in memory, for tests and tools that inspect the stream.
pub struct MemorySink(pub Arc<std::sync::Mutex<Vec<Event>>>);

impl Sink for MemorySink {
    fn name(&self) -> &str {
        "memory"
    }

    fn write_batch(&mut self, batch: &[Event]) -> io::Result<()> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("memory sink poisoned"))?
            .extend_from_slice(batch);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    fn batch(from: u64, n: u64) -> Vec<Event> {
        (from..from + n)
            .map(|i| {
                let mut e = Event::new(
                    "t".into(),
                    "dm-1".into(),
                    EventKind::PendingMarked {
                        sector: i,
                        sectors: 8,
                    },
                );
                e.seq = i;
                e
            })
            .collect()
    }

    fn lines(p: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
            .collect()
    }

    #[test]
    fn writes_one_json_object_per_line_and_flushes_per_batch() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ev.jsonl");
        let mut s = JsonlSink::open(JsonlTarget::File(p.clone()), 4096).unwrap();
        s.write_batch(&batch(1, 3)).unwrap();
        // Below the buffer size nothing reaches the file before the flush.
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
        s.flush().unwrap();
        let v = lines(&p);
        assert_eq!(v.len(), 3);
        assert_eq!(v[2]["fields"]["sector"], 3);
        assert_eq!(v[0]["kind"], "pending_marked");
        // A batch larger than the buffer is written in pieces, each ending on a line boundary.
        s.write_batch(&batch(10, 500)).unwrap();
        let len = std::fs::metadata(&p).unwrap().len();
        assert!(len > 4096);
        assert!(std::fs::read(&p).unwrap().ends_with(b"\n"));
        s.flush().unwrap();
        assert_eq!(lines(&p).len(), 503);
    }

    #[test]
    fn reopen_after_rename_starts_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ev.jsonl");
        let rotated = dir.path().join("ev.jsonl.1");
        let mut s = JsonlSink::open(JsonlTarget::File(p.clone()), 1 << 16).unwrap();
        s.write_batch(&batch(1, 2)).unwrap();
        s.flush().unwrap();
        std::fs::rename(&p, &rotated).unwrap();
        // Before the reopen, output still goes to the renamed file.
        s.write_batch(&batch(3, 1)).unwrap();
        s.flush().unwrap();
        assert!(!p.exists());
        s.write_batch(&batch(4, 1)).unwrap(); // buffered, not yet flushed
        s.control(&SinkControl::Reopen { path: None }).unwrap();
        s.write_batch(&batch(5, 2)).unwrap();
        s.flush().unwrap();
        let old: Vec<u64> = lines(&rotated)
            .iter()
            .map(|v| v["seq"].as_u64().unwrap())
            .collect();
        let new: Vec<u64> = lines(&p)
            .iter()
            .map(|v| v["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(
            old,
            vec![1, 2, 3, 4],
            "buffered lines go to the old file before reopening"
        );
        assert_eq!(new, vec![5, 6]);
        assert_eq!(s.reopen_counter().load(Ordering::Relaxed), 1);
    }

    #[test]
    fn reopen_to_a_new_path_and_failure_keeps_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jsonl");
        let b = dir.path().join("b.jsonl");
        let mut s = JsonlSink::open(JsonlTarget::File(a.clone()), 4096).unwrap();
        s.control(&SinkControl::Reopen {
            path: Some(b.clone()),
        })
        .unwrap();
        s.write_batch(&batch(1, 1)).unwrap();
        s.flush().unwrap();
        assert_eq!(lines(&b).len(), 1);
        let bad = dir.path().join("missing-dir/x.jsonl");
        let err = s
            .control(&SinkControl::Reopen { path: Some(bad) })
            .unwrap_err();
        assert!(err.to_string().contains("missing-dir"), "{err}");
        s.write_batch(&batch(2, 1)).unwrap();
        s.flush().unwrap();
        assert_eq!(lines(&b).len(), 2, "still writing to the previous file");
        assert_eq!(lines(&a).len(), 0);
    }

    #[test]
    fn open_error_names_the_path() {
        let err = JsonlSink::open(JsonlTarget::File("/nonexistent-dir/x.jsonl".into()), 4096)
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent-dir/x.jsonl"));
    }
}

//! Event sources: each runs on its own thread and pushes events through an [`Emitter`] until it
//! is told to stop.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::pipeline::Emitter;

/// Called when a stop is requested (e.g. to wake a reader blocked in poll()).
pub type StopHook = Arc<dyn Fn() + Send + Sync>;

/// A cooperative stop signal that also serves as an interruptible sleep.
#[derive(Clone, Default)]
pub struct StopToken {
    inner: Arc<(AtomicBool, Mutex<()>, Condvar)>,
    hooks: Arc<Mutex<Vec<StopHook>>>,
}

impl StopToken {
    pub fn new() -> StopToken {
        StopToken::default()
    }

    pub fn stop(&self) {
        self.inner.0.store(true, Ordering::SeqCst);
        {
            let _g = self.inner.1.lock().unwrap_or_else(|e| e.into_inner());
            self.inner.2.notify_all();
        }
        let hooks = self.hooks.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for h in hooks {
            h();
        }
    }

    /// Runs `hook` when a stop is requested (at once if one already was).
    pub fn on_stop(&self, hook: StopHook) {
        self.hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(hook.clone());
        if self.is_stopped() {
            hook();
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.inner.0.load(Ordering::SeqCst)
    }

    /// Sleeps up to `d`; returns `true` as soon as a stop is requested.
    pub fn wait(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut g = self.inner.1.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.is_stopped() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = self
                .inner
                .2
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Which tuning profile a source's thread gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerRole {
    /// Event workers (kernel events, NVMe scrapes, the dispatcher).
    Events,
    /// Background scrubbing I/O.
    Scrub,
}

/// What a running source gets.
pub struct SourceContext {
    /// Pushes events into the pipeline.
    pub emitter: Emitter,
    /// Set when the daemon stops; sources check it at least every few hundred milliseconds.
    pub stop: StopToken,
}

/// A producer of events, run on its own thread by the daemon.
pub trait Source: Send + 'static {
    /// The source name events carry (`kernel`, `nvme`, `scrub`, ...).
    fn name(&self) -> &str;
    /// The tuning profile of its thread.
    fn role(&self) -> WorkerRole {
        WorkerRole::Events
    }
    /// Runs until `ctx.stop` is set (or the source has nothing more to do). An error ends the
    /// source; the daemon logs it and keeps running.
    fn run(&mut self, ctx: &SourceContext) -> io::Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_token_interrupts_wait() {
        let t = StopToken::new();
        assert!(!t.wait(Duration::from_millis(10)));
        let t2 = t.clone();
        let h = std::thread::spawn(move || {
            let s = Instant::now();
            let stopped = t2.wait(Duration::from_secs(10));
            (stopped, s.elapsed())
        });
        std::thread::sleep(Duration::from_millis(30));
        t.stop();
        let (stopped, took) = h.join().unwrap();
        assert!(stopped);
        assert!(took < Duration::from_secs(2));
        assert!(t.is_stopped() && t.wait(Duration::from_secs(5)));
    }
}

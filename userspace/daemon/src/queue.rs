//! Bounded multi-producer, single-consumer event queues.
//!
//! Two interchangeable implementations, chosen by `queue.impl` in the configuration:
//! - `crossbeam`: `crossbeam-channel`'s bounded (array) channel; the consumer takes one event per
//!   receive and assembles batches itself.
//! - `mutex`: a `Mutex<VecDeque>` with two condition variables; the consumer moves a whole batch
//!   out under one lock acquisition and producers wake it only when it sleeps.
//!
//! `dmremapd bench pipeline` measures both side by side.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::event::Event;

/// Which queue implementation to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueImpl {
    Crossbeam,
    Mutex,
}

impl std::str::FromStr for QueueImpl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "crossbeam" => Ok(QueueImpl::Crossbeam),
            "mutex" => Ok(QueueImpl::Mutex),
            _ => Err(format!(
                "unknown queue implementation `{s}` (expected crossbeam or mutex)"
            )),
        }
    }
}

/// Why a push did not enqueue.
#[derive(Debug)]
pub enum PushError {
    /// The queue is full (non-blocking push only).
    Full(Event),
    /// The consumer is gone.
    Disconnected(Event),
}

/// What a batch receive returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Recv {
    /// This many events were appended.
    Got(usize),
    /// Nothing arrived before the timeout.
    Timeout,
    /// No producer is left and the queue is empty.
    Disconnected,
    /// `wake` of [`Rx::recv_batch_or_wake`] became ready first (nothing was taken from it).
    Woken,
}

struct MxInner {
    q: VecDeque<Event>,
    consumer_waiting: bool,
    producers_waiting: usize,
    consumer_alive: bool,
    producers: usize,
}

/// The `mutex` queue (opaque).
pub struct MxQueue {
    inner: Mutex<MxInner>,
    not_empty: Condvar,
    not_full: Condvar,
    cap: usize,
}

/// The producer side; clone it for each producer.
pub enum Tx {
    Crossbeam(crossbeam_channel::Sender<Event>),
    Mutex(Arc<MxQueue>),
}

/// The consumer side.
pub enum Rx {
    Crossbeam(crossbeam_channel::Receiver<Event>),
    Mutex(Arc<MxQueue>),
}

/// Creates a queue holding at most `cap` events.
pub fn bounded(which: QueueImpl, cap: usize) -> (Tx, Rx) {
    match which {
        QueueImpl::Crossbeam => {
            let (tx, rx) = crossbeam_channel::bounded(cap);
            (Tx::Crossbeam(tx), Rx::Crossbeam(rx))
        }
        QueueImpl::Mutex => {
            let q = Arc::new(MxQueue {
                inner: Mutex::new(MxInner {
                    q: VecDeque::with_capacity(cap),
                    consumer_waiting: false,
                    producers_waiting: 0,
                    consumer_alive: true,
                    producers: 1,
                }),
                not_empty: Condvar::new(),
                not_full: Condvar::new(),
                cap,
            });
            (Tx::Mutex(q.clone()), Rx::Mutex(q))
        }
    }
}

impl Clone for Tx {
    fn clone(&self) -> Self {
        match self {
            Tx::Crossbeam(t) => Tx::Crossbeam(t.clone()),
            Tx::Mutex(q) => {
                q.inner.lock().unwrap_or_else(|e| e.into_inner()).producers += 1;
                Tx::Mutex(q.clone())
            }
        }
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if let Tx::Mutex(q) = self {
            let mut g = q.inner.lock().unwrap_or_else(|e| e.into_inner());
            g.producers -= 1;
            let wake = g.producers == 0 && g.consumer_waiting;
            drop(g);
            if wake {
                q.not_empty.notify_one();
            }
        }
    }
}

impl Drop for Rx {
    fn drop(&mut self) {
        if let Rx::Mutex(q) = self {
            let mut g = q.inner.lock().unwrap_or_else(|e| e.into_inner());
            g.consumer_alive = false;
            drop(g);
            q.not_full.notify_all();
        }
    }
}

impl MxQueue {
    /// Append under the lock held in `g`, then wake the consumer if it waits.
    fn push_locked(&self, mut g: std::sync::MutexGuard<'_, MxInner>, ev: Event) {
        g.q.push_back(ev);
        let wake = g.consumer_waiting;
        drop(g);
        if wake {
            self.not_empty.notify_one();
        }
    }
}

impl Tx {
    /// Enqueues, or returns the event when the queue is full.
    #[inline]
    pub fn try_push(&self, ev: Event) -> Result<(), PushError> {
        match self {
            Tx::Crossbeam(t) => t.try_send(ev).map_err(|e| match e {
                crossbeam_channel::TrySendError::Full(ev) => PushError::Full(ev),
                crossbeam_channel::TrySendError::Disconnected(ev) => PushError::Disconnected(ev),
            }),
            Tx::Mutex(q) => {
                let g = q.inner.lock().unwrap_or_else(|e| e.into_inner());
                if !g.consumer_alive {
                    return Err(PushError::Disconnected(ev));
                }
                if g.q.len() >= q.cap {
                    return Err(PushError::Full(ev));
                }
                q.push_locked(g, ev);
                Ok(())
            }
        }
    }

    /// Enqueues, waiting for room as long as it takes.
    #[inline]
    pub fn push_blocking(&self, ev: Event) -> Result<(), PushError> {
        match self {
            Tx::Crossbeam(t) => t.send(ev).map_err(|e| PushError::Disconnected(e.0)),
            Tx::Mutex(q) => {
                let mut g = q.inner.lock().unwrap_or_else(|e| e.into_inner());
                while g.q.len() >= q.cap && g.consumer_alive {
                    g.producers_waiting += 1;
                    g = q.not_full.wait(g).unwrap_or_else(|e| e.into_inner());
                    g.producers_waiting -= 1;
                }
                if !g.consumer_alive {
                    return Err(PushError::Disconnected(ev));
                }
                q.push_locked(g, ev);
                Ok(())
            }
        }
    }
}

impl Rx {
    /// Events waiting.
    pub fn len(&self) -> usize {
        match self {
            Rx::Crossbeam(r) => r.len(),
            Rx::Mutex(q) => q.inner.lock().unwrap_or_else(|e| e.into_inner()).q.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Like [`Rx::recv_batch`], but also returns [`Recv::Woken`] as soon as `wake` has a message
    /// (or is disconnected), without taking it. The mutex queue cannot wait on both; it waits
    /// at most `tick` instead of `timeout`, so a message on `wake` waits that long.
    pub fn recv_batch_or_wake<T>(
        &self,
        out: &mut Vec<Event>,
        max: usize,
        timeout: Duration,
        tick: Duration,
        linger: Duration,
        wake: &crossbeam_channel::Receiver<T>,
    ) -> Recv {
        match self {
            Rx::Crossbeam(r) => {
                if r.is_empty() {
                    let mut sel = crossbeam_channel::Select::new();
                    sel.recv(r);
                    let woken = sel.recv(wake);
                    match sel.ready_timeout(timeout) {
                        Ok(i) if i == woken => return Recv::Woken,
                        Ok(_) => {}
                        Err(_) => return Recv::Timeout,
                    }
                }
                self.recv_batch(out, max, Duration::ZERO, linger)
            }
            Rx::Mutex(_) => {
                if !wake.is_empty() {
                    return Recv::Woken;
                }
                self.recv_batch(out, max, timeout.min(tick), linger)
            }
        }
    }

    /// Waits up to `timeout` for the first event, then appends up to `max` events in total
    /// without waiting further, except that with `linger > 0` it keeps waiting for more until
    /// `max` events or `linger` after the first one.
    pub fn recv_batch(
        &self,
        out: &mut Vec<Event>,
        max: usize,
        timeout: Duration,
        linger: Duration,
    ) -> Recv {
        let start_len = out.len();
        match self {
            Rx::Crossbeam(r) => {
                match r.recv_timeout(timeout) {
                    Ok(ev) => out.push(ev),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => return Recv::Timeout,
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                        return Recv::Disconnected
                    }
                }
                let deadline = if linger.is_zero() {
                    None
                } else {
                    Some(Instant::now() + linger)
                };
                while out.len() - start_len < max {
                    match r.try_recv() {
                        Ok(ev) => out.push(ev),
                        Err(_) => match deadline {
                            Some(d) => match r.recv_deadline(d) {
                                Ok(ev) => out.push(ev),
                                Err(_) => break,
                            },
                            None => break,
                        },
                    }
                }
            }
            Rx::Mutex(q) => {
                let mut g = q.inner.lock().unwrap_or_else(|e| e.into_inner());
                let deadline = Instant::now() + timeout;
                while g.q.is_empty() {
                    if g.producers == 0 {
                        return Recv::Disconnected;
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        return Recv::Timeout;
                    }
                    g.consumer_waiting = true;
                    let (ng, _) = q
                        .not_empty
                        .wait_timeout(g, deadline - now)
                        .unwrap_or_else(|e| e.into_inner());
                    g = ng;
                    g.consumer_waiting = false;
                }
                let linger_deadline = if linger.is_zero() {
                    None
                } else {
                    Some(Instant::now() + linger)
                };
                loop {
                    let take = g.q.len().min(max - (out.len() - start_len));
                    out.extend(g.q.drain(..take));
                    if g.producers_waiting > 0 {
                        q.not_full.notify_all();
                    }
                    let Some(d) = linger_deadline else { break };
                    let now = Instant::now();
                    if out.len() - start_len >= max || now >= d || g.producers == 0 {
                        break;
                    }
                    g.consumer_waiting = true;
                    let (ng, _) = q
                        .not_empty
                        .wait_timeout(g, d - now)
                        .unwrap_or_else(|e| e.into_inner());
                    g = ng;
                    g.consumer_waiting = false;
                }
            }
        }
        Recv::Got(out.len() - start_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    fn ev(i: u64) -> Event {
        Event::new(
            "t".into(),
            "d".into(),
            EventKind::PendingMarked {
                sector: i,
                sectors: 1,
            },
        )
    }

    fn sector(e: &Event) -> u64 {
        match e.kind {
            EventKind::PendingMarked { sector, .. } => sector,
            _ => unreachable!(),
        }
    }

    #[test]
    fn both_impls_bound_order_and_batch() {
        for which in [QueueImpl::Crossbeam, QueueImpl::Mutex] {
            let (tx, rx) = bounded(which, 4);
            for i in 0..4 {
                tx.try_push(ev(i)).unwrap();
            }
            assert!(
                matches!(tx.try_push(ev(9)), Err(PushError::Full(_))),
                "{which:?}"
            );
            assert_eq!(rx.len(), 4);
            let mut out = Vec::new();
            assert_eq!(
                rx.recv_batch(&mut out, 3, Duration::from_millis(10), Duration::ZERO),
                Recv::Got(3)
            );
            assert_eq!(
                rx.recv_batch(&mut out, 3, Duration::from_millis(10), Duration::ZERO),
                Recv::Got(1)
            );
            assert_eq!(out.iter().map(sector).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
            assert_eq!(
                rx.recv_batch(&mut out, 3, Duration::from_millis(5), Duration::ZERO),
                Recv::Timeout
            );
            drop(tx);
            assert_eq!(
                rx.recv_batch(&mut out, 3, Duration::from_millis(5), Duration::ZERO),
                Recv::Disconnected
            );
        }
    }

    #[test]
    fn blocking_push_waits_for_room_and_fails_without_consumer() {
        for which in [QueueImpl::Crossbeam, QueueImpl::Mutex] {
            let (tx, rx) = bounded(which, 1);
            tx.push_blocking(ev(0)).unwrap();
            let tx2 = tx.clone();
            let h = std::thread::spawn(move || {
                let t = Instant::now();
                tx2.push_blocking(ev(1)).unwrap();
                t.elapsed()
            });
            std::thread::sleep(Duration::from_millis(50));
            let mut out = Vec::new();
            rx.recv_batch(&mut out, 10, Duration::from_millis(10), Duration::ZERO);
            let waited = h.join().unwrap();
            assert!(waited >= Duration::from_millis(40), "{which:?}: {waited:?}");
            rx.recv_batch(&mut out, 10, Duration::from_millis(100), Duration::ZERO);
            assert_eq!(out.len(), 2);
            tx.push_blocking(ev(2)).unwrap();
            drop(rx);
            assert!(
                matches!(tx.push_blocking(ev(3)), Err(PushError::Disconnected(_))),
                "{which:?}"
            );
        }
    }

    #[test]
    fn linger_collects_late_events() {
        for which in [QueueImpl::Crossbeam, QueueImpl::Mutex] {
            let (tx, rx) = bounded(which, 16);
            tx.try_push(ev(0)).unwrap();
            let h = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                tx.try_push(ev(1)).unwrap();
                tx
            });
            let mut out = Vec::new();
            // Returns as soon as the batch (2) is full, long before the linger ends.
            let t = Instant::now();
            let r = rx.recv_batch(
                &mut out,
                2,
                Duration::from_millis(10),
                Duration::from_secs(5),
            );
            h.join().unwrap();
            assert_eq!(r, Recv::Got(2), "{which:?}");
            assert!(t.elapsed() < Duration::from_secs(4));
        }
    }
}

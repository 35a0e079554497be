//! The bounded multi-producer, single-consumer event queue: `crossbeam-channel`'s bounded
//! (array) channel; the consumer takes one event per receive and assembles batches itself.

use std::time::{Duration, Instant};

use crate::event::Event;

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

/// The producer side; clone it for each producer.
#[derive(Clone)]
pub struct Tx(crossbeam_channel::Sender<Event>);

/// The consumer side.
pub struct Rx(crossbeam_channel::Receiver<Event>);

/// Creates a queue holding at most `cap` events.
pub fn bounded(cap: usize) -> (Tx, Rx) {
    let (tx, rx) = crossbeam_channel::bounded(cap);
    (Tx(tx), Rx(rx))
}

impl Tx {
    /// Enqueues, or returns the event when the queue is full.
    #[inline]
    pub fn try_push(&self, ev: Event) -> Result<(), PushError> {
        self.0.try_send(ev).map_err(|e| match e {
            crossbeam_channel::TrySendError::Full(ev) => PushError::Full(ev),
            crossbeam_channel::TrySendError::Disconnected(ev) => PushError::Disconnected(ev),
        })
    }

    /// Enqueues, waiting for room as long as it takes.
    #[inline]
    pub fn push_blocking(&self, ev: Event) -> Result<(), PushError> {
        self.0.send(ev).map_err(|e| PushError::Disconnected(e.0))
    }
}

impl Rx {
    /// Events waiting.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Like [`Rx::recv_batch`], but also returns [`Recv::Woken`] as soon as `wake` has a message
    /// (or is disconnected), without taking it.
    pub fn recv_batch_or_wake<T>(
        &self,
        out: &mut Vec<Event>,
        max: usize,
        timeout: Duration,
        linger: Duration,
        wake: &crossbeam_channel::Receiver<T>,
    ) -> Recv {
        if self.0.is_empty() {
            let mut sel = crossbeam_channel::Select::new();
            sel.recv(&self.0);
            let woken = sel.recv(wake);
            match sel.ready_timeout(timeout) {
                Ok(i) if i == woken => return Recv::Woken,
                Ok(_) => {}
                Err(_) => return Recv::Timeout,
            }
        }
        self.recv_batch(out, max, Duration::ZERO, linger)
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
        match self.0.recv_timeout(timeout) {
            Ok(ev) => out.push(ev),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => return Recv::Timeout,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Recv::Disconnected,
        }
        let deadline = if linger.is_zero() {
            None
        } else {
            Some(Instant::now() + linger)
        };
        while out.len() - start_len < max {
            match self.0.try_recv() {
                Ok(ev) => out.push(ev),
                Err(_) => match deadline {
                    Some(d) => match self.0.recv_deadline(d) {
                        Ok(ev) => out.push(ev),
                        Err(_) => break,
                    },
                    None => break,
                },
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
    fn bound_order_and_batch() {
        {
            let (tx, rx) = bounded(4);
            for i in 0..4 {
                tx.try_push(ev(i)).unwrap();
            }
            assert!(
                matches!(tx.try_push(ev(9)), Err(PushError::Full(_))),
                "full"
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
        {
            let (tx, rx) = bounded(1);
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
            assert!(waited >= Duration::from_millis(40), "{waited:?}");
            rx.recv_batch(&mut out, 10, Duration::from_millis(100), Duration::ZERO);
            assert_eq!(out.len(), 2);
            tx.push_blocking(ev(2)).unwrap();
            drop(rx);
            assert!(
                matches!(tx.push_blocking(ev(3)), Err(PushError::Disconnected(_))),
                "full"
            );
        }
    }

    #[test]
    fn linger_collects_late_events() {
        {
            let (tx, rx) = bounded(16);
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
            assert_eq!(r, Recv::Got(2));
            assert!(t.elapsed() < Duration::from_secs(4));
        }
    }
}

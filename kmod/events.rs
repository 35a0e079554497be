// SPDX-License-Identifier: GPL-2.0

//! The module's event ring: a bounded record of the most recent events of all remap targets.
//!
//! Raising an event never blocks or allocates: it takes an interrupt-safe spinlock for a few
//! stores, overwriting the oldest event when the ring is full (counted in `lost`), and publishes
//! the next sequence number, which wakes readers and pollers of the control device.
//!
//! Readers of the control device each keep a cursor (the next sequence number they want);
//! [`read_from`] hands them events from there, preceded by one `DMR_EV_OVERFLOW` record when
//! events they had not read were overwritten.

use kernel::prelude::*;

use crate::dm::{event_publish, event_ring, ktime_ns, uapi};

const RING: usize = uapi::DMR_EVENT_RING as usize;

const EMPTY: uapi::dmr_event = uapi::dmr_event {
    seq: 0,
    time_ns: 0,
    type_: 0,
    dev: 0,
    sector: 0,
    arg: 0,
    flags: 0,
    reserved: 0,
};

pub(crate) struct Ring {
    events: [uapi::dmr_event; RING],
    /// Sequence number of the next event (the first is 1).
    next: u64,
    lost: u64,
}

impl Ring {
    pub(crate) const fn new() -> Self {
        Ring {
            events: [EMPTY; RING],
            next: 1,
            lost: 0,
        }
    }

    fn oldest(&self) -> u64 {
        self.next.saturating_sub(RING as u64).max(1)
    }

    /// Hand the held events from `seq` on to `push` in order until it returns `false` (full);
    /// returns the sequence number of the first event not handed over.
    fn copy_from(&self, mut seq: u64, mut push: impl FnMut(uapi::dmr_event) -> bool) -> u64 {
        while seq < self.next {
            let idx = ((seq - 1) % RING as u64) as usize;
            match self.events.get(idx) {
                Some(e) if push(*e) => seq += 1,
                _ => break,
            }
        }
        seq
    }
}

/// Record an event. Any context.
pub(crate) fn raise(ty: u32, dev: u32, sector: u64, arg: u64, flags: u32) {
    let time_ns = ktime_ns();
    let mut r = event_ring();
    let seq = r.next;
    r.next += 1;
    let idx = ((seq - 1) % RING as u64) as usize;
    if seq > RING as u64 {
        r.lost += 1;
    }
    if let Some(slot) = r.events.get_mut(idx) {
        *slot = uapi::dmr_event {
            seq,
            time_ns,
            type_: ty,
            dev,
            sector,
            arg,
            flags,
            reserved: 0,
        };
    }
    // Under the lock, so the published value only grows.
    event_publish(r.next);
}

/// Copy events with `seq >= since` into `out` (at most its capacity), oldest first. Returns
/// (next sequence to ask for, oldest sequence still held, events lost so far).
pub(crate) fn read(since: u64, out: &mut KVVec<uapi::dmr_event>) -> (u64, u64, u64) {
    let max = out.capacity();
    let r = event_ring();
    let oldest = r.oldest();
    // Capacity was reserved by the caller: these pushes do not allocate.
    let seq = r.copy_from(since.max(oldest), |e| {
        out.len() < max && out.push_within_capacity(e).is_ok()
    });
    (seq, oldest, r.lost)
}

/// Sequence numbers of the oldest event held and of the next event to be raised.
pub(crate) fn bounds() -> (u64, u64) {
    let r = event_ring();
    (r.oldest(), r.next)
}

/// Records for a reader whose cursor is `cursor` (the next sequence number it wants, >= 1), at
/// most `out`'s capacity: first a `DMR_EV_OVERFLOW` record if events from `cursor` on were
/// overwritten, then events in sequence order. The reader's cursor after each record is
/// [`cursor_after`] of it.
pub(crate) fn read_from(cursor: u64, out: &mut KVVec<uapi::dmr_event>) {
    let max = out.capacity();
    let now = ktime_ns();
    let r = event_ring();
    let oldest = r.oldest();
    let mut seq = cursor.max(1);
    if seq < oldest && max > 0 {
        let rec = uapi::dmr_event {
            seq,
            time_ns: now,
            type_: uapi::EV_OVERFLOW,
            dev: 0,
            sector: 0,
            arg: oldest - seq,
            flags: 0,
            reserved: 0,
        };
        // Capacity was reserved by the caller: this push does not allocate.
        if out.push_within_capacity(rec).is_err() {
            return;
        }
        seq = oldest;
    }
    r.copy_from(seq, |e| {
        out.len() < max && out.push_within_capacity(e).is_ok()
    });
}

/// A reader's cursor after it has read `e`.
pub(crate) fn cursor_after(e: &uapi::dmr_event) -> u64 {
    if e.type_ == uapi::EV_OVERFLOW {
        e.seq + e.arg
    } else {
        e.seq + 1
    }
}

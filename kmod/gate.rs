// SPDX-License-Identifier: GPL-2.0

//! The move gate: block moves (the `remap` and `unremap` messages, healing after an I/O error)
//! must not lose a write that races with the copy.
//!
//! Every bio that may touch a moving block is counted in one of two epochs before it is routed;
//! the mover publishes the range of blocks it moves, flips the epoch and waits until no bio of
//! the old epoch that may touch the range is in flight, so nothing reaches the range from then on
//! without seeing it. Bios for the range are held and resubmitted once the index points to the
//! new place and that place is durable.
//!
//! Bios are counted by where they go: the target's blocks are split into [`BUCKETS`] ranges of
//! consecutive blocks, and a bio counts in the bucket(s) of the blocks it covers (one that covers
//! more than [`SPAN_MAX`] buckets counts in a "wide" counter instead). A move waits only for the
//! buckets of its range and the wide counter, so one slow bio elsewhere on the device does not
//! delay it.
//!
//! Why no bio is missed (the counts are per-CPU; see [`Gate::in_flight`] for why a snapshot of
//! them never reads too low):
//! - A bio enters (reads the epoch, counts itself), then reads `moving`, all `SeqCst`. The mover
//!   stores `moving`, then flips the epoch, then sums. A bio whose count a sum misses counted
//!   itself after that sum, so it reads `moving` after the mover stored it: it sees the range and
//!   does not reach it (it is cut before the range or held).
//! - A bio that entered before the range was published counted in one of the two epochs. Bios of
//!   the current epoch counted before the flip are in the old epoch's counters after it; but bios
//!   of the other parity may also still be in flight from earlier epochs, because earlier moves
//!   waited only for their own buckets. So a move flips the epoch twice and waits for each old
//!   parity in turn: while it waits for one parity, new bios count in the other one, so each wait
//!   ends once the bios in flight at its flip have left.
//! - A held bio left the gate before it was held and enters again before it is resubmitted;
//!   `map` holds it only if `moving` is still the range it saw (checked under the held-list lock
//!   that `end_move` clears `moving` under), and otherwise enters again and reads `moving` again.
//!
//! No allocation and no sleeping on the I/O path: the counters are allocated with the target;
//! `enter` and `leave` are a few atomic additions.

use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use kernel::new_spinlock;
use kernel::prelude::*;
use kernel::sync::SpinLock;

use super::io::IndexLookup;
use super::RemapTarget;
use crate::dm::BioList;
use crate::remap::{self, Dest};

/// Bits of the packed moving range used by its length.
const MOVE_LEN_BITS: u32 = 16;

/// Per-CPU counter slots of the bio gate.
const COUNTER_SLOTS: usize = 32;

/// Ranges of consecutive blocks bios are counted by.
const BUCKETS: usize = 16;

/// Most buckets a bio counts in one by one; a bio that covers more counts in [`WIDE`].
const SPAN_MAX: usize = 2;

/// Counter of the bios that cover more than [`SPAN_MAX`] buckets: every move waits for it.
const WIDE: usize = BUCKETS;

/// Counters per slot: the buckets and [`WIDE`].
const COUNTERS: usize = BUCKETS + 1;

/// Bios counted in and out of one epoch on one CPU slot, per bucket, on their own cache lines.
#[repr(C, align(64))]
struct CounterSlot {
    enters: [AtomicU64; COUNTERS],
    leaves: [AtomicU64; COUNTERS],
}

/// Bio counting for block moves (see the module documentation).
pub(super) struct Gate {
    /// Range being moved: `(first + 1) << MOVE_LEN_BITS | len`, 0 when none.
    pub(super) moving: AtomicU64,
    epoch: AtomicU64,
    /// log2 of the blocks per bucket.
    bucket_shift: u32,
    /// Bios that entered and left each epoch, per bucket, spread over per-CPU slots (epoch `e`,
    /// slot `s` at `e * COUNTER_SLOTS + s`) so that counting does not bounce a shared line
    /// between CPUs. Counts only grow (64 bits do not wrap); a bio may leave on another CPU than
    /// it entered on, so only the sums over all slots mean anything (see [`Gate::in_flight`]).
    /// Always `2 * COUNTER_SLOTS` long.
    inflight: KVVec<CounterSlot>,
    pub(super) held: Pin<KBox<SpinLock<BioList>>>,
}

/// Tag of a counted bio (0 for one not counted): bit 0 set, bit 1 the epoch, the first and last
/// counter it counts in at bits 8 and 16.
fn pack_tag(epoch: u64, first: usize, last: usize) -> u64 {
    1 | (epoch & 1) << 1 | (first as u64) << 8 | (last as u64) << 16
}

/// `(epoch, first counter, last counter)` of a tag.
fn unpack_tag(tag: u64) -> (u64, usize, usize) {
    (
        (tag >> 1) & 1,
        ((tag >> 8) & 0xff) as usize,
        ((tag >> 16) & 0xff) as usize,
    )
}

impl Gate {
    /// A gate for a target of `blocks` blocks.
    pub(super) fn new(blocks: u64) -> Result<Self> {
        let mut inflight = KVVec::with_capacity(2 * COUNTER_SLOTS, GFP_KERNEL)?;
        for _ in 0..2 * COUNTER_SLOTS {
            inflight.push(
                CounterSlot {
                    enters: [const { AtomicU64::new(0) }; COUNTERS],
                    leaves: [const { AtomicU64::new(0) }; COUNTERS],
                },
                GFP_KERNEL,
            )?;
        }
        let mut bucket_shift = 0;
        while (blocks.saturating_sub(1) >> bucket_shift) >= BUCKETS as u64 {
            bucket_shift += 1;
        }
        let held = KBox::pin_init(new_spinlock!(BioList::new(), "dm_remap:held"), GFP_KERNEL)?;
        Ok(Gate {
            moving: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            bucket_shift,
            inflight,
            held,
        })
    }

    fn bucket(&self, block: u64) -> usize {
        (block >> self.bucket_shift).min(BUCKETS as u64 - 1) as usize
    }

    /// First and last counter a bio covering blocks `first..=last` counts in.
    fn span(&self, first: u64, last: u64) -> (usize, usize) {
        let (f, l) = (self.bucket(first), self.bucket(last));
        if l.saturating_sub(f) >= SPAN_MAX {
            (WIDE, WIDE)
        } else {
            (f, l)
        }
    }

    /// Count a bio covering blocks `first..=last` in the current epoch; returns its tag for
    /// [`Gate::leave`].
    pub(super) fn enter(&self, first: u64, last: u64) -> u64 {
        let (f, l) = self.span(first, last);
        let e = self.epoch.load(SeqCst) & 1;
        if let Some(slot) = self.slot(e) {
            count(&slot.enters, f, l);
        }
        pack_tag(e, f, l)
    }

    /// Uncount a bio entered with `tag` (nothing for 0, a bio not counted).
    pub(super) fn leave(&self, tag: u64) {
        if tag & 1 == 0 {
            return;
        }
        let (e, f, l) = unpack_tag(tag);
        if let Some(slot) = self.slot(e) {
            count(&slot.leaves, f, l);
        }
    }

    /// The caller's CPU slot of `epoch` (always there: the vector has one per epoch and slot).
    fn slot(&self, epoch: u64) -> Option<&CounterSlot> {
        let cpu = crate::dm::current_cpu() as usize % COUNTER_SLOTS;
        self.inflight
            .get((epoch & 1) as usize * COUNTER_SLOTS + cpu)
    }

    /// Bios in flight in `epoch` that may touch blocks `first..=last` (those counted in their
    /// buckets or in the wide counter), or more (never fewer) while bios enter or leave.
    ///
    /// One combined counter per slot is not enough: a bio entering on one CPU and leaving on
    /// another moves +1 and -1 to different slots, and a sum read slot by slot can see the -1
    /// and miss the +1, reading 0 while another bio is in flight. So, as SRCU does, the leave
    /// counts are summed first and the enter counts after: every bio counted as left entered
    /// before it left (its enter happened before its leave, which the first sum saw), so its
    /// enter is in the second sum, and `entered - left` is at least the number of bios in
    /// flight. A bio whose enter the second sum misses entered after the mover published the
    /// moving range and flipped the epoch (all `SeqCst`), so `map` sees the range when it reads
    /// `moving` after entering and does not reach the moving blocks.
    fn in_flight(&self, epoch: u64, first: u64, last: u64) -> u64 {
        let (f, l) = (self.bucket(first), self.bucket(last));
        let base = (epoch & 1) as usize * COUNTER_SLOTS;
        let slots = self.inflight.get(base..base + COUNTER_SLOTS).unwrap_or(&[]);
        let left = sum(slots, f, l, true);
        let entered = sum(slots, f, l, false);
        entered.wrapping_sub(left)
    }

    /// Wait until no bio that entered before now may touch blocks `first..=last` (see the
    /// module documentation: both epoch parities are drained, each after a flip).
    fn drain(&self, first: u64, last: u64) {
        for _ in 0..2 {
            let old = self.epoch.fetch_add(1, SeqCst) & 1;
            while self.in_flight(old, first, last) != 0 {
                kernel::time::delay::fsleep(kernel::time::Delta::from_micros(200));
            }
        }
    }
}

/// Count one bio in counters `f` and `l` (the same one, or two neighbours: a bio counts in at
/// most [`SPAN_MAX`] = 2 counters, see [`Gate::span`]).
fn count(c: &[AtomicU64; COUNTERS], f: usize, l: usize) {
    if let Some(x) = c.get(f) {
        x.fetch_add(1, SeqCst);
    }
    if l != f {
        if let Some(x) = c.get(l) {
            x.fetch_add(1, SeqCst);
        }
    }
}

// `count` handles the first and the last counter only.
const _: () = assert!(SPAN_MAX == 2);

/// Sum over `slots` of counters `f..=l` and [`WIDE`]: their leaves when `leaves`, else their
/// enters.
fn sum(slots: &[CounterSlot], f: usize, l: usize, leaves: bool) -> u64 {
    let mut n = 0u64;
    for s in slots {
        let c = if leaves { &s.leaves } else { &s.enters };
        for x in c.get(f..=l).unwrap_or(&[]) {
            n = n.wrapping_add(x.load(SeqCst));
        }
        if let Some(x) = c.get(WIDE) {
            n = n.wrapping_add(x.load(SeqCst));
        }
    }
    n
}

/// `(first block, blocks)` of a packed moving range.
pub(super) fn unpack_move(v: u64) -> (u64, u64) {
    ((v >> MOVE_LEN_BITS) - 1, v & ((1 << MOVE_LEN_BITS) - 1))
}

impl RemapTarget {
    /// Count a bio of `sectors` sectors at target sector `rel` in the gate; returns its tag.
    pub(super) fn enter_gate(&self, rel: u64, sectors: u32) -> u64 {
        let last = rel.saturating_add(u64::from(sectors.saturating_sub(1)));
        self.gate.enter(rel >> self.shift, last >> self.shift)
    }

    /// Stop new bios from reaching blocks `first..first + len` and wait for those in flight.
    pub(super) fn start_move(&self, first: u64, len: u64) {
        self.gate
            .moving
            .store(((first + 1) << MOVE_LEN_BITS) | len, SeqCst);
        self.gate.drain(first, first + len - 1);
    }

    /// Let bios reach blocks again; resubmit the held ones with the current index.
    pub(super) fn end_move(&self) {
        // Take the held bios under the lock, submit them after dropping it (submission may sleep).
        let mut held = {
            let mut guard = self.gate.held.lock();
            self.gate.moving.store(0, SeqCst);
            core::mem::replace(&mut *guard, BioList::new())
        };
        while let Some(mut h) = held.pop() {
            let bio = h.bio();
            let rel = bio.sector() - self.begin;
            let piece = remap::plan(&IndexLookup(&self.index), rel, bio.sectors(), self.shift);
            if piece.dest == Dest::MainPending && bio.is_data_write() {
                self.deferred.lock().push_held(h);
                self.worker.kick();
                continue;
            }
            let tag = self.enter_gate(rel, bio.sectors());
            bio.data().tag = tag;
            self.route(bio, rel, piece.dest);
            h.submit();
        }
    }
}

// SPDX-License-Identifier: GPL-2.0

//! The move gate: block moves (the `remap` and `unremap` messages, healing after an I/O error)
//! must not lose a write that races with the copy.
//!
//! Every bio that may touch a moving block is counted in one of two epochs before it is routed;
//! the mover publishes the range of blocks it moves, flips the epoch and waits until the old
//! epoch has no bios in flight, so nothing reaches the range from then on without seeing it.
//! Bios for the range are held and resubmitted once the index points to the new place and that
//! place is durable.

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

/// Bios counted in and out of one epoch on one CPU slot, on their own cache line.
#[repr(C, align(64))]
struct CounterSlot {
    enters: AtomicU64,
    leaves: AtomicU64,
}

/// Bio counting for block moves (see the module documentation).
pub(super) struct Gate {
    /// Range being moved: `(first + 1) << MOVE_LEN_BITS | len`, 0 when none.
    pub(super) moving: AtomicU64,
    epoch: AtomicU64,
    /// Bios that entered and left each epoch, spread over per-CPU slots (one cache line each)
    /// so that counting does not bounce a shared line between CPUs. Counts only grow (64 bits do
    /// not wrap); a bio may leave on another CPU than it entered on, so only the sums over all
    /// slots mean anything (see [`Gate::in_flight`]).
    inflight: KBox<[[CounterSlot; COUNTER_SLOTS]; 2]>,
    pub(super) held: Pin<KBox<SpinLock<BioList>>>,
}

impl Gate {
    pub(super) fn new() -> Result<Self> {
        let inflight = KBox::new(
            [const {
                [const {
                    CounterSlot {
                        enters: AtomicU64::new(0),
                        leaves: AtomicU64::new(0),
                    }
                }; COUNTER_SLOTS]
            }; 2],
            GFP_KERNEL,
        )?;
        let held = KBox::pin_init(new_spinlock!(BioList::new(), "dm_remap:held"), GFP_KERNEL)?;
        Ok(Gate {
            moving: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            inflight,
            held,
        })
    }

    /// Count a bio in the current epoch; returns its tag (epoch + 1).
    pub(super) fn enter(&self) -> u64 {
        let e = self.epoch.load(SeqCst) & 1;
        self.slot(e).enters.fetch_add(1, SeqCst);
        e + 1
    }

    fn slot(&self, epoch: u64) -> &CounterSlot {
        let cpu = crate::dm::current_cpu() as usize % COUNTER_SLOTS;
        // Both indices are in range: `epoch` is 0 or 1, `cpu` is reduced modulo the slot count.
        &self.inflight[(epoch & 1) as usize][cpu]
    }

    /// Bios in flight in `epoch`, or more (never fewer) while bios enter or leave it.
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
    fn in_flight(&self, epoch: u64) -> u64 {
        let slots = &self.inflight[(epoch & 1) as usize];
        let left = slots
            .iter()
            .fold(0u64, |acc, c| acc.wrapping_add(c.leaves.load(SeqCst)));
        let entered = slots
            .iter()
            .fold(0u64, |acc, c| acc.wrapping_add(c.enters.load(SeqCst)));
        entered.wrapping_sub(left)
    }

    /// Uncount a bio entered with `tag`.
    pub(super) fn leave(&self, tag: u64) {
        if tag == 1 || tag == 2 {
            self.slot(tag - 1).leaves.fetch_add(1, SeqCst);
        }
    }
}

/// `(first block, blocks)` of a packed moving range.
pub(super) fn unpack_move(v: u64) -> (u64, u64) {
    ((v >> MOVE_LEN_BITS) - 1, v & ((1 << MOVE_LEN_BITS) - 1))
}

impl RemapTarget {
    /// Stop new bios from reaching blocks `first..first + len` and wait for those in flight.
    pub(super) fn start_move(&self, first: u64, len: u64) {
        self.gate
            .moving
            .store(((first + 1) << MOVE_LEN_BITS) | len, SeqCst);
        let old = self.gate.epoch.fetch_add(1, SeqCst) & 1;
        while self.gate.in_flight(old) != 0 {
            kernel::time::delay::fsleep(kernel::time::Delta::from_micros(200));
        }
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
            let tag = self.gate.enter();
            bio.data().tag = tag;
            self.route(bio, rel, piece.dest);
            h.submit();
        }
    }
}

// SPDX-License-Identifier: GPL-2.0

//! The data path: `map` and `end_io`.
//!
//! A bio that overlaps no remapped block goes to main exactly like dm-linear (one atomic load
//! decides it when nothing is remapped). Otherwise [`remap::plan`] cuts the bio at block
//! boundaries and each piece goes to main or to its spare slot; index lookups are lock-free (RCU
//! and a sequence count, `kmod/index.c`). Bios that may reach blocks being moved are counted in the [gate](super::gate) and
//! held while the move runs.
//!
//! A bio that fails on main with a media error (see [`error_class`]) is taken over (`end_io`
//! returns incomplete) and finished by the [worker](super::heal); other errors pass through.
//! A write to a pending block is deferred to the worker from `map`.

use core::sync::atomic::{Ordering::Relaxed, Ordering::SeqCst};

use super::gate::unpack_move;
use super::RemapTarget;
use crate::dm::{
    uapi, Bio, BlkStatus, EndIo, MapBio, MapResult, RcuIndex, Sector, StatusKind, TargetRef,
};
use crate::remap::{self, Dest, Entry, Lookup};

/// `BioData::flags`: the worker ended the bio; its status is final.
pub(super) const BIO_HANDLED: u32 = 1;

/// `BioData::flags`: an empty flush.
const BIO_FLUSH: u32 = 2;

/// What a failed I/O on main means for the block it touched.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ErrorClass {
    /// The medium failed at this place: a write moves to fresh spare slots, a read is retried
    /// and the block marked pending when it stays unreadable.
    Media,
    /// The error says nothing about the block (no space on a thin main, a NOWAIT bio that would
    /// block, an operation the device does not support, a requeue, a path/transport or timeout
    /// failure, an offline device, ...): the bio fails with its status untouched, nothing is
    /// remapped or marked pending, no spare slot is used; counted in `passthrough_errors`.
    PassThrough,
}

/// The one place that decides which failures heal. Every kind is listed, so a new one must be
/// classified here.
fn error_class(status: BlkStatus) -> ErrorClass {
    match status.kind() {
        // NVMe read/write faults are MEDIUM, SCSI medium errors too; virtio-blk and most drivers
        // report a failing sector as IOERR (also the generic status of unknown driver errors).
        StatusKind::Medium | StatusKind::IoErr => ErrorClass::Media,
        StatusKind::Ok
        | StatusKind::NotSupp
        | StatusKind::Timeout
        | StatusKind::NoSpc
        | StatusKind::Transport
        | StatusKind::Target
        | StatusKind::ResvConflict
        | StatusKind::Protection
        | StatusKind::Resource
        | StatusKind::DmRequeue
        | StatusKind::Again
        | StatusKind::DevResource
        | StatusKind::ZoneOpenResource
        | StatusKind::ZoneActiveResource
        | StatusKind::Offline
        | StatusKind::DurationLimit
        | StatusKind::Inval
        | StatusKind::Unknown => ErrorClass::PassThrough,
    }
}

/// Lookup adapter from the kernel index to the shared planning code.
pub(super) struct IndexLookup<'a>(pub(super) &'a RcuIndex);

impl Lookup for IndexLookup<'_> {
    fn first_in(&self, first: u64, last: u64) -> Option<(u64, Entry)> {
        self.0
            .first_in(first, last)
            .map(|(b, v)| (b, Entry::decode(v)))
    }
}

impl RemapTarget {
    /// device-mapper's `map`: send the bio (or its first piece) to main or to a spare slot, hold
    /// it while its block moves, or defer it to the worker (a write to a pending block).
    pub(super) fn map_bio(&self, ti: &TargetRef, bio: &mut MapBio<'_>) -> MapResult {
        if bio.is_empty_flush() {
            // Never a data write: its failure fails the flush (see `end_io`).
            bio.data().flags = BIO_FLUSH;
            if bio.target_bio_nr() == 0 {
                bio.set_dev(&self.main);
            } else {
                bio.set_dev(&self.spare);
            }
            return MapResult::Remapped;
        }
        let rel = bio.sector() - ti.begin();
        let write = bio.is_write();
        // Writes are always counted: a block move must wait for writes to main in flight.
        let mut tag = if write {
            self.enter_gate(rel, bio.sectors())
        } else {
            0
        };
        let moving = self.gate.moving.load(SeqCst);
        if moving == 0 && self.entries.load(SeqCst) == 0 {
            bio.save_data(tag);
            bio.set_dev(&self.main);
            bio.set_sector(self.main_offset + rel);
            return MapResult::Remapped;
        }
        if tag == 0 {
            // Reads that may go to the spare are counted too: unremap frees slots.
            tag = self.enter_gate(rel, bio.sectors());
        }
        let piece = loop {
            // Read after entering: a move that started before the bio was counted is seen here;
            // one that starts later waits for the bio.
            let moving = self.gate.moving.load(SeqCst);
            let sectors = bio.sectors();
            let mut piece = remap::plan(&IndexLookup(&self.index), rel, sectors, self.shift);
            if moving == 0 {
                break piece;
            }
            let (m_first, m_len) = unpack_move(moving);
            let (m_start, m_end) = (m_first << self.shift, (m_first + m_len) << self.shift);
            let end = rel + u64::from(piece.sectors);
            if rel >= m_end || m_start >= end {
                break piece;
            }
            if rel < m_start {
                // Cut the piece at the moving range so that only its part is held.
                piece.sectors = (m_start - rel) as u32;
                break piece;
            }
            // Hold one block at a time: after the move its blocks may live apart.
            let block_end = ((rel >> self.shift) + 1) << self.shift;
            if bio
                .accept_partial((block_end.min(end) - rel) as u32)
                .is_err()
            {
                self.gate.leave(tag);
                return MapResult::Kill;
            }
            self.gate.leave(tag);
            bio.save_data(0);
            // Held only while `moving` is still the range seen above: `end_move` clears it under
            // this lock before it takes the held bios, so a bio pushed here is resubmitted by
            // that move's `end_move` (see the gate's module documentation).
            let mut held = self.gate.held.lock();
            if self.gate.moving.load(SeqCst) == moving {
                held.push(bio);
                self.stats.held_bios.fetch_add(1, Relaxed);
                return MapResult::Submitted;
            }
            drop(held);
            // The move finished meanwhile: enter again and look again (another move may have
            // started since).
            tag = self.enter_gate(rel, bio.sectors());
        };
        if piece.sectors < bio.sectors() {
            if bio.accept_partial(piece.sectors).is_err() {
                self.gate.leave(tag);
                return MapResult::Kill;
            }
            self.stats.split_bios.fetch_add(1, Relaxed);
        }
        if piece.dest == Dest::MainPending && bio.is_data_write() {
            // A write heals a pending block: the worker gives it a fresh slot.
            self.gate.leave(tag);
            bio.save_data(0);
            self.defer(bio);
            return MapResult::Submitted;
        }
        bio.save_data(tag);
        self.route(bio, rel, piece.dest);
        MapResult::Remapped
    }

    /// device-mapper's `end_io`: uncount the bio; take a media error on main over for the
    /// worker, let everything else complete.
    pub(super) fn end_bio(&self, bio: &mut Bio, error: BlkStatus) -> EndIo {
        let data = bio.data();
        let tag = core::mem::take(&mut data.tag);
        let sector = data.sector;
        let flags = data.flags;
        self.gate.leave(tag);
        if error.is_ok() || flags & BIO_HANDLED != 0 {
            return EndIo::Done;
        }
        let write = bio.is_write();
        let on_spare = bio.is_on(&self.spare);
        let mut ev_flags = 0;
        if write {
            ev_flags |= uapi::DMR_EVF_WRITE;
        }
        if on_spare {
            ev_flags |= uapi::DMR_EVF_SPARE;
        }
        self.event(uapi::EV_IO_ERROR, sector, u64::from(error.code()), ev_flags);
        if flags & BIO_FLUSH != 0 {
            // A failed flush fails the flush: nothing to heal, nothing written.
            self.stats.flush_errors.fetch_add(1, Relaxed);
            return EndIo::Done;
        }
        if !on_spare && error_class(error) == ErrorClass::PassThrough {
            self.stats.passthrough_errors.fetch_add(1, Relaxed);
            return EndIo::Done;
        }
        let counter = if write {
            &self.stats.write_errors
        } else {
            &self.stats.read_errors
        };
        counter.fetch_add(1, Relaxed);
        if on_spare || !(bio.is_read() || bio.is_data_write()) {
            // Errors from the spare, and of discards and write-zeroes, fail the bio.
            return EndIo::Done;
        }
        bio.data().error = error;
        self.defer(bio);
        EndIo::Incomplete
    }

    /// Point the bio at main or at spare slot sectors for `dest`.
    pub(super) fn route(&self, bio: &mut Bio, rel: Sector, dest: Dest) {
        match dest {
            Dest::Main | Dest::MainPending => {
                bio.set_dev(&self.main);
                bio.set_sector(self.main_offset + rel);
            }
            Dest::Spare(s) => {
                bio.set_dev(&self.spare);
                bio.set_sector(self.data_start + s);
            }
        }
    }

    /// Hand a bio to the worker. Any context.
    pub(super) fn defer(&self, bio: &mut Bio) {
        self.deferred.lock().push(bio);
        self.worker.kick();
    }
}

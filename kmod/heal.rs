// SPDX-License-Identifier: GPL-2.0

//! The worker: heal failed writes, recover failed reads.
//!
//! A bio that fails on main with a media error is taken over by `end_io` and finished here: a
//! failed write goes to fresh spare slots; a failed read is retried, and the recovered data is
//! moved to a slot, or the block is marked pending and the read fails. A write to a pending block
//! (deferred from `map`) heals the block. Errors from the spare fail the bio.

use core::sync::atomic::Ordering::Relaxed;
use kernel::prelude::*;

use super::io::BIO_HANDLED;
use super::{Meta, RemapTarget, MOVE_MAX};

/// Most slots one block is written to before its move fails (each failed one is retired).
const SLOT_TRIES: u32 = 3;

/// Why a block could not be written to a fresh slot.
enum SlotError {
    /// No free slot.
    Full,
    /// [`SLOT_TRIES`] slot writes failed.
    Write,
}
use crate::dm::{Bio, BioList, BlkStatus, HeldBio, NoIo, WriteMode};
use crate::remap::Entry;

impl RemapTarget {
    /// The worker's run: finish every deferred bio, then rewrite a copy a failed commit damaged
    /// or write a checkpoint the journal asked for.
    pub(super) fn run_worker(&self) {
        // Bios are held here: no allocation may wait on writeback to this device.
        let _noio = NoIo::begin();
        loop {
            let mut list = core::mem::replace(&mut *self.deferred.lock(), BioList::new());
            let mut any = false;
            while let Some(h) = list.pop() {
                any = true;
                self.handle(h);
            }
            if !any {
                break;
            }
        }
        if self.meta_failed.load(Relaxed) || self.checkpoint_due.load(Relaxed) {
            // A failed commit scheduled a repair (rewrite the copy it damaged, once per run), or
            // the journal is half full: write a checkpoint (no move is in progress: a commit).
            let mut m = self.ctl.lock();
            if m.current && (m.repair || self.checkpoint_due.load(Relaxed)) {
                let _ = self.commit(&mut m);
            }
        }
    }

    /// Finish a bio taken over from `map` (a write to a pending block) or `end_io` (a media
    /// error on main).
    fn handle(&self, mut h: HeldBio) {
        let bio = h.bio();
        let (sector, orig) = {
            let d = bio.data();
            (d.sector, d.error)
        };
        let bytes = bio.saved_bytes();
        let status = match sector.checked_sub(self.begin) {
            Some(rel) if bytes != 0 && bytes % 512 == 0 => {
                if bio.is_data_write() {
                    self.heal_write(bio, rel, bytes, orig)
                } else {
                    self.recover_read(bio, rel, bytes)
                }
            }
            _ if orig.is_ok() => BlkStatus::ioerr(),
            _ => orig,
        };
        bio.data().flags |= BIO_HANDLED;
        h.end(status);
    }

    /// The blocks a bio of `bytes` bytes at sector `rel` covers, as `(first, len)` chunks of at
    /// most `MOVE_MAX` blocks.
    fn chunks(&self, rel: u64, bytes: u32) -> impl Iterator<Item = (u64, u64)> {
        let first = rel >> self.shift;
        let last = (rel + u64::from(bytes / 512) - 1) >> self.shift;
        (first..=last)
            .step_by(MOVE_MAX as usize)
            .map(move |b| (b, (last + 1 - b).min(MOVE_MAX)))
    }

    /// Byte range `(offset in the block, offset in the bio, length)` of `block` covered by a
    /// bio of `bytes` bytes at sector `rel`.
    fn overlap(&self, block: u64, rel: u64, bytes: u32) -> (usize, u32, usize) {
        let bstart = (block << self.shift) * 512;
        let bend = bstart + self.block_len(block) as u64;
        let start = rel * 512;
        let end = start + u64::from(bytes);
        let lo = bstart.max(start);
        let hi = bend.min(end);
        (
            (lo - bstart) as usize,
            (lo - start) as u32,
            (hi - lo) as usize,
        )
    }

    /// Copy the bio's `n` bytes from byte `ioff` on into the copy buffer at byte `boff`.
    fn take_from_bio(
        &self,
        m: &mut Meta,
        bio: &mut Bio,
        boff: usize,
        ioff: u32,
        n: usize,
    ) -> Result {
        let dst = m.buf.get_mut(boff..boff + n).ok_or(EINVAL)?;
        bio.copy_out(ioff, dst)
    }

    /// Write the bio's part of `block` (see [`RemapTarget::overlap`]) to main.
    fn write_main_part(
        &self,
        m: &mut Meta,
        bio: &mut Bio,
        block: u64,
        part: (usize, u32, usize),
    ) -> Result {
        let (boff, ioff, n) = part;
        self.take_from_bio(m, bio, 0, ioff, n)?;
        let buf = m.buf.get(..n).ok_or(EINVAL)?;
        self.main.write(
            self.main_sector(block) + (boff / 512) as u64,
            buf,
            WriteMode::Plain,
        )
    }

    /// A write failed on main with a media error (or targets a pending block): write its blocks
    /// to their slots (fresh ones where they have none), commit, and report success; partial
    /// blocks are completed from main.
    fn heal_write(&self, bio: &mut Bio, rel: u64, bytes: u32, orig: BlkStatus) -> BlkStatus {
        let fail = if orig.is_ok() {
            BlkStatus::ioerr()
        } else {
            orig
        };
        let mut status = BlkStatus::OK;
        for (first, len) in self.chunks(rel, bytes) {
            let mut m = self.ctl.lock();
            self.start_move(first, len);
            let mut wrote_main = false;
            for b in first..first + len {
                match self.heal_block(&mut m, bio, b, rel, bytes, orig, len > 1) {
                    Ok(on_main) => wrote_main |= on_main,
                    Err(s) => status = s,
                }
            }
            // Data written into slots the index already had is made durable by the commit's
            // preflush; without a commit (no new slot) flush the spare, as a FUA write needs.
            let main_durable = if wrote_main {
                self.main.flush()
            } else {
                Ok(())
            };
            // The move's index changes are committed (or undone) even when main's flush
            // failed: left in the index, they would be used uncommitted and end up in the next
            // move's commit or undo.
            let spare_durable = if m.undo.is_empty() {
                self.spare.flush()
            } else {
                self.commit_changes(&mut m)
            };
            if main_durable.is_err() || spare_durable.is_err() {
                status = BlkStatus::ioerr();
            } else if status.is_ok() {
                self.stats.healed_writes.fetch_add(1, Relaxed);
            }
            self.end_move();
        }
        if !status.is_ok() && status != fail {
            return BlkStatus::ioerr();
        }
        status
    }

    /// Heal `block` of a write that failed on main (`orig`) or targets a pending block (`orig`
    /// is OK). Returns whether the data went to main (then main needs a flush).
    #[allow(clippy::too_many_arguments)]
    fn heal_block(
        &self,
        m: &mut Meta,
        bio: &mut Bio,
        block: u64,
        rel: u64,
        bytes: u32,
        orig: BlkStatus,
        retry_main: bool,
    ) -> core::result::Result<bool, BlkStatus> {
        let fail = if orig.is_ok() {
            BlkStatus::ioerr()
        } else {
            orig
        };
        let ioerr = |_| BlkStatus::ioerr();
        let part = self.overlap(block, rel, bytes);
        let (boff, ioff, n) = part;
        let partial = n < self.block_len(block);
        let cur = self.index.get(block).map(Entry::decode);
        if let Some(Entry::Remapped { slot }) = cur {
            // Moved meanwhile: the write goes into its slot.
            if partial {
                let buf = m
                    .buf
                    .get_mut(..self.block_bytes())
                    .ok_or(BlkStatus::ioerr())?;
                self.spare
                    .read(self.slot_sector(slot), buf)
                    .map_err(ioerr)?;
            }
            self.take_from_bio(m, bio, boff, ioff, n).map_err(ioerr)?;
            self.write_slot(m, 0, slot).map_err(ioerr)?;
            return Ok(false);
        }
        if cur.is_none() && !orig.is_ok() && retry_main {
            // Most blocks of a large failed write are fine: write each to main again and move
            // only those that fail again (spare slots are precious).
            if self.write_main_part(m, bio, block, part).is_ok() {
                return Ok(true);
            }
        }
        if partial
            && self
                .read_main_retrying(m, block, self.opts.read_retries)
                .is_err()
        {
            // The rest of the block cannot be read, and data is never invented: give the write
            // to main (a drive reallocates a sector on write). The block is (stays) pending.
            let r = self.write_main_part(m, bio, block, part);
            if cur.is_none() {
                let _ = self.set_entry(m, block, Entry::Pending);
            }
            return r.map(|()| true).map_err(|_| fail);
        }
        if let Some(rest) = m.buf.get_mut(self.block_len(block)..self.block_bytes()) {
            // The part of a partial last block past the target's end.
            rest.fill(0);
        }
        if self.take_from_bio(m, bio, boff, ioff, n).is_err() {
            if cur.is_none() {
                let _ = self.set_entry(m, block, Entry::Pending);
            }
            return Err(BlkStatus::ioerr());
        }
        let slot = match self.write_new_slot(m, block) {
            Ok(slot) => Some(slot),
            // The spare is full: the write's error passes through.
            Err(SlotError::Full) => return Err(fail),
            Err(SlotError::Write) => None,
        };
        let placed = slot.is_some_and(|slot| {
            let set = self.set_entry(m, block, Entry::Remapped { slot }).is_ok();
            if !set {
                self.free_slot(slot);
            }
            set
        });
        if !placed {
            if cur.is_none() {
                // A write failed on main and on the spare: the block's content is unknown now;
                // the next full write heals it.
                let _ = self.set_entry(m, block, Entry::Pending);
            }
            return Err(BlkStatus::ioerr());
        }
        Ok(false)
    }

    /// A read failed on main with a media error: retry each block; recovered blocks that failed
    /// go to the spare, unreadable ones become pending and fail the read.
    fn recover_read(&self, bio: &mut Bio, rel: u64, bytes: u32) -> BlkStatus {
        let mut status = BlkStatus::OK;
        let single = (rel >> self.shift) == ((rel + u64::from(bytes / 512) - 1) >> self.shift);
        for (first, len) in self.chunks(rel, bytes) {
            let mut m = self.ctl.lock();
            self.start_move(first, len);
            for b in first..first + len {
                if let Err(s) = self.recover_block(&mut m, bio, b, rel, bytes, single) {
                    status = s;
                }
            }
            let _ = self.commit_changes(&mut m);
            self.end_move();
        }
        status
    }

    /// Read `block` of a failed read again (from its slot if it moved meanwhile) into the bio;
    /// move it to a slot if it failed before, mark it pending if it stays unreadable.
    fn recover_block(
        &self,
        m: &mut Meta,
        bio: &mut Bio,
        block: u64,
        rel: u64,
        bytes: u32,
        single: bool,
    ) -> core::result::Result<(), BlkStatus> {
        let (boff, ioff, n) = self.overlap(block, rel, bytes);
        let cur = self.index.get(block).map(Entry::decode);
        let got = match cur {
            Some(Entry::Remapped { slot }) => match m.buf.get_mut(..self.block_bytes()) {
                Some(buf) => self.spare.read(self.slot_sector(slot), buf).map(|()| false),
                None => Err(EINVAL),
            },
            // A single-block read failed as a whole: its block did fail once.
            _ => self
                .read_main_retrying(m, block, self.opts.read_retries)
                .map(|f| f || (single && self.opts.read_retries > 0)),
        };
        let Ok(failed_before) = got else {
            self.stats.failed_reads.fetch_add(1, Relaxed);
            if cur.is_none() {
                let _ = self.set_entry(m, block, Entry::Pending);
            }
            return Err(BlkStatus::ioerr());
        };
        let src = m.buf.get(boff..boff + n).ok_or(BlkStatus::ioerr())?;
        bio.copy_in(ioff, src).map_err(|_| BlkStatus::ioerr())?;
        if failed_before || matches!(cur, Some(Entry::Pending)) {
            // Save the recovered data while it can still be read.
            self.stats.recovered_reads.fetch_add(1, Relaxed);
            if let Ok(slot) = self.write_new_slot(m, block) {
                if self.set_entry(m, block, Entry::Remapped { slot }).is_err() {
                    self.free_slot(slot);
                }
            }
        }
        Ok(())
    }

    /// Read `n` blocks of main from `first` on into the copy buffer. The part of a partial last
    /// block past the target's end is not read but zeroed.
    pub(super) fn read_main(&self, m: &mut Meta, first: u64, n: usize) -> Result {
        let bytes = n * self.block_bytes();
        let inside = self
            .len
            .saturating_sub(first << self.shift)
            .saturating_mul(512);
        let inside = inside.min(bytes as u64) as usize;
        let buf = m.buf.get_mut(..bytes).ok_or(EINVAL)?;
        let (head, tail) = buf.split_at_mut(inside);
        tail.fill(0);
        self.main.read(self.main_sector(first), head)
    }

    /// Read one block of main into the copy buffer, trying `1 + retries` times. Returns
    /// whether any attempt failed before one succeeded.
    fn read_main_retrying(&self, m: &mut Meta, block: u64, retries: u32) -> Result<bool> {
        let mut failed = false;
        let mut last = Err(EIO);
        for _ in 0..=retries {
            last = self.read_main(m, block, 1);
            if last.is_ok() {
                break;
            }
            failed = true;
        }
        last.map(|()| failed)
    }

    /// Write one block from the copy buffer (at byte `off`) to spare slot `slot`.
    /// Write the block in the copy buffer to a fresh slot and return it. A slot whose write
    /// fails is retired (see [`RemapTarget::retire_slots`]) and another one tried, up to
    /// [`SLOT_TRIES`] slots.
    fn write_new_slot(&self, m: &Meta, block: u64) -> core::result::Result<u64, SlotError> {
        for _ in 0..SLOT_TRIES {
            let slot = self.alloc_slot(block).ok_or(SlotError::Full)?;
            if self.write_slot(m, 0, slot).is_ok() {
                return Ok(slot);
            }
            self.retire_slots(slot, 1);
        }
        Err(SlotError::Write)
    }

    pub(super) fn write_slot(&self, m: &Meta, off: usize, slot: u64) -> Result {
        let buf = m.buf.get(off..off + self.block_bytes()).ok_or(EINVAL)?;
        self.spare
            .write(self.slot_sector(slot), buf, WriteMode::Plain)
    }
}

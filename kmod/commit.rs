// SPDX-License-Identifier: GPL-2.0

//! Loading and committing the remap index, and undoing a move whose commit failed.
//!
//! The index lives on the spare as two checksummed, sequence-numbered copies (the shared
//! [`metadata`] codec) and a journal behind the newer one. Every change of the index is
//! committed before any bio sees the change and before the operation is acknowledged; a batch
//! of remaps shares one commit. A commit appends the changed entries to the journal with one
//! write with a preflush and FUA; a checkpoint writes the whole index to the older copy and its
//! superblock with a preflush and FUA, and restarts the journal behind it. Checkpoints are
//! written when the journal cannot take a commit, by the worker once the journal is half full,
//! and after a failed commit.

use core::sync::atomic::{Ordering::Relaxed, Ordering::SeqCst};
use kernel::prelude::*;
use kernel::sync::MutexGuard;

use super::ctr::{load_err, vec_of};
use super::{Meta, RemapTarget};
use crate::alloc::words_for;
use crate::dm::{uapi, CtrError, DmDev, NoIo, RcuIndex, WriteMode};
use crate::metadata::{
    self, CopyError, CopyId, CopyStatus, Expect, Journal, JournalEnd, LoadError, MD_BLOCK_SIZE,
};
use crate::remap::Entry;

/// Journal blocks a journal may fill before a checkpoint restarts it: at least this many...
const JOURNAL_MIN_BLOCKS: u32 = 256;

/// ... and at least twice the record blocks of the copy it follows, so that checkpoints cost at
/// most half a block per journal commit; never past the copy's record area.
fn journal_limit(j: &Journal) -> u32 {
    let room = JOURNAL_MIN_BLOCKS.max(j.first.saturating_mul(2));
    j.first.saturating_add(room).min(j.end)
}

/// The index in block order, as records for a commit.
struct IndexRecords<'a> {
    index: &'a RcuIndex,
    next: u64,
    last: u64,
    done: bool,
}

impl Iterator for IndexRecords<'_> {
    type Item = (u64, Entry);

    fn next(&mut self) -> Option<(u64, Entry)> {
        if self.done || self.next > self.last {
            return None;
        }
        let (b, v) = self.index.first_in(self.next, self.last)?;
        match b.checked_add(1) {
            Some(n) => self.next = n,
            None => self.done = true,
        }
        Some((b, Entry::decode(v)))
    }
}

/// The spare as the metadata codec sees it.
struct SpareIo<'a>(&'a DmDev);

impl metadata::SpareRead for SpareIo<'_> {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> core::result::Result<(), metadata::IoError> {
        self.0.read(sector, buf).map_err(|_| metadata::IoError)
    }

    fn size_sectors(&self) -> Option<u64> {
        Some(self.0.sectors())
    }
}

impl metadata::SpareWrite for SpareIo<'_> {
    fn write(&mut self, sector: u64, buf: &[u8]) -> core::result::Result<(), metadata::IoError> {
        self.0
            .write(sector, buf, WriteMode::Plain)
            .map_err(|_| metadata::IoError)
    }

    fn flush(&mut self) -> core::result::Result<(), metadata::IoError> {
        self.0.flush().map_err(|_| metadata::IoError)
    }
}

impl RemapTarget {
    /// `preresume`: reload the index if another table committed since this one loaded, then
    /// allow changes.
    pub(super) fn before_resume(&self) -> Result {
        // The device is suspended with bios queued: allocate without I/O.
        let _noio = NoIo::begin();
        let mut m = self.ctl.lock();
        // Another table of this device (the one this table replaces) may have committed since
        // this one was loaded: load again if the spare changed (a checkpoint changes a
        // superblock, a journal commit follows the journal this table loaded).
        let changed = {
            let Meta {
                mdbuf,
                set,
                journal,
                disk_seq,
                ..
            } = &mut *m;
            let mut dev = SpareIo(&self.spare);
            let sb_seq = metadata::probe(&mut dev, self.spare.sectors(), mdbuf)
                .map(|p| p.max_seq)
                .map_err(|_| EIO)?;
            sb_seq != *disk_seq
                || match journal {
                    Some(j) => metadata::journal_continues(&mut dev, set, j, mdbuf)
                        .map_err(|_| EIO)?,
                    None => false,
                }
        };
        if changed {
            self.load(&mut m, false).map_err(|e| {
                pr_err!(
                    "{}: metadata changed on the spare and cannot be loaded again\n",
                    self.spare.name()
                );
                e.err
            })?;
        }
        // The index is the spare's newest commit: changes may be committed from now on.
        m.current = true;
        if m.repair {
            let _ = self.commit(&mut m);
        }
        Ok(())
    }

    /// `presuspend`: rewrite a damaged metadata copy before the device stops.
    pub(super) fn before_suspend(&self) {
        // Every change is committed before it is used; what may be left is the rewrite of a
        // copy found damaged or hit by a failed commit.
        let _noio = NoIo::begin();
        let mut m = self.ctl.lock();
        if m.repair {
            let _ = self.commit(&mut m);
        }
    }

    /// Empty the index and free every slot (before loading, or after a failed load).
    fn forget_all(&self) {
        while let Some((b, _)) = self.index.first_in(0, u64::MAX >> 2) {
            self.index.remove(b);
        }
        self.entries.store(0, SeqCst);
        self.pending.store(0, SeqCst);
        self.slots.lock().clear();
    }

    /// Load the index from the spare (format a blank spare when `may_format`).
    pub(super) fn load(
        &self,
        m: &mut Meta,
        may_format: bool,
    ) -> core::result::Result<(), CtrError> {
        // Start from nothing (a reload replaces everything); no changes until the table is
        // live again.
        m.current = false;
        self.forget_all();
        m.uncertain.clear();

        // What this table says: the identity and name the ctr put into the set (a version 1
        // spare is checked against the main device's kernel name instead).
        let table = m.set;
        let mut kname = [0u8; 64];
        let kname = self.main.disk_name(&mut kname);
        let expect = Expect {
            uuid: None,
            main_sectors: Some(m.set.main.sectors),
            main_offset: Some(self.main_offset),
            main_id: Some(table.main.id_bytes()),
            main_id_v1: Some(kname),
            block_size: Some(self.opts.block_size),
        };
        let spare_sectors = self.spare.sectors();
        // The copies on the spare may describe another geometry (then the set check refuses
        // them): size the loader's bitmap for what is there.
        let words = {
            let Meta { mdbuf, .. } = &mut *m;
            metadata::probe(&mut SpareIo(&self.spare), spare_sectors, mdbuf)
                .map(|p| p.bitmap_words())
                .unwrap_or(0)
        };
        let words = words.max(words_for(m.set.geometry.data_slots));
        let mut scratch: KVVec<u64> = vec_of(words, 0u64, c"Cannot allocate the metadata bitmap")?;
        let res = {
            let Meta { mdbuf, .. } = &mut *m;
            metadata::load(
                &mut SpareIo(&self.spare),
                spare_sectors,
                &expect,
                mdbuf,
                &mut scratch,
                |b, e| self.load_entry(b, Some(e)),
                |b, e| self.load_entry(b, e),
            )
        };
        match res {
            Ok(l) => {
                if l.sb.set.geometry.data_start != self.data_start
                    || l.sb.set.geometry.data_slots != m.set.geometry.data_slots
                {
                    return Err(CtrError::inval(
                        c"Spare metadata geometry differs from this spare's (was it resized?)",
                    ));
                }
                m.set = l.sb.set;
                m.set.main.id = table.main.id;
                m.set.name = table.name;
                m.set.target_begin = table.target_begin;
                m.set.target_len = table.target_len;
                m.next_seq = l.next_seq;
                m.target = l.commit_target();
                m.journal = (l.journal.end != JournalEnd::None).then_some(l.journal.journal);
                m.disk_seq = l.max_sb_seq;
                m.repair = l.other_bad();
                // A version 1 spare, or a new device name: written before the table goes live.
                if l.sb.version < metadata::VERSION {
                    pr_info!(
                        "{}: metadata version {} is migrated to version {} (main identified by main_id)\n",
                        self.spare.name(),
                        l.sb.version,
                        metadata::VERSION
                    );
                    m.repair = true;
                } else if m.set != l.sb.set {
                    m.repair = true;
                }
                self.seq.store(l.journal.journal.last_seq, SeqCst);
                let entries = self.entries.load(SeqCst);
                let pending = self.pending.load(SeqCst);
                if matches!(l.other, CopyStatus::Bad(CopyError::OtherSet)) {
                    pr_info!("{}: metadata copy {} predates a migration or rename; it is rewritten before the device goes live\n",
                        self.spare.name(), l.winner.other().name());
                } else if l.other_bad() {
                    pr_warn!("{}: metadata copy {} is damaged; it is rewritten before the device goes live\n",
                        self.spare.name(), l.winner.other().name());
                }
                if let JournalEnd::Invalid { index, field } = l.journal.end {
                    pr_warn!(
                        "{}: metadata journal ends at record block {} of copy {} with a torn or damaged commit ({}); later commits are not replayed\n",
                        self.spare.name(),
                        index,
                        l.winner.name(),
                        field.name()
                    );
                }
                pr_info!(
                    "{}: loaded metadata seq {} ({} journal commits, {} remapped, {} pending)\n",
                    self.spare.name(),
                    l.journal.journal.last_seq,
                    l.journal.journal.commits,
                    entries.saturating_sub(pending),
                    pending
                );
                Ok(())
            }
            Err(LoadError::Blank) if may_format => {
                let Meta { mdbuf, set, .. } = &mut *m;
                metadata::format(
                    &mut SpareIo(&self.spare),
                    set,
                    core::iter::empty(),
                    mdbuf,
                    None,
                )
                .map_err(|_| CtrError {
                    msg: c"Cannot format the blank spare",
                    err: EIO,
                })?;
                m.next_seq = 3;
                m.target = CopyId::A;
                m.journal = None;
                m.disk_seq = 2;
                m.repair = false;
                self.seq.store(2, SeqCst);
                pr_info!(
                    "{}: formatted blank spare ({} slots)\n",
                    self.spare.name(),
                    m.set.geometry.data_slots
                );
                Ok(())
            }
            Err(e) => {
                // Leave nothing half-loaded behind.
                self.forget_all();
                Err(load_err(&e, self.opts.main_id().is_some()))
            }
        }
    }

    /// Apply one loaded record or journal change (`None`: the block's record is removed) to the
    /// index, the slot allocator and the counters.
    fn load_entry(
        &self,
        b: u64,
        e: Option<Entry>,
    ) -> core::result::Result<(), metadata::SinkError> {
        let old = self.index.get(b);
        if let Some(Entry::Remapped { slot }) = old.map(Entry::decode) {
            self.slots
                .lock()
                .free_slot(slot)
                .map_err(|_| metadata::SinkError)?;
        }
        if let Some(Entry::Remapped { slot }) = e {
            // Refused when another block holds the slot: the metadata is inconsistent.
            self.slots
                .lock()
                .mark_allocated(slot)
                .map_err(|_| metadata::SinkError)?;
        }
        match e {
            Some(e) => self
                .index
                .store(b, e.encode())
                .map_err(|_| metadata::SinkError)?,
            None => {
                self.index.remove(b);
            }
        }
        self.account(old, e.map(Entry::encode));
        Ok(())
    }

    /// Commit the index and make it durable: append the changes of the move in progress
    /// (`Meta::undo`) to the journal with one write with a preflush (everything written before,
    /// data slots included, is durable first) and FUA; or, when the journal cannot take them
    /// (or a repair is due), write a checkpoint.
    pub(super) fn commit(&self, m: &mut Meta) -> Result {
        if !m.current {
            // Not checked against the spare (a table not live yet, or whose load at resume
            // failed): the index may be stale and must not replace newer metadata.
            pr_warn!(
                "{}: metadata not loaded for the live table; change refused\n",
                self.spare.name()
            );
            return Err(EBUSY);
        }
        let seq = m.next_seq;
        let copy = m.target;
        // Never reuse a sequence number, even one whose write failed half-way.
        m.next_seq = seq + 1;
        let res = match self.journal_room(m) {
            Some(j) => self.write_journal(m, j, seq),
            None => {
                // A superblock with this sequence number may reach the disk even if the write
                // fails.
                m.disk_seq = seq;
                self.write_copy(m, copy, seq)
            }
        };
        match res {
            Ok(()) => {
                self.seq.store(seq, SeqCst);
                self.meta_failed.store(false, Relaxed);
                self.stats.commits.fetch_add(1, Relaxed);
            }
            Err(e) => {
                // The copy written to is now invalid (or, if the error came after the write
                // reached the disk, valid with this commit); the other one still holds the
                // previous commit. The next commit, or the repair it schedules, writes the same
                // copy again; a failed journal commit may have reached the disk too, so the
                // journal is not used again before a checkpoint succeeds.
                m.repair = true;
                m.journal = None;
                self.meta_failed.store(true, Relaxed);
                self.stats.commit_errors.fetch_add(1, Relaxed);
                self.event(
                    uapi::EV_META_ERROR,
                    0,
                    e.to_errno().unsigned_abs().into(),
                    uapi::DMR_EVF_SPARE,
                );
                pr_err!(
                    "{}: metadata commit {} failed: {:?}\n",
                    self.spare.name(),
                    seq,
                    e
                );
            }
        }
        res
    }

    /// The journal, if the next commit goes there: a journal exists, no repair is due, no slot
    /// waits for a checkpoint to become free again, there are changes, and they fit the copy
    /// buffer and the journal's room.
    fn journal_room(&self, m: &Meta) -> Option<Journal> {
        let j = m.journal?;
        if m.repair || !m.uncertain.is_empty() || m.undo.is_empty() {
            return None;
        }
        let blocks = metadata::journal_blocks_for(m.undo.len());
        let fits = blocks <= m.buf.len() / MD_BLOCK_SIZE
            && u32::try_from(blocks)
                .ok()
                .is_some_and(|b| j.head.saturating_add(b) <= journal_limit(&j));
        fits.then_some(j)
    }

    /// Append the changes of the move in progress to the journal `j` as commit `seq` with one
    /// write with a preflush and FUA. Once the journal is half full the worker is asked to
    /// write a checkpoint.
    fn write_journal(&self, m: &mut Meta, mut j: Journal, seq: u64) -> Result {
        let Meta { set, buf, undo, .. } = &mut *m;
        let changes = undo
            .iter()
            .map(|&(b, _)| (b, self.index.get(b).map(Entry::decode)));
        let blocks = metadata::encode_journal(set, &j, seq, changes, buf).map_err(|_| EINVAL)?;
        let len = blocks as usize * MD_BLOCK_SIZE;
        self.spare.write(
            j.sector(set, j.head),
            buf.get(..len).ok_or(EINVAL)?,
            WriteMode::FlushFua,
        )?;
        j.advance(blocks, seq);
        m.journal = Some(j);
        let limit = journal_limit(&j);
        if j.used() >= limit.saturating_sub(j.first) / 2 && !self.checkpoint_due.load(Relaxed) {
            self.checkpoint_due.store(true, Relaxed);
            self.worker.kick();
        }
        Ok(())
    }

    /// Write the whole index as copy `copy` with sequence number `seq` (a checkpoint): record
    /// blocks, then the superblock with a preflush and FUA. The journal restarts behind it.
    fn write_copy(&self, m: &mut Meta, copy: CopyId, seq: u64) -> Result {
        self.write_whole(m, copy, seq)?;
        m.target = copy.other();
        m.repair = false;
        // The copy a failed commit may have reached is overwritten, the other one predates the
        // slots that commit took: they are free again.
        for &slot in m.uncertain.iter() {
            self.free_slot(slot);
        }
        m.uncertain.clear();
        self.checkpoint_due.store(false, Relaxed);
        Ok(())
    }

    /// Encode and write copy `copy` with sequence number `seq`; the journal starts behind it.
    fn write_whole(&self, m: &mut Meta, copy: CopyId, seq: u64) -> Result {
        let Meta {
            set, mdbuf, buf, ..
        } = &mut *m;
        let mut records = IndexRecords {
            index: &self.index,
            next: 0,
            last: self.main_blocks,
            done: false,
        };
        let mut enc = metadata::CopyEncoder::new(set, copy, seq, None).map_err(|_| EINVAL)?;
        // Record blocks are consecutive: gather them in the copy buffer, one write per
        // buffer full.
        let mut start = 0;
        let mut used = 0;
        while let Some(sector) = enc.next_block(&mut records, mdbuf).map_err(|_| ENOSPC)? {
            if used > 0
                && (sector != start + (used / 512) as u64 || used + MD_BLOCK_SIZE > buf.len())
            {
                self.spare
                    .write(start, buf.get(..used).ok_or(EINVAL)?, WriteMode::Plain)?;
                used = 0;
            }
            if used == 0 {
                start = sector;
            }
            buf.get_mut(used..used + MD_BLOCK_SIZE)
                .ok_or(EINVAL)?
                .copy_from_slice(mdbuf.get(..MD_BLOCK_SIZE).ok_or(EINVAL)?);
            used += MD_BLOCK_SIZE;
        }
        if used > 0 {
            self.spare
                .write(start, buf.get(..used).ok_or(EINVAL)?, WriteMode::Plain)?;
        }
        let (sector, sb) = enc.finish(mdbuf).map_err(|_| EINVAL)?;
        self.spare.write(sector, mdbuf, WriteMode::FlushFua)?;
        m.journal = Some(Journal::after(&sb));
        Ok(())
    }

    /// Record a change of the index for the move in progress (undone if its commit fails).
    pub(super) fn set_entry(&self, m: &mut Meta, block: u64, e: Entry) -> Result {
        let old = self.index.get(block);
        m.undo.push((block, old), GFP_KERNEL)?;
        if let Err(err) = self.index.store(block, e.encode()) {
            m.undo.pop();
            return Err(err);
        }
        self.account(old, Some(e.encode()));
        Ok(())
    }

    /// Adjust the entry counters for an index change from `old` to `new`.
    pub(super) fn account(&self, old: Option<u64>, new: Option<u64>) {
        let pend = |v: Option<u64>| matches!(v.map(Entry::decode), Some(Entry::Pending));
        match (old.is_some(), new.is_some()) {
            (false, true) => {
                self.entries.fetch_add(1, SeqCst);
            }
            (true, false) => {
                self.entries.fetch_sub(1, SeqCst);
            }
            _ => {}
        }
        match (pend(old), pend(new)) {
            (false, true) => {
                self.pending.fetch_add(1, SeqCst);
            }
            (true, false) => {
                self.pending.fetch_sub(1, SeqCst);
            }
            _ => {}
        }
    }

    /// Commit the changes of the move in progress, or undo them (freeing the slots they took)
    /// when the commit fails. Raises the events of committed changes.
    pub(super) fn commit_changes(&self, m: &mut Meta) -> Result {
        if m.undo.is_empty() {
            return Ok(());
        }
        let res = self.commit(m);
        let mut undo = core::mem::take(&mut m.undo);
        // Undo newest first; raise the events of a durable change in the order of the changes.
        let failed = res.is_err();
        let order: &mut dyn Iterator<Item = &(u64, Option<u64>)> = if failed {
            &mut undo.iter().rev()
        } else {
            &mut undo.iter()
        };
        for &(block, old) in order {
            let new = self.index.get(block);
            if failed {
                match old {
                    Some(v) => {
                        let _ = self.index.store(block, v);
                    }
                    None => {
                        self.index.remove(block);
                    }
                }
                self.account(new, old);
                if let Some(Entry::Remapped { slot }) = new.map(Entry::decode) {
                    // The commit may have reached the disk: keep the slot until one succeeds
                    // (without memory to note it, it stays allocated until the next load).
                    let _ = m.uncertain.push(slot, GFP_KERNEL);
                }
                continue;
            }
            let sector = self.dev_sector(block);
            match (old.map(Entry::decode), new.map(Entry::decode)) {
                (_, Some(Entry::Remapped { slot })) => {
                    self.stats.remap_ops.fetch_add(1, Relaxed);
                    self.event(uapi::EV_REMAP, sector, slot, 0);
                }
                (_, Some(Entry::Pending)) => self.event(uapi::EV_PENDING, sector, 0, 0),
                (Some(Entry::Remapped { slot }), None) => {
                    // Durable: nothing refers to the slot any more.
                    self.free_slot(slot);
                    self.stats.unremap_ops.fetch_add(1, Relaxed);
                    self.event(uapi::EV_UNREMAP, sector, slot, 0);
                }
                _ => {}
            }
        }
        undo.clear();
        m.undo = undo;
        let (free, total) = {
            let a = self.slots.lock();
            (a.free(), a.total())
        };
        self.check_spare_low(free, total);
        if failed {
            // Schedule the repair of the copy the failed commit damaged.
            self.worker.kick();
        }
        res
    }

    /// The control state for a change of the index, refused (`EBUSY`) while the index is not
    /// known to match the spare (see `Meta::current`).
    pub(super) fn ctl_for_change(&self) -> Result<MutexGuard<'_, Meta>> {
        let m = self.ctl.lock();
        if !m.current {
            pr_warn!(
                "{}: metadata not loaded for the live table (resume it); change refused\n",
                self.spare.name()
            );
            return Err(EBUSY);
        }
        Ok(m)
    }
}

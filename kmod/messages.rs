// SPDX-License-Identifier: GPL-2.0

//! Messages (`dmsetup message`): parsing, and the operations they start (remap, unremap,
//! pending, list, stats).

use core::fmt::Write;
use core::sync::atomic::Ordering::Relaxed;
use kernel::prelude::*;
use kernel::str::BStr;

use super::MOVE_MAX;
use super::{Meta, RemapTarget};
use crate::dm::{Args, Emitter, NoIo, TargetRef, WriteMode};
use crate::remap::Entry;
use crate::table;

const HELP: &str = "messages:\n\
  help                        this text\n\
  ping                        answers pong\n\
  remap <sector> [<count>]    move <count> blocks (default 1) from <sector> on to spare slots\n\
  unremap <sector>            move the block at <sector> back to main and free its slot\n\
  pending <sector> [<count>]  mark <count> blocks from <sector> on pending (unreadable on main)\n\
  list [<from> [<max>]]       remapped blocks from device sector <from>: sector block slot state\n\
  stats                       counters as key=value lines\n\
  clear_stats                 reset error and operation counters\n";

/// Most entries `list` reports when no maximum is given.
const LIST_DEFAULT_MAX: u64 = 1000;

/// Most blocks one `remap` or `pending` message handles.
const REMAP_MAX_COUNT: u64 = 1 << 20;

impl RemapTarget {
    /// Parse and run one message; returns whether `out` holds an answer.
    pub(super) fn handle_message(
        &self,
        ti: &TargetRef,
        mut args: Args<'_>,
        out: &mut Emitter<'_>,
    ) -> Result<bool> {
        // Block moves hold bios: no allocation may wait on writeback to this device.
        let _noio = NoIo::begin();
        let verb = args.next().map(|v| v.to_bytes()).unwrap_or(b"");
        let mut nums = [0u64; 2];
        let mut n = 0;
        for a in args {
            let Some(v) = table::parse_u64(a.to_bytes()) else {
                pr_warn!(
                    "message '{}': '{}' is not a number\n",
                    BStr::from_bytes(verb),
                    BStr::from_bytes(a.to_bytes())
                );
                return Err(EINVAL);
            };
            if let Some(slot) = nums.get_mut(n) {
                *slot = v;
            }
            n += 1;
        }
        let arity = |min: usize, max: usize| -> Result {
            if n < min || n > max {
                pr_warn!(
                    "message '{}' takes {} to {} arguments, got {}\n",
                    BStr::from_bytes(verb),
                    min,
                    max,
                    n
                );
                return Err(EINVAL);
            }
            Ok(())
        };
        let range = |nums: &[u64; 2]| -> Result<(u64, u64)> {
            let count = if n == 2 { nums[1] } else { 1 };
            let first = self.block_of(ti, nums[0])?;
            if count == 0 || count > REMAP_MAX_COUNT || first + count > self.blocks {
                pr_warn!(
                    "{}: count {} out of range (1..={}, within the device)\n",
                    BStr::from_bytes(verb),
                    count,
                    REMAP_MAX_COUNT
                );
                return Err(EINVAL);
            }
            Ok((first, count))
        };
        match verb {
            b"ping" => {
                arity(0, 0)?;
                let _ = out.write_str("pong");
            }
            b"help" => {
                arity(0, 0)?;
                let _ = out.write_str(HELP);
            }
            b"remap" => {
                arity(1, 2)?;
                let (first, count) = range(&nums)?;
                let mut done = 0;
                let mut already = 0;
                let mut res = Ok(());
                let mut b = first;
                while b < first + count && res.is_ok() {
                    let len = (first + count - b).min(MOVE_MAX);
                    let (d, a, r) = self.remap_range(b, len);
                    done += d;
                    already += a;
                    res = r;
                    b += len;
                }
                if let Err(e) = res {
                    if done == 0 {
                        return Err(e);
                    }
                    let _ = write!(
                        out,
                        "remapped {} blocks, {} already remapped, then failed: error {}",
                        done,
                        already,
                        e.to_errno()
                    );
                } else {
                    let _ = write!(
                        out,
                        "remapped {} blocks, {} already remapped",
                        done, already
                    );
                }
            }
            b"unremap" => {
                arity(1, 1)?;
                let b = self.block_of(ti, nums[0])?;
                self.unremap_block(b)?;
                let _ = write!(out, "unremapped block {}", b);
            }
            b"pending" => {
                arity(1, 2)?;
                let (first, count) = range(&nums)?;
                let mut marked = 0;
                let mut b = first;
                while b < first + count {
                    let len = (first + count - b).min(MOVE_MAX);
                    marked += self.mark_pending(b, len)?;
                    b += len;
                }
                let _ = write!(out, "marked {} blocks pending", marked);
            }
            b"list" => {
                arity(0, 2)?;
                let from = if n >= 1 {
                    self.block_of(ti, nums[0])?
                } else {
                    0
                };
                let max = if n == 2 { nums[1] } else { LIST_DEFAULT_MAX };
                self.list(ti, from, max, out);
            }
            b"stats" => {
                arity(0, 0)?;
                self.write_stats(out);
            }
            b"clear_stats" => {
                arity(0, 0)?;
                let s = &self.stats;
                for c in [
                    &s.read_errors,
                    &s.write_errors,
                    &s.remap_ops,
                    &s.unremap_ops,
                    &s.split_bios,
                    &s.held_bios,
                    &s.healed_writes,
                    &s.recovered_reads,
                    &s.failed_reads,
                    &s.commits,
                    &s.commit_errors,
                    &s.passthrough_errors,
                    &s.flush_errors,
                ] {
                    c.store(0, Relaxed);
                }
                return Ok(false);
            }
            _ => {
                pr_warn!(
                    "unknown message '{}' (try 'help')\n",
                    BStr::from_bytes(verb)
                );
                return Err(EINVAL);
            }
        }
        Ok(true)
    }

    /// Move blocks `first..first + len` (`len <= MOVE_MAX`) to spare slots with one commit.
    /// Returns the blocks moved (durably), the blocks already on the spare, and the error that
    /// stopped the move early.
    fn remap_range(&self, first: u64, len: u64) -> (u64, u64, Result) {
        let mut m = match self.ctl_for_change() {
            Ok(m) => m,
            Err(e) => return (0, 0, Err(e)),
        };
        self.start_move(first, len);
        let per_chunk = (m.buf.len() / self.block_bytes()).max(1) as u64;
        let mut already = 0;
        let mut res = Ok(());
        let mut b = first;
        while b < first + len && res.is_ok() {
            let n = (first + len - b).min(per_chunk);
            res = match self.read_main(&mut m, b, n as usize) {
                Ok(()) => self.move_from_buf(&mut m, b, n, &mut already),
                // One block may be unreadable: go block by block to move the others.
                Err(_) if n > 1 => self.move_blocks_singly(&mut m, b, n, &mut already),
                Err(e) => Err(e),
            };
            b += n;
        }
        let done = m.undo.len() as u64;
        let committed = self.commit_changes(&mut m);
        self.end_move();
        match committed {
            Ok(()) => (done, already, res),
            Err(e) => (0, already, Err(e)),
        }
    }

    /// Move the `n` blocks from `first` on one at a time (no commit): read each from main and
    /// move it; stops at the first block that fails.
    fn move_blocks_singly(&self, m: &mut Meta, first: u64, n: u64, already: &mut u64) -> Result {
        for b in first..first + n {
            self.read_main(m, b, 1)?;
            self.move_from_buf(m, b, 1, already)?;
        }
        Ok(())
    }

    /// Move the `n` blocks from `block` on, whose data is in the copy buffer, to fresh slots
    /// (no commit). Runs of consecutive slots are written with one I/O.
    fn move_from_buf(&self, m: &mut Meta, block: u64, n: u64, already: &mut u64) -> Result {
        let bb = self.block_bytes();
        let mut i = 0;
        while i < n {
            if let Some(Entry::Remapped { .. }) = self.index.get(block + i).map(Entry::decode) {
                *already += 1;
                i += 1;
                continue;
            }
            let slot0 = self.alloc_slot(block + i).ok_or(ENOSPC)?;
            let mut run = 1;
            while i + run < n && self.index.get(block + i + run).is_none() {
                // The allocator lock must be dropped before `free_slot` takes it again.
                let next = self.slots.lock().alloc();
                match next {
                    Some(s) if s == slot0 + run => run += 1,
                    Some(s) => {
                        self.free_slot(s);
                        break;
                    }
                    None => break,
                }
            }
            let off = i as usize * bb;
            let Some(buf) = m.buf.get(off..off + run as usize * bb) else {
                for j in 0..run {
                    self.free_slot(slot0 + j);
                }
                return Err(EINVAL);
            };
            if let Err(e) = self
                .spare
                .write(self.slot_sector(slot0), buf, WriteMode::Plain)
            {
                // Which of the run's slots is bad is unknown: none is handed out again.
                self.retire_slots(slot0, run);
                return Err(e);
            }
            // Slots entered in the index so far (their undo frees them if the commit fails).
            let mut set = 0;
            let mut r = Ok(());
            while r.is_ok() && set < run {
                r = self.set_entry(m, block + i + set, Entry::Remapped { slot: slot0 + set });
                if r.is_ok() {
                    set += 1;
                }
            }
            if let Err(e) = r {
                for j in set..run {
                    self.free_slot(slot0 + j);
                }
                return Err(e);
            }
            i += run;
        }
        Ok(())
    }

    /// Move `block` back to main and free its slot.
    fn unremap_block(&self, block: u64) -> Result {
        let mut m = self.ctl_for_change()?;
        let slot = match self.index.get(block).map(Entry::decode) {
            Some(Entry::Remapped { slot }) => slot,
            _ => {
                pr_warn!("unremap: block {} is not remapped\n", block);
                return Err(ENOENT);
            }
        };
        self.start_move(block, 1);
        let res = self.copy_back(&mut m, block, slot);
        let res = res.and_then(|()| self.commit_changes(&mut m));
        self.end_move();
        res
    }

    /// Copy `block` from spare slot `slot` back to main, make it durable there and drop its
    /// index entry (no commit).
    fn copy_back(&self, m: &mut Meta, block: u64, slot: u64) -> Result {
        let buf = m.buf.get_mut(..self.block_bytes()).ok_or(EINVAL)?;
        self.spare.read(self.slot_sector(slot), buf)?;
        // Only the part inside the target goes back (a partial last block).
        let inside = buf.get(..self.block_len(block)).ok_or(EINVAL)?;
        self.main
            .write(self.main_sector(block), inside, WriteMode::Plain)?;
        // The data must be durable on main before the record stops pointing at the slot.
        self.main.flush()?;
        let old = self.index.remove(block);
        m.undo.push((block, old), GFP_KERNEL)?;
        self.account(old, None);
        Ok(())
    }

    /// Mark blocks `first..first + len` pending (those neither pending nor remapped) with one
    /// commit. Returns how many were marked.
    fn mark_pending(&self, first: u64, len: u64) -> Result<u64> {
        let mut m = self.ctl_for_change()?;
        self.start_move(first, len);
        let mut res = Ok(());
        for b in first..first + len {
            if self.index.get(b).is_none() {
                if let Err(e) = self.set_entry(&mut m, b, Entry::Pending) {
                    res = Err(e);
                    break;
                }
            }
        }
        let marked = m.undo.len() as u64;
        let committed = self.commit_changes(&mut m);
        self.end_move();
        committed?;
        res.map(|()| marked)
    }

    fn list(&self, ti: &TargetRef, from: u64, max: u64, out: &mut Emitter<'_>) {
        let mut next = from;
        let mut n = 0;
        while n < max && next < self.blocks {
            let Some((b, v)) = self.index.first_in(next, self.blocks - 1) else {
                break;
            };
            let sector = ti.begin() + (b << self.shift);
            let r = match Entry::decode(v) {
                Entry::Remapped { slot } => writeln!(out, "{} {} {} remapped", sector, b, slot),
                Entry::Pending => writeln!(out, "{} {} - pending", sector, b),
            };
            if r.is_err() {
                break;
            }
            n += 1;
            next = b + 1;
        }
    }

    fn write_stats(&self, out: &mut Emitter<'_>) {
        let (used, total) = self.slot_usage();
        let s = &self.stats;
        let pending = self.pending.load(Relaxed);
        let _ = write!(
            out,
            "remapped={}\npending={}\nspare_used={}\nspare_total={}\nblock_size={}\nread_errors={}\nwrite_errors={}\nremap_ops={}\nunremap_ops={}\nsplit_bios={}\nheld_bios={}\n",
            self.entries.load(Relaxed).saturating_sub(pending),
            pending,
            used,
            total,
            self.opts.block_size,
            s.read_errors.load(Relaxed),
            s.write_errors.load(Relaxed),
            s.remap_ops.load(Relaxed),
            s.unremap_ops.load(Relaxed),
            s.split_bios.load(Relaxed),
            s.held_bios.load(Relaxed),
        );
        let _ = write!(
            out,
            "commit_errors={}\ncommits={}\nfailed_reads={}\nflush_errors={}\nhealed_writes={}\nmetadata_seq={}\npassthrough_errors={}\nrecovered_reads={}\nretired_slots={}\n",
            s.commit_errors.load(Relaxed),
            s.commits.load(Relaxed),
            s.failed_reads.load(Relaxed),
            s.flush_errors.load(Relaxed),
            s.healed_writes.load(Relaxed),
            self.seq.load(Relaxed),
            s.passthrough_errors.load(Relaxed),
            s.recovered_reads.load(Relaxed),
            s.retired_slots.load(Relaxed),
        );
    }
}

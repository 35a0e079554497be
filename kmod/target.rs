// SPDX-License-Identifier: GPL-2.0

//! The `remap` target: safe Rust over the [`crate::dm`] wrapper.
//!
//! One instance ([`RemapTarget`]) per table line. Its code is split by concern:
//! - [`ctr`]: the constructor (table arguments, devices, memory, first metadata load);
//! - [`io`]: the data path, `map` and `end_io`, and which errors heal;
//! - [`gate`]: counting bios in flight and holding them while blocks move;
//! - [`commit`]: loading and committing the index, undoing a move whose commit failed;
//! - [`heal`]: the worker, healing failed writes and recovering failed reads;
//! - [`messages`]: `dmsetup message` and the operations it starts.

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use kernel::prelude::*;
use kernel::sync::{Mutex, SpinLock, SpinLockIrq};

use self::gate::Gate;
use crate::alloc::SlotAllocator;
use crate::dm::{
    uapi, Args, Bio, BioList, BlkStatus, CtrContext, CtrError, DevClaims, DeviceCallout, DmDev,
    Emitter, EndIo, MapBio, MapResult, QueueLimits, RcuIndex, Sector, StatusType, TableNotifier,
    Target, TargetRef, Worker,
};
use crate::events;
use crate::metadata::{CopyId, Journal, SetInfo};
use crate::table::Options;

#[path = "commit.rs"]
mod commit;
#[path = "ctr.rs"]
mod ctr;
#[path = "gate.rs"]
mod gate;
#[path = "heal.rs"]
mod heal;
#[path = "io.rs"]
mod io;
#[path = "messages.rs"]
mod messages;

/// Target version reported to device-mapper.
pub(crate) const VERSION: [u32; 3] = [0, 3, 0];

/// Most blocks moved under one hold and made durable by one commit.
const MOVE_MAX: u64 = 4096;

/// Live counters.
#[derive(Default)]
struct Stats {
    read_errors: AtomicU64,
    write_errors: AtomicU64,
    remap_ops: AtomicU64,
    unremap_ops: AtomicU64,
    split_bios: AtomicU64,
    held_bios: AtomicU64,
    healed_writes: AtomicU64,
    recovered_reads: AtomicU64,
    failed_reads: AtomicU64,
    commits: AtomicU64,
    commit_errors: AtomicU64,
    /// Errors on main that are not media errors (see [`io::error_class`]), passed through.
    passthrough_errors: AtomicU64,
    /// Failed flushes (main or spare), passed through.
    flush_errors: AtomicU64,
    /// Slots kept out of use after a failed write (not reset by `clear_stats`).
    retired_slots: AtomicU64,
}

/// State that block moves and commits change, under the control mutex.
struct Meta {
    /// The remap set on the spare.
    set: SetInfo,
    /// Sequence number of the next commit (never reused, even after a failed commit).
    next_seq: u64,
    /// The copy the next checkpoint (whole-index commit) writes.
    target: CopyId,
    /// The journal behind the newest copy, where the next commit is appended; `None` when the
    /// next commit must be a checkpoint (after formatting, a version 1 or 2 spare, or a failed
    /// commit).
    journal: Option<Journal>,
    /// Newest sealed superblock sequence number on the spare when it was last read or written:
    /// another table's checkpoint changes it (checked before this table goes live, with the
    /// block after this table's journal for its journal commits).
    disk_seq: u64,
    /// The copy the next commit writes must be rewritten even without a change: it was found
    /// damaged at load, or a commit to it failed.
    repair: bool,
    /// The index matches the newest commit on the spare: set when the table goes live
    /// (`preresume` checked the spare), cleared when a load starts. While it is not set the
    /// index may be stale or empty, and changes and commits are refused.
    current: bool,
    /// Slots taken by changes whose commit failed: that commit may still have reached the disk,
    /// so they stay allocated until a later commit succeeds.
    uncertain: KVVec<u64>,
    /// One metadata block.
    mdbuf: KVec<u8>,
    /// Copy buffer: `max(block size, COPY_CHUNK or COPY_CHUNK_MIN)` bytes.
    buf: KVec<u8>,
    /// Changes of the move in progress: block and previous index value, to undo them when the
    /// commit fails.
    undo: KVec<(u64, Option<u64>)>,
}

/// One `remap` target instance.
pub(crate) struct RemapTarget {
    /// Dropped first: waits for a worker run in progress, which uses everything below.
    worker: Worker,
    /// The mapped device (`major << 20 | minor`), for events.
    devt: u32,
    notifier: TableNotifier,
    /// A spare-low event was raised and free slots have not recovered since.
    spare_low: AtomicBool,
    /// The last slot allocation failed; cleared by the next that succeeds.
    exhausted: AtomicBool,
    /// The last commit failed; cleared by the next that succeeds.
    meta_failed: AtomicBool,
    /// The journal is half full: the worker writes a checkpoint.
    checkpoint_due: AtomicBool,
    /// Start of the target in the mapped device.
    begin: Sector,
    main: DmDev,
    main_offset: Sector,
    spare: DmDev,
    /// First sector of the spare's data area.
    data_start: Sector,
    opts: Options,
    /// log2 of the block size in sectors.
    shift: u32,
    /// Sectors in the target (the last block may be partial: see [`RemapTarget::block_len`]).
    len: Sector,
    /// Blocks in the target.
    blocks: u64,
    /// Blocks of the main device the metadata covers (records may lie beyond the target).
    main_blocks: u64,
    index: RcuIndex,
    /// Entries in the index (remapped and pending).
    entries: AtomicU64,
    /// Pending entries in the index.
    pending: AtomicU64,
    /// Sequence number of the newest durable commit.
    seq: AtomicU64,
    slots: Pin<KBox<SpinLock<SlotAllocator<KVVec<u64>>>>>,
    /// Serialises block moves and commits.
    ctl: Pin<KBox<Mutex<Meta>>>,
    /// Bios taken over for the worker (from `map` and `end_io`, any context).
    deferred: Pin<KBox<SpinLockIrq<BioList>>>,
    gate: Gate,
    stats: Stats,
    /// Main and spare registered against use by other mapped devices.
    _claims: DevClaims,
}

impl Target for RemapTarget {
    fn new(ctx: &mut CtrContext, args: Args<'_>) -> core::result::Result<Self, CtrError> {
        Self::construct(ctx, args)
    }

    fn map(&self, ti: &TargetRef, bio: &mut MapBio<'_>) -> MapResult {
        self.map_bio(ti, bio)
    }

    fn end_io(&self, _ti: &TargetRef, bio: &mut Bio, error: BlkStatus) -> EndIo {
        self.end_bio(bio, error)
    }

    fn work(&self, _ti: &TargetRef) {
        self.run_worker();
    }

    fn presuspend(&self, _ti: &TargetRef) {
        self.before_suspend();
    }

    fn preresume(&self, _ti: &TargetRef) -> Result {
        self.before_resume()
    }

    fn status(&self, _ti: &TargetRef, ty: StatusType, out: &mut Emitter<'_>) {
        // A cut status is flagged by device-mapper itself (it retries with a larger buffer).
        let _ = match ty {
            StatusType::Info => {
                let (used, total) = self.slot_usage();
                let pending = self.pending.load(Relaxed);
                write!(
                    out,
                    "{} {} {}/{} {} {} {} {}",
                    self.entries.load(Relaxed).saturating_sub(pending),
                    pending,
                    used,
                    total,
                    self.stats.read_errors.load(Relaxed),
                    self.stats.write_errors.load(Relaxed),
                    self.seq.load(Relaxed),
                    self.state()
                )
            }
            StatusType::Table => write!(
                out,
                "{} {} {}",
                DisplayCStr(self.main.name()),
                self.main_offset,
                DisplayCStr(self.spare.name())
            )
            .and_then(|()| self.opts.emit(out)),
            StatusType::Ima => write!(
                out,
                "target_name=remap,target_version={}.{}.{},main={},main_offset={},spare={},block_size={},read_retries={};",
                VERSION[0],
                VERSION[1],
                VERSION[2],
                DisplayCStr(self.main.name()),
                self.main_offset,
                DisplayCStr(self.spare.name()),
                self.opts.block_size,
                self.opts.read_retries
            ),
        };
    }

    fn message(&self, ti: &TargetRef, args: Args<'_>, out: &mut Emitter<'_>) -> Result<bool> {
        self.handle_message(ti, args, out)
    }

    fn iterate_devices(&self, ti: &TargetRef, callout: &mut DeviceCallout) -> c_int {
        let r = callout.call(&self.main, self.main_offset, ti.len());
        if r != 0 {
            return r;
        }
        let (_, nslots) = self.slot_usage();
        callout.call(&self.spare, self.data_start, nslots << self.shift)
    }

    fn io_hints(&self, _ti: &TargetRef, limits: &mut QueueLimits) {
        // Writes smaller than a block to a block awaiting repair need a read-modify-write: tell
        // upper layers the block size is the preferred minimum I/O.
        limits.raise_io_min(self.opts.block_size);
    }
}

impl RemapTarget {
    fn state(&self) -> &'static str {
        if self.meta_failed.load(Relaxed) {
            "metadata_error"
        } else if self.exhausted.load(Relaxed) {
            "spare_exhausted"
        } else {
            "active"
        }
    }

    /// Record an event and wake `DM_DEV_WAIT` waiters. Any context.
    fn event(&self, ty: u32, sector: Sector, arg: u64, flags: u32) {
        events::raise(ty, self.devt, sector, arg, flags);
        self.notifier.raise();
    }

    /// Raise spare-low once when free slots fall to 10 % or less; re-arm when they recover.
    fn check_spare_low(&self, free: u64, total: u64) {
        if free * 10 <= total {
            if !self.spare_low.swap(true, Relaxed) {
                self.event(uapi::EV_SPARE_LOW, 0, free, 0);
            }
        } else {
            self.spare_low.store(false, Relaxed);
        }
    }

    fn slot_usage(&self) -> (u64, u64) {
        let a = self.slots.lock();
        (a.allocated(), a.total())
    }

    /// A free slot, or `None` (and an exhaustion event for `block`) when the spare is full.
    fn alloc_slot(&self, block: u64) -> Option<u64> {
        let slot = self.slots.lock().alloc();
        if slot.is_none() {
            self.exhausted.store(true, Relaxed);
            self.event(uapi::EV_SPARE_EXHAUSTED, self.dev_sector(block), 0, 0);
        } else {
            self.exhausted.store(false, Relaxed);
        }
        slot
    }

    fn free_slot(&self, slot: u64) {
        let _ = self.slots.lock().free_slot(slot);
    }

    /// Keep `n` slots from `first` on, whose write failed, out of use: freed, the allocator
    /// would hand the most recently freed slot straight out again, and one bad spare sector
    /// would fail every later move. They stay allocated (counted in `spare_used`) until the
    /// table is loaded again, which rebuilds the allocator from the index.
    fn retire_slots(&self, first: u64, n: u64) {
        pr_warn!(
            "spare slots {}..{} failed a write: kept out of use until the next table load\n",
            first,
            first + n
        );
        self.stats.retired_slots.fetch_add(n, Relaxed);
    }

    /// Block number of a device sector inside this target.
    fn block_of(&self, ti: &TargetRef, sector: u64) -> Result<u64> {
        if sector < ti.begin() || sector - ti.begin() >= ti.len() {
            pr_warn!(
                "sector {} is outside the target ({}..{})\n",
                sector,
                ti.begin(),
                ti.begin() + ti.len()
            );
            return Err(EINVAL);
        }
        Ok((sector - ti.begin()) >> self.shift)
    }

    fn dev_sector(&self, block: u64) -> Sector {
        self.begin + (block << self.shift)
    }

    fn main_sector(&self, block: u64) -> Sector {
        self.main_offset + (block << self.shift)
    }

    fn slot_sector(&self, slot: u64) -> Sector {
        self.data_start + (slot << self.shift)
    }

    fn block_bytes(&self) -> usize {
        self.opts.block_size as usize
    }

    /// Bytes of `block` inside the target: a block size, less for a partial last block. Nothing
    /// past the target's end on main is ever read or written (it may belong to another target).
    fn block_len(&self, block: u64) -> usize {
        let inside = self
            .len
            .saturating_sub(block << self.shift)
            .saturating_mul(512);
        inside.min(self.block_bytes() as u64) as usize
    }
}

/// Formats a C string (device names are ASCII `major:minor`).
struct DisplayCStr<'a>(&'a CStr);

impl core::fmt::Display for DisplayCStr<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for &b in self.0.to_bytes() {
            f.write_char(if b.is_ascii_graphic() { b as char } else { '?' })?;
        }
        Ok(())
    }
}

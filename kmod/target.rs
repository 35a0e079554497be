// SPDX-License-Identifier: GPL-2.0

//! The `remap` target: safe Rust over the [`crate::dm`] wrapper.
//!
//! I/O path: a bio that overlaps no remapped block goes to main exactly like dm-linear (one
//! atomic load decides it when nothing is remapped). Otherwise [`remap::plan`] cuts the bio at
//! block boundaries and each piece goes to main or to its spare slot; index lookups are
//! lock-free (RCU xarray).
//!
//! Moving a block (the `remap` and `unremap` messages) must not lose a write that races with the
//! copy. Every bio that may touch a moving block is counted in one of two epochs before it is
//! routed; the mover publishes the block number, flips the epoch and waits until the old epoch has
//! no bios in flight, so nothing reaches the block from then on without seeing the published
//! number. Bios for the moving block are held and resubmitted once the index points to the new
//! place.

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use kernel::new_mutex;
use kernel::new_spinlock;
use kernel::prelude::*;
use kernel::str::BStr;
use kernel::sync::{Mutex, SpinLock};

use crate::alloc::SlotAllocator;
use crate::dm::{
    uapi, Args, Bio, BioList, CtrContext, CtrError, DeviceCallout, DmDev, Emitter, MapResult,
    QueueLimits, RcuIndex, Sector, StatusType, TableNotifier, Target, TargetRef,
};
use crate::events;
use crate::remap::{self, Dest, Entry, Lookup};
use crate::table::{self, Options, TableError};

/// Target version reported to device-mapper.
pub(crate) const VERSION: [u32; 3] = [0, 2, 0];

const HELP: &str = "messages:\n\
  help                        this text\n\
  ping                        answers pong\n\
  remap <sector> [<count>]    move <count> blocks (default 1) from <sector> on to spare slots\n\
  unremap <sector>            move the block at <sector> back to main and free its slot\n\
  list [<from> [<max>]]       remapped blocks from device sector <from>: sector block slot state\n\
  stats                       counters as key=value lines\n\
  clear_stats                 reset error and operation counters\n";

/// Most entries `list` reports when no maximum is given.
const LIST_DEFAULT_MAX: u64 = 1000;
/// Most blocks one `remap` message moves.
const REMAP_MAX_COUNT: u64 = 1 << 20;
/// Copy buffer size for block moves.
const COPY_CHUNK: usize = 64 * 1024;

/// Live counters.
#[derive(Default)]
struct Stats {
    read_errors: AtomicU64,
    write_errors: AtomicU64,
    remap_ops: AtomicU64,
    unremap_ops: AtomicU64,
    split_bios: AtomicU64,
    held_bios: AtomicU64,
}

/// Per-CPU counter slots of the bio gate.
const COUNTER_SLOTS: usize = 32;

/// One counter on its own cache line.
#[repr(C, align(64))]
struct CounterSlot(AtomicU64);

/// Bio counting for block moves (see the module documentation).
struct Gate {
    /// Block being moved, plus one; 0 when none.
    moving: AtomicU64,
    epoch: AtomicU64,
    /// Bios in flight per epoch, spread over per-CPU slots (one cache line each) so that
    /// counting does not bounce a shared line between CPUs. A bio may leave on another CPU than
    /// it entered on: slots wrap, only the (wrapping) sum over an epoch's slots is meaningful.
    inflight: KBox<[[CounterSlot; COUNTER_SLOTS]; 2]>,
    held: Pin<KBox<SpinLock<BioList>>>,
}

impl Gate {
    /// Count a bio in the current epoch; returns its tag (epoch + 1).
    fn enter(&self) -> u64 {
        let e = self.epoch.load(SeqCst) & 1;
        self.slot(e).fetch_add(1, SeqCst);
        e + 1
    }

    fn slot(&self, epoch: u64) -> &AtomicU64 {
        let cpu = crate::dm::current_cpu() as usize % COUNTER_SLOTS;
        // Both indices are in range: `epoch` is 0 or 1, `cpu` is reduced modulo the slot count.
        &self.inflight[(epoch & 1) as usize][cpu].0
    }

    /// Bios in flight in `epoch`.
    fn in_flight(&self, epoch: u64) -> u64 {
        self.inflight[(epoch & 1) as usize].iter().fold(0u64, |acc, c| acc.wrapping_add(c.0.load(SeqCst)))
    }

    /// Uncount a bio entered with `tag`.
    fn leave(&self, tag: u64) {
        if tag == 1 || tag == 2 {
            self.slot(tag - 1).fetch_sub(1, SeqCst);
        }
    }
}

/// Lookup adapter from the kernel index to the shared planning code.
struct IndexLookup<'a>(&'a RcuIndex);

impl Lookup for IndexLookup<'_> {
    fn first_in(&self, first: u64, last: u64) -> Option<(u64, Entry)> {
        self.0.first_in(first, last).map(|(b, v)| (b, Entry::decode(v)))
    }
}

/// One `remap` target instance.
pub(crate) struct RemapTarget {
    /// The mapped device (`major << 20 | minor`), for events.
    devt: u32,
    notifier: TableNotifier,
    /// A spare-low event was raised and free slots have not recovered since.
    spare_low: AtomicBool,
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
    /// Blocks in the target.
    blocks: u64,
    index: RcuIndex,
    /// Entries in the index.
    entries: AtomicU64,
    slots: Pin<KBox<SpinLock<SlotAllocator<KVec<u64>>>>>,
    /// Serialises block moves.
    ctl: Pin<KBox<Mutex<()>>>,
    gate: Gate,
    stats: Stats,
}

fn table_err(e: TableError) -> CtrError {
    CtrError::inval(e.message())
}

fn nomem(msg: &'static CStr) -> impl FnOnce(Error) -> CtrError {
    move |err| CtrError { msg, err }
}

impl Target for RemapTarget {
    fn new(ctx: &mut CtrContext, args: Args<'_>) -> core::result::Result<Self, CtrError> {
        let argv0 = args.get(0);
        let argv2 = args.get(2);
        let parsed = table::parse_args(args.map(|a| a.to_bytes())).map_err(table_err)?;
        let (main_path, spare_path) = match (argv0, argv2) {
            (Some(m), Some(s)) => (m, s),
            _ => return Err(table_err(TableError::ArgCount)),
        };
        let opts = parsed.options;

        let main = ctx.get_device(main_path).map_err(nomem(c"Main device lookup failed"))?;
        let main_sectors = main.sectors();
        if parsed.main_offset >= main_sectors {
            return Err(CtrError::inval(c"Main device offset is beyond the end of the device"));
        }
        if main_sectors - parsed.main_offset < ctx.len() {
            return Err(CtrError::inval(c"Main device too small for the target length"));
        }
        let spare = ctx.get_device(spare_path).map_err(nomem(c"Spare device lookup failed"))?;
        if spare.devt() == main.devt() {
            return Err(CtrError::inval(c"Spare device must differ from the main device"));
        }
        if opts.block_size < main.logical_block_size() || opts.block_size < spare.logical_block_size() {
            return Err(CtrError::inval(c"block_size is smaller than a device's logical block size"));
        }
        let block_sectors = opts.block_sectors();
        let shift = block_sectors.trailing_zeros();
        if parsed.main_offset % block_sectors != 0 {
            return Err(CtrError::inval(c"Main device offset must be a multiple of block_size"));
        }
        let data_start = 0;
        let nslots = (spare.sectors() - data_start) >> shift;
        if nslots == 0 {
            return Err(CtrError::inval(c"Spare device is smaller than one block"));
        }
        let blocks = ctx.len().div_ceil(block_sectors);

        let mut bits = KVec::new();
        bits.extend_with(crate::alloc::words_for(nslots), 0u64, GFP_KERNEL)
            .map_err(|_| CtrError { msg: c"Cannot allocate the spare slot bitmap", err: ENOMEM })?;
        let allocator = SlotAllocator::new(bits, nslots)
            .map_err(|_| CtrError::inval(c"Cannot set up the spare slot allocator"))?;
        let slots = KBox::pin_init(new_spinlock!(allocator, "dm_remap:slots"), GFP_KERNEL)
            .map_err(nomem(c"Cannot allocate target context"))?;
        let ctl = KBox::pin_init(new_mutex!((), "dm_remap:ctl"), GFP_KERNEL)
            .map_err(nomem(c"Cannot allocate target context"))?;
        let held = KBox::pin_init(new_spinlock!(BioList::new(), "dm_remap:held"), GFP_KERNEL)
            .map_err(nomem(c"Cannot allocate target context"))?;
        let index = RcuIndex::new().map_err(nomem(c"Cannot allocate the remap index"))?;
        let inflight = KBox::new([const { [const { CounterSlot(AtomicU64::new(0)) }; COUNTER_SLOTS] }; 2], GFP_KERNEL)
            .map_err(|_| CtrError { msg: c"Cannot allocate target context", err: ENOMEM })?;

        // One empty flush per underlying device: flushes reach main and spare.
        ctx.set_num_flush_bios(2);
        ctx.set_num_discard_and_write_zeroes_bios(1);
        ctx.reserve_bio_data();
        let notifier = ctx.table_notifier().map_err(nomem(c"Cannot allocate target context"))?;
        Ok(RemapTarget {
            devt: ctx.devt(),
            notifier,
            spare_low: AtomicBool::new(false),
            begin: ctx.begin(),
            main,
            main_offset: parsed.main_offset,
            spare,
            data_start,
            opts,
            shift,
            blocks,
            index,
            entries: AtomicU64::new(0),
            slots,
            ctl,
            gate: Gate {
                moving: AtomicU64::new(0),
                epoch: AtomicU64::new(0),
                inflight,
                held,
            },
            stats: Stats::default(),
        })
    }

    fn map(&self, ti: &TargetRef, bio: &mut Bio) -> MapResult {
        if bio.is_empty_flush() {
            bio.data().tag = 0;
            if bio.target_bio_nr() == 0 {
                bio.set_dev(&self.main);
            } else {
                bio.set_dev(&self.spare);
            }
            return MapResult::Remapped;
        }
        let dev_sector = bio.sector();
        bio.data().sector = dev_sector;
        let rel = dev_sector - ti.begin();
        let write = bio.is_write();
        // Writes are always counted: a block move must wait for writes to main in flight.
        let mut tag = if write { self.gate.enter() } else { 0 };
        let moving = self.gate.moving.load(SeqCst);
        if moving == 0 && self.entries.load(SeqCst) == 0 {
            bio.data().tag = tag;
            bio.set_dev(&self.main);
            bio.set_sector(self.main_offset + rel);
            return MapResult::Remapped;
        }
        if tag == 0 {
            // Reads that may go to the spare are counted too: unremap frees slots.
            tag = self.gate.enter();
        }
        let moving = self.gate.moving.load(SeqCst);
        let sectors = bio.sectors();
        let mut piece = remap::plan(&IndexLookup(&self.index), rel, sectors, self.shift);
        if moving != 0 {
            // Cut the piece at the moving block so that only its part is held.
            let m = moving - 1;
            let start = rel;
            let end = rel + u64::from(piece.sectors);
            let m_start = m << self.shift;
            let m_end = (m + 1) << self.shift;
            if start < m_end && m_start < end {
                if start < m_start {
                    piece.sectors = (m_start - start) as u32;
                } else {
                    piece.sectors = (m_end.min(end) - start) as u32;
                    bio.accept_partial(piece.sectors);
                    self.gate.leave(tag);
                    bio.data().tag = 0;
                    let mut held = self.gate.held.lock();
                    if self.gate.moving.load(SeqCst) == moving {
                        held.push(bio);
                        self.stats.held_bios.fetch_add(1, Relaxed);
                        return MapResult::Submitted;
                    }
                    drop(held);
                    // The move finished meanwhile: route with the new index.
                    tag = self.gate.enter();
                    piece = remap::plan(&IndexLookup(&self.index), rel, piece.sectors, self.shift);
                }
            }
        }
        if piece.sectors < sectors {
            bio.accept_partial(piece.sectors);
            self.stats.split_bios.fetch_add(1, Relaxed);
        }
        bio.data().tag = tag;
        self.route(bio, rel, piece.dest);
        MapResult::Remapped
    }

    fn end_io(&self, _ti: &TargetRef, bio: &mut Bio, error: u8) {
        let data = bio.data();
        let tag = core::mem::take(&mut data.tag);
        let sector = data.sector;
        self.gate.leave(tag);
        if error != 0 {
            let write = bio.is_write();
            let counter = if write { &self.stats.write_errors } else { &self.stats.read_errors };
            counter.fetch_add(1, Relaxed);
            let mut flags = 0;
            if write {
                flags |= uapi::DMR_EVF_WRITE;
            }
            if bio.is_on(&self.spare) {
                flags |= uapi::DMR_EVF_SPARE;
            }
            self.event(uapi::EV_IO_ERROR, sector, u64::from(error), flags);
        }
    }

    fn status(&self, _ti: &TargetRef, ty: StatusType, out: &mut Emitter<'_>) {
        // A cut status is flagged by device-mapper itself (it retries with a larger buffer).
        let _ = match ty {
            StatusType::Info => {
                let (used, total) = self.slot_usage();
                write!(
                    out,
                    "{} {} {}/{} {} {} {} {}",
                    self.entries.load(Relaxed),
                    0, // pending blocks
                    used,
                    total,
                    self.stats.read_errors.load(Relaxed),
                    self.stats.write_errors.load(Relaxed),
                    0, // metadata sequence number
                    "active"
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

    fn message(&self, ti: &TargetRef, mut args: Args<'_>, out: &mut Emitter<'_>) -> Result<bool> {
        let verb = args.next().map(|v| v.to_bytes()).unwrap_or(b"");
        let mut nums = [0u64; 2];
        let mut n = 0;
        for a in args {
            let Some(v) = table::parse_u64(a.to_bytes()) else {
                pr_warn!("message '{}': '{}' is not a number\n", BStr::from_bytes(verb), BStr::from_bytes(a.to_bytes()));
                return Err(EINVAL);
            };
            if let Some(slot) = nums.get_mut(n) {
                *slot = v;
            }
            n += 1;
        }
        let arity = |min: usize, max: usize| -> Result {
            if n < min || n > max {
                pr_warn!("message '{}' takes {} to {} arguments, got {}\n", BStr::from_bytes(verb), min, max, n);
                return Err(EINVAL);
            }
            Ok(())
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
                let count = if n == 2 { nums[1] } else { 1 };
                let first = self.block_of(ti, nums[0])?;
                if count == 0 || count > REMAP_MAX_COUNT || first + count > self.blocks {
                    pr_warn!("remap: count {} out of range (1..={}, within the device)\n", count, REMAP_MAX_COUNT);
                    return Err(EINVAL);
                }
                let mut done = 0;
                let mut already = 0;
                let mut res = Ok(());
                for b in first..first + count {
                    match self.remap_block(b) {
                        Ok(true) => done += 1,
                        Ok(false) => already += 1,
                        Err(e) => {
                            res = Err(e);
                            break;
                        }
                    }
                }
                if let Err(e) = res {
                    if done == 0 {
                        return Err(e);
                    }
                    let _ = write!(out, "remapped {} blocks, {} already remapped, then failed: error {}", done, already, e.to_errno());
                } else {
                    let _ = write!(out, "remapped {} blocks, {} already remapped", done, already);
                }
            }
            b"unremap" => {
                arity(1, 1)?;
                let b = self.block_of(ti, nums[0])?;
                self.unremap_block(b)?;
                let _ = write!(out, "unremapped block {}", b);
            }
            b"list" => {
                arity(0, 2)?;
                let from = if n >= 1 { self.block_of(ti, nums[0])? } else { 0 };
                let max = if n == 2 { nums[1] } else { LIST_DEFAULT_MAX };
                self.list(ti, from, max, out);
            }
            b"stats" => {
                arity(0, 0)?;
                self.write_stats(out);
            }
            b"clear_stats" => {
                arity(0, 0)?;
                for c in [
                    &self.stats.read_errors,
                    &self.stats.write_errors,
                    &self.stats.remap_ops,
                    &self.stats.unremap_ops,
                    &self.stats.split_bios,
                    &self.stats.held_bios,
                ] {
                    c.store(0, Relaxed);
                }
                return Ok(false);
            }
            _ => {
                pr_warn!("unknown message '{}' (try 'help')\n", BStr::from_bytes(verb));
                return Err(EINVAL);
            }
        }
        Ok(true)
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
    fn route(&self, bio: &mut Bio, rel: Sector, dest: Dest) {
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

    /// Block number of a device sector inside this target.
    fn block_of(&self, ti: &TargetRef, sector: u64) -> Result<u64> {
        if sector < ti.begin() || sector - ti.begin() >= ti.len() {
            pr_warn!("sector {} is outside the target ({}..{})\n", sector, ti.begin(), ti.begin() + ti.len());
            return Err(EINVAL);
        }
        Ok((sector - ti.begin()) >> self.shift)
    }

    fn main_sector(&self, block: u64) -> Sector {
        self.main_offset + (block << self.shift)
    }

    fn slot_sector(&self, slot: u64) -> Sector {
        self.data_start + (slot << self.shift)
    }

    /// Copy one block between devices in chunks.
    fn copy(&self, from: &DmDev, from_sector: Sector, to: &DmDev, to_sector: Sector) -> Result {
        let bytes = self.opts.block_size as usize;
        let chunk = bytes.min(COPY_CHUNK);
        let mut buf = KVec::new();
        buf.extend_with(chunk, 0u8, GFP_KERNEL)?;
        let mut done = 0usize;
        while done < bytes {
            let s = (done >> 9) as u64;
            from.rw(from_sector + s, &mut buf, false)?;
            to.rw(to_sector + s, &mut buf, true)?;
            done += chunk;
        }
        Ok(())
    }

    /// Stop new bios from reaching `block` and wait for those in flight.
    fn start_move(&self, block: u64) {
        self.gate.moving.store(block + 1, SeqCst);
        let old = self.gate.epoch.fetch_add(1, SeqCst) & 1;
        while self.gate.in_flight(old) != 0 {
            kernel::time::delay::fsleep(kernel::time::Delta::from_micros(200));
        }
    }

    /// Let bios reach blocks again; resubmit the held ones with the current index.
    fn end_move(&self) {
        // Take the held bios under the lock, submit them after dropping it (submission may sleep).
        let mut held = {
            let mut guard = self.gate.held.lock();
            self.gate.moving.store(0, SeqCst);
            core::mem::replace(&mut *guard, BioList::new())
        };
        while let Some(mut h) = held.pop() {
            let bio = h.bio();
            let tag = self.gate.enter();
            bio.data().tag = tag;
            let rel = bio.sector() - self.begin;
            let piece = remap::plan(&IndexLookup(&self.index), rel, bio.sectors(), self.shift);
            self.route(bio, rel, piece.dest);
            h.submit();
        }
    }

    /// Move `block` to a spare slot. `Ok(false)` if it already is on the spare.
    fn remap_block(&self, block: u64) -> Result<bool> {
        let _ctl = self.ctl.lock();
        if let Some(v) = self.index.get(block) {
            if matches!(Entry::decode(v), Entry::Remapped { .. }) {
                return Ok(false);
            }
        }
        let (slot, free, total) = {
            let mut a = self.slots.lock();
            let slot = a.alloc();
            (slot, a.free(), a.total())
        };
        let Some(slot) = slot else {
            self.event(uapi::EV_SPARE_EXHAUSTED, self.begin + (block << self.shift), 0, 0);
            return Err(ENOSPC);
        };
        self.start_move(block);
        let res = self
            .copy(&self.main, self.main_sector(block), &self.spare, self.slot_sector(slot))
            .and_then(|()| self.index.store(block, Entry::Remapped { slot }.encode()));
        match res {
            Ok(()) => {
                self.entries.fetch_add(1, SeqCst);
                self.stats.remap_ops.fetch_add(1, Relaxed);
                self.event(uapi::EV_REMAP, self.begin + (block << self.shift), slot, 0);
                self.check_spare_low(free, total);
            }
            Err(_) => {
                let _ = self.slots.lock().free_slot(slot);
            }
        }
        self.end_move();
        res.map(|()| true)
    }

    /// Move `block` back to main and free its slot.
    fn unremap_block(&self, block: u64) -> Result {
        let _ctl = self.ctl.lock();
        let slot = match self.index.get(block).map(Entry::decode) {
            Some(Entry::Remapped { slot }) => slot,
            _ => {
                pr_warn!("unremap: block {} is not remapped\n", block);
                return Err(ENOENT);
            }
        };
        self.start_move(block);
        let res = self.copy(&self.spare, self.slot_sector(slot), &self.main, self.main_sector(block));
        if res.is_ok() {
            self.index.remove(block);
            self.entries.fetch_sub(1, SeqCst);
            // Nothing can reach the slot any more: every bio routed with the old entry has
            // completed (the epoch drain) and new ones see the block on main.
            let (free, total) = {
                let mut a = self.slots.lock();
                let _ = a.free_slot(slot);
                (a.free(), a.total())
            };
            self.stats.unremap_ops.fetch_add(1, Relaxed);
            self.event(uapi::EV_UNREMAP, self.begin + (block << self.shift), slot, 0);
            self.check_spare_low(free, total);
        }
        self.end_move();
        res
    }

    fn list(&self, ti: &TargetRef, from: u64, max: u64, out: &mut Emitter<'_>) {
        let mut next = from;
        let mut n = 0;
        while n < max && next < self.blocks {
            let Some((b, v)) = self.index.first_in(next, self.blocks - 1) else { break };
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
        let _ = write!(
            out,
            "remapped={}\npending={}\nspare_used={}\nspare_total={}\nblock_size={}\nread_errors={}\nwrite_errors={}\nremap_ops={}\nunremap_ops={}\nsplit_bios={}\nheld_bios={}\n",
            self.entries.load(Relaxed),
            0,
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

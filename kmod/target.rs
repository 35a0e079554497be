// SPDX-License-Identifier: GPL-2.0

//! The `remap` target: safe Rust over the [`crate::dm`] wrapper.
//!
//! I/O path: a bio that overlaps no remapped block goes to main exactly like dm-linear (one
//! atomic load decides it when nothing is remapped). Otherwise [`remap::plan`] cuts the bio at
//! block boundaries and each piece goes to main or to its spare slot; index lookups are
//! lock-free (RCU xarray).
//!
//! Moving blocks (the `remap` and `unremap` messages, healing after an I/O error) must not lose a
//! write that races with the copy. Every bio that may touch a moving block is counted in one of
//! two epochs before it is routed; the mover publishes the range of blocks it moves, flips the
//! epoch and waits until the old epoch has no bios in flight, so nothing reaches the range from
//! then on without seeing it. Bios for the range are held and resubmitted once the index points
//! to the new place and that place is durable.
//!
//! Durability: the remap index lives on the spare as two checksummed, sequence-numbered copies
//! (the shared [`metadata`] codec). Every change of the index is committed, by writing the whole
//! index to the older copy and its superblock with a preflush and FUA, before any bio sees the
//! change and before the operation is acknowledged; a batch of remaps shares one commit.
//!
//! Errors: a bio that fails on main is taken over (`end_io` returns incomplete) and handled by the
//! target's worker: a failed write goes to fresh spare slots; a failed read is retried, and the
//! recovered data is moved to a slot, or the block is marked pending and the read fails. A write
//! to a pending block is deferred to the worker from `map` and heals the block. Errors from the
//! spare fail the bio.

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use kernel::new_mutex;
use kernel::new_spinlock;
use kernel::new_spinlock_irq;
use kernel::prelude::*;
use kernel::str::BStr;
use kernel::sync::{Mutex, MutexGuard, SpinLock, SpinLockIrq};

use crate::alloc::{words_for, SlotAllocator};
use crate::dm::{
    self, uapi, Args, Bio, BioList, BlkStatus, CtrContext, CtrError, DevClaims, DevUse,
    DeviceCallout, DmDev, Emitter, EndIo, HeldBio, MapBio, MapResult, NoIo, QueueLimits, RcuIndex,
    Sector, StatusKind, StatusType,
    TableNotifier, Target, TargetRef, Worker, WriteMode,
};
use crate::events;
use crate::metadata::{
    self, CopyError, CopyId, CopyStatus, Expect, Field, Geometry, LoadError, MainDevice, SetInfo,
    MD_BLOCK_SIZE,
};
use crate::remap::{self, Dest, Entry, Lookup};
use crate::table::{self, Options, TableError};

/// Target version reported to device-mapper.
pub(crate) const VERSION: [u32; 3] = [0, 3, 0];

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
/// Most blocks moved under one hold and made durable by one commit.
const MOVE_MAX: u64 = 4096;
/// Copy buffer size for block moves (and batched metadata writes); `COPY_CHUNK_MIN` when memory
/// is too fragmented for it.
const COPY_CHUNK: usize = 256 * 1024;
const COPY_CHUNK_MIN: usize = 64 * 1024;
/// Records for pending blocks each metadata copy has room for beyond one per spare slot.
const EXTRA_RECORDS: u64 = 16 * metadata::RECORDS_PER_BLOCK as u64;
/// Bits of the packed moving range used by its length.
const MOVE_LEN_BITS: u32 = 16;

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
    /// Errors on main that are not media errors (see [`error_class`]), passed through.
    passthrough_errors: AtomicU64,
    /// Failed flushes (main or spare), passed through.
    flush_errors: AtomicU64,
}

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

/// Per-CPU counter slots of the bio gate.
const COUNTER_SLOTS: usize = 32;

/// Bios counted in and out of one epoch on one CPU slot, on their own cache line.
#[repr(C, align(64))]
struct CounterSlot {
    enters: AtomicU64,
    leaves: AtomicU64,
}

/// Bio counting for block moves (see the module documentation).
struct Gate {
    /// Range being moved: `(first + 1) << MOVE_LEN_BITS | len`, 0 when none.
    moving: AtomicU64,
    epoch: AtomicU64,
    /// Bios that entered and left each epoch, spread over per-CPU slots (one cache line each)
    /// so that counting does not bounce a shared line between CPUs. Counts only grow (64 bits do
    /// not wrap); a bio may leave on another CPU than it entered on, so only the sums over all
    /// slots mean anything (see [`Gate::in_flight`]).
    inflight: KBox<[[CounterSlot; COUNTER_SLOTS]; 2]>,
    held: Pin<KBox<SpinLock<BioList>>>,
}

impl Gate {
    /// Count a bio in the current epoch; returns its tag (epoch + 1).
    fn enter(&self) -> u64 {
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
    fn leave(&self, tag: u64) {
        if tag == 1 || tag == 2 {
            self.slot(tag - 1).leaves.fetch_add(1, SeqCst);
        }
    }
}

/// `(first block, blocks)` of a packed moving range.
fn unpack_move(v: u64) -> (u64, u64) {
    ((v >> MOVE_LEN_BITS) - 1, v & ((1 << MOVE_LEN_BITS) - 1))
}

/// Lookup adapter from the kernel index to the shared planning code.
struct IndexLookup<'a>(&'a RcuIndex);

impl Lookup for IndexLookup<'_> {
    fn first_in(&self, first: u64, last: u64) -> Option<(u64, Entry)> {
        self.0
            .first_in(first, last)
            .map(|(b, v)| (b, Entry::decode(v)))
    }
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

/// State that block moves and commits change, under the control mutex.
struct Meta {
    /// The remap set on the spare.
    set: SetInfo,
    /// Sequence number of the next commit (never reused, even after a failed commit).
    next_seq: u64,
    /// The copy the next commit writes.
    target: CopyId,
    /// Newest sealed sequence number on the spare when it was last read or written: another
    /// table's commit changes it (checked before this table goes live).
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

fn table_err(e: TableError) -> CtrError {
    CtrError::inval(e.message())
}

fn nomem(msg: &'static CStr) -> impl FnOnce(Error) -> CtrError {
    move |err| CtrError { msg, err }
}

fn kvec_zeroed<T: Copy>(
    n: usize,
    v: T,
    msg: &'static CStr,
) -> core::result::Result<KVec<T>, CtrError> {
    let mut k = KVec::new();
    k.extend_with(n, v, GFP_KERNEL)
        .map_err(|_| CtrError { msg, err: ENOMEM })?;
    Ok(k)
}

/// Like [`kvec_zeroed`], vmalloc-backed: for memory that grows with the devices' size.
fn kvvec_zeroed<T: Copy>(
    n: usize,
    v: T,
    msg: &'static CStr,
) -> core::result::Result<KVVec<T>, CtrError> {
    let mut k = KVVec::new();
    k.extend_with(n, v, GFP_KERNEL)
        .map_err(|_| CtrError { msg, err: ENOMEM })?;
    Ok(k)
}

/// Whether the registered device use `old` excludes `new`: another mapped device may not use
/// the device at all; two targets of one table may not share a spare or overlapping main ranges;
/// another table of the same mapped device (a reload) uses the same devices.
fn claim_conflict(old: &DevUse, new: &DevUse) -> bool {
    if old.dev != new.dev {
        return false;
    }
    if old.md != new.md {
        return true;
    }
    old.table == new.table && old.start < new.start + new.len && new.start < old.start + old.len
}

/// Refuse devices another `remap` target uses (see [`claim_conflict`]); register ours.
fn claim(
    ctx: &CtrContext,
    main: &DmDev,
    main_offset: Sector,
    spare: &DmDev,
) -> core::result::Result<DevClaims, CtrError> {
    let md = ctx.devt();
    let table = ctx.table_id();
    let uses = [
        DevUse {
            md,
            table,
            dev: main.devt(),
            start: main_offset,
            len: ctx.len(),
        },
        DevUse {
            md,
            table,
            dev: spare.devt(),
            start: 0,
            len: spare.sectors().max(1),
        },
    ];
    dm::claim_devices(&uses, claim_conflict).map_err(|e| match e {
        Ok(other) => {
            let role = if other.dev == main.devt() {
                "Main"
            } else {
                "Spare"
            };
            let (dmaj, dmin) = (other.dev >> 20, other.dev & 0xf_ffff);
            let msg = if other.md == md {
                dm::ctr_text(
                    format_args!(
                        "{} device {}:{} is used by another remap target of this table",
                        role, dmaj, dmin
                    ),
                    c"Main or spare device is used by another remap target of this table",
                )
            } else {
                dm::ctr_text(
                    format_args!(
                        "{} device {}:{} is already used by remap device {}:{}",
                        role,
                        dmaj,
                        dmin,
                        other.md >> 20,
                        other.md & 0xf_ffff
                    ),
                    c"Main or spare device is already used by another remap device",
                )
            };
            CtrError::inval(msg)
        }
        Err(err) => CtrError {
            msg: c"Cannot allocate target context",
            err,
        },
    })
}

/// Why the metadata on the spare cannot be used, as a constructor error.
fn load_err(e: &LoadError, main_id_given: bool) -> CtrError {
    let msg = match e {
        LoadError::Mismatch { field: Field::BlockSize, .. } => c"Spare metadata has another block_size than the table",
        LoadError::Mismatch { field: Field::MainOffset, .. } => c"Spare metadata has another main offset than the table",
        LoadError::Mismatch { field: Field::MainId, .. } if !main_id_given => {
            c"Spare metadata identifies its main device by a main_id; the table has none (add main_id:<id>, see dmremap inspect)"
        }
        LoadError::Mismatch { field: Field::MainId, .. } => {
            c"Spare belongs to another main device (main_id differs; see dmremap inspect)"
        }
        LoadError::Mismatch { .. } => c"Spare belongs to another main device (metadata identity differs)",
        LoadError::NoValidCopy { .. } => {
            c"Spare metadata unreadable or corrupt in both copies; refusing to format it (see dmremap inspect)"
        }
        LoadError::SpareTooSmall { .. } => c"Spare device is too small for metadata",
        _ => c"Cannot load the spare metadata",
    };
    CtrError::inval(msg)
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

        let main = ctx
            .get_device(main_path)
            .map_err(nomem(c"Main device lookup failed"))?;
        let main_sectors = main.sectors();
        if parsed.main_offset >= main_sectors {
            return Err(CtrError::inval(
                c"Main device offset is beyond the end of the device",
            ));
        }
        if main_sectors - parsed.main_offset < ctx.len() {
            return Err(CtrError::inval(
                c"Main device too small for the target length",
            ));
        }
        let spare = ctx
            .get_device(spare_path)
            .map_err(nomem(c"Spare device lookup failed"))?;
        if spare.devt() == main.devt() {
            return Err(CtrError::inval(
                c"Spare device must differ from the main device",
            ));
        }
        if opts.block_size < main.logical_block_size()
            || opts.block_size < spare.logical_block_size()
        {
            return Err(CtrError::inval(
                c"block_size is smaller than a device's logical block size",
            ));
        }
        let block_sectors = opts.block_sectors();
        let shift = block_sectors.trailing_zeros();
        if parsed.main_offset % block_sectors != 0 {
            return Err(CtrError::inval(
                c"Main device offset must be a multiple of block_size",
            ));
        }
        let claims = claim(ctx, &main, parsed.main_offset, &spare)?;
        let geometry = Geometry::for_spare(spare.sectors(), opts.block_size, EXTRA_RECORDS)
            .map_err(|_| {
                CtrError::inval(c"Spare device is too small for metadata and one block")
            })?;
        let blocks = ctx.len().div_ceil(block_sectors);

        // The table's main_id (the disk's stable identity); without one, the kernel name.
        let mut kname = [0u8; 64];
        let id: &[u8] = match opts.main_id() {
            Some(id) => id,
            None => main.disk_name(&mut kname),
        };
        let main_id = MainDevice::id_from(id).ok_or(CtrError::inval(
            c"Main device has no usable name for the metadata identity",
        ))?;
        let mut md_name = [0u8; metadata::NAME_LEN];
        let name = SetInfo::name_from(ctx.md_name(&mut md_name)).unwrap_or([0; metadata::NAME_LEN]);
        let mut uuid = [0u8; metadata::UUID_LEN];
        while uuid == [0; metadata::UUID_LEN] {
            dm::random_bytes(&mut uuid);
        }
        let set = SetInfo {
            uuid,
            main: MainDevice {
                sectors: main_sectors,
                offset: parsed.main_offset,
                id: main_id,
            },
            geometry,
            features_compat: 0,
            name,
            target_begin: ctx.begin(),
            target_len: ctx.len(),
        };

        let bits = kvvec_zeroed(
            words_for(geometry.data_slots),
            0u64,
            c"Cannot allocate the spare slot bitmap",
        )?;
        let allocator = SlotAllocator::new(bits, geometry.data_slots)
            .map_err(|_| CtrError::inval(c"Cannot set up the spare slot allocator"))?;
        let slots = KBox::pin_init(new_spinlock!(allocator, "dm_remap:slots"), GFP_KERNEL)
            .map_err(nomem(c"Cannot allocate target context"))?;
        let meta = Meta {
            set,
            next_seq: 1,
            target: CopyId::A,
            disk_seq: 0,
            repair: false,
            current: false,
            uncertain: KVVec::new(),
            mdbuf: kvec_zeroed(MD_BLOCK_SIZE, 0u8, c"Cannot allocate the metadata buffer")?,
            buf: kvec_zeroed(
                (opts.block_size as usize).max(COPY_CHUNK),
                0u8,
                c"Cannot allocate the copy buffer",
            )
            .or_else(|_| {
                kvec_zeroed(
                    (opts.block_size as usize).max(COPY_CHUNK_MIN),
                    0u8,
                    c"Cannot allocate the copy buffer",
                )
            })?,
            undo: {
                let mut u = KVec::new();
                u.reserve(MOVE_MAX as usize, GFP_KERNEL)
                    .map_err(|_| CtrError {
                        msg: c"Cannot allocate target context",
                        err: ENOMEM,
                    })?;
                u
            },
        };
        let ctl = KBox::pin_init(new_mutex!(meta, "dm_remap:ctl"), GFP_KERNEL)
            .map_err(nomem(c"Cannot allocate target context"))?;
        let held = KBox::pin_init(new_spinlock!(BioList::new(), "dm_remap:held"), GFP_KERNEL)
            .map_err(nomem(c"Cannot allocate target context"))?;
        let deferred = KBox::pin_init(
            new_spinlock_irq!(BioList::new(), "dm_remap:deferred"),
            GFP_KERNEL,
        )
        .map_err(nomem(c"Cannot allocate target context"))?;
        let index = RcuIndex::new().map_err(nomem(c"Cannot allocate the remap index"))?;
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
        )
        .map_err(|_| CtrError {
            msg: c"Cannot allocate target context",
            err: ENOMEM,
        })?;

        // One empty flush per underlying device: flushes reach main and spare.
        ctx.set_num_flush_bios(2);
        // No write-zeroes: on a dying main it fails like a write; ordinary zero writes heal.
        ctx.set_num_discard_bios(1);
        let notifier = ctx
            .table_notifier()
            .map_err(nomem(c"Cannot allocate target context"))?;
        let worker = ctx
            .worker::<Self>()
            .map_err(nomem(c"Cannot allocate the target's workqueue"))?;
        let t = RemapTarget {
            worker,
            devt: ctx.devt(),
            notifier,
            spare_low: AtomicBool::new(false),
            exhausted: AtomicBool::new(false),
            meta_failed: AtomicBool::new(false),
            begin: ctx.begin(),
            main,
            main_offset: parsed.main_offset,
            spare,
            data_start: geometry.data_start,
            opts,
            shift,
            len: ctx.len(),
            blocks,
            main_blocks: main_sectors >> shift,
            index,
            entries: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            slots,
            ctl,
            deferred,
            gate: Gate {
                moving: AtomicU64::new(0),
                epoch: AtomicU64::new(0),
                inflight,
                held,
            },
            stats: Stats::default(),
            _claims: claims,
        };
        {
            let mut m = t.ctl.lock();
            t.load(&mut m, true)?;
        }
        Ok(t)
    }

    fn map(&self, ti: &TargetRef, bio: &mut MapBio<'_>) -> MapResult {
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
        let mut tag = if write { self.gate.enter() } else { 0 };
        let moving = self.gate.moving.load(SeqCst);
        if moving == 0 && self.entries.load(SeqCst) == 0 {
            bio.save_data(tag);
            bio.set_dev(&self.main);
            bio.set_sector(self.main_offset + rel);
            return MapResult::Remapped;
        }
        if tag == 0 {
            // Reads that may go to the spare are counted too: unremap frees slots.
            tag = self.gate.enter();
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
            let mut held = self.gate.held.lock();
            if self.gate.moving.load(SeqCst) == moving {
                held.push(bio);
                self.stats.held_bios.fetch_add(1, Relaxed);
                return MapResult::Submitted;
            }
            drop(held);
            // The move finished meanwhile: enter again and look again (another move may have
            // started since).
            tag = self.gate.enter();
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

    fn end_io(&self, _ti: &TargetRef, bio: &mut Bio, error: BlkStatus) -> EndIo {
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

    fn work(&self, _ti: &TargetRef) {
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
        if self.meta_failed.load(Relaxed) {
            // A failed commit scheduled a repair: rewrite the copy it damaged (once per run).
            let mut m = self.ctl.lock();
            if m.repair && m.current {
                let _ = self.commit(&mut m);
            }
        }
    }

    fn presuspend(&self, _ti: &TargetRef) {
        // Every change is committed before it is used; what may be left is the rewrite of a
        // copy found damaged or hit by a failed commit.
        let _noio = NoIo::begin();
        let mut m = self.ctl.lock();
        if m.repair {
            let _ = self.commit(&mut m);
        }
    }

    fn preresume(&self, _ti: &TargetRef) -> Result {
        // The device is suspended with bios queued: allocate without I/O.
        let _noio = NoIo::begin();
        let mut m = self.ctl.lock();
        // Another table of this device (the one this table replaces) may have committed since
        // this one was loaded: load again if the spare changed.
        let disk_seq = {
            let Meta { mdbuf, .. } = &mut *m;
            metadata::probe(&mut SpareIo(&self.spare), self.spare.sectors(), mdbuf)
                .map(|p| p.max_seq)
                .map_err(|_| EIO)?
        };
        if disk_seq != m.disk_seq {
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

    fn message(&self, ti: &TargetRef, mut args: Args<'_>, out: &mut Emitter<'_>) -> Result<bool> {
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

/// `BioData::flags`: the worker ended the bio; its status is final.
const BIO_HANDLED: u32 = 1;
/// `BioData::flags`: an empty flush.
const BIO_FLUSH: u32 = 2;

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

    /// Hand a bio to the worker. Any context.
    fn defer(&self, bio: &mut Bio) {
        self.deferred.lock().push(bio);
        self.worker.kick();
    }

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

    // ---- metadata ---------------------------------------------------------------------------

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
    fn load(&self, m: &mut Meta, may_format: bool) -> core::result::Result<(), CtrError> {
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
        let mut scratch = kvvec_zeroed(words, 0u64, c"Cannot allocate the metadata bitmap")?;
        let mut entries = 0u64;
        let mut pending = 0u64;
        let res = {
            let Meta { mdbuf, .. } = &mut *m;
            metadata::load(
                &mut SpareIo(&self.spare),
                spare_sectors,
                &expect,
                mdbuf,
                &mut scratch,
                |b, e| {
                    if let Entry::Remapped { slot } = e {
                        self.slots
                            .lock()
                            .mark_allocated(slot)
                            .map_err(|_| metadata::SinkError)?;
                    } else {
                        pending += 1;
                    }
                    self.index
                        .store(b, e.encode())
                        .map_err(|_| metadata::SinkError)?;
                    entries += 1;
                    Ok(())
                },
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
                m.disk_seq = l.next_seq - 1;
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
                self.seq.store(l.sb.seq, SeqCst);
                self.pending.store(pending, SeqCst);
                self.entries.store(entries, SeqCst);
                if matches!(l.other, CopyStatus::Bad(CopyError::OtherSet)) {
                    pr_info!("{}: metadata copy {} predates a migration or rename; it is rewritten before the device goes live\n",
                        self.spare.name(), l.winner.other().name());
                } else if l.other_bad() {
                    pr_warn!("{}: metadata copy {} is damaged; it is rewritten before the device goes live\n",
                        self.spare.name(), l.winner.other().name());
                }
                pr_info!(
                    "{}: loaded metadata seq {} ({} remapped, {} pending)\n",
                    self.spare.name(),
                    l.sb.seq,
                    entries - pending,
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

    /// Write the whole index as the next metadata copy and make it durable: record blocks, then
    /// the superblock with a preflush (everything written before, data slots included, is
    /// durable first) and FUA.
    fn commit(&self, m: &mut Meta) -> Result {
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
        let res = (|| -> Result {
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
            let (sector, _) = enc.finish(mdbuf).map_err(|_| EINVAL)?;
            self.spare.write(sector, mdbuf, WriteMode::FlushFua)
        })();
        match res {
            Ok(()) => {
                m.target = copy.other();
                m.disk_seq = seq;
                m.repair = false;
                // The copy a failed commit may have reached is overwritten, the other one
                // predates the slots that commit took: they are free again.
                for &slot in m.uncertain.iter() {
                    self.free_slot(slot);
                }
                m.uncertain.clear();
                self.seq.store(seq, SeqCst);
                self.meta_failed.store(false, Relaxed);
                self.stats.commits.fetch_add(1, Relaxed);
            }
            Err(e) => {
                // The copy written to is now invalid (or, if the error came after the write
                // reached the disk, valid with this commit); the other one still holds the
                // previous commit. The next commit, or the repair it schedules, writes the same
                // copy again.
                m.disk_seq = seq;
                m.repair = true;
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

    /// Record a change of the index for the move in progress (undone if its commit fails).
    fn set_entry(&self, m: &mut Meta, block: u64, e: Entry) -> Result {
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
    fn account(&self, old: Option<u64>, new: Option<u64>) {
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
    fn commit_changes(&self, m: &mut Meta) -> Result {
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

    // ---- moves ------------------------------------------------------------------------------

    /// The control state for a change of the index, refused (`EBUSY`) while the index is not
    /// known to match the spare (see `Meta::current`).
    fn ctl_for_change(&self) -> Result<MutexGuard<'_, Meta>> {
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

    /// Stop new bios from reaching blocks `first..first + len` and wait for those in flight.
    fn start_move(&self, first: u64, len: u64) {
        self.gate
            .moving
            .store(((first + 1) << MOVE_LEN_BITS) | len, SeqCst);
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

    /// Read `n` blocks of main from `first` on into the copy buffer. The part of a partial last
    /// block past the target's end is not read but zeroed.
    fn read_main(&self, m: &mut Meta, first: u64, n: usize) -> Result {
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
    fn write_slot(&self, m: &Meta, off: usize, slot: u64) -> Result {
        let buf = m.buf.get(off..off + self.block_bytes()).ok_or(EINVAL)?;
        self.spare
            .write(self.slot_sector(slot), buf, WriteMode::Plain)
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
                Err(_) if n > 1 => (b..b + n).try_for_each(|x| {
                    self.read_main(&mut m, x, 1)
                        .and_then(|()| self.move_from_buf(&mut m, x, 1, &mut already))
                }),
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
            let mut r = m
                .buf
                .get(off..off + run as usize * bb)
                .ok_or(EINVAL)
                .and_then(|buf| {
                    self.spare
                        .write(self.slot_sector(slot0), buf, WriteMode::Plain)
                });
            // Slots entered in the index so far (their undo frees them if the commit fails).
            let mut set = 0;
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
        let bytes = self.block_bytes();
        let res = (|| -> Result {
            let buf = m.buf.get_mut(..bytes).ok_or(EINVAL)?;
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
        })();
        let res = res.and_then(|()| self.commit_changes(&mut m));
        self.end_move();
        res
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

    // ---- errors -----------------------------------------------------------------------------

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
            let durable = if wrote_main {
                self.main.flush()
            } else {
                Ok(())
            }
            .and_then(|()| {
                if m.undo.is_empty() {
                    self.spare.flush()
                } else {
                    self.commit_changes(&mut m)
                }
            });
            if durable.is_err() {
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
        let slot = self.alloc_slot(block).ok_or(fail)?;
        let r = self
            .take_from_bio(m, bio, boff, ioff, n)
            .and_then(|()| self.write_slot(m, 0, slot))
            .and_then(|()| self.set_entry(m, block, Entry::Remapped { slot }));
        if r.is_err() {
            self.free_slot(slot);
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
            if let Some(slot) = self.alloc_slot(block) {
                let r = self
                    .write_slot(m, 0, slot)
                    .and_then(|()| self.set_entry(m, block, Entry::Remapped { slot }));
                if r.is_err() {
                    self.free_slot(slot);
                }
            }
        }
        Ok(())
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
            "commit_errors={}\ncommits={}\nfailed_reads={}\nflush_errors={}\nhealed_writes={}\nmetadata_seq={}\npassthrough_errors={}\nrecovered_reads={}\n",
            s.commit_errors.load(Relaxed),
            s.commits.load(Relaxed),
            s.failed_reads.load(Relaxed),
            s.flush_errors.load(Relaxed),
            s.healed_writes.load(Relaxed),
            self.seq.load(Relaxed),
            s.passthrough_errors.load(Relaxed),
            s.recovered_reads.load(Relaxed),
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

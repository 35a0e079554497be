// SPDX-License-Identifier: GPL-2.0

//! The constructor: table arguments, devices, exclusive use, memory, and the first load of the
//! metadata.

use core::sync::atomic::{AtomicBool, AtomicU64};
use kernel::alloc::{Allocator, Vec};
use kernel::new_mutex;
use kernel::new_spinlock;
use kernel::new_spinlock_irq;
use kernel::prelude::*;

use super::gate::Gate;
use super::{Meta, RemapTarget, Stats, MOVE_MAX};
use crate::alloc::{storage_words, SlotAllocator};
use crate::dm::{
    self, Args, BioList, CtrContext, CtrError, DevClaims, DevUse, DmDev, RcuIndex, Sector,
};
use crate::metadata::{
    self, CopyId, Field, Geometry, LoadError, MainDevice, SetInfo, MD_BLOCK_SIZE,
};
use crate::table::{self, TableError};

/// Copy buffer size for block moves (and batched metadata writes); `COPY_CHUNK_MIN` when memory
/// is too fragmented for it.
const COPY_CHUNK: usize = 256 * 1024;

const COPY_CHUNK_MIN: usize = 64 * 1024;

/// Records for pending blocks each metadata copy has room for beyond one per spare slot.
const EXTRA_RECORDS: u64 = 16 * metadata::RECORDS_PER_BLOCK as u64;

fn table_err(e: TableError) -> CtrError {
    CtrError::inval(e.message())
}

fn nomem(msg: &'static CStr) -> impl FnOnce(Error) -> CtrError {
    move |err| CtrError { msg, err }
}

/// A vector of `n` copies of `v`, from allocator `A`: `KVec` for fixed-size buffers, `KVVec`
/// (vmalloc-backed) for memory that grows with the devices' size or with user input.
pub(super) fn vec_of<T: Copy, A: Allocator>(
    n: usize,
    v: T,
    msg: &'static CStr,
) -> core::result::Result<Vec<T, A>, CtrError> {
    let mut k = Vec::new();
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
pub(super) fn load_err(e: &LoadError, main_id_given: bool) -> CtrError {
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

impl RemapTarget {
    /// The constructor: `<main> <main offset> <spare> [options]`.
    pub(super) fn construct(
        ctx: &mut CtrContext,
        args: Args<'_>,
    ) -> core::result::Result<Self, CtrError> {
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

        let bits: KVVec<u64> = vec_of(
            storage_words(geometry.data_slots),
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
            journal: None,
            disk_seq: 0,
            repair: false,
            current: false,
            uncertain: KVVec::new(),
            mdbuf: vec_of(MD_BLOCK_SIZE, 0u8, c"Cannot allocate the metadata buffer")?,
            buf: vec_of(
                (opts.block_size as usize).max(COPY_CHUNK),
                0u8,
                c"Cannot allocate the copy buffer",
            )
            .or_else(|_| {
                vec_of(
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
        let gate = Gate::new(blocks).map_err(nomem(c"Cannot allocate target context"))?;
        let deferred = KBox::pin_init(
            new_spinlock_irq!(BioList::new(), "dm_remap:deferred"),
            GFP_KERNEL,
        )
        .map_err(nomem(c"Cannot allocate target context"))?;
        let index = RcuIndex::new().map_err(nomem(c"Cannot allocate the remap index"))?;

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
            checkpoint_due: AtomicBool::new(false),
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
            gate,
            stats: Stats::default(),
            _claims: claims,
        };
        {
            let mut m = t.ctl.lock();
            t.load(&mut m, true)?;
        }
        Ok(t)
    }
}

// SPDX-License-Identifier: GPL-2.0

//! The `remap` target: safe Rust over the [`crate::dm`] wrapper.

use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use kernel::prelude::*;
use kernel::str::BStr;

use crate::table::{self, Options, TableError};
use crate::dm::{
    Args, Bio, CtrContext, CtrError, DeviceCallout, DmDev, Emitter, MapResult, QueueLimits,
    Sector, StatusType, Target, TargetRef,
};

/// Target version reported to device-mapper.
pub(crate) const VERSION: [u32; 3] = [0, 1, 0];

const HELP: &str = "messages: help | ping\n";

/// Live counters.
#[derive(Default)]
struct Stats {
    read_errors: AtomicU64,
    write_errors: AtomicU64,
}

/// One `remap` target instance.
pub(crate) struct RemapTarget {
    main: DmDev,
    main_offset: Sector,
    spare: DmDev,
    opts: Options,
    spare_blocks: u64,
    stats: Stats,
}

fn table_err(e: TableError) -> CtrError {
    CtrError::inval(e.message())
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
            .map_err(|err| CtrError { msg: c"Main device lookup failed", err })?;
        let main_sectors = main.sectors();
        if parsed.main_offset >= main_sectors {
            return Err(CtrError::inval(c"Main device offset is beyond the end of the device"));
        }
        if main_sectors - parsed.main_offset < ctx.len() {
            return Err(CtrError::inval(c"Main device too small for the target length"));
        }
        let spare = ctx
            .get_device(spare_path)
            .map_err(|err| CtrError { msg: c"Spare device lookup failed", err })?;
        if spare.devt() == main.devt() {
            return Err(CtrError::inval(c"Spare device must differ from the main device"));
        }
        if opts.block_size < main.logical_block_size() || opts.block_size < spare.logical_block_size() {
            return Err(CtrError::inval(c"block_size is smaller than a device's logical block size"));
        }
        let block_sectors = opts.block_sectors();
        if parsed.main_offset % block_sectors != 0 {
            return Err(CtrError::inval(c"Main device offset must be a multiple of block_size"));
        }
        let spare_blocks = spare.sectors() / block_sectors;
        if spare_blocks == 0 {
            return Err(CtrError::inval(c"Spare device is smaller than one block"));
        }

        // One empty flush per underlying device: flushes reach main and spare.
        ctx.set_num_flush_bios(2);
        ctx.set_num_discard_and_write_zeroes_bios(1);
        Ok(RemapTarget {
            main,
            main_offset: parsed.main_offset,
            spare,
            opts,
            spare_blocks,
            stats: Stats::default(),
        })
    }

    fn map(&self, ti: &TargetRef, bio: &mut Bio) -> MapResult {
        if bio.is_empty_flush() {
            if bio.target_bio_nr() == 0 {
                bio.set_dev(&self.main);
            } else {
                bio.set_dev(&self.spare);
            }
            return MapResult::Remapped;
        }
        bio.set_dev(&self.main);
        let sector = bio.sector();
        bio.set_sector(self.main_offset + (sector - ti.begin()));
        MapResult::Remapped
    }

    fn end_io(&self, _ti: &TargetRef, bio: &mut Bio, error: u8) {
        if error != 0 {
            let counter = if bio.is_write() { &self.stats.write_errors } else { &self.stats.read_errors };
            counter.fetch_add(1, Relaxed);
        }
    }

    fn status(&self, _ti: &TargetRef, ty: StatusType, out: &mut Emitter<'_>) {
        // A cut status is flagged by device-mapper itself (it retries with a larger buffer).
        let _ = match ty {
            StatusType::Info => write!(
                out,
                "{} {} {}/{} {} {} {} {}",
                0, // remapped blocks
                0, // pending blocks
                0, // spare blocks used
                self.spare_blocks,
                self.stats.read_errors.load(Relaxed),
                self.stats.write_errors.load(Relaxed),
                0, // metadata sequence number
                "active"
            ),
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

    fn message(&self, _ti: &TargetRef, mut args: Args<'_>, out: &mut Emitter<'_>) -> Result<bool> {
        let verb = args.next().map(|v| v.to_bytes()).unwrap_or(b"");
        let extra = args.remaining();
        let known = matches!(verb, b"ping" | b"help");
        if !known || extra != 0 {
            if known {
                pr_warn!("message '{}' takes no arguments\n", BStr::from_bytes(verb));
            } else {
                pr_warn!("unknown message '{}' (try 'help')\n", BStr::from_bytes(verb));
            }
            return Err(EINVAL);
        }
        // A cut answer is still an answer: device-mapper sees the full buffer and retries larger.
        let _ = out.write_str(if verb == b"ping" { "pong" } else { HELP });
        Ok(true)
    }

    fn iterate_devices(&self, ti: &TargetRef, callout: &mut DeviceCallout) -> c_int {
        let r = callout.call(&self.main, self.main_offset, ti.len());
        if r != 0 {
            return r;
        }
        callout.call(&self.spare, 0, self.spare_blocks * self.opts.block_sectors())
    }

    fn io_hints(&self, _ti: &TargetRef, limits: &mut QueueLimits) {
        // Writes smaller than a block to a block awaiting repair need a read-modify-write: tell
        // upper layers the block size is the preferred minimum I/O.
        limits.raise_io_min(self.opts.block_size);
    }
}

/// Formats a C string (device names are ASCII `major:minor`).
struct DisplayCStr<'a>(&'a CStr);

impl core::fmt::Display for DisplayCStr<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        DisplayBytes(self.0.to_bytes()).fmt(f)
    }
}

/// Formats bytes from userspace as printable ASCII, other bytes as `?`.
struct DisplayBytes<'a>(&'a [u8]);

impl core::fmt::Display for DisplayBytes<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for &b in self.0 {
            f.write_char(if b.is_ascii_graphic() { b as char } else { '?' })?;
        }
        Ok(())
    }
}

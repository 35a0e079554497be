// SPDX-License-Identifier: GPL-2.0

//! Safe wrapper over the device-mapper target API.
//!
//! All device-mapper FFI of the module lives here: the bindings generated at build time
//! (`generated/dm_bindings.rs`), the C helpers (`helpers.c`), the callback trampolines and the
//! `struct target_type` registration. A target implements [`Target`] in safe Rust.

use core::marker::PhantomData;
use core::ptr;
use kernel::prelude::*;
use kernel::types::Opaque;

#[allow(
    dead_code,
    missing_docs,
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    improper_ctypes,
    unreachable_pub,
    unsafe_op_in_unsafe_fn,
    unused_imports,
    clippy::all,
    clippy::as_underscore,
    clippy::cast_lossless,
    clippy::ptr_as_ptr,
    clippy::ref_as_ptr,
    clippy::undocumented_unsafe_blocks
)]
mod raw {
    use kernel::bindings::{
        dma_data_direction, fwctl_rpc_scope, hrtimer_restart, irqreturn, lru_status,
    };
    use kernel::ffi;
    use pin_init::{MaybeZeroable, Zeroable};

    // Types the kernel's bindgen parameters blocklist, defined as the kernel crate does.
    type __kernel_size_t = usize;
    type __kernel_ssize_t = isize;
    type __kernel_ptrdiff_t = isize;

    include!("generated/dm_bindings.rs");
}

/// The userspace ABI structures and constants of `include/dm_remap.h`, generated from the header
/// itself at build time.
pub(crate) mod uapi {
    pub(crate) use super::raw::{
        dmr_bench, dmr_bench_op_DMR_BENCH_ALLOC as BENCH_ALLOC,
        dmr_bench_op_DMR_BENCH_ALLOC_FULL as BENCH_ALLOC_FULL,
        dmr_bench_op_DMR_BENCH_FILL_DENSE as BENCH_FILL_DENSE,
        dmr_bench_op_DMR_BENCH_FILL_SCATTERED as BENCH_FILL_SCATTERED,
        dmr_bench_op_DMR_BENCH_INSERT as BENCH_INSERT,
        dmr_bench_op_DMR_BENCH_LOOKUP as BENCH_LOOKUP, dmr_bench_op_DMR_BENCH_NOOP as BENCH_NOOP,
        dmr_event, dmr_event_type_DMR_EV_IO_ERROR as EV_IO_ERROR,
        dmr_event_type_DMR_EV_META_ERROR as EV_META_ERROR,
        dmr_event_type_DMR_EV_OVERFLOW as EV_OVERFLOW, dmr_event_type_DMR_EV_PENDING as EV_PENDING,
        dmr_event_type_DMR_EV_REMAP as EV_REMAP,
        dmr_event_type_DMR_EV_SPARE_EXHAUSTED as EV_SPARE_EXHAUSTED,
        dmr_event_type_DMR_EV_SPARE_LOW as EV_SPARE_LOW,
        dmr_event_type_DMR_EV_UNREMAP as EV_UNREMAP, dmr_events, dmr_events_seek,
        dmr_seek_whence_DMR_SEEK_NOW as SEEK_NOW, dmr_seek_whence_DMR_SEEK_OLDEST as SEEK_OLDEST,
        dmr_seek_whence_DMR_SEEK_SEQ as SEEK_SEQ, dmr_version, DMR_ABI_VERSION,
        DMR_BENCH_MAX_ENTRIES, DMR_BENCH_MAX_ITERATIONS, DMR_EVENT_RING, DMR_EVF_SPARE,
        DMR_EVF_WRITE, DMR_IOCTL_MAGIC,
    };

    // SAFETY: plain `repr(C)` structs of integers without padding: any bytes are a valid value.
    unsafe impl kernel::transmute::FromBytes for dmr_bench {}
    // SAFETY: as above, and every byte is initialised (no padding).
    unsafe impl kernel::transmute::AsBytes for dmr_bench {}
    // SAFETY: as for `dmr_bench`.
    unsafe impl kernel::transmute::FromBytes for dmr_version {}
    // SAFETY: as for `dmr_bench`.
    unsafe impl kernel::transmute::AsBytes for dmr_version {}
    // SAFETY: as for `dmr_bench`.
    unsafe impl kernel::transmute::FromBytes for dmr_events {}
    // SAFETY: as for `dmr_bench`.
    unsafe impl kernel::transmute::AsBytes for dmr_events {}
    // SAFETY: as for `dmr_bench`.
    unsafe impl kernel::transmute::AsBytes for dmr_event {}
    // SAFETY: as for `dmr_bench`.
    unsafe impl kernel::transmute::FromBytes for dmr_events_seek {}
    // SAFETY: as for `dmr_bench`.
    unsafe impl kernel::transmute::AsBytes for dmr_events_seek {}

    // The layout documented in the header; a change here is an ABI break.
    const _: () = assert!(core::mem::size_of::<dmr_version>() == 56);
    const _: () = assert!(core::mem::size_of::<dmr_bench>() == 112);
    const _: () = assert!(core::mem::offset_of!(dmr_bench, iterations) == 16);
    const _: () = assert!(core::mem::offset_of!(dmr_bench, index_bytes) == 80);
    const _: () = assert!(core::mem::offset_of!(dmr_bench, reserved) == 88);
    const _: () = assert!(core::mem::size_of::<dmr_event>() == 48);
    const _: () = assert!(core::mem::size_of::<dmr_events>() == 88);
    const _: () = assert!(core::mem::size_of::<dmr_events_seek>() == 48);
    const _: () = assert!(core::mem::offset_of!(dmr_events_seek, cursor) == 24);
}

/// Whether the calling task has CAP_SYS_ADMIN.
pub(crate) fn capable_sys_admin() -> bool {
    // SAFETY: `capable` only inspects the current task's credentials.
    unsafe { kernel::bindings::capable(kernel::bindings::CAP_SYS_ADMIN as c_int) }
}

/// Let other tasks run during a long loop in process context.
pub(crate) fn cond_resched() {
    // SAFETY: called only from process context (ioctl and message handlers).
    unsafe { raw::dmr_cond_resched() }
}

/// Number of the CPU running the caller (may change right after; callers use it as a hint).
pub(crate) fn current_cpu() -> u32 {
    // SAFETY: `raw_smp_processor_id` has no preconditions.
    unsafe { raw::dmr_current_cpu() }
}

/// Monotonic clock in nanoseconds. Any context.
pub(crate) fn ktime_ns() -> u64 {
    // SAFETY: `ktime_get_ns` has no preconditions.
    unsafe { raw::dmr_ktime_ns() }
}

/// Raises device-mapper's table event of a target (wakes `DM_DEV_WAIT` waiters) from a work
/// item; the work is cancelled when this is dropped, before the target and its table go away.
pub(crate) struct TableNotifier(*mut raw::dmr_notifier);

// SAFETY: the notifier is a work item usable from any thread; freeing cancels it synchronously.
unsafe impl Send for TableNotifier {}
// SAFETY: `raise` may run concurrently from any context (`schedule_work` is safe for that).
unsafe impl Sync for TableNotifier {}

impl TableNotifier {
    /// Ask for a table event soon. Any context, never sleeps.
    pub(crate) fn raise(&self) {
        // SAFETY: the notifier is live until dropped.
        unsafe { raw::dmr_notifier_raise(self.0) }
    }
}

impl Drop for TableNotifier {
    fn drop(&mut self) {
        // SAFETY: created by `dmr_notifier_new`, freed exactly once, in process context (target
        // destruction or a failed constructor).
        unsafe { raw::dmr_notifier_free(self.0) }
    }
}

/// 512-byte sectors.
pub(crate) type Sector = u64;

/// An error from a target constructor: the errno and the message for `ti->error`.
pub(crate) struct CtrError {
    /// Message shown by `dmsetup` and in the kernel log.
    pub(crate) msg: &'static CStr,
    /// Error code returned to device-mapper.
    pub(crate) err: Error,
}

impl CtrError {
    /// An `EINVAL` with a message.
    pub(crate) fn inval(msg: &'static CStr) -> Self {
        CtrError { msg, err: EINVAL }
    }
}

/// The arguments of a constructor or a message: an iterator over C strings, without allocation.
pub(crate) struct Args<'a> {
    argv: *mut *mut c_char,
    argc: usize,
    pos: usize,
    _p: PhantomData<&'a CStr>,
}

impl<'a> Args<'a> {
    /// # Safety
    ///
    /// `argv` must point to `argc` valid NUL-terminated strings that outlive `'a`.
    unsafe fn new(argc: c_uint, argv: *mut *mut c_char) -> Self {
        Args {
            argv,
            argc: argc as usize,
            pos: 0,
            _p: PhantomData,
        }
    }

    /// Number of arguments not yet taken.
    pub(crate) fn remaining(&self) -> usize {
        self.argc - self.pos
    }

    /// The argument at `i` (from the start), if there is one.
    pub(crate) fn get(&self, i: usize) -> Option<&'a CStr> {
        if i >= self.argc {
            return None;
        }
        // SAFETY: `i < argc`, so `argv[i]` is one of the valid strings promised by `new`, which
        // live for `'a`.
        Some(unsafe { CStr::from_char_ptr(*self.argv.add(i)) })
    }
}

impl<'a> Iterator for Args<'a> {
    type Item = &'a CStr;
    fn next(&mut self) -> Option<&'a CStr> {
        let s = self.get(self.pos)?;
        self.pos += 1;
        Some(s)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining(), Some(self.remaining()))
    }
}

impl ExactSizeIterator for Args<'_> {}

/// A device opened for a target with `dm_get_device`; released with `dm_put_device` on drop.
pub(crate) struct DmDev {
    ti: *mut raw::dm_target,
    dev: *mut raw::dm_dev,
}

// SAFETY: a `dm_dev` is a reference-counted handle owned by device-mapper; using it (submitting
// bios, reading its size) from any thread is allowed, and `dm_put_device` may run on any thread.
unsafe impl Send for DmDev {}
// SAFETY: all `&self` methods only read immutable properties of the device.
unsafe impl Sync for DmDev {}

impl DmDev {
    /// Size of the device in 512-byte sectors.
    pub(crate) fn sectors(&self) -> Sector {
        // SAFETY: `self.dev` is a device held by this target (type invariant).
        unsafe { raw::dmr_dev_nr_sectors(self.dev) }
    }

    /// Logical block size of the device in bytes.
    pub(crate) fn logical_block_size(&self) -> u32 {
        // SAFETY: `self.dev` is a device held by this target.
        unsafe { raw::dmr_dev_logical_block_size(self.dev) }
    }

    /// The device number.
    pub(crate) fn devt(&self) -> u32 {
        // SAFETY: `self.dev` is a device held by this target.
        unsafe { raw::dmr_dev_devt(self.dev) }
    }

    /// The device name as device-mapper shows it in tables (`major:minor`).
    pub(crate) fn name(&self) -> &CStr {
        // SAFETY: `dm_dev.name` is a NUL-terminated array inside the `dm_dev`, which lives as
        // long as `self`.
        unsafe { CStr::from_char_ptr(raw::dmr_dev_name(self.dev)) }
    }
}

/// How [`DmDev::read`] and [`DmDev::write`] issue a synchronous I/O.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteMode {
    /// A plain write: durable only after a later flush.
    Plain,
    /// Flush everything completed before, then write with forced unit access.
    FlushFua,
}

impl DmDev {
    /// Synchronous read of `buf.len()` bytes (a multiple of 512, else `EINVAL`) at `sector`.
    /// Any buffer works: kmalloc'd memory (`KVec`) is read into directly, other memory (the
    /// stack, vmalloc, an unaligned slice) through a bounce buffer. Process context only.
    pub(crate) fn read(&self, sector: Sector, buf: &mut [u8]) -> Result {
        let len = c_uint::try_from(buf.len()).map_err(|_| EINVAL)?;
        // SAFETY: `dev` is held by the target; `buf` is valid for writes of `len` bytes for the
        // duration of this synchronous call. The helper hands only direct-mapped, aligned memory
        // to the block layer and bounces any other buffer.
        let ret = unsafe { raw::dmr_dev_rw(self.dev, sector, buf.as_mut_ptr().cast(), len, 0) };
        if ret != 0 {
            return Err(Error::from_errno(ret));
        }
        Ok(())
    }

    /// Synchronous write of `buf` at `sector`; any buffer, as for [`DmDev::read`].
    pub(crate) fn write(&self, sector: Sector, buf: &[u8], mode: WriteMode) -> Result {
        let len = c_uint::try_from(buf.len()).map_err(|_| EINVAL)?;
        let flags = raw::DMR_RW_WRITE
            | match mode {
                WriteMode::Plain => 0,
                WriteMode::FlushFua => raw::DMR_RW_FUA | raw::DMR_RW_PREFLUSH,
            };
        // SAFETY: as for `read`; a write only reads the buffer, so the `*mut` made from a shared
        // reference is never written through.
        let ret = unsafe {
            raw::dmr_dev_rw(self.dev, sector, buf.as_ptr().cast_mut().cast(), len, flags)
        };
        if ret != 0 {
            return Err(Error::from_errno(ret));
        }
        Ok(())
    }

    /// Make every completed write durable (a cache flush). Process context only.
    pub(crate) fn flush(&self) -> Result {
        // SAFETY: `dev` is held by the target.
        let ret = unsafe { raw::dmr_dev_flush(self.dev) };
        if ret != 0 {
            return Err(Error::from_errno(ret));
        }
        Ok(())
    }

    /// The kernel's name of the device (`nvme0n1`, `vda1`), written into `buf`; the bytes before
    /// the terminating NUL are returned.
    pub(crate) fn disk_name<'b>(&self, buf: &'b mut [u8; 64]) -> &'b [u8] {
        // SAFETY: `dev` is held by the target; `buf` is writable for its length and the helper
        // always NUL-terminates within it.
        unsafe { raw::dmr_dev_disk_name(self.dev, buf.as_mut_ptr().cast(), buf.len() as c_uint) };
        let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        buf.get(..n).unwrap_or(&[])
    }
}

/// An implicit `GFP_NOIO` scope of the current task (`memalloc_noio_save`): until it is dropped,
/// no allocation of this task (the kernel crate's included) starts I/O to reclaim memory, so
/// code holding bios of a device cannot wait on writeback to that device. Scopes nest; the guard
/// is not `Send` (it must end on the task that began it).
pub(crate) struct NoIo {
    flags: c_uint,
    _task: PhantomData<*mut ()>,
}

impl NoIo {
    /// Begin a scope.
    pub(crate) fn begin() -> Self {
        // SAFETY: sets a flag of the current task; no preconditions.
        let flags = unsafe { raw::dmr_noio_save() };
        NoIo {
            flags,
            _task: PhantomData,
        }
    }
}

impl Drop for NoIo {
    fn drop(&mut self) {
        // SAFETY: restores the flag saved by `begin` on the same task (the guard is not `Send`).
        // Restoring out of order only leaves the task in a NOIO scope longer.
        unsafe { raw::dmr_noio_restore(self.flags) }
    }
}

/// Fill `buf` with random bytes.
pub(crate) fn random_bytes(buf: &mut [u8]) {
    // SAFETY: `buf` is writable for its length.
    unsafe { raw::dmr_random_bytes(buf.as_mut_ptr().cast(), buf.len() as c_uint) }
}

impl Drop for DmDev {
    fn drop(&mut self) {
        // SAFETY: `dev` was obtained by `dm_get_device` on `ti`, is put exactly once, and `ti` is
        // alive: targets drop their devices in the constructor's error path or in the destructor.
        unsafe { raw::dm_put_device(self.ti, self.dev) };
    }
}

/// A work item of one target on its own reclaim-safe workqueue. Dropping it waits for a run in
/// progress, so it must be dropped before anything its runs use.
pub(crate) struct Worker(*mut raw::dmr_worker);

// SAFETY: the C object is only kicked (any context) and freed once.
unsafe impl Send for Worker {}
// SAFETY: `kick` may run concurrently from any context.
unsafe impl Sync for Worker {}

impl Worker {
    /// Queue a run of [`Target::work`] (at most one is queued at a time). Any context.
    pub(crate) fn kick(&self) {
        // SAFETY: the worker is valid until dropped.
        unsafe { raw::dmr_worker_kick(self.0) }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // SAFETY: created by `dmr_worker_new`, freed once; waits for a running work item.
        unsafe { raw::dmr_worker_free(self.0) }
    }
}

/// The target being constructed.
pub(crate) struct CtrContext {
    ti: *mut raw::dm_target,
}

impl CtrContext {
    /// Open the device named by `path` (a path or `major:minor`) with the table's mode.
    pub(crate) fn get_device(&mut self, path: &CStr) -> Result<DmDev> {
        let mut dev: *mut raw::dm_dev = ptr::null_mut();
        // SAFETY: `ti` is the target under construction, its table is valid; `path` is a valid C
        // string; `dev` is a valid out-pointer.
        let ret = unsafe {
            let mode = raw::dm_table_get_mode((*self.ti).table);
            raw::dm_get_device(self.ti, path.as_char_ptr(), mode, &mut dev)
        };
        if ret != 0 {
            return Err(Error::from_errno(ret));
        }
        Ok(DmDev { ti: self.ti, dev })
    }

    /// Start of the target in the mapped device, in sectors.
    pub(crate) fn begin(&self) -> Sector {
        // SAFETY: `ti` is valid during construction.
        unsafe { (*self.ti).begin }
    }

    /// A table-event notifier for this target.
    pub(crate) fn table_notifier(&mut self) -> Result<TableNotifier> {
        // SAFETY: `ti` and its table are valid during construction.
        let n = unsafe { raw::dmr_notifier_new(self.ti) };
        if n.is_null() {
            return Err(ENOMEM);
        }
        Ok(TableNotifier(n))
    }

    /// A deferred-work item whose runs call [`Target::work`] of this target.
    pub(crate) fn worker<T: Target>(&mut self) -> Result<Worker> {
        // SAFETY: `ti` is valid; the callback matches the target type being constructed.
        let w = unsafe { raw::dmr_worker_new(self.ti, Some(work_cb::<T>)) };
        if w.is_null() {
            return Err(ENOMEM);
        }
        Ok(Worker(w))
    }

    /// Identity of the table being built: tells a reload of a mapped device (another table of
    /// the same device) from two targets of one table. Only compared, never dereferenced.
    pub(crate) fn table_id(&self) -> usize {
        // SAFETY: `ti` is valid during construction.
        unsafe { (*self.ti).table as usize }
    }

    /// Device number of the mapped device being constructed (`major << 20 | minor`).
    pub(crate) fn devt(&self) -> u32 {
        // SAFETY: a table under construction belongs to a live mapped device.
        unsafe { raw::dmr_target_devt(self.ti) }
    }

    /// Name of the mapped device being constructed, written into `buf`; the bytes before the
    /// terminating NUL are returned.
    pub(crate) fn md_name<'b>(&self, buf: &'b mut [u8; 128]) -> &'b [u8] {
        // SAFETY: a table under construction belongs to a live mapped device, whose name is a
        // NUL-terminated string; `buf` is writable for its length and strscpy NUL-terminates
        // within it.
        unsafe { raw::dmr_target_md_name(self.ti, buf.as_mut_ptr().cast(), buf.len() as c_uint) };
        let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        buf.get(..n).unwrap_or(&[])
    }

    /// Length of the target in sectors.
    pub(crate) fn len(&self) -> Sector {
        // SAFETY: `ti` is valid during construction.
        unsafe { (*self.ti).len }
    }

    /// How many empty flush bios `map` receives per flush (one per underlying device).
    pub(crate) fn set_num_flush_bios(&mut self, n: u32) {
        // SAFETY: `ti` is valid and not yet visible to I/O during construction.
        unsafe { (*self.ti).num_flush_bios = n };
    }

    /// How many bios `map` receives per discard request. Write-zeroes is not advertised (no
    /// write-zeroes bios): the block layer then zeroes with ordinary writes.
    pub(crate) fn set_num_discard_bios(&mut self, n: u32) {
        // SAFETY: as above.
        unsafe { (*self.ti).num_discard_bios = n };
    }
}

/// The type of status requested.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusType {
    /// Live counters (`dmsetup status`).
    Info,
    /// The constructor line (`dmsetup table`).
    Table,
    /// Measurement for the integrity subsystem.
    Ima,
}

/// Writes status or message output into device-mapper's buffer, always NUL-terminated; output
/// that does not fit is cut (device-mapper notices the full buffer and asks again with more room).
pub(crate) struct Emitter<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflow: bool,
}

impl<'a> Emitter<'a> {
    /// # Safety
    ///
    /// `result` must be valid for writes of `maxlen` bytes for `'a`.
    unsafe fn new(result: *mut c_char, maxlen: c_uint) -> Self {
        let buf: &mut [u8] = if result.is_null() || maxlen == 0 {
            &mut []
        } else {
            // SAFETY: guaranteed by the caller.
            unsafe { core::slice::from_raw_parts_mut(result.cast::<u8>(), maxlen as usize) }
        };
        if let Some(b) = buf.first_mut() {
            *b = 0;
        }
        Emitter {
            buf,
            len: 0,
            overflow: false,
        }
    }
}

impl core::fmt::Write for Emitter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        // Keep one byte for the terminating NUL.
        let room = self.buf.len().saturating_sub(self.len + 1);
        let n = s.len().min(room);
        if n < s.len() {
            self.overflow = true;
        }
        if let Some(dst) = self.buf.get_mut(self.len..self.len + n) {
            dst.copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
        }
        if let Some(b) = self.buf.get_mut(self.len) {
            *b = 0;
        }
        if self.overflow {
            Err(core::fmt::Error)
        } else {
            Ok(())
        }
    }
}

/// A device-mapper target instance, as seen by the callbacks.
#[repr(transparent)]
pub(crate) struct TargetRef(Opaque<raw::dm_target>);

impl TargetRef {
    /// # Safety
    ///
    /// `ti` must be a valid target for `'a`.
    unsafe fn from_raw<'a>(ti: *mut raw::dm_target) -> &'a TargetRef {
        // SAFETY: `TargetRef` is a transparent wrapper of `dm_target`; validity by the caller.
        unsafe { &*ti.cast::<TargetRef>() }
    }

    fn as_raw(&self) -> *mut raw::dm_target {
        self.0.get()
    }

    /// Start of the target in the mapped device, in sectors.
    pub(crate) fn begin(&self) -> Sector {
        // SAFETY: `begin` is set before the constructor runs and never changes.
        unsafe { (*self.as_raw()).begin }
    }

    /// Length of the target in sectors.
    pub(crate) fn len(&self) -> Sector {
        // SAFETY: `len` is set before the constructor runs and never changes.
        unsafe { (*self.as_raw()).len }
    }
}

/// The result of [`Target::map`].
pub(crate) enum MapResult {
    /// The bio was redirected; device-mapper submits it.
    Remapped,
    /// The target took the bio (deferred it) and will submit or end it later.
    Submitted,
    /// Fail the bio with `BLK_STS_IOERR`.
    Kill,
}

/// What `end_io` did with a completed bio.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndIo {
    /// The bio is complete.
    Done,
    /// The target took the bio (pushed it on a [`BioList`]) and will end it later.
    Incomplete,
}

/// Per-bio data of a target. `map_cb` initialises it for every bio before the target's `map`
/// runs (a fresh clone's per-bio area holds whatever its previous user left), so safe code never
/// sees uninitialised or stale values: `sector` is the bio's first sector, everything else zero.
#[repr(C)]
pub(crate) struct BioData {
    /// Target-defined tag.
    pub(crate) tag: u64,
    /// Sector of the mapped device the bio started at.
    pub(crate) sector: u64,
    /// Target-defined flags.
    pub(crate) flags: u32,
    /// Block-layer status of the failure that made the target take the bio over.
    pub(crate) error: BlkStatus,
    /// Where the bio's data is, saved by [`MapBio::save_data`] (no data until then).
    saved: raw::dmr_iter,
}

/// What kind of failure a block-layer status (`blk_status_t`) reports. The kernel's numbers are
/// mapped to these names in one place (`dmr_sts_kind` in helpers.c, from
/// `include/linux/blk_types.h`); a status this module does not know is `Unknown`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum StatusKind {
    Ok,
    NotSupp,
    Timeout,
    NoSpc,
    Transport,
    Target,
    ResvConflict,
    Medium,
    Protection,
    Resource,
    IoErr,
    DmRequeue,
    Again,
    DevResource,
    ZoneOpenResource,
    ZoneActiveResource,
    Offline,
    DurationLimit,
    Inval,
    Unknown,
}

/// A block-layer status (`blk_status_t`) as a completed bio carries it.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub(crate) struct BlkStatus(u8);

impl BlkStatus {
    /// Success (`BLK_STS_OK` is 0 by definition).
    pub(crate) const OK: BlkStatus = BlkStatus(0);

    /// `BLK_STS_IOERR`, the generic I/O error.
    pub(crate) fn ioerr() -> BlkStatus {
        // SAFETY: no preconditions.
        BlkStatus(unsafe { raw::dmr_sts_ioerr() })
    }

    pub(crate) fn is_ok(self) -> bool {
        self.0 == 0
    }

    /// The kernel's number of the status (for events and log lines).
    pub(crate) fn code(self) -> u8 {
        self.0
    }

    pub(crate) fn kind(self) -> StatusKind {
        // SAFETY: no preconditions.
        let k = unsafe { raw::dmr_sts_kind(self.0) };
        match k {
            raw::DMR_STS_OK => StatusKind::Ok,
            raw::DMR_STS_NOTSUPP => StatusKind::NotSupp,
            raw::DMR_STS_TIMEOUT => StatusKind::Timeout,
            raw::DMR_STS_NOSPC => StatusKind::NoSpc,
            raw::DMR_STS_TRANSPORT => StatusKind::Transport,
            raw::DMR_STS_TARGET => StatusKind::Target,
            raw::DMR_STS_RESV_CONFLICT => StatusKind::ResvConflict,
            raw::DMR_STS_MEDIUM => StatusKind::Medium,
            raw::DMR_STS_PROTECTION => StatusKind::Protection,
            raw::DMR_STS_RESOURCE => StatusKind::Resource,
            raw::DMR_STS_IOERR => StatusKind::IoErr,
            raw::DMR_STS_DM_REQUEUE => StatusKind::DmRequeue,
            raw::DMR_STS_AGAIN => StatusKind::Again,
            raw::DMR_STS_DEV_RESOURCE => StatusKind::DevResource,
            raw::DMR_STS_ZONE_OPEN_RESOURCE => StatusKind::ZoneOpenResource,
            raw::DMR_STS_ZONE_ACTIVE_RESOURCE => StatusKind::ZoneActiveResource,
            raw::DMR_STS_OFFLINE => StatusKind::Offline,
            raw::DMR_STS_DURATION_LIMIT => StatusKind::DurationLimit,
            raw::DMR_STS_INVAL => StatusKind::Inval,
            _ => StatusKind::Unknown,
        }
    }
}

/// A bio passed to a target.
#[repr(transparent)]
pub(crate) struct Bio(Opaque<raw::bio>);

impl Bio {
    /// # Safety
    ///
    /// `bio` must be a valid bio owned by the target for `'a`.
    unsafe fn from_raw<'a>(bio: *mut raw::bio) -> &'a mut Bio {
        // SAFETY: transparent wrapper; validity by the caller.
        unsafe { &mut *bio.cast::<Bio>() }
    }

    fn as_raw(&self) -> *mut raw::bio {
        self.0.get()
    }

    // The iterator fields are read and written here rather than through C helpers: these run
    // several times for every bio on the fast path, and a call costs more than the access.

    /// First sector of the bio.
    pub(crate) fn sector(&self) -> Sector {
        // SAFETY: the bio is valid (type invariant); nobody else changes its iterator while the
        // target holds it.
        unsafe { (*self.as_raw()).bi_iter.bi_sector }
    }

    /// Set the first sector.
    pub(crate) fn set_sector(&mut self, sector: Sector) {
        // SAFETY: the bio is valid and owned by the target while mapping (`&mut self`).
        unsafe { (*self.as_raw()).bi_iter.bi_sector = sector }
    }

    /// Size of the bio in sectors (`bio_sectors`).
    pub(crate) fn sectors(&self) -> u32 {
        // SAFETY: as in `sector`.
        unsafe { (*self.as_raw()).bi_iter.bi_size >> raw::SECTOR_SHIFT }
    }

    /// The target's per-bio data.
    pub(crate) fn data(&mut self) -> &mut BioData {
        // SAFETY: `ctr_cb` reserved `size_of::<BioData>()` bytes of per-bio data for every bio of
        // the target and `map_cb` initialised them before any callback saw the bio (every bio a
        // `Bio` is made from went through `map` first: `end_io` and held bios included); the
        // area is 8-byte aligned, lives as long as the bio and is only touched by the target's
        // callbacks for this bio, which do not run concurrently (`&mut self`).
        unsafe { &mut *raw::dm_per_bio_data(self.as_raw(), size_of::<BioData>()).cast::<BioData>() }
    }

    /// Copy `buf.len()` bytes of the bio's data (as saved by [`MapBio::save_data`]) from byte
    /// `off` on into `buf`.
    pub(crate) fn copy_out(&mut self, off: u32, buf: &mut [u8]) -> Result {
        self.copy(off, buf.as_mut_ptr(), buf.len(), false)
    }

    /// Copy `buf` into the bio's data (as saved by [`MapBio::save_data`]) from byte `off` on.
    pub(crate) fn copy_in(&mut self, off: u32, buf: &[u8]) -> Result {
        self.copy(off, buf.as_ptr().cast_mut(), buf.len(), true)
    }

    fn copy(&mut self, off: u32, buf: *mut u8, len: usize, to_bio: bool) -> Result {
        let len = c_uint::try_from(len).map_err(|_| EINVAL)?;
        let raw = self.as_raw();
        let saved: *const raw::dmr_iter = &self.data().saved;
        // SAFETY: the bio and its pages are owned by the target (it took the bio over and has
        // not ended it); `saved` describes the bio's data and the helper checks the range
        // against it; `buf` is valid for `len` bytes, and only read when `to_bio` is set (the
        // `*mut` may come from a shared reference then).
        let ret = unsafe { raw::dmr_bio_copy(raw, saved, off, buf.cast(), len, to_bio) };
        if ret != 0 {
            return Err(Error::from_errno(ret));
        }
        Ok(())
    }

    /// Bytes of data the bio had when it was saved.
    pub(crate) fn saved_bytes(&mut self) -> u32 {
        self.data().saved.size
    }

    /// Whether the bio is a plain read.
    pub(crate) fn is_read(&self) -> bool {
        // SAFETY: the bio is valid.
        unsafe { raw::dmr_bio_is_read(self.as_raw()) }
    }

    /// Whether the bio is a `REQ_OP_WRITE` (not a discard or write-zeroes). An empty flush is a
    /// `REQ_OP_WRITE` too: tell it apart with [`Bio::is_empty_flush`] while mapping (after
    /// completion a bio's size is no longer reliable).
    pub(crate) fn is_data_write(&self) -> bool {
        // SAFETY: the bio is valid.
        unsafe { raw::dmr_bio_is_data_write(self.as_raw()) }
    }

    /// Whether the bio writes (writes, discards, write-zeroes, flushes).
    pub(crate) fn is_write(&self) -> bool {
        // SAFETY: the bio is valid.
        unsafe { raw::dmr_bio_is_write(self.as_raw()) }
    }

    /// Whether this is an empty flush (a cache flush with no data).
    pub(crate) fn is_empty_flush(&self) -> bool {
        // SAFETY: the bio is valid.
        unsafe { raw::dmr_bio_is_empty_flush(self.as_raw()) }
    }

    /// Whether the bio was sent to `dev`.
    pub(crate) fn is_on(&self, dev: &DmDev) -> bool {
        // SAFETY: the bio is valid; `dev.dev` is held by the target.
        unsafe { raw::dmr_bio_dev_is(self.as_raw(), dev.dev) }
    }

    /// Which of the target's `num_flush_bios` copies this is.
    pub(crate) fn target_bio_nr(&self) -> u32 {
        // SAFETY: the bio is valid and was cloned by device-mapper for this target.
        unsafe { raw::dm_bio_get_target_bio_nr(self.as_raw()) }
    }

    /// Redirect the bio to `dev`.
    pub(crate) fn set_dev(&mut self, dev: &DmDev) {
        // SAFETY: the bio is valid and owned by the target; `dev.dev` is held by the target.
        unsafe { raw::dmr_bio_set_dev(self.as_raw(), dev.dev) }
    }
}

/// The bio `map` is mapping: a [`Bio`] that may also be split.
pub(crate) struct MapBio<'a> {
    bio: &'a mut Bio,
    ti: *mut raw::dm_target,
    /// The bio's per-bio data, initialised by `map_cb` (what [`Bio::data`] returns, without the
    /// call to find it again).
    data: *mut BioData,
}

impl MapBio<'_> {
    /// Set the per-bio tag and remember where the bio's data is, so that [`Bio::copy_out`] and
    /// [`Bio::copy_in`] still reach it after the bio completed (completion consumes the bio's
    /// iterator). Call it once the bio has its final size (after [`MapBio::accept_partial`]).
    pub(crate) fn save_data(&mut self, tag: u64) {
        // SAFETY: as in `Bio::sector`.
        let it = unsafe { (*self.bio.as_raw()).bi_iter };
        // SAFETY: `data` is this bio's initialised per-bio data (see `Bio::data`); `&mut self`
        // keeps any other reference to it (through `Bio::data`) from living meanwhile.
        let d = unsafe { &mut *self.data };
        d.tag = tag;
        d.saved = raw::dmr_iter {
            sector: it.bi_sector,
            size: it.bi_size,
            idx: it.bi_idx,
            done: it.bi_offset,
            pad: 0,
        };
    }

    /// Keep only the first `sectors` sectors of this bio (`0 < sectors`); device-mapper maps the
    /// rest as a new bio. A bio that cannot be split (a flush, an atomic write, a duplicated
    /// discard, a zoned device) or a `sectors` beyond its end is refused with `EINVAL`.
    pub(crate) fn accept_partial(&mut self, sectors: u32) -> Result {
        let raw = self.bio.as_raw();
        // SAFETY: the bio is being mapped by the target `ti`.
        if sectors == 0 || !unsafe { raw::dmr_bio_may_split(self.ti, raw) } {
            return Err(EINVAL);
        }
        if sectors >= self.bio.sectors() {
            return if sectors == self.bio.sectors() {
                Ok(())
            } else {
                Err(EINVAL)
            };
        }
        // SAFETY: the bio is being mapped by its target (`MapBio` exists only inside `map`), it
        // is splittable (`dmr_bio_may_split`: not a duplicate, not atomic, not zoned) and
        // `0 < sectors < bio_sectors`.
        unsafe { raw::dm_accept_partial_bio(raw, sectors) };
        Ok(())
    }
}

impl core::ops::Deref for MapBio<'_> {
    type Target = Bio;
    fn deref(&self) -> &Bio {
        self.bio
    }
}

impl core::ops::DerefMut for MapBio<'_> {
    fn deref_mut(&mut self) -> &mut Bio {
        self.bio
    }
}

/// A list of bios the target holds: taken from `map` (which then returns
/// [`MapResult::Submitted`]) or from `end_io` (which then returns [`EndIo::Incomplete`]).
///
/// Contract for the caller (not checked): a bio is pushed at most once and only by the callback
/// that returns `Submitted`/`Incomplete` for it, and nothing touches it after the push except
/// through the [`HeldBio`] that [`BioList::pop`] hands out. Each held bio is then either
/// submitted ([`HeldBio::submit`], only for bios taken in `map`) or ended ([`HeldBio::end`]).
/// A list dropped while it still holds bios ends them with `BLK_STS_IOERR`, so a bio is never
/// lost (the submitter would wait forever).
pub(crate) struct BioList(raw::bio_list);

// SAFETY: the list only links bios the target owns; it is used under a lock.
unsafe impl Send for BioList {}

impl BioList {
    /// An empty list.
    pub(crate) fn new() -> Self {
        BioList(raw::bio_list {
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
        })
    }

    /// Hold `bio`; `map` must then return [`MapResult::Submitted`], `end_io`
    /// [`EndIo::Incomplete`].
    pub(crate) fn push(&mut self, bio: &mut Bio) {
        // SAFETY: the list is valid and the bio is owned by the target from here on.
        unsafe { raw::dmr_bio_list_add(&mut self.0, bio.as_raw()) }
    }

    /// Hold again a bio taken from a list (it stays owned by the target).
    pub(crate) fn push_held(&mut self, h: HeldBio) {
        let bio = h.0;
        core::mem::forget(h);
        // SAFETY: the list is valid; the bio is owned by the target (it was held) and is now
        // linked into this list only (`h` is consumed without ending it).
        unsafe { raw::dmr_bio_list_add(&mut self.0, bio) }
    }

    /// Take the oldest held bio.
    pub(crate) fn pop(&mut self) -> Option<HeldBio> {
        // SAFETY: the list is valid.
        let b = unsafe { raw::dmr_bio_list_pop(&mut self.0) };
        if b.is_null() {
            None
        } else {
            Some(HeldBio(b))
        }
    }
}

/// A bio the target held back (see [`BioList`]); the target owns it until it submits it with
/// [`HeldBio::submit`] or ends it with [`HeldBio::end`]. Dropping it unfinished ends it with
/// `BLK_STS_IOERR`.
pub(crate) struct HeldBio(*mut raw::bio);

impl HeldBio {
    /// The bio, to redirect it.
    pub(crate) fn bio(&mut self) -> &mut Bio {
        // SAFETY: the target owns the held bio until it submits it.
        unsafe { Bio::from_raw(self.0) }
    }

    /// Complete the bio with `status`. Its `end_io` callback runs again with that status.
    pub(crate) fn end(self, status: BlkStatus) {
        let bio = self.0;
        core::mem::forget(self);
        // SAFETY: the target owns the bio (taken in `map` or from `end_io`) and ends it once
        // (`self` is consumed without running its destructor).
        unsafe { raw::dmr_bio_end(bio, status.0) }
    }

    /// Submit the (redirected) bio to its device. Only for bios taken in `map` (see
    /// [`BioList`]).
    pub(crate) fn submit(self) {
        let bio = self.0;
        core::mem::forget(self);
        // SAFETY: the bio was taken by the target in `map` (DM_MAPIO_SUBMITTED) and is submitted
        // exactly once (`self` is consumed), after the caller redirected it.
        unsafe { raw::dmr_submit_bio_remap(bio) }
    }
}

impl Drop for HeldBio {
    fn drop(&mut self) {
        // SAFETY: an unfinished held bio is still owned by the target; it is ended once here.
        unsafe { raw::dmr_bio_end(self.0, BlkStatus::ioerr().0) }
    }
}

impl Drop for BioList {
    fn drop(&mut self) {
        // Each popped bio is ended by `HeldBio`'s destructor.
        while self.pop().is_some() {}
    }
}

/// An integer map from block number to value, with lock-free lookups for the I/O path (any
/// context: RCU and a sequence count, no lock, no allocation) and locked, possibly allocating
/// updates for process context. Values are below 2^62. The map is the C index `dmr_index`
/// (`index.c`): sorted leaves of up to 238 entries (4 KiB each) under a directory.
pub(crate) struct RcuIndex {
    ix: ptr::NonNull<raw::dmr_index>,
}

// SAFETY: the C index synchronises its own updates (a mutex) and lookups (RCU, sequence count).
unsafe impl Send for RcuIndex {}
// SAFETY: as above; all methods take `&self`.
unsafe impl Sync for RcuIndex {}

impl RcuIndex {
    /// An empty index.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: no preconditions; NULL when the allocation failed.
        let ix = unsafe { raw::dmr_index_new() };
        ptr::NonNull::new(ix)
            .map(|ix| RcuIndex { ix })
            .ok_or(ENOMEM)
    }

    /// Value stored for `index`. Any context.
    pub(crate) fn get(&self, index: u64) -> Option<u64> {
        self.first_in(index, index).map(|(_, v)| v)
    }

    /// First entry with index in `first..=last`. Any context.
    pub(crate) fn first_in(&self, first: u64, last: u64) -> Option<(u64, u64)> {
        let mut b = 0u64;
        let mut v = 0u64;
        // SAFETY: the index lives as long as `self`; the lookup takes the RCU read lock itself,
        // never sleeps or allocates, and writes `b`/`v` only.
        unsafe { raw::dmr_index_find(self.ix.as_ptr(), first, last, &mut b, &mut v) }
            .then_some((b, v))
    }

    /// Store `value` at `index`. Process context (may allocate, with `GFP_NOIO`, and sleep). On
    /// failure (`ENOMEM`) the index is unchanged.
    pub(crate) fn store(&self, index: u64, value: u64) -> Result {
        if value >= 1 << 62 {
            return Err(EINVAL);
        }
        // SAFETY: the index lives as long as `self`; updates are serialised by its own mutex.
        let ret = unsafe { raw::dmr_index_store(self.ix.as_ptr(), index, value) };
        if ret != 0 {
            return Err(Error::from_errno(ret));
        }
        Ok(())
    }

    /// Remove the entry at `index`, returning its value. Process context (takes a mutex).
    pub(crate) fn remove(&self, index: u64) -> Option<u64> {
        let mut v = 0u64;
        // SAFETY: the index lives as long as `self`; updates are serialised by its own mutex.
        unsafe { raw::dmr_index_erase(self.ix.as_ptr(), index, &mut v) }.then_some(v)
    }
}

impl Drop for RcuIndex {
    fn drop(&mut self) {
        // SAFETY: `self` owns the index and no other user remains; it is freed once.
        unsafe { raw::dmr_index_free(self.ix.as_ptr()) };
    }
}

/// Kernel memory in slab caches and vmalloc areas, in bytes (system-wide counters: other
/// allocations running meanwhile count too). Any context.
pub(crate) fn kernel_mem_bytes() -> u64 {
    // SAFETY: reads global counters; no preconditions.
    unsafe { raw::dmr_kernel_mem_bytes() as u64 }
}

/// Wait until the callbacks of every RCU grace period started so far have run (memory that was
/// queued for freeing after a grace period is freed). Process context; sleeps.
pub(crate) fn rcu_barrier() {
    // SAFETY: no preconditions beyond process context, which the caller provides.
    unsafe { raw::dmr_rcu_barrier() }
}

kernel::sync::global_lock! {
    // SAFETY: `event_ring` is the only user: it initialises the lock once before locking it.
    unsafe(uninit) static EVENT_RING: SpinLockIrq<crate::events::Ring> =
        crate::events::Ring::new();
}

/// [`EVENT_RING`]: 0 uninitialised, 1 being initialised, 2 ready.
static EVENT_RING_STATE: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);

/// The module's event ring (see `events.rs`), locked with interrupts off. Any context; the
/// first call initialises the lock.
pub(crate) fn event_ring() -> impl core::ops::DerefMut<Target = crate::events::Ring> {
    use core::sync::atomic::Ordering::{AcqRel, Acquire, Release};
    if EVENT_RING_STATE.load(Acquire) != 2 {
        if EVENT_RING_STATE
            .compare_exchange(0, 1, AcqRel, Acquire)
            .is_ok()
        {
            // SAFETY: only the one caller that moved the state from 0 to 1 gets here, and no
            // caller locks the ring before the state is 2.
            unsafe { EVENT_RING.init() };
            EVENT_RING_STATE.store(2, Release);
        } else {
            while EVENT_RING_STATE.load(Acquire) != 2 {
                core::hint::spin_loop();
            }
        }
    }
    EVENT_RING.lock()
}

/// Called for each underlying device by [`Target::iterate_devices`].
pub(crate) struct DeviceCallout {
    ti: *mut raw::dm_target,
    f: raw::iterate_devices_callout_fn,
    data: *mut c_void,
}

impl DeviceCallout {
    /// Report `len` sectors of `dev` starting at `start` as used by this target.
    pub(crate) fn call(&mut self, dev: &DmDev, start: Sector, len: Sector) -> c_int {
        match self.f {
            // SAFETY: `f` and `data` come from device-mapper for this call; `dev.dev` is held by
            // the target `ti`.
            Some(f) => unsafe { f(self.ti, dev.dev, start, len, self.data) },
            None => 0,
        }
    }
}

/// Queue limits of the mapped device, passed to [`Target::io_hints`].
#[repr(transparent)]
pub(crate) struct QueueLimits(Opaque<raw::queue_limits>);

impl QueueLimits {
    /// Raise the preferred minimum I/O size to at least `bytes`.
    pub(crate) fn raise_io_min(&mut self, bytes: u32) {
        // SAFETY: the limits are valid and exclusively ours for the duration of `io_hints`.
        unsafe { raw::dmr_limits_raise_io_min(self.0.get(), bytes) }
    }
}

/// A device-mapper target type implemented in safe Rust.
pub(crate) trait Target: Sized + Send + Sync {
    /// Construct a target from its table arguments.
    fn new(ctx: &mut CtrContext, args: Args<'_>) -> core::result::Result<Self, CtrError>;

    /// Map a bio: redirect it to an underlying device.
    fn map(&self, ti: &TargetRef, bio: &mut MapBio<'_>) -> MapResult;

    /// A bio completed with block-layer status `error`.
    fn end_io(&self, _ti: &TargetRef, _bio: &mut Bio, _error: BlkStatus) -> EndIo {
        EndIo::Done
    }

    /// Deferred work kicked with [`Worker::kick`]; process context.
    fn work(&self, _ti: &TargetRef) {}

    /// The mapped device is being suspended; I/O may still arrive.
    fn presuspend(&self, _ti: &TargetRef) {}

    /// The table is about to become live (after the old one was suspended); an error fails
    /// the resume.
    fn preresume(&self, _ti: &TargetRef) -> Result {
        Ok(())
    }

    /// Write the status of the given type.
    fn status(&self, ti: &TargetRef, ty: StatusType, out: &mut Emitter<'_>);

    /// Handle a message; return `Ok(true)` when `out` holds an answer for userspace.
    fn message(&self, ti: &TargetRef, args: Args<'_>, out: &mut Emitter<'_>) -> Result<bool>;

    /// Report every underlying device range through `callout`; stop at the first non-zero.
    fn iterate_devices(&self, ti: &TargetRef, callout: &mut DeviceCallout) -> c_int;

    /// Adjust the queue limits of the mapped device.
    fn io_hints(&self, _ti: &TargetRef, _limits: &mut QueueLimits) {}
}

/// # Safety
///
/// `ti` must be a constructed target of type `T` (its `private` set by `ctr_cb::<T>`).
unsafe fn private<'a, T: Target>(ti: *mut raw::dm_target) -> &'a T {
    // SAFETY: by the caller, `private` points to a live `T` boxed by `ctr_cb`, freed only in
    // `dtr_cb` after device-mapper stopped calling the other callbacks.
    unsafe { &*(*ti).private.cast::<T>() }
}

unsafe extern "C" fn ctr_cb<T: Target>(
    ti: *mut raw::dm_target,
    argc: c_uint,
    argv: *mut *mut c_char,
) -> c_int {
    let mut ctx = CtrContext { ti };
    // Every bio mapped by the target carries a `BioData` (`map_cb` initialises it).
    // SAFETY: `ti` is the target under construction, not yet visible to I/O.
    unsafe { (*ti).per_io_data_size = size_of::<BioData>() as c_uint };
    // SAFETY: device-mapper passes `argc` valid strings that live during the constructor.
    let args = unsafe { Args::new(argc, argv) };
    let res = T::new(&mut ctx, args).and_then(|t| {
        KBox::new(t, GFP_KERNEL).map_err(|_| CtrError {
            msg: c"Cannot allocate target context",
            err: ENOMEM,
        })
    });
    match res {
        Ok(b) => {
            // SAFETY: `ti` is the target under construction; device-mapper keeps `private` for us.
            unsafe { (*ti).private = KBox::into_raw(b).cast::<c_void>() };
            0
        }
        Err(e) => {
            // SAFETY: `ti->error` takes a static string; `e.msg` is `'static`.
            unsafe { (*ti).error = e.msg.as_char_ptr().cast_mut() };
            e.err.to_errno()
        }
    }
}

unsafe extern "C" fn dtr_cb<T: Target>(ti: *mut raw::dm_target) {
    // SAFETY: `private` was set by `ctr_cb::<T>` from `KBox::into_raw`; the destructor runs once,
    // after all other callbacks have finished.
    let b = unsafe { KBox::from_raw((*ti).private.cast::<T>()) };
    drop(b);
}

unsafe extern "C" fn map_cb<T: Target>(ti: *mut raw::dm_target, bio: *mut raw::bio) -> c_int {
    // SAFETY: `ti` is a constructed `T` target and `bio` a valid bio handed to it.
    let (t, tref, bio) = unsafe {
        (
            private::<T>(ti),
            TargetRef::from_raw(ti),
            Bio::from_raw(bio),
        )
    };
    let sector = bio.sector();
    // SAFETY: `ctr_cb` reserved room for a `BioData` in every bio of the target.
    let data =
        unsafe { raw::dm_per_bio_data(bio.as_raw(), size_of::<BioData>()) }.cast::<BioData>();
    // SAFETY: `data` is the bio's per-bio data, 8-byte aligned; this writes it without reading
    // the previous contents.
    unsafe {
        ptr::write(
            data,
            BioData {
                tag: 0,
                sector,
                flags: 0,
                error: BlkStatus::OK,
                saved: raw::dmr_iter {
                    sector,
                    size: 0,
                    idx: 0,
                    done: 0,
                    pad: 0,
                },
            },
        )
    };
    let mut mb = MapBio { bio, ti, data };
    (match t.map(tref, &mut mb) {
        MapResult::Remapped => raw::DM_MAPIO_REMAPPED,
        MapResult::Submitted => raw::DM_MAPIO_SUBMITTED,
        MapResult::Kill => raw::DM_MAPIO_KILL,
    }) as c_int
}

unsafe extern "C" fn end_io_cb<T: Target>(
    ti: *mut raw::dm_target,
    bio: *mut raw::bio,
    error: *mut raw::blk_status_t,
) -> c_int {
    // SAFETY: `ti` is a constructed `T` target, `bio` its completed bio, `error` a valid pointer.
    let (t, tref, bio, err) = unsafe {
        (
            private::<T>(ti),
            TargetRef::from_raw(ti),
            Bio::from_raw(bio),
            BlkStatus(*error),
        )
    };
    (match t.end_io(tref, bio, err) {
        EndIo::Done => raw::DM_ENDIO_DONE,
        EndIo::Incomplete => raw::DM_ENDIO_INCOMPLETE,
    }) as c_int
}

unsafe extern "C" fn work_cb<T: Target>(ti: *mut raw::dm_target) {
    // SAFETY: the worker belongs to a constructed `T` target; it is kicked only after the
    // constructor returned and freed (waiting for a running work item) before `T` is dropped.
    let (t, tref) = unsafe { (private::<T>(ti), TargetRef::from_raw(ti)) };
    t.work(tref);
}

unsafe extern "C" fn presuspend_cb<T: Target>(ti: *mut raw::dm_target) {
    // SAFETY: `ti` is a constructed `T` target.
    let (t, tref) = unsafe { (private::<T>(ti), TargetRef::from_raw(ti)) };
    t.presuspend(tref);
}

unsafe extern "C" fn preresume_cb<T: Target>(ti: *mut raw::dm_target) -> c_int {
    // SAFETY: `ti` is a constructed `T` target.
    let (t, tref) = unsafe { (private::<T>(ti), TargetRef::from_raw(ti)) };
    match t.preresume(tref) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

unsafe extern "C" fn status_cb<T: Target>(
    ti: *mut raw::dm_target,
    ty: raw::status_type_t,
    _flags: c_uint,
    result: *mut c_char,
    maxlen: c_uint,
) {
    let ty = match ty {
        raw::status_type_t_STATUSTYPE_INFO => StatusType::Info,
        raw::status_type_t_STATUSTYPE_TABLE => StatusType::Table,
        _ => StatusType::Ima,
    };
    // SAFETY: `ti` is a constructed `T` target; `result` is writable for `maxlen` bytes.
    let (t, tref, mut out) = unsafe {
        (
            private::<T>(ti),
            TargetRef::from_raw(ti),
            Emitter::new(result, maxlen),
        )
    };
    t.status(tref, ty, &mut out);
}

unsafe extern "C" fn message_cb<T: Target>(
    ti: *mut raw::dm_target,
    argc: c_uint,
    argv: *mut *mut c_char,
    result: *mut c_char,
    maxlen: c_uint,
) -> c_int {
    // SAFETY: `ti` is a constructed `T` target; `argv` holds `argc` valid strings and `result` is
    // writable for `maxlen` bytes, both during this call.
    let (t, tref, args, mut out) = unsafe {
        (
            private::<T>(ti),
            TargetRef::from_raw(ti),
            Args::new(argc, argv),
            Emitter::new(result, maxlen),
        )
    };
    match t.message(tref, args, &mut out) {
        // 1 tells device-mapper that `result` holds data for userspace (DM_DATA_OUT); a cut
        // answer makes it ask again with a larger buffer.
        Ok(true) => 1,
        Ok(false) => 0,
        Err(e) => e.to_errno(),
    }
}

unsafe extern "C" fn iterate_devices_cb<T: Target>(
    ti: *mut raw::dm_target,
    f: raw::iterate_devices_callout_fn,
    data: *mut c_void,
) -> c_int {
    // SAFETY: `ti` is a constructed `T` target.
    let (t, tref) = unsafe { (private::<T>(ti), TargetRef::from_raw(ti)) };
    let mut callout = DeviceCallout { ti, f, data };
    t.iterate_devices(tref, &mut callout)
}

unsafe extern "C" fn io_hints_cb<T: Target>(
    ti: *mut raw::dm_target,
    limits: *mut raw::queue_limits,
) {
    // SAFETY: `ti` is a constructed `T` target; `limits` is valid and exclusively ours here.
    let (t, tref, limits) = unsafe {
        (
            private::<T>(ti),
            TargetRef::from_raw(ti),
            &mut *limits.cast::<QueueLimits>(),
        )
    };
    t.io_hints(tref, limits);
}

/// A registered target type; unregistered on drop.
pub(crate) struct Registration<T: Target> {
    tt: Pin<KBox<Opaque<raw::target_type>>>,
    _t: PhantomData<T>,
}

// SAFETY: the registration is only touched in module init and exit.
unsafe impl<T: Target> Send for Registration<T> {}
// SAFETY: no `&self` methods.
unsafe impl<T: Target> Sync for Registration<T> {}

impl<T: Target> Registration<T> {
    /// Register target type `name` (version `version`) owned by `module`.
    pub(crate) fn register(
        name: &'static CStr,
        version: [u32; 3],
        module: &'static ThisModule,
    ) -> Result<Self> {
        let tt = KBox::pin(Opaque::<raw::target_type>::uninit(), GFP_KERNEL)?;
        let p = tt.get();
        // SAFETY: `p` points to memory we own; it is fully initialised (zeroed, then the fields we
        // use) before device-mapper sees it, and stays pinned until unregistered in `drop`.
        let ret = unsafe {
            ptr::write_bytes(p, 0, 1);
            (*p).name = name.as_char_ptr();
            (*p).version = version;
            (*p).module = module.as_ptr().cast();
            (*p).features = u64::from(raw::DM_TARGET_NOWAIT);
            (*p).ctr = Some(ctr_cb::<T>);
            (*p).dtr = Some(dtr_cb::<T>);
            (*p).map = Some(map_cb::<T>);
            (*p).end_io = Some(end_io_cb::<T>);
            (*p).status = Some(status_cb::<T>);
            (*p).message = Some(message_cb::<T>);
            (*p).iterate_devices = Some(iterate_devices_cb::<T>);
            (*p).io_hints = Some(io_hints_cb::<T>);
            (*p).presuspend = Some(presuspend_cb::<T>);
            (*p).preresume = Some(preresume_cb::<T>);
            raw::dm_register_target(p)
        };
        if ret < 0 {
            return Err(Error::from_errno(ret));
        }
        Ok(Registration {
            tt,
            _t: PhantomData,
        })
    }
}

impl<T: Target> Drop for Registration<T> {
    fn drop(&mut self) {
        // SAFETY: the target type was registered in `register` and is unregistered exactly once;
        // module unload is refused while any target of this type exists.
        unsafe { raw::dm_unregister_target(self.tt.get()) };
    }
}

// =============================================================================================
// Control device: event wait queue and a misc device with poll (C side at the end of helpers.c).
// =============================================================================================

use kernel::fs::{File, Kiocb};
use kernel::miscdevice::{MiscDevice, MiscDeviceOptions};
use kernel::types::ForeignOwnable;

/// Record that the next event will have sequence number `next_seq` and wake readers and pollers
/// of the control device. Any context; callers publish in sequence order.
pub(crate) fn event_publish(next_seq: u64) {
    // SAFETY: an atomic store and a wake-up of a static wait queue; no preconditions.
    unsafe { raw::dmr_event_publish(next_seq) }
}

/// The sequence number the next event will have, as last published. Any context.
pub(crate) fn event_published() -> u64 {
    // SAFETY: an atomic load; no preconditions.
    unsafe { raw::dmr_event_published() }
}

/// Sleep until an event with sequence number `cursor` or later has been raised. Process context.
/// Fails with `ERESTARTSYS` when a signal arrives first.
pub(crate) fn event_wait(cursor: u64) -> Result {
    // SAFETY: called from a read() of the control device: process context, no locks held.
    let ret = unsafe { raw::dmr_event_wait(cursor) };
    if ret != 0 {
        return Err(Error::from_errno(ret));
    }
    Ok(())
}

/// Whether a read must not block (`O_NONBLOCK` on the file, or a no-wait request).
pub(crate) fn kiocb_nonblock<T: ForeignOwnable>(kiocb: &Kiocb<'_, T>) -> bool {
    // SAFETY: the kiocb and its file are valid for the duration of the read callback that
    // handed out `kiocb`; the helper only reads two flag words.
    unsafe { raw::dmr_file_nonblock(kiocb.as_raw().cast::<c_void>().cast_const()) }
}

/// A misc device that also answers poll(): the file is readable while
/// [`PollDevice::readable`] says so; pollers wake on [`event_publish`].
pub(crate) trait PollDevice: MiscDevice {
    /// Whether a read of `file` would return data now.
    fn readable(device: <Self::Ptr as ForeignOwnable>::Borrowed<'_>, file: &File) -> bool;
}

unsafe extern "C" fn poll_cb<T: PollDevice>(file: *mut c_void) -> c_uint {
    let file = file.cast::<kernel::bindings::file>();
    // SAFETY: poll runs on an open file of this device, between the kernel crate's open (which
    // stored `T::Ptr` with `into_foreign` as the private data) and release.
    let device = unsafe { <T::Ptr as ForeignOwnable>::borrow((*file).private_data) };
    // SAFETY: the file is valid for this call; poll is not inside an fdget_pos region.
    let f = unsafe { File::from_raw_file(file) };
    // Non-zero: the C side reports EPOLLIN | EPOLLRDNORM.
    c_uint::from(T::readable(device, f))
}

/// A registered misc device of type `T` with poll; deregistered on drop.
pub(crate) struct PollMiscRegistration<T: PollDevice> {
    m: *mut raw::dmr_misc,
    _t: PhantomData<T>,
}

// SAFETY: registration and deregistration may happen on different threads.
unsafe impl<T: PollDevice> Send for PollMiscRegistration<T> {}
// SAFETY: no `&self` methods.
unsafe impl<T: PollDevice> Sync for PollMiscRegistration<T> {}

impl<T: PollDevice> PollMiscRegistration<T> {
    /// Register `/dev/<name>` with the kernel crate's file operations for `T` plus poll.
    pub(crate) fn register(name: &'static CStr) -> Result<Self> {
        let tmpl = MiscDeviceOptions { name }.into_raw::<T>();
        let mut err: c_int = 0;
        // SAFETY: `tmpl` is a complete miscdevice built by the kernel crate for `T` (static fops,
        // static name); the helper copies it before returning. `poll_cb::<T>` matches the fops
        // the copy uses, so its private data is a `T::Ptr`.
        let m = unsafe {
            raw::dmr_misc_register(
                core::ptr::from_ref(&tmpl).cast::<c_void>(),
                Some(poll_cb::<T>),
                &mut err,
            )
        };
        if m.is_null() {
            return Err(if err != 0 {
                Error::from_errno(err)
            } else {
                ENOMEM
            });
        }
        Ok(PollMiscRegistration { m, _t: PhantomData })
    }
}

impl<T: PollDevice> Drop for PollMiscRegistration<T> {
    fn drop(&mut self) {
        // SAFETY: registered in `register`, deregistered exactly once (module exit).
        unsafe { raw::dmr_misc_deregister(self.m) }
    }
}

// =============================================================================================
// Module-wide state of the targets: device claims and constructor error texts.
// =============================================================================================

use kernel::sync::global_lock;

/// A device range a target uses, as registered in [`claim_devices`].
#[derive(Clone, Copy)]
pub(crate) struct DevUse {
    /// The mapped device (`major << 20 | minor`).
    pub(crate) md: u32,
    /// The table ([`CtrContext::table_id`]).
    pub(crate) table: usize,
    /// The underlying device (`major << 20 | minor`).
    pub(crate) dev: u32,
    /// First sector used.
    pub(crate) start: Sector,
    /// Sectors used.
    pub(crate) len: Sector,
}

struct ClaimEntry {
    owner: u64,
    dev_use: DevUse,
}

struct ClaimTable {
    next_owner: u64,
    entries: KVec<ClaimEntry>,
}

/// Most distinct constructor error texts kept (see [`ctr_text`]).
const CTR_TEXTS_MAX: usize = 256;
/// Bytes of one constructor error text, NUL included.
const CTR_TEXT_LEN: usize = 160;

global_lock! {
    // SAFETY: initialised by `Globals::init` in module init, before any target can exist.
    unsafe(uninit) static CLAIMS: Mutex<ClaimTable> = ClaimTable {
        next_owner: 1,
        entries: KVec::new(),
    };
}

global_lock! {
    // SAFETY: initialised by `Globals::init` in module init, before any target can exist.
    unsafe(uninit) static CTR_TEXTS: Mutex<KVec<KBox<[u8; CTR_TEXT_LEN]>>> = KVec::new();
}

/// The module-wide state; created once in module init, dropped at module exit.
pub(crate) struct Globals(());

impl Globals {
    /// Initialise the module-wide locks. Module init only, once.
    pub(crate) fn init() -> Self {
        // SAFETY: called exactly once, from module init, before any target or constructor runs.
        unsafe {
            CLAIMS.init();
            CTR_TEXTS.init();
        }
        Globals(())
    }
}

impl Drop for Globals {
    fn drop(&mut self) {
        // Module exit: the target type is unregistered (no constructor runs, no table holds a
        // text or a claim any more), so the texts and the vectors' buffers can go. Statics are
        // never dropped: emptying them with `clear` or `retain` would keep the buffers, which
        // leak once the module is gone.
        *CTR_TEXTS.lock() = KVec::new();
        CLAIMS.lock().entries = KVec::new();
    }
}

/// The device ranges of one target, registered until dropped.
pub(crate) struct DevClaims(u64);

impl Drop for DevClaims {
    fn drop(&mut self) {
        CLAIMS.lock().entries.retain(|e| e.owner != self.0);
    }
}

/// Register `uses` for a target unless a registered use conflicts with one of them
/// (`conflict(registered, new)`); then that registered use is returned.
pub(crate) fn claim_devices(
    uses: &[DevUse],
    conflict: impl Fn(&DevUse, &DevUse) -> bool,
) -> core::result::Result<DevClaims, core::result::Result<DevUse, Error>> {
    let mut t = CLAIMS.lock();
    for e in t.entries.iter() {
        if uses.iter().any(|u| conflict(&e.dev_use, u)) {
            return Err(Ok(e.dev_use));
        }
    }
    let owner = t.next_owner;
    t.next_owner += 1;
    t.entries
        .reserve(uses.len(), GFP_KERNEL)
        .map_err(|_| Err(ENOMEM))?;
    for &dev_use in uses {
        // Room was reserved above: this does not allocate.
        t.entries
            .push(ClaimEntry { owner, dev_use }, GFP_KERNEL)
            .map_err(|_| Err(ENOMEM))?;
    }
    Ok(DevClaims(owner))
}

/// A constructor error text made at run time (`ti->error` must outlive the constructor:
/// device-mapper logs it after `ctr` returns). Each distinct text is kept until module exit, at
/// most [`CTR_TEXTS_MAX`] of them; beyond that, or without memory, `fallback` is returned.
pub(crate) fn ctr_text(args: core::fmt::Arguments<'_>, fallback: &'static CStr) -> &'static CStr {
    let mut text = [0u8; CTR_TEXT_LEN];
    let mut w = TextWriter {
        buf: &mut text,
        len: 0,
    };
    let _ = core::fmt::Write::write_fmt(&mut w, args);
    let mut texts = CTR_TEXTS.lock();
    let kept = match texts.iter().position(|t| **t == text) {
        Some(i) => texts.get(i),
        None if texts.len() < CTR_TEXTS_MAX => match KBox::new(text, GFP_KERNEL) {
            Ok(b) => match texts.push(b, GFP_KERNEL) {
                Ok(()) => texts.last(),
                Err(_) => None,
            },
            Err(_) => None,
        },
        None => None,
    };
    let Some(kept) = kept else {
        return fallback;
    };
    let Ok(c) = CStr::from_bytes_until_nul(&kept[..]) else {
        return fallback;
    };
    // SAFETY: the text lives in its own heap allocation, which is never written again and freed
    // only at module exit (`Globals::drop`), after the target type is unregistered: no
    // constructor, and so no `ti->error`, can use it then. Moving the `KBox` inside the vector
    // does not move the text.
    unsafe { &*core::ptr::from_ref(c) }
}

/// Formats into a fixed buffer, cutting what does not fit and always leaving a NUL at the end.
struct TextWriter<'a> {
    buf: &'a mut [u8; CTR_TEXT_LEN],
    len: usize,
}

impl core::fmt::Write for TextWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &b in s.as_bytes() {
            if self.len + 1 >= CTR_TEXT_LEN || b == 0 {
                break;
            }
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

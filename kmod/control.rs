// SPDX-License-Identifier: GPL-2.0

//! The control device `/dev/dm-remap`: ioctls of `include/dm_remap.h`.

use kernel::fs::{File, Kiocb};
use kernel::ioctl::{_IOC_NR, _IOC_SIZE, _IOC_TYPE, _IOWR};
use kernel::iov::IovIterDest;
use kernel::miscdevice::{MiscDevice, MiscDeviceRegistration};
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::Mutex;
use kernel::time::{Instant, Monotonic};
use kernel::transmute::AsBytes;
use kernel::uaccess::UserSlice;

use crate::alloc::{storage_words, SlotAllocator};
use crate::dm::{
    capable_sys_admin, cond_resched, event_published, event_wait, kernel_mem_bytes, kiocb_nonblock,
    rcu_barrier, uapi, PollDevice, RcuIndex,
};
use crate::events;
use crate::remap::Entry;
use crate::target::VERSION;

const IOC_VERSION: u32 = _IOWR::<uapi::dmr_version>(uapi::DMR_IOCTL_MAGIC, 0x00);
const IOC_BENCH: u32 = _IOWR::<uapi::dmr_bench>(uapi::DMR_IOCTL_MAGIC, 0x01);
const IOC_EVENTS: u32 = _IOWR::<uapi::dmr_events>(uapi::DMR_IOCTL_MAGIC, 0x02);
const IOC_EVENTS_SEEK: u32 = _IOWR::<uapi::dmr_events_seek>(uapi::DMR_IOCTL_MAGIC, 0x03);

/// Size of one event record returned by read().
const RECORD: usize = core::mem::size_of::<uapi::dmr_event>();

/// Most timed samples a benchmark keeps (memory bound: 8 MiB).
const MAX_SAMPLES: u64 = 1 << 20;

/// Per-open state of the control device.
#[pin_data]
pub(crate) struct Control {
    /// The event read() cursor: sequence number of the next event this file reads (>= 1).
    #[pin]
    cursor: Mutex<u64>,
}

impl PollDevice for Control {
    fn readable(me: Pin<&Control>, _file: &File) -> bool {
        // A racy peek is enough for poll: it is asked again after every wake-up.
        *me.cursor.lock() < event_published()
    }
}

#[vtable]
impl MiscDevice for Control {
    type Ptr = Pin<KBox<Self>>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        if !capable_sys_admin() {
            return Err(EPERM);
        }
        let (oldest, _) = events::bounds();
        KBox::try_pin_init(
            try_pin_init!(Control { cursor <- new_mutex!(oldest) }),
            GFP_KERNEL,
        )
    }

    /// Whole event records from this file's cursor: see "Reading events" in the ABI header.
    fn read_iter(kiocb: Kiocb<'_, Self::Ptr>, iov: &mut IovIterDest<'_>) -> Result<usize> {
        if !capable_sys_admin() {
            return Err(EPERM);
        }
        let want = iov.len() / RECORD;
        if want == 0 {
            return Err(EINVAL);
        }
        // At most a full ring plus one overflow record per call.
        let want = want.min(uapi::DMR_EVENT_RING as usize + 1);
        let nonblock = kiocb_nonblock(&kiocb);
        let me = kiocb.file();
        // Up to 49 KiB: kvmalloc, so a fragmented heap does not fail the read.
        let mut buf = KVVec::with_capacity(want, GFP_KERNEL)?;
        loop {
            let mut cur = me.cursor.lock();
            buf.clear();
            events::read_from(*cur, &mut buf);
            if !buf.is_empty() {
                let mut done = 0;
                for e in buf.iter() {
                    // A fault part-way: report the whole records copied before it.
                    if iov.copy_to_iter(e.as_bytes()) < RECORD {
                        break;
                    }
                    *cur = events::cursor_after(e);
                    done += RECORD;
                }
                return if done == 0 { Err(EFAULT) } else { Ok(done) };
            }
            let at = *cur;
            drop(cur);
            if nonblock {
                return Err(EAGAIN);
            }
            event_wait(at)?;
        }
    }

    fn ioctl(me: Pin<&Control>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        if _IOC_TYPE(cmd) != uapi::DMR_IOCTL_MAGIC {
            return Err(ENOTTY);
        }
        if !capable_sys_admin() {
            return Err(EPERM);
        }
        let ptr = kernel::uaccess::UserPtr::from_addr(arg);
        match cmd {
            IOC_VERSION => {
                let (mut r, mut w) = UserSlice::new(ptr, _IOC_SIZE(cmd)).reader_writer();
                let v: uapi::dmr_version = r.read()?;
                if v.size as usize != core::mem::size_of::<uapi::dmr_version>()
                    || v.flags != 0
                    || v.reserved != [0; 4]
                {
                    return Err(EINVAL);
                }
                let out = uapi::dmr_version {
                    size: v.size,
                    abi_version: uapi::DMR_ABI_VERSION,
                    target_version: VERSION,
                    flags: 0,
                    reserved: [0; 4],
                };
                w.write(&out)?;
                Ok(0)
            }
            IOC_BENCH => {
                let (mut r, mut w) = UserSlice::new(ptr, _IOC_SIZE(cmd)).reader_writer();
                let b: uapi::dmr_bench = r.read()?;
                let out = bench(&b)?;
                w.write(&out)?;
                Ok(0)
            }
            IOC_EVENTS => {
                let (mut r, mut w) = UserSlice::new(ptr, _IOC_SIZE(cmd)).reader_writer();
                let req: uapi::dmr_events = r.read()?;
                let out = read_events(&req)?;
                w.write(&out)?;
                Ok(0)
            }
            IOC_EVENTS_SEEK => {
                let (mut r, mut w) = UserSlice::new(ptr, _IOC_SIZE(cmd)).reader_writer();
                let req: uapi::dmr_events_seek = r.read()?;
                let out = seek_events(me, &req)?;
                w.write(&out)?;
                Ok(0)
            }
            _ => {
                let _ = _IOC_NR(cmd);
                Err(ENOTTY)
            }
        }
    }
}

/// DMR_IOC_EVENTS: copy events to the caller's array, then report where to continue.
fn read_events(req: &uapi::dmr_events) -> Result<uapi::dmr_events> {
    if req.size as usize != core::mem::size_of::<uapi::dmr_events>()
        || req.flags != 0
        || req.reserved != [0; 4]
        || req.max == 0
        || req.max > uapi::DMR_EVENT_RING
        || req.count != 0
    {
        return Err(EINVAL);
    }
    let mut buf = KVVec::with_capacity(req.max as usize, GFP_KERNEL)?;
    let (next, oldest, lost) = events::read(req.since_seq, &mut buf);
    let len = buf.len() * core::mem::size_of::<uapi::dmr_event>();
    let mut w = UserSlice::new(kernel::uaccess::UserPtr::from_addr(req.buf as usize), len).writer();
    for e in buf.iter() {
        w.write(e)?;
    }
    Ok(uapi::dmr_events {
        size: req.size,
        flags: 0,
        since_seq: req.since_seq,
        buf: req.buf,
        max: req.max,
        count: buf.len() as u32,
        next_seq: next,
        oldest_seq: oldest,
        lost,
        reserved: [0; 4],
    })
}

/// DMR_IOC_EVENTS_SEEK: move the file's read() cursor.
fn seek_events(me: Pin<&Control>, req: &uapi::dmr_events_seek) -> Result<uapi::dmr_events_seek> {
    if req.size as usize != core::mem::size_of::<uapi::dmr_events_seek>()
        || req.flags != 0
        || req.reserved0 != 0
        || req.reserved != [0; 2]
        || req.cursor != 0
    {
        return Err(EINVAL);
    }
    let mut cur = me.cursor.lock();
    let (oldest, next) = events::bounds();
    let to = match req.whence {
        uapi::SEEK_OLDEST if req.seq == 0 => oldest,
        uapi::SEEK_NOW if req.seq == 0 => next,
        uapi::SEEK_SEQ if req.seq >= 1 && req.seq <= next => req.seq,
        _ => return Err(EINVAL),
    };
    *cur = to;
    Ok(uapi::dmr_events_seek {
        size: req.size,
        whence: req.whence,
        flags: 0,
        reserved0: 0,
        seq: req.seq,
        cursor: to,
        reserved: [0; 2],
    })
}

/// xorshift64: cheap pseudo-random block numbers for the benchmark.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

fn bench(b: &uapi::dmr_bench) -> Result<uapi::dmr_bench> {
    if b.size as usize != core::mem::size_of::<uapi::dmr_bench>()
        || b.flags != 0
        || b.index_bytes != 0
        || b.reserved != [0; 3]
    {
        return Err(EINVAL);
    }
    let fill = matches!(b.op, uapi::BENCH_FILL_DENSE | uapi::BENCH_FILL_SCATTERED);
    let batch = if b.batch == 0 { 16 } else { u64::from(b.batch) };
    // The fill operations time their `entries` inserts.
    let ops = if fill { b.entries } else { b.iterations };
    if batch > 1024
        || b.iterations == 0
        || b.iterations > u64::from(uapi::DMR_BENCH_MAX_ITERATIONS)
        || b.entries > u64::from(uapi::DMR_BENCH_MAX_ENTRIES)
        || ops == 0
        || ops.div_ceil(batch) > MAX_SAMPLES
    {
        return Err(EINVAL);
    }
    let nsamples = ops.div_ceil(batch) as usize;
    let mut index_bytes = 0;
    // Up to 8 MiB: vmalloc-backed.
    let mut samples = KVVec::with_capacity(nsamples, GFP_KERNEL)?;
    let entries = b.entries;
    // Blocks live in a space 4x the entry count, so lookups hit about a quarter of the time.
    let space = (entries * 4).max(1024);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);

    let t0 = Instant::<Monotonic>::now();
    match b.op {
        uapi::BENCH_NOOP => {
            let mut x = 0u64;
            time_batches(&mut samples, nsamples, batch, || {
                x = core::hint::black_box(x + 1)
            })?;
        }
        uapi::BENCH_ALLOC => {
            let mut a = bench_allocator(entries + 1024, entries)?;
            time_batches(&mut samples, nsamples, batch, || {
                if let Some(s) = a.alloc() {
                    let _ = a.free_slot(core::hint::black_box(s));
                }
            })?;
        }
        uapi::BENCH_ALLOC_FULL => {
            // One free slot after the `entries` taken ones: the worst case of a bitmap scan.
            let mut a = bench_allocator(entries + 1, entries)?;
            time_batches(&mut samples, nsamples, batch, || {
                if let Some(s) = a.alloc() {
                    core::hint::black_box(a.alloc());
                    let _ = a.free_slot(core::hint::black_box(s));
                }
            })?;
        }
        uapi::BENCH_LOOKUP | uapi::BENCH_INSERT => {
            let idx = RcuIndex::new()?;
            let mut fill = Rng(7);
            for i in 0..entries {
                idx.store(fill.next() % space, Entry::Remapped { slot: i }.encode())?;
                if i % 4096 == 0 {
                    cond_resched();
                }
            }
            if b.op == uapi::BENCH_LOOKUP {
                time_batches(&mut samples, nsamples, batch, || {
                    let blk = rng.next() % space;
                    core::hint::black_box(idx.first_in(blk, blk));
                })?;
            } else {
                let mut err = Ok(());
                time_batches(&mut samples, nsamples, batch, || {
                    // New blocks above the filled space: a real insert each time.
                    let blk = space + (rng.next() % space);
                    if let Err(e) = idx.store(blk, 1) {
                        err = Err(e);
                    }
                    idx.remove(blk);
                })?;
                err?;
            }
        }
        uapi::BENCH_FILL_DENSE | uapi::BENCH_FILL_SCATTERED => {
            let step = if b.op == uapi::BENCH_FILL_DENSE {
                1
            } else {
                64
            };
            let idx = RcuIndex::new()?;
            // Memory freed after a grace period (earlier indexes) goes back first.
            rcu_barrier();
            let before = kernel_mem_bytes();
            let mut i = 0;
            let mut err = Ok(());
            time_batches(&mut samples, nsamples, batch, || {
                if i < entries && err.is_ok() {
                    err = idx.store(i * step, Entry::Remapped { slot: i }.encode());
                    i += 1;
                }
            })?;
            err?;
            index_bytes = kernel_mem_bytes().saturating_sub(before);
        }
        _ => return Err(EINVAL),
    }
    let total = t0.elapsed().as_nanos().max(0) as u64;
    samples.sort_unstable();
    let pct = |p: usize| {
        samples
            .get((samples.len().saturating_sub(1)) * p / 100)
            .copied()
            .unwrap_or(0)
    };
    Ok(uapi::dmr_bench {
        size: b.size,
        op: b.op,
        flags: 0,
        batch: batch as u32,
        iterations: b.iterations,
        entries: b.entries,
        ns_min: samples.first().copied().unwrap_or(0),
        ns_p50: pct(50),
        ns_p99: pct(99),
        ns_max: samples.last().copied().unwrap_or(0),
        ns_total: total,
        samples: samples.len() as u64,
        index_bytes,
        reserved: [0; 3],
    })
}

/// A spare-slot allocator of `nslots` slots whose first `taken` are allocated.
fn bench_allocator(nslots: u64, taken: u64) -> Result<SlotAllocator<KVVec<u64>>> {
    let mut bits = KVVec::new();
    bits.extend_with(storage_words(nslots), 0u64, GFP_KERNEL)?;
    let mut a = SlotAllocator::new(bits, nslots).map_err(|_| EINVAL)?;
    for s in 0..taken {
        a.mark_allocated(s).map_err(|_| EINVAL)?;
        if s % 4096 == 0 {
            cond_resched();
        }
    }
    Ok(a)
}

/// Run `op` in `nsamples` batches of `batch`, pushing each batch's mean time per operation (ns).
fn time_batches(
    samples: &mut KVVec<u64>,
    nsamples: usize,
    batch: u64,
    mut op: impl FnMut(),
) -> Result {
    for i in 0..nsamples {
        let t = Instant::<Monotonic>::now();
        for _ in 0..batch {
            op();
        }
        let ns = t.elapsed().as_nanos().max(0) as u64;
        samples.push(ns / batch, GFP_KERNEL)?;
        if i % 1024 == 1023 {
            cond_resched();
        }
    }
    Ok(())
}

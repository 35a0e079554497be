//! A pool of aligned, zero-initialised buffers, shared by the scrubber (one `read_size` buffer
//! per read, aligned for `O_DIRECT`) and the NVMe scraper (4 KiB page buffers for admin
//! commands).
//!
//! Buffers come in whole units of the pool's unit size: a lease of `len` bytes gets
//! `units_for(len)` contiguous units. Each size class keeps its own free list, so a multi-unit
//! buffer stays contiguous. New buffers are zeroed; a pool made with
//! [`zero_on_return`](BufferPool::zero_on_return) also zeroes every returned buffer before it
//! goes back on its free list, so each lease starts from zeros and no data outlives its use.
//! Past `max_idle_units` idle units, returned buffers are freed instead (with 0 every lease is a
//! fresh allocation, which `dmremapd bench scrub` measures against reuse).

use std::alloc::{self, Layout};
use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard};

use crate::tune;

/// A zeroed heap buffer with a chosen alignment (for `O_DIRECT`).
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: AlignedBuf owns its allocation exclusively; no other handle to it exists.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only read the buffer (`as_slice`); writes need `&mut self`.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes aligned to `align` (a power of two).
    pub fn new(len: usize, align: usize) -> io::Result<AlignedBuf> {
        let layout = Layout::from_size_align(len.max(1), align).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("buffer layout: {e}"))
        })?;
        // SAFETY: layout has non-zero size.
        let p = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(p).ok_or_else(|| {
            io::Error::new(io::ErrorKind::OutOfMemory, "buffer allocation failed")
        })?;
        let mut b = AlignedBuf { ptr, layout };
        if len >= 2 << 20 {
            // Large buffers: transparent huge pages cut TLB misses; not in core dumps.
            let _ = tune::madvise(b.as_mut_slice(), tune::MemAdvice::HugePage);
            let _ = tune::madvise(b.as_mut_slice(), tune::MemAdvice::DontDump);
        }
        Ok(b)
    }

    pub fn len(&self) -> usize {
        self.layout.size()
    }

    pub fn is_empty(&self) -> bool {
        self.layout.size() == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the allocation is layout.size() initialized (zeroed) bytes, owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in as_slice; `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout in new().
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.layout.size())
            .field("align", &self.layout.align())
            .finish()
    }
}

/// Pool counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Buffers allocated because no free one of the right size was available.
    pub allocated: u64,
    /// Leases served from a free list.
    pub reused: u64,
    /// Buffers freed on return because the pool was full.
    pub dropped: u64,
    /// Units currently leased out.
    pub leased_units: usize,
    /// Units currently idle in the free lists.
    pub idle_units: usize,
}

#[derive(Debug, Default)]
struct Inner {
    /// free[i] holds idle buffers of i + 1 units.
    free: Vec<Vec<AlignedBuf>>,
    stats: PoolStats,
}

/// The pool. Shareable between threads; leases borrow it.
#[derive(Debug)]
pub struct BufferPool {
    unit: usize,
    align: usize,
    max_idle_units: usize,
    zero_on_return: bool,
    inner: Mutex<Inner>,
}

impl BufferPool {
    /// A pool of buffers in whole `unit`-byte units (at least one byte) aligned to `align` (a
    /// power of two), keeping at most `max_idle_units` idle units. Returned buffers keep their
    /// contents.
    pub fn new(unit: usize, align: usize, max_idle_units: usize) -> BufferPool {
        BufferPool {
            unit: unit.max(1),
            align,
            max_idle_units,
            zero_on_return: false,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The same pool, zeroing every returned buffer before it goes back on a free list.
    pub fn zero_on_return(mut self) -> BufferPool {
        self.zero_on_return = true;
        self
    }

    /// Size of one unit in bytes.
    pub fn unit(&self) -> usize {
        self.unit
    }

    /// Units needed for `len` bytes (at least one).
    pub fn units_for(&self, len: usize) -> usize {
        len.div_ceil(self.unit).max(1)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves only counters and idle buffers behind, so a
        // poisoned lock is still safe to use.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A buffer of `units_for(len)` units (its length is the whole units, ≥ `len`) from a free
    /// list, or a new zeroed one. Fails when the allocation fails or `align` is not a power of
    /// two.
    pub fn try_lease(&self, len: usize) -> io::Result<PooledBuf<'_>> {
        let units = self.units_for(len);
        let reused = {
            let mut g = self.lock();
            let b = g.free.get_mut(units - 1).and_then(Vec::pop);
            if b.is_some() {
                g.stats.reused += 1;
                g.stats.idle_units -= units;
                g.stats.leased_units += units;
            }
            b
        };
        let buf = match reused {
            Some(b) => b,
            None => {
                let size = units.checked_mul(self.unit).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "buffer size overflows")
                })?;
                let b = AlignedBuf::new(size, self.align)?;
                let mut g = self.lock();
                g.stats.allocated += 1;
                g.stats.leased_units += units;
                b
            }
        };
        Ok(PooledBuf {
            pool: self,
            buf: Some(buf),
            units,
        })
    }

    /// [`try_lease`](Self::try_lease) for small buffers: a failed allocation aborts the
    /// process, as it does for `Vec`.
    pub fn lease(&self, len: usize) -> PooledBuf<'_> {
        match self.try_lease(len) {
            Ok(b) => b,
            Err(_) => alloc::handle_alloc_error(
                Layout::from_size_align(self.units_for(len).saturating_mul(self.unit), self.align)
                    .unwrap_or(Layout::new::<u8>()),
            ),
        }
    }

    fn give_back(&self, mut buf: AlignedBuf, units: usize) {
        if self.zero_on_return {
            buf.as_mut_slice().fill(0);
        }
        let mut g = self.lock();
        g.stats.leased_units -= units;
        if g.stats.idle_units + units > self.max_idle_units {
            g.stats.dropped += 1;
            return;
        }
        if g.free.len() < units {
            g.free.resize_with(units, Vec::new);
        }
        g.free[units - 1].push(buf);
        g.stats.idle_units += units;
    }

    /// Counters.
    pub fn stats(&self) -> PoolStats {
        self.lock().stats
    }
}

/// A leased buffer; goes back to its pool when dropped.
#[derive(Debug)]
pub struct PooledBuf<'p> {
    pool: &'p BufferPool,
    buf: Option<AlignedBuf>,
    units: usize,
}

impl PooledBuf<'_> {
    /// Number of pool units this buffer spans.
    pub fn units(&self) -> usize {
        self.units
    }
}

impl Deref for PooledBuf<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.buf.as_ref().map_or(&[], AlignedBuf::as_slice)
    }
}

impl DerefMut for PooledBuf<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.buf.as_mut().map_or(&mut [], AlignedBuf::as_mut_slice)
    }
}

impl Drop for PooledBuf<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            self.pool.give_back(b, self.units);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_pool(max_idle_units: usize) -> BufferPool {
        BufferPool::new(4096, 4096, max_idle_units).zero_on_return()
    }

    #[test]
    fn leases_are_whole_units_and_reused_zeroed() {
        let pool = page_pool(8);
        {
            let mut a = pool.lease(512);
            assert_eq!(a.len(), 4096);
            assert_eq!(a.units(), 1);
            a.fill(0xAB);
            let b = pool.lease(8192);
            assert_eq!(b.len(), 8192);
            assert_eq!(b.units(), 2);
            assert_eq!(pool.stats().leased_units, 3);
        }
        let s = pool.stats();
        assert_eq!(
            (s.allocated, s.reused, s.leased_units, s.idle_units),
            (2, 0, 0, 3)
        );
        let a = pool.lease(4096);
        assert!(a.iter().all(|&x| x == 0), "returned buffers are zeroed");
        let b = pool.lease(5000);
        assert_eq!(b.len(), 8192, "two units, contiguous");
        let s = pool.stats();
        assert_eq!(
            (s.allocated, s.reused),
            (2, 2),
            "both served from the free lists"
        );
    }

    #[test]
    fn a_one_unit_buffer_is_not_used_for_a_two_unit_lease() {
        let pool = page_pool(8);
        drop(pool.lease(4096));
        let b = pool.lease(8192);
        assert_eq!(b.len(), 8192);
        assert_eq!(pool.stats().allocated, 2);
        assert_eq!(pool.stats().idle_units, 1);
    }

    #[test]
    fn idle_limit_frees_surplus_buffers() {
        let pool = page_pool(2);
        let a = pool.lease(1);
        let b = pool.lease(1);
        let c = pool.lease(1);
        drop(a);
        drop(b);
        drop(c);
        let s = pool.stats();
        assert_eq!((s.idle_units, s.dropped), (2, 1));
        let big = pool.lease(8192);
        drop(big);
        assert_eq!(pool.stats().dropped, 2, "no room for two more idle units");
        assert_eq!(pool.units_for(0), 1);
        assert_eq!(pool.units_for(4097), 2);
    }

    #[test]
    fn buffers_are_aligned_and_kept_as_returned_without_zeroing() {
        let pool = BufferPool::new(65536, 8192, 1);
        {
            let mut a = pool.try_lease(65536).unwrap();
            assert_eq!(a.len(), 65536);
            assert_eq!(a.as_ptr() as usize % 8192, 0, "aligned as asked");
            assert!(a.iter().all(|&x| x == 0), "new buffers are zeroed");
            a[0] = 0x5A;
        }
        let a = pool.try_lease(100).unwrap();
        assert_eq!(a[0], 0x5A, "the same buffer, not zeroed on return");
        assert_eq!(a.as_ptr() as usize % 8192, 0);
        assert_eq!((pool.stats().allocated, pool.stats().reused), (1, 1));
    }

    #[test]
    fn a_pool_that_keeps_nothing_allocates_every_lease() {
        let pool = BufferPool::new(4096, 4096, 0);
        for _ in 0..3 {
            drop(pool.try_lease(4096).unwrap());
        }
        let s = pool.stats();
        assert_eq!(
            (s.allocated, s.reused, s.dropped, s.idle_units),
            (3, 0, 3, 0)
        );
    }

    #[test]
    fn a_bad_alignment_is_an_error() {
        let pool = BufferPool::new(4096, 3000, 1);
        let e = pool.try_lease(1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(pool.stats(), PoolStats::default(), "nothing counted");
        let e = AlignedBuf::new(10, 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}

//! A pool of page buffers for admin command data.
//!
//! Buffers come in whole 4 KiB units: a SMART log, an error log of up to 64 entries or an
//! Identify uses one unit, the 8 KiB instance-store statistics page uses a two-unit buffer.
//! Each size class keeps its own free list so a multi-unit buffer stays contiguous (the page is
//! read by one command). A returned buffer is zeroed before it goes back on its free list, so a
//! lease always starts from zeros and no device data outlives its use; past `max_idle_units`
//! idle units, returned buffers are freed instead.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// Size of one pool unit.
pub const UNIT: usize = 4096;

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
    free: Vec<Vec<Box<[u8]>>>,
    stats: PoolStats,
}

/// The pool. Shareable between threads; leases borrow it.
#[derive(Debug)]
pub struct BufferPool {
    inner: Mutex<Inner>,
    max_idle_units: usize,
}

impl BufferPool {
    /// A pool that keeps at most `max_idle_units` idle 4 KiB units.
    pub fn new(max_idle_units: usize) -> Self {
        BufferPool {
            inner: Mutex::new(Inner::default()),
            max_idle_units,
        }
    }

    /// Units needed for `len` bytes (at least one).
    pub fn units_for(len: usize) -> usize {
        len.div_ceil(UNIT).max(1)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves only counters and zeroed buffers behind, so
        // a poisoned lock is still safe to use.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A zeroed buffer of `units_for(len)` units (its length is the whole units, ≥ `len`).
    pub fn lease(&self, len: usize) -> PooledBuf<'_> {
        let units = Self::units_for(len);
        let mut g = self.lock();
        let reused = g.free.get_mut(units - 1).and_then(Vec::pop);
        let buf = match reused {
            Some(b) => {
                g.stats.reused += 1;
                g.stats.idle_units -= units;
                b
            }
            None => {
                g.stats.allocated += 1;
                vec![0u8; units * UNIT].into_boxed_slice()
            }
        };
        g.stats.leased_units += units;
        PooledBuf {
            pool: self,
            buf: Some(buf),
            units,
        }
    }

    fn give_back(&self, mut buf: Box<[u8]>, units: usize) {
        buf.fill(0);
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

/// A leased buffer; goes back to its pool (zeroed) when dropped.
#[derive(Debug)]
pub struct PooledBuf<'p> {
    pool: &'p BufferPool,
    buf: Option<Box<[u8]>>,
    units: usize,
}

impl PooledBuf<'_> {
    /// Number of 4 KiB units this buffer spans.
    pub fn units(&self) -> usize {
        self.units
    }
}

impl Deref for PooledBuf<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.buf.as_deref().unwrap_or(&[])
    }
}

impl DerefMut for PooledBuf<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.buf.as_deref_mut().unwrap_or(&mut [])
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

    #[test]
    fn leases_are_whole_units_and_reused_zeroed() {
        let pool = BufferPool::new(8);
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
        let pool = BufferPool::new(8);
        drop(pool.lease(4096));
        let b = pool.lease(8192);
        assert_eq!(b.len(), 8192);
        assert_eq!(pool.stats().allocated, 2);
        assert_eq!(pool.stats().idle_units, 1);
    }

    #[test]
    fn idle_limit_frees_surplus_buffers() {
        let pool = BufferPool::new(2);
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
        assert_eq!(BufferPool::units_for(0), 1);
        assert_eq!(BufferPool::units_for(4097), 2);
    }
}

//! Spare-slot allocator with an O(1) allocation cache.
//!
//! The spare device's data area is divided into `nslots` slots of one remap block each. A bitmap
//! (storage handed in by the caller: a `Vec<u64>` in userspace, a vmalloc-backed `KVVec<u64>` in
//! the kernel, as it grows with the spare) marks each slot that is allocated *or* sitting in the
//! cache. Allocation pops a slot from a small array of free slots; when the array is empty it is
//! refilled with up to [`REFILL`] free slots found by scanning the bitmap from a rotating cursor,
//! so the amortised cost of an allocation is O(1) word operations and freed slots are reused
//! first (they stay hot in the cache).
//!
//! No allocation, no panics, no floating point: this file is compiled into the kernel module.

use core::ops::DerefMut;

/// Slots the cache holds at most.
pub const CACHE_SLOTS: usize = 64;
/// Slots fetched from the bitmap per refill.
pub const REFILL: usize = 32;

/// Why an allocator operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocError {
    /// The bitmap storage is too small for the number of slots.
    StorageTooSmall,
    /// The slot number is not below the slot count.
    OutOfRange,
    /// Freeing a slot that is not allocated.
    NotAllocated,
    /// Marking a slot used that is already allocated.
    AlreadyAllocated,
}

impl core::fmt::Display for AllocError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            AllocError::StorageTooSmall => "bitmap storage too small",
            AllocError::OutOfRange => "slot out of range",
            AllocError::NotAllocated => "slot not allocated",
            AllocError::AlreadyAllocated => "slot already allocated",
        })
    }
}

/// Words of bitmap storage needed for `nslots` slots.
pub const fn words_for(nslots: u64) -> usize {
    nslots.div_ceil(64) as usize
}

/// The allocator. `B` is the bitmap storage, at least [`words_for`]`(nslots)` words.
pub struct SlotAllocator<B> {
    bits: B,
    nslots: u64,
    allocated: u64,
    cache: [u64; CACHE_SLOTS],
    cached: usize,
    cursor: usize,
}

impl<B: DerefMut<Target = [u64]>> SlotAllocator<B> {
    /// An allocator of `nslots` free slots over `bits` (which it clears).
    pub fn new(mut bits: B, nslots: u64) -> Result<Self, AllocError> {
        if bits.len() < words_for(nslots) {
            return Err(AllocError::StorageTooSmall);
        }
        bits.fill(0);
        Ok(SlotAllocator {
            bits,
            nslots,
            allocated: 0,
            cache: [0; CACHE_SLOTS],
            cached: 0,
            cursor: 0,
        })
    }

    /// Free every slot (when the remaps are loaded again from disk).
    pub fn clear(&mut self) {
        self.bits.fill(0);
        self.allocated = 0;
        self.cached = 0;
        self.cursor = 0;
    }

    /// Total number of slots.
    pub fn total(&self) -> u64 {
        self.nslots
    }

    /// Slots handed out and not freed.
    pub fn allocated(&self) -> u64 {
        self.allocated
    }

    /// Slots that can still be allocated.
    pub fn free(&self) -> u64 {
        self.nslots - self.allocated
    }

    fn word_bit(&self, slot: u64) -> Result<(usize, u64), AllocError> {
        if slot >= self.nslots {
            return Err(AllocError::OutOfRange);
        }
        Ok(((slot / 64) as usize, 1u64 << (slot % 64)))
    }

    fn bit(&self, slot: u64) -> Result<bool, AllocError> {
        let (w, m) = self.word_bit(slot)?;
        Ok(self.bits.get(w).is_some_and(|x| x & m != 0))
    }

    fn set_bit(&mut self, slot: u64, on: bool) -> Result<(), AllocError> {
        let (w, m) = self.word_bit(slot)?;
        let word = self.bits.get_mut(w).ok_or(AllocError::OutOfRange)?;
        if on {
            *word |= m;
        } else {
            *word &= !m;
        }
        Ok(())
    }

    fn cache_position(&self, slot: u64) -> Option<usize> {
        self.cache
            .get(..self.cached)?
            .iter()
            .position(|&s| s == slot)
    }

    /// Fill the cache with up to [`REFILL`] free slots from the bitmap.
    fn refill(&mut self) {
        let words = words_for(self.nslots);
        if words == 0 {
            return;
        }
        let mut scanned = 0;
        while scanned < words && self.cached < REFILL.min(CACHE_SLOTS) {
            let w = self.cursor % words;
            let base = (w as u64) * 64;
            // Bits past the last slot count as used.
            let valid = if base + 64 > self.nslots {
                (1u64 << (self.nslots - base)) - 1
            } else {
                u64::MAX
            };
            let mut free = match self.bits.get(w) {
                Some(x) => !x & valid,
                None => 0,
            };
            while free != 0 && self.cached < REFILL {
                let b = free.trailing_zeros() as u64;
                free &= free - 1;
                let slot = base + b;
                if let (Some(word), Some(c)) =
                    (self.bits.get_mut(w), self.cache.get_mut(self.cached))
                {
                    *word |= 1u64 << b;
                    *c = slot;
                    self.cached += 1;
                }
            }
            if free == 0 {
                self.cursor = (w + 1) % words;
                scanned += 1;
            }
        }
    }

    /// Allocate a free slot, or `None` when the spare is full.
    pub fn alloc(&mut self) -> Option<u64> {
        if self.cached == 0 {
            self.refill();
        }
        if self.cached == 0 {
            return None;
        }
        self.cached -= 1;
        let slot = *self.cache.get(self.cached)?;
        self.allocated += 1;
        Some(slot)
    }

    /// Return an allocated slot.
    pub fn free_slot(&mut self, slot: u64) -> Result<(), AllocError> {
        if !self.bit(slot)? || self.cache_position(slot).is_some() {
            return Err(AllocError::NotAllocated);
        }
        self.allocated -= 1;
        if let Some(c) = self.cache.get_mut(self.cached) {
            // Keep it in the cache: the next allocation reuses it.
            *c = slot;
            self.cached += 1;
            Ok(())
        } else {
            self.set_bit(slot, false)
        }
    }

    /// Mark a specific slot allocated (when loading existing remaps).
    pub fn mark_allocated(&mut self, slot: u64) -> Result<(), AllocError> {
        if let Some(pos) = self.cache_position(slot) {
            // Take it out of the cache: swap with the last cached slot.
            self.cached -= 1;
            let last = self.cache.get(self.cached).copied().unwrap_or(slot);
            if let Some(c) = self.cache.get_mut(pos) {
                *c = last;
            }
        } else if self.bit(slot)? {
            return Err(AllocError::AlreadyAllocated);
        } else {
            self.set_bit(slot, true)?;
        }
        self.allocated += 1;
        Ok(())
    }

    /// Whether `slot` is allocated.
    pub fn is_allocated(&self, slot: u64) -> bool {
        self.bit(slot).unwrap_or(false) && self.cache_position(slot).is_none()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn clear_frees_everything() {
        let mut a = SlotAllocator::new(std::vec![0u64; 2], 100).unwrap();
        let got: std::vec::Vec<u64> = (0..70).map(|_| a.alloc().unwrap()).collect();
        a.mark_allocated(99).unwrap();
        a.clear();
        assert_eq!(a.allocated(), 0);
        assert!(got.iter().all(|&s| !a.is_allocated(s)) && !a.is_allocated(99));
        a.mark_allocated(got[0]).unwrap();
        let mut n = 1;
        while a.alloc().is_some() {
            n += 1;
        }
        assert_eq!(
            n, 100,
            "every slot is handed out exactly once after a clear"
        );
    }
    use std::collections::BTreeSet;
    use std::vec;
    use std::vec::Vec;

    fn alloc(n: u64) -> SlotAllocator<Vec<u64>> {
        SlotAllocator::new(vec![0u64; words_for(n)], n).unwrap()
    }

    #[test]
    fn hands_out_every_slot_once_then_none() {
        for n in [0u64, 1, 5, 63, 64, 65, 130, 1000] {
            let mut a = alloc(n);
            let mut seen = BTreeSet::new();
            while let Some(s) = a.alloc() {
                assert!(s < n, "slot {} of {}", s, n);
                assert!(seen.insert(s), "slot {} twice", s);
            }
            assert_eq!(seen.len() as u64, n);
            assert_eq!(a.free(), 0);
            assert_eq!(a.alloc(), None);
        }
    }

    #[test]
    fn storage_checked() {
        assert_eq!(
            SlotAllocator::new(vec![0u64; 1], 65).err(),
            Some(AllocError::StorageTooSmall)
        );
        assert!(SlotAllocator::new(vec![0u64; 2], 65).is_ok());
    }

    #[test]
    fn free_reuses_and_detects_double_free() {
        let mut a = alloc(100);
        let s = a.alloc().unwrap();
        assert_eq!(a.allocated(), 1);
        a.free_slot(s).unwrap();
        assert_eq!(a.free_slot(s), Err(AllocError::NotAllocated));
        assert_eq!(a.free_slot(99), Err(AllocError::NotAllocated));
        assert_eq!(a.free_slot(100), Err(AllocError::OutOfRange));
        assert_eq!(a.alloc(), Some(s), "freed slot is reused first");
    }

    #[test]
    fn mark_allocated_excludes_slots() {
        let mut a = alloc(10);
        for s in [0, 3, 9] {
            a.mark_allocated(s).unwrap();
        }
        assert_eq!(a.mark_allocated(3), Err(AllocError::AlreadyAllocated));
        // A slot already in the cache can still be claimed.
        let first = a.alloc().unwrap();
        a.free_slot(first).unwrap();
        let cached_other = a.alloc().unwrap();
        a.free_slot(cached_other).unwrap();
        let mut got = BTreeSet::new();
        while let Some(s) = a.alloc() {
            got.insert(s);
        }
        assert_eq!(got, [1, 2, 4, 5, 6, 7, 8].into_iter().collect());
    }

    #[test]
    fn claim_of_cached_slot() {
        let mut a = alloc(10);
        let s = a.alloc().unwrap(); // refill put several slots in the cache
        let other = (0..10).find(|&x| x != s && !a.is_allocated(x)).unwrap();
        a.mark_allocated(other).unwrap();
        let mut got = BTreeSet::new();
        while let Some(x) = a.alloc() {
            got.insert(x);
        }
        assert!(!got.contains(&other) && !got.contains(&s));
        assert_eq!(got.len(), 8);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Alloc,
            Free(usize),
            Mark(u64),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => Just(Op::Alloc),
                3 => any::<usize>().prop_map(Op::Free),
                1 => any::<u64>().prop_map(Op::Mark),
            ]
        }

        proptest! {
            /// Random allocate/free/mark sequences agree with a plain set model.
            #[test]
            fn matches_model(n in 0u64..300, ops in proptest::collection::vec(op(), 0..600)) {
                let mut a = alloc(n);
                let mut model: BTreeSet<u64> = BTreeSet::new();
                for op in ops {
                    match op {
                        Op::Alloc => match a.alloc() {
                            Some(s) => {
                                prop_assert!(s < n);
                                prop_assert!(model.insert(s), "slot {} handed out twice", s);
                            }
                            None => prop_assert_eq!(model.len() as u64, n),
                        },
                        Op::Free(i) => {
                            if model.is_empty() {
                                if n > 0 {
                                    prop_assert_eq!(a.free_slot(i as u64 % n), Err(AllocError::NotAllocated));
                                }
                            } else {
                                let s = *model.iter().nth(i % model.len()).unwrap();
                                prop_assert_eq!(a.free_slot(s), Ok(()));
                                model.remove(&s);
                                prop_assert_eq!(a.free_slot(s), Err(AllocError::NotAllocated));
                            }
                        }
                        Op::Mark(x) => {
                            if n == 0 { continue; }
                            let s = x % n;
                            let r = a.mark_allocated(s);
                            if model.contains(&s) {
                                prop_assert_eq!(r, Err(AllocError::AlreadyAllocated));
                            } else {
                                prop_assert_eq!(r, Ok(()));
                                model.insert(s);
                            }
                        }
                    }
                    prop_assert_eq!(a.allocated(), model.len() as u64);
                    prop_assert_eq!(a.free(), n - model.len() as u64);
                }
                for s in 0..n {
                    prop_assert_eq!(a.is_allocated(s), model.contains(&s));
                }
            }
        }
    }
}

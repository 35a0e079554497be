//! Spare-slot allocator, O(1) at any fill level.
//!
//! The spare device's data area is divided into `nslots` slots of one remap block each. A bitmap
//! marks each allocated slot; above it sit summary levels, each with one bit per word of the
//! level below that says "this word has a free slot below it", up to a single top word. All of
//! it lives in one storage slice handed in by the caller (a `Vec<u64>` in userspace, a
//! vmalloc-backed `KVVec<u64>` in the kernel, as it grows with the spare), [`storage_words`]
//! words long: 1/63 more than the bitmap alone.
//!
//! Allocation walks down from the top word to the lowest free slot and updates the levels on the
//! way back up only as far as a word changes between "has a free slot" and "full"; free and
//! mark work the same way. Every operation touches at most two words per level ([`MAX_LEVELS`]
//! levels for any `u64` slot count, five for a terabyte spare of 4 KiB blocks), whatever the
//! fill level; a full spare refuses an allocation without looking at the bitmap. The lowest
//! free slot is handed out first, so a freed slot is reused before fresh ones above it and slots
//! taken one after another are consecutive while the spare fills.
//!
//! No allocation, no panics, no floating point: this file is compiled into the kernel module.

use core::ops::DerefMut;

/// Levels (the bitmap and its summaries) for the largest `u64` slot count: 2^58 bitmap words,
/// then 2^52, 2^46, ... 2^4 and one top word.
pub const MAX_LEVELS: usize = 11;

/// Why an allocator operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocError {
    /// The storage is too small for the number of slots.
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

/// Words of a bitmap with one bit for each of `nslots` slots.
pub const fn words_for(nslots: u64) -> usize {
    nslots.div_ceil(64) as usize
}

/// Words of allocator storage for `nslots` slots: the bitmap and its summary levels.
pub const fn storage_words(nslots: u64) -> usize {
    let mut n = words_for(nslots);
    let mut total = n;
    while n > 1 {
        n = n.div_ceil(64);
        total += n;
    }
    total
}

/// The allocator. `B` is its storage, at least [`storage_words`]`(nslots)` words.
pub struct SlotAllocator<B> {
    bits: B,
    nslots: u64,
    allocated: u64,
    /// Levels in use: 0 without slots, else the bitmap (level 0) and its summaries.
    levels: usize,
    /// First word of each level in `bits`.
    start: [usize; MAX_LEVELS],
    /// Words in each level.
    len: [usize; MAX_LEVELS],
}

impl<B: DerefMut<Target = [u64]>> SlotAllocator<B> {
    /// An allocator of `nslots` free slots over `bits` (which it overwrites).
    pub fn new(bits: B, nslots: u64) -> Result<Self, AllocError> {
        if bits.len() < storage_words(nslots) {
            return Err(AllocError::StorageTooSmall);
        }
        let mut a = SlotAllocator {
            bits,
            nslots,
            allocated: 0,
            levels: 0,
            start: [0; MAX_LEVELS],
            len: [0; MAX_LEVELS],
        };
        let mut n = words_for(nslots);
        let mut at = 0;
        while n > 0 && a.levels < MAX_LEVELS {
            if let (Some(s), Some(l)) = (a.start.get_mut(a.levels), a.len.get_mut(a.levels)) {
                *s = at;
                *l = n;
            }
            a.levels += 1;
            at += n;
            if n == 1 {
                break;
            }
            n = n.div_ceil(64);
        }
        a.clear();
        Ok(a)
    }

    /// Free every slot (when the remaps are loaded again from disk).
    pub fn clear(&mut self) {
        self.allocated = 0;
        let mut below = 0usize;
        for level in 0..self.levels {
            let (Some(&start), Some(&len)) = (self.start.get(level), self.len.get(level)) else {
                break;
            };
            let Some(words) = self.bits.get_mut(start..start + len) else {
                break;
            };
            if level == 0 {
                words.fill(0);
                // Bits past the last slot count as allocated, so "full" is all ones.
                let tail = self.nslots % 64;
                if let Some(last) = words.last_mut().filter(|_| tail != 0) {
                    *last = !((1u64 << tail) - 1);
                }
            } else {
                // Every word below has a free slot: one bit for each of them.
                for (i, w) in words.iter_mut().enumerate() {
                    let n = below.saturating_sub(i * 64);
                    *w = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
                }
            }
            below = len;
        }
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

    /// Word `i` of summary `level` (>= 1).
    fn summary(&mut self, level: usize, i: usize) -> Option<&mut u64> {
        let at = self.start.get(level)? + i;
        self.bits.get_mut(at)
    }

    /// Bitmap word `w` became full: clear its bit in the summaries, as far up as a word empties.
    fn note_full(&mut self, mut w: usize) {
        for level in 1..self.levels {
            let Some(word) = self.summary(level, w / 64) else {
                return;
            };
            *word &= !(1u64 << (w % 64));
            if *word != 0 {
                return;
            }
            w /= 64;
        }
    }

    /// Bitmap word `w` was full and now has a free slot: set its bit in the summaries, as far
    /// up as a word was empty.
    fn note_free(&mut self, mut w: usize) {
        for level in 1..self.levels {
            let Some(word) = self.summary(level, w / 64) else {
                return;
            };
            let was = *word;
            *word |= 1u64 << (w % 64);
            if was != 0 {
                return;
            }
            w /= 64;
        }
    }

    /// Set the bit of a free slot.
    fn take(&mut self, w: usize, m: u64) {
        if let Some(word) = self.bits.get_mut(w) {
            *word |= m;
            let full = *word == u64::MAX;
            self.allocated += 1;
            if full {
                self.note_full(w);
            }
        }
    }

    /// Allocate the lowest free slot, or `None` when the spare is full.
    pub fn alloc(&mut self) -> Option<u64> {
        if self.allocated >= self.nslots {
            return None;
        }
        // Walk down the summaries to a bitmap word with a free slot.
        let mut i = 0usize;
        for level in (1..self.levels).rev() {
            let word = *self.summary(level, i)?;
            if word == 0 {
                return None;
            }
            i = i * 64 + word.trailing_zeros() as usize;
        }
        let free = !*self.bits.get(i)?;
        if free == 0 {
            return None;
        }
        let b = free.trailing_zeros();
        self.take(i, 1u64 << b);
        Some(i as u64 * 64 + u64::from(b))
    }

    /// Return an allocated slot.
    pub fn free_slot(&mut self, slot: u64) -> Result<(), AllocError> {
        let (w, m) = self.word_bit(slot)?;
        let word = self.bits.get_mut(w).ok_or(AllocError::OutOfRange)?;
        if *word & m == 0 {
            return Err(AllocError::NotAllocated);
        }
        let was_full = *word == u64::MAX;
        *word &= !m;
        self.allocated -= 1;
        if was_full {
            self.note_free(w);
        }
        Ok(())
    }

    /// Mark a specific slot allocated (when loading existing remaps).
    pub fn mark_allocated(&mut self, slot: u64) -> Result<(), AllocError> {
        if self.bit(slot)? {
            return Err(AllocError::AlreadyAllocated);
        }
        let (w, m) = self.word_bit(slot)?;
        self.take(w, m);
        Ok(())
    }

    /// Whether `slot` is allocated.
    pub fn is_allocated(&self, slot: u64) -> bool {
        self.bit(slot).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::BTreeSet;
    use std::vec;
    use std::vec::Vec;

    fn alloc(n: u64) -> SlotAllocator<Vec<u64>> {
        SlotAllocator::new(vec![0u64; storage_words(n)], n).unwrap()
    }

    /// Every summary bit says exactly whether the word below it has a free slot, and the count
    /// of allocated slots matches the bitmap.
    fn check_summaries(a: &SlotAllocator<Vec<u64>>) {
        let used: u64 = (0..a.nslots).filter(|&s| a.is_allocated(s)).count() as u64;
        assert_eq!(used, a.allocated());
        for level in 1..a.levels {
            for i in 0..a.len[level - 1] {
                let child = a.bits[a.start[level - 1] + i];
                let has_free = if level == 1 {
                    child != u64::MAX
                } else {
                    child != 0
                };
                let bit = a.bits[a.start[level] + i / 64] >> (i % 64) & 1 == 1;
                assert_eq!(bit, has_free, "level {} bit {}", level, i);
            }
            let spare_bits = a.len[level] * 64 - a.len[level - 1];
            if spare_bits > 0 {
                let last = a.bits[a.start[level] + a.len[level] - 1];
                assert_eq!(
                    last >> (64 - spare_bits),
                    0,
                    "level {} bits past its words",
                    level
                );
            }
        }
        if a.levels > 0 {
            assert_eq!(a.len[a.levels - 1], 1, "one top word");
        }
    }

    #[test]
    fn storage_words_counts_every_level() {
        assert_eq!(storage_words(0), 0);
        assert_eq!(storage_words(1), 1);
        assert_eq!(storage_words(64), 1);
        assert_eq!(storage_words(65), 3);
        assert_eq!(storage_words(4096), 64 + 1);
        assert_eq!(storage_words(4097), 65 + 2 + 1);
        // A 1 TiB spare of 4 KiB slots: 4M bitmap words and 66,577 summary words (1.6 %).
        assert_eq!(
            storage_words(1 << 28),
            (1 << 22) + (1 << 16) + (1 << 10) + 16 + 1
        );
        let a = alloc(u64::MAX >> 40);
        assert!(a.levels <= MAX_LEVELS);
    }

    #[test]
    fn clear_frees_everything() {
        let mut a = alloc(100);
        let got: Vec<u64> = (0..70).map(|_| a.alloc().unwrap()).collect();
        a.mark_allocated(99).unwrap();
        a.clear();
        check_summaries(&a);
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

    #[test]
    fn hands_out_every_slot_once_then_none() {
        for n in [0u64, 1, 5, 63, 64, 65, 130, 1000, 4096, 4097, 300_000] {
            let mut a = alloc(n);
            for want in 0..n {
                assert_eq!(a.alloc(), Some(want), "lowest free slot first, {} slots", n);
            }
            assert_eq!(a.free(), 0);
            assert_eq!(a.alloc(), None);
            check_summaries(&a);
        }
    }

    #[test]
    fn storage_checked() {
        assert_eq!(
            SlotAllocator::new(vec![0u64; 2], 65).err(),
            Some(AllocError::StorageTooSmall)
        );
        assert!(SlotAllocator::new(vec![0u64; 3], 65).is_ok());
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
        assert_eq!(a.mark_allocated(100), Err(AllocError::OutOfRange));
        assert_eq!(a.alloc(), Some(s), "freed slot is reused first");
    }

    #[test]
    fn mark_allocated_excludes_slots() {
        let mut a = alloc(10);
        for s in [0, 3, 9] {
            a.mark_allocated(s).unwrap();
        }
        assert_eq!(a.mark_allocated(3), Err(AllocError::AlreadyAllocated));
        let first = a.alloc().unwrap();
        a.free_slot(first).unwrap();
        let mut got = BTreeSet::new();
        while let Some(s) = a.alloc() {
            got.insert(s);
        }
        assert_eq!(got, [1, 2, 4, 5, 6, 7, 8].into_iter().collect());
    }

    /// A full spare over three summary levels: freed slots anywhere are found again, lowest
    /// first, and a full spare refuses.
    #[test]
    fn full_spare_finds_freed_slots() {
        let n = 64 * 64 * 64 + 5;
        let mut a = alloc(n);
        assert_eq!(a.levels, 4);
        for s in 0..n {
            a.mark_allocated(s).unwrap();
        }
        check_summaries(&a);
        assert_eq!(a.alloc(), None);
        let freed = [n - 1, 7, 64 * 64 * 3 + 1, 64 * 64 * 64, 4095, 4096];
        for &s in &freed {
            a.free_slot(s).unwrap();
        }
        check_summaries(&a);
        let mut want: Vec<u64> = freed.to_vec();
        want.sort_unstable();
        for w in want {
            assert_eq!(a.alloc(), Some(w));
        }
        assert_eq!(a.alloc(), None);
        check_summaries(&a);
    }

    /// Slots kept out of use (a retired slot is simply never freed) are never handed out, at
    /// any fill level.
    #[test]
    fn retired_slots_stay_out() {
        let mut a = alloc(200);
        let retired = [5u64, 64, 127, 199];
        for &s in &retired {
            a.mark_allocated(s).unwrap();
        }
        let mut got = Vec::new();
        while let Some(s) = a.alloc() {
            got.push(s);
        }
        assert_eq!(got.len(), 196);
        assert!(got.iter().all(|s| !retired.contains(s)));
        for &s in &got {
            a.free_slot(s).unwrap();
        }
        assert_eq!(a.allocated(), 4);
        check_summaries(&a);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Alloc,
            Free(usize),
            Mark(u64),
            /// Allocate until the spare is full.
            Fill,
            Clear,
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                40 => Just(Op::Alloc),
                30 => any::<usize>().prop_map(Op::Free),
                10 => any::<u64>().prop_map(Op::Mark),
                1 => Just(Op::Fill),
                1 => Just(Op::Clear),
            ]
        }

        /// Random allocate/free/mark sequences agree with a plain set model: the lowest free
        /// slot is handed out, none twice, and the summaries stay exact.
        fn run_model(n: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
            let mut a = alloc(n);
            let mut model: BTreeSet<u64> = BTreeSet::new();
            let mut free: BTreeSet<u64> = (0..n).collect();
            let check = |a: &mut SlotAllocator<Vec<u64>>,
                         model: &mut BTreeSet<u64>,
                         free: &mut BTreeSet<u64>|
             -> Result<bool, TestCaseError> {
                match a.alloc() {
                    Some(s) => {
                        prop_assert_eq!(Some(s), free.pop_first(), "lowest free slot");
                        prop_assert!(model.insert(s), "slot {} handed out twice", s);
                        Ok(true)
                    }
                    None => {
                        prop_assert_eq!(model.len() as u64, n);
                        Ok(false)
                    }
                }
            };
            for op in ops {
                match op {
                    Op::Alloc => {
                        check(&mut a, &mut model, &mut free)?;
                    }
                    Op::Fill => while check(&mut a, &mut model, &mut free)? {},
                    Op::Clear => {
                        a.clear();
                        model.clear();
                        free = (0..n).collect();
                    }
                    Op::Free(i) => {
                        if model.is_empty() {
                            if n > 0 {
                                prop_assert_eq!(
                                    a.free_slot(i as u64 % n),
                                    Err(AllocError::NotAllocated)
                                );
                            }
                        } else {
                            let s = *model.iter().nth(i % model.len()).unwrap();
                            prop_assert_eq!(a.free_slot(s), Ok(()));
                            model.remove(&s);
                            free.insert(s);
                            prop_assert_eq!(a.free_slot(s), Err(AllocError::NotAllocated));
                        }
                    }
                    Op::Mark(x) => {
                        if n == 0 {
                            continue;
                        }
                        let s = x % n;
                        let r = a.mark_allocated(s);
                        if model.contains(&s) {
                            prop_assert_eq!(r, Err(AllocError::AlreadyAllocated));
                        } else {
                            prop_assert_eq!(r, Ok(()));
                            model.insert(s);
                            free.remove(&s);
                        }
                    }
                }
                prop_assert_eq!(a.allocated(), model.len() as u64);
                prop_assert_eq!(a.free(), n - model.len() as u64);
            }
            check_summaries(&a);
            for s in 0..n {
                prop_assert_eq!(a.is_allocated(s), model.contains(&s));
            }
            Ok(())
        }

        proptest! {
            #[test]
            fn matches_model(n in prop_oneof![0u64..300, 4000u64..4200],
                             ops in proptest::collection::vec(op(), 0..400)) {
                run_model(n, ops)?;
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(12))]
            /// Four levels: more than 64 * 64 bitmap words.
            #[test]
            fn matches_model_four_levels(n in 262_145u64..263_000,
                                         ops in proptest::collection::vec(op(), 0..400)) {
                run_model(n, ops)?;
            }
        }
    }
}

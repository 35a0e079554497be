//! Random sequences of allocator operations and bio plans, checked against plain models: a slot
//! is never handed out twice or outside the spare, and every planned sector lands where the index
//! says.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use dmremap_core::alloc::{storage_words, AllocError, SlotAllocator};
use dmremap_core::remap::{plan, Dest, Entry, Lookup};
use libfuzzer_sys::fuzz_target;

struct Model<'a>(&'a BTreeMap<u64, Entry>);

impl Lookup for Model<'_> {
    fn first_in(&self, first: u64, last: u64) -> Option<(u64, Entry)> {
        self.0.range(first..=last).next().map(|(&b, &e)| (b, e))
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, ops)) = data.split_first() else {
        return;
    };
    let nslots = u64::from(n);
    let mut a = SlotAllocator::new(vec![0u64; storage_words(nslots)], nslots).unwrap();
    let mut used = BTreeSet::new();
    let mut index: BTreeMap<u64, Entry> = BTreeMap::new();
    for chunk in ops.chunks(3) {
        let (op, x, y) = (
            chunk[0] % 4,
            *chunk.get(1).unwrap_or(&0) as u64,
            *chunk.get(2).unwrap_or(&1),
        );
        match op {
            0 => match a.alloc() {
                Some(s) => {
                    assert!(s < nslots && used.insert(s));
                    index.insert(x, Entry::Remapped { slot: s });
                }
                None => assert_eq!(used.len() as u64, nslots),
            },
            1 => {
                if let Some((&b, &e)) = index.range(x..).next() {
                    index.remove(&b);
                    if let Entry::Remapped { slot } = e {
                        assert_eq!(a.free_slot(slot), Ok(()));
                        used.remove(&slot);
                        assert_eq!(a.free_slot(slot), Err(AllocError::NotAllocated));
                    }
                }
            }
            2 => {
                index.insert(x, Entry::Pending);
            }
            _ => {
                let shift = u32::from(y % 5);
                let sectors = u32::from(y) + 1;
                let (mut pos, mut left) = (x * 3, sectors);
                while left > 0 {
                    let p = plan(&Model(&index), pos, left, shift);
                    assert!(p.sectors >= 1 && p.sectors <= left);
                    for i in 0..u64::from(p.sectors) {
                        let s = pos + i;
                        let want = match index.get(&(s >> shift)) {
                            Some(Entry::Remapped { slot }) => {
                                Dest::Spare((slot << shift) + (s & ((1 << shift) - 1)))
                            }
                            Some(Entry::Pending) => Dest::MainPending,
                            None => Dest::Main,
                        };
                        let got = if let Dest::Spare(b) = p.dest {
                            Dest::Spare(b + i)
                        } else {
                            p.dest
                        };
                        assert_eq!(got, want);
                    }
                    pos += u64::from(p.sectors);
                    left -= p.sectors;
                }
            }
        }
        assert_eq!(a.allocated(), used.len() as u64);
    }
});

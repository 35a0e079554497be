//! Native criterion benchmarks of the engine code the kernel module compiles: spare-slot
//! allocation and bio planning (remap-index lookup), at several index sizes.

use std::collections::BTreeMap;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use dmremap_core::alloc::{storage_words, SlotAllocator};
use dmremap_core::remap::{plan, Entry, Lookup};

struct Index(BTreeMap<u64, Entry>);

impl Lookup for Index {
    fn first_in(&self, first: u64, last: u64) -> Option<(u64, Entry)> {
        self.0.range(first..=last).next().map(|(&b, &e)| (b, e))
    }
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn engine(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine");
    for &n in &[0u64, 1_000, 100_000, 1_000_000] {
        let nslots = n + 1024;
        let mut a = SlotAllocator::new(vec![0u64; storage_words(nslots)], nslots).unwrap();
        for s in 0..n {
            a.mark_allocated(s).unwrap();
        }
        g.bench_with_input(BenchmarkId::new("alloc_free", n), &n, |b, _| {
            b.iter(|| {
                let s = a.alloc().unwrap();
                a.free_slot(black_box(s)).unwrap();
            })
        });

        let space = (n * 4).max(1024);
        let mut rng = 7u64;
        let idx = Index(
            (0..n)
                .map(|i| (xorshift(&mut rng) % space, Entry::Remapped { slot: i }))
                .collect(),
        );
        let mut q = 0x9E37_79B9_7F4A_7C15u64;
        g.bench_with_input(BenchmarkId::new("plan_4k", n), &n, |b, _| {
            b.iter(|| {
                let blk = xorshift(&mut q) % space;
                black_box(plan(&idx, blk << 3, 8, 3))
            })
        });
    }
    // A spare with every slot taken but one, and a full one: a failed allocation must not cost
    // a scan of the whole bitmap.
    for &n in &[1_000_000u64, 64_000_000] {
        let mut a = SlotAllocator::new(vec![0u64; storage_words(n)], n).unwrap();
        for s in 0..n {
            a.mark_allocated(s).unwrap();
        }
        g.bench_with_input(BenchmarkId::new("alloc_fail_full", n), &n, |b, _| {
            b.iter(|| black_box(a.alloc()))
        });
        a.free_slot(n / 2 + 1).unwrap();
        g.bench_with_input(BenchmarkId::new("alloc_free_near_full", n), &n, |b, _| {
            b.iter(|| {
                let s = a.alloc().unwrap();
                black_box(a.alloc());
                a.free_slot(black_box(s)).unwrap();
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = engine
}
criterion_main!(benches);

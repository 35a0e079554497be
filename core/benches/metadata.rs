//! Native criterion benchmarks of the metadata codec at 100K records: encoding a whole copy
//! (the work of one commit), validating a copy, and a full load (both copies validated, the
//! winner read again and its records delivered) from an in-memory image.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use dmremap_core::alloc::words_for;
use dmremap_core::metadata::{
    check_copy, load, probe, write_copy, CopyEncoder, CopyId, Expect, Geometry, Image, MainDevice,
    SetInfo, MD_BLOCK_SIZE,
};
use dmremap_core::remap::Entry;

const RECORDS: u64 = 100_000;

fn setup() -> (SetInfo, Vec<(u64, Entry)>) {
    // A 1 GiB spare of 4 KiB slots (about 262K slots) on a 1 TiB main device.
    let set = SetInfo {
        uuid: *b"bench-remap-set!",
        main: MainDevice {
            sectors: 1 << 31,
            offset: 0,
            id: MainDevice::id_from(b"BENCH-MAIN").unwrap(),
        },
        geometry: Geometry::for_spare(1 << 21, 4096, 4096).unwrap(),
        features_compat: 0,
        name: [0; dmremap_core::metadata::NAME_LEN],
        target_begin: 0,
        target_len: 0,
    };
    let recs = (0..RECORDS)
        .map(|i| {
            (
                i * 2_654_435 % 7 + i * 2_000,
                if i % 50 == 0 {
                    Entry::Pending
                } else {
                    Entry::Remapped { slot: i }
                },
            )
        })
        .collect();
    (set, recs)
}

fn metadata(c: &mut Criterion) {
    let (set, recs) = setup();
    let blocks = RECORDS.div_ceil(252) as usize;
    let mut g = c.benchmark_group("metadata");
    g.throughput(Throughput::Elements(RECORDS));

    // Encode every record block and the superblock into one contiguous buffer.
    let mut out = vec![0u8; (blocks + 1) * MD_BLOCK_SIZE];
    let mut bits = vec![0u64; words_for(set.geometry.data_slots)];
    g.bench_function("encode_100k", |b| {
        b.iter(|| {
            let mut enc = CopyEncoder::new(&set, CopyId::B, 7, None).unwrap();
            let mut it = recs.iter().copied();
            let mut chunks = out.chunks_exact_mut(MD_BLOCK_SIZE);
            loop {
                let blk = chunks.next().unwrap();
                if enc.next_block(&mut it, blk).unwrap().is_none() {
                    black_box(enc.finish(blk).unwrap());
                    break;
                }
            }
        })
    });
    g.bench_function("encode_100k_slot_check", |b| {
        b.iter(|| {
            let mut enc = CopyEncoder::new(&set, CopyId::B, 7, Some(&mut bits)).unwrap();
            let mut it = recs.iter().copied();
            let mut chunks = out.chunks_exact_mut(MD_BLOCK_SIZE);
            loop {
                let blk = chunks.next().unwrap();
                if enc.next_block(&mut it, blk).unwrap().is_none() {
                    black_box(enc.finish(blk).unwrap());
                    break;
                }
            }
        })
    });

    let sectors = set.geometry.spare_sectors;
    let mut img = vec![0u8; (sectors * 512) as usize];
    let mut buf = vec![0u8; MD_BLOCK_SIZE];
    write_copy(
        &mut Image(&mut img[..]),
        &set,
        CopyId::B,
        2,
        recs.iter().copied(),
        &mut buf,
        None,
    )
    .unwrap();
    write_copy(
        &mut Image(&mut img[..]),
        &set,
        CopyId::A,
        3,
        recs.iter().copied(),
        &mut buf,
        None,
    )
    .unwrap();
    let p = probe(&mut Image(&img[..]), sectors, &mut buf).unwrap();
    let sb = p.a.unwrap();
    g.bench_function("decode_validate_copy_100k", |b| {
        b.iter(|| black_box(check_copy(&mut Image(&img[..]), &sb, &mut buf, &mut bits).unwrap()))
    });
    g.bench_function("load_100k", |b| {
        b.iter(|| {
            let mut n = 0u64;
            let l = load(
                &mut Image(&img[..]),
                sectors,
                &Expect::default(),
                &mut buf,
                &mut bits,
                |blk, _| {
                    n = n.wrapping_add(blk);
                    Ok(())
                },
                |_, _| Ok(()),
            )
            .unwrap();
            black_box((l, n))
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_millis(500));
    targets = metadata
}
criterion_main!(benches);

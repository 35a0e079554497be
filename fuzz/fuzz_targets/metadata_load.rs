//! The metadata loader on arbitrary spare images: it must return Ok or Err, never panic, and
//! whatever it loads must be consistent. Three modes, chosen by the first byte:
//!
//! * raw: the rest of the input is the spare image;
//! * patched: a valid two-copy image (copy A seq 3, copy B seq 2, two record blocks each) with
//!   the input applied as (offset, xor) patches to its metadata blocks: a load that succeeds
//!   must deliver exactly the records of one of the two commits;
//! * patched and resealed: as above, then every metadata block gets a correct checksum, so the
//!   field checks behind the checksum are reached.
#![no_main]

use std::collections::BTreeSet;
use std::sync::OnceLock;

use dmremap_core::alloc::words_for;
use dmremap_core::metadata::{
    load, probe, seal, write_copy, CopyId, CopyStatus, Expect, Geometry, Image, LoadError,
    MainDevice, SetInfo, MD_BLOCK_SIZE,
};
use dmremap_core::remap::Entry;
use libfuzzer_sys::fuzz_target;

type Recs = Vec<(u64, Entry)>;

const SPARE_SECTORS: u64 = 552;

struct Seed {
    img: Vec<u8>,
    a: Recs,
    b: Recs,
    /// Byte ranges of the metadata blocks (copy A then copy B).
    meta: Vec<(usize, usize)>,
}

fn seed() -> &'static Seed {
    static SEED: OnceLock<Seed> = OnceLock::new();
    SEED.get_or_init(|| {
        let set = SetInfo {
            uuid: *b"fuzz-target-set!",
            main: MainDevice {
                sectors: 1 << 20,
                offset: 0,
                id: MainDevice::id_from(b"FUZZ-MAIN").unwrap(),
            },
            geometry: Geometry::for_spare(SPARE_SECTORS, 512, 0).unwrap(),
            features_compat: 0,
            name: [0; dmremap_core::metadata::NAME_LEN],
            target_begin: 0,
            target_len: 0,
        };
        let a: Recs = (0..300u64)
            .map(|i| {
                (
                    i * 5 + 2,
                    if i % 7 == 0 {
                        Entry::Pending
                    } else {
                        Entry::Remapped { slot: 503 - i }
                    },
                )
            })
            .collect();
        let b: Recs = (0..260u64)
            .map(|i| {
                (
                    i * 3,
                    if i % 11 == 0 {
                        Entry::Pending
                    } else {
                        Entry::Remapped { slot: i }
                    },
                )
            })
            .collect();
        let mut img = vec![0u8; (SPARE_SECTORS * 512) as usize];
        let mut buf = vec![0u8; MD_BLOCK_SIZE];
        let mut bits = vec![0u64; words_for(set.geometry.data_slots)];
        write_copy(
            &mut Image(&mut img[..]),
            &set,
            CopyId::B,
            2,
            b.iter().copied(),
            &mut buf,
            Some(&mut bits),
        )
        .unwrap();
        write_copy(
            &mut Image(&mut img[..]),
            &set,
            CopyId::A,
            3,
            a.iter().copied(),
            &mut buf,
            Some(&mut bits),
        )
        .unwrap();
        let g = set.geometry;
        let bytes = |s: u64| (s * 512) as usize;
        let meta = vec![
            (
                bytes(g.meta_a_start),
                bytes(g.meta_a_start + g.meta_sectors),
            ),
            (
                bytes(g.meta_b_start),
                bytes(g.meta_b_start + g.meta_sectors),
            ),
        ];
        Seed { img, a, b, meta }
    })
}

fn check(img: &[u8], originals: Option<(&Recs, &Recs)>) {
    let sectors = img.len() as u64 / 512;
    let mut buf = vec![0u8; MD_BLOCK_SIZE];
    let words = match probe(&mut Image(img), sectors, &mut buf) {
        Ok(p) => p.bitmap_words(),
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let mut bits = vec![0u64; words];
    let mut got: Recs = Vec::new();
    let mut journal = Vec::new();
    let r = load(
        &mut Image(img),
        sectors,
        &Expect::default(),
        &mut buf,
        &mut bits,
        |b, e| {
            got.push((b, e));
            Ok(())
        },
        |b, e| {
            journal.push((b, e));
            Ok(())
        },
    );
    match r {
        Ok(l) => {
            let g = l.sb.set.geometry;
            assert_eq!(got.len() as u64, l.sb.nr_records);
            assert!(
                got.windows(2).all(|w| w[0].0 < w[1].0),
                "records sorted and unique"
            );
            let mut slots = BTreeSet::new();
            for &(blk, e) in &got {
                assert!(blk < l.sb.set.main_blocks());
                if let Entry::Remapped { slot } = e {
                    assert!(slot < g.data_slots);
                    assert!(slots.insert(slot), "slot {slot} twice");
                }
            }
            assert_eq!(slots.len() as u64, l.sb.nr_remapped);
            assert_eq!(
                bits.iter().map(|w| u64::from(w.count_ones())).sum::<u64>(),
                l.sb.nr_remapped
            );
            assert!(g.meta_sectors <= g.data_start && g.data_end() <= g.meta_b_start);
            assert!(l.next_seq > l.sb.seq);
            assert!(l.next_seq > l.journal.journal.last_seq);
            assert_eq!(journal.len() as u64, l.journal.entries);
            for &(blk, e) in &journal {
                assert!(blk < l.sb.set.main_blocks());
                if let Some(Entry::Remapped { slot }) = e {
                    assert!(slot < g.data_slots);
                }
            }
            if let CopyStatus::Valid { seq } = l.other {
                assert!(seq < l.sb.seq || (seq == l.sb.seq && l.winner == CopyId::A));
            }
            if let Some((a, b)) = originals {
                match l.winner {
                    CopyId::A => assert_eq!(&got, a, "copy A loaded with altered records"),
                    CopyId::B => assert_eq!(&got, b, "copy B loaded with altered records"),
                }
            }
        }
        Err(e) => {
            if e == LoadError::Blank {
                assert!(img[..MD_BLOCK_SIZE].iter().all(|&x| x == 0));
            }
            let _ = e.to_string();
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    match mode % 3 {
        0 => check(rest, None),
        m => {
            let s = seed();
            let mut img = s.img.clone();
            let total: usize = s.meta.iter().map(|(a, b)| b - a).sum();
            for p in rest.chunks_exact(3) {
                let mut off = usize::from(u16::from_le_bytes([p[0], p[1]])) % total;
                for &(start, end) in &s.meta {
                    if off < end - start {
                        img[start + off] ^= p[2];
                        break;
                    }
                    off -= end - start;
                }
            }
            if m == 1 {
                check(&img, Some((&s.a, &s.b)));
            } else {
                for &(start, end) in &s.meta {
                    for blk in img[start..end].chunks_exact_mut(MD_BLOCK_SIZE) {
                        seal(blk);
                    }
                }
                check(&img, None);
            }
        }
    }
});

extern crate std;
use super::geometry::fit;
use super::layout as L;
use super::*;
use crate::alloc::words_for;
use crate::crc32c;
use crate::remap::Entry;
use std::collections::BTreeMap;
use std::vec;
use std::vec::Vec;

const UUID: [u8; 16] = *b"0123456789abcdef";

fn set_for(spare_sectors: u64, bs: u32, extra: u64, main_sectors: u64, id: &[u8]) -> SetInfo {
    SetInfo {
        uuid: UUID,
        main: MainDevice {
            sectors: main_sectors,
            offset: 0,
            id: MainDevice::id_from(id).unwrap(),
        },
        geometry: Geometry::for_spare(spare_sectors, bs, extra).unwrap(),
        features_compat: 0,
        name: [0; NAME_LEN],
        target_begin: 0,
        target_len: 0,
    }
}

/// The small image: 64 sectors, 4 KiB blocks: one superblock + one record block per copy.
fn small_set() -> SetInfo {
    set_for(64, 4096, 0, 1 << 20, b"SERIAL-0001")
}

/// Two record blocks per copy: 552 sectors of 512-byte slots (504 slots, capacity 504).
fn two_block_set() -> SetInfo {
    set_for(552, 512, 0, 1 << 20, b"WWN-5000c500a1b2c3d4")
}

type Recs = Vec<(u64, Entry)>;

/// Formats `img` for `set` with no records.
fn format_empty(img: &mut [u8], set: &SetInfo) -> Result<(), FormatError> {
    let mut buf = vec![0u8; MD_BLOCK_SIZE];
    format(&mut Image(img), set, core::iter::empty(), &mut buf, None)
}

fn blank(set: &SetInfo) -> Vec<u8> {
    vec![0u8; (set.geometry.spare_sectors * SECTOR_SIZE) as usize]
}

fn commit(img: &mut [u8], set: &SetInfo, copy: CopyId, seq: u64, recs: &Recs) -> Superblock {
    let mut buf = vec![0u8; MD_BLOCK_SIZE];
    let mut bits = vec![0u64; words_for(set.geometry.data_slots)];
    write_copy(
        &mut Image(img),
        set,
        copy,
        seq,
        recs.iter().copied(),
        &mut buf,
        Some(&mut bits),
    )
    .unwrap()
}

/// An image whose copy A (seq 3) holds `a` and copy B (seq 2) holds `b`.
fn two_commits(set: &SetInfo, a: &Recs, b: &Recs) -> Vec<u8> {
    let mut img = blank(set);
    commit(&mut img, set, CopyId::B, 2, b);
    commit(&mut img, set, CopyId::A, 3, a);
    img
}

fn load_img(img: &[u8], expect: &Expect<'_>) -> Result<(Loaded, Recs, Vec<u64>), LoadError> {
    let mut buf = vec![0u8; MD_BLOCK_SIZE];
    let sectors = img.len() as u64 / SECTOR_SIZE;
    let p = probe(&mut Image(img), sectors, &mut buf)?;
    let mut bits = vec![0u64; p.bitmap_words()];
    let mut out = BTreeMap::new();
    let mut journal = Vec::new();
    let l = load(
        &mut Image(img),
        sectors,
        expect,
        &mut buf,
        &mut bits,
        |b, e| {
            assert!(
                out.insert(b, e).is_none(),
                "record of block {b} delivered twice"
            );
            Ok(())
        },
        |b, e| {
            journal.push((b, e));
            Ok(())
        },
    )?;
    for (b, e) in journal {
        match e {
            Some(e) => out.insert(b, e),
            None => out.remove(&b),
        };
    }
    Ok((l, out.into_iter().collect(), bits))
}

fn recs(n: u64, stride: u64) -> Recs {
    (0..n)
        .map(|i| {
            (
                i * stride + 1,
                if i % 5 == 4 {
                    Entry::Pending
                } else {
                    Entry::Remapped { slot: n - 1 - i }
                },
            )
        })
        .collect()
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
fn le64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

#[test]
fn geometry_small_spares_by_hand() {
    // 64 sectors, 4 KiB blocks: copy = SB + 1 record block = 16 sectors; 16 + 4*8 + 16 = 64.
    let g = Geometry::for_spare(64, 4096, 0).unwrap();
    assert_eq!(
        g,
        Geometry {
            spare_sectors: 64,
            block_size: 4096,
            record_capacity: 4,
            meta_a_start: 0,
            meta_b_start: 48,
            meta_sectors: 16,
            data_start: 16,
            data_slots: 4,
        }
    );
    assert_eq!((g.sb_sector(CopyId::A), g.sb_sector(CopyId::B)), (0, 56));
    assert_eq!(
        (g.record_sector(CopyId::A, 0), g.record_sector(CopyId::B, 0)),
        (8, 48)
    );
    assert_eq!(
        (g.slot_sector(0), g.slot_sector(3), g.slot_sector(4)),
        (Some(16), Some(40), None)
    );
    // An odd size is rounded down to whole 4 KiB blocks: the same layout, SB B at 56.
    let g2 = Geometry::for_spare(71, 4096, 0).unwrap();
    assert_eq!(
        (g2.meta_b_start, g2.data_slots, g2.sb_sector(CopyId::B)),
        (48, 4, 56)
    );
    // 64 KiB blocks: the data area is aligned to 128 sectors; 128 + 30*128 + 16 <= 4096.
    let g = Geometry::for_spare(4100, 65536, 0).unwrap();
    assert_eq!(
        (g.data_start, g.data_slots, g.meta_b_start, g.meta_sectors),
        (128, 30, 4080, 16)
    );
    // 512-byte blocks over 552 sectors: 504 slots need 2 record blocks (24 sectors per copy).
    let g = two_block_set().geometry;
    assert_eq!(
        (
            g.data_start,
            g.data_slots,
            g.record_capacity,
            g.meta_sectors,
            g.meta_b_start
        ),
        (24, 504, 504, 24, 528)
    );
    assert_eq!(g.record_blocks(), 2);
    // Extra records for pending blocks make the metadata larger.
    let g = Geometry::for_spare(64, 4096, 300).unwrap();
    assert_eq!(
        (g.record_capacity, g.meta_sectors, g.data_slots),
        (300 + g.data_slots, 24, 2)
    );
}

#[test]
fn geometry_refusals() {
    assert_eq!(
        Geometry::for_spare(1 << 20, 1000, 0),
        Err(GeometryError::BlockSize)
    );
    assert_eq!(
        Geometry::for_spare(1 << 20, 256, 0),
        Err(GeometryError::BlockSize)
    );
    assert_eq!(
        Geometry::for_spare(1 << 30, 2 << 20, 0),
        Err(GeometryError::BlockSize)
    );
    // 40 sectors: two copies of 16 sectors leave 8 sectors: exactly one 4 KiB slot.
    assert_eq!(Geometry::for_spare(40, 4096, 0).unwrap().data_slots, 1);
    assert_eq!(
        Geometry::for_spare(39, 4096, 0),
        Err(GeometryError::TooSmall)
    );
    assert_eq!(
        Geometry::for_spare(0, 4096, 0),
        Err(GeometryError::TooSmall)
    );
    assert_eq!(
        Geometry::for_spare(1 << 40, 4096, u64::MAX),
        Err(GeometryError::TooSmall)
    );
    // Record block indexes are 32-bit: that bounds the slots of a huge spare.
    let g = Geometry::for_spare(u64::MAX, 512, 0).unwrap();
    assert_eq!(g.data_slots, RECORDS_PER_BLOCK as u64 * u64::from(u32::MAX));
    assert!(g.data_end() <= g.meta_b_start);
}

#[test]
fn superblock_bytes() {
    let mut set = small_set();
    set.name = SetInfo::name_from(b"r0").unwrap();
    set.target_begin = 8;
    set.target_len = 1 << 19;
    let sb = Superblock {
        copy: CopyId::B,
        version: VERSION,
        seq: 0x0102_0304_0506_0708,
        set,
        nr_records: 3,
        nr_remapped: 2,
        nr_pending: 1,
        records_crc: 0xA1B2_C3D4,
    };
    let mut b = vec![0xEEu8; MD_BLOCK_SIZE + 7];
    encode_superblock(&sb, &mut b).unwrap();
    assert!(
        b[MD_BLOCK_SIZE..].iter().all(|&x| x == 0xEE),
        "nothing past the block"
    );
    let b = &b[..MD_BLOCK_SIZE];
    assert_eq!(&b[0..4], b"DMRM");
    assert_eq!(le32(b, 0x08), 3);
    assert_eq!(&b[0x0c..0x10], &[0x42, 0, 0, 0]);
    assert_eq!(&b[0x10..0x18], &[8, 7, 6, 5, 4, 3, 2, 1]);
    assert_eq!((le32(b, 0x18), le32(b, 0x1c)), (0, 0));
    assert_eq!(&b[0x20..0x30], b"0123456789abcdef");
    assert_eq!(le64(b, 0x30), 1 << 20);
    assert_eq!(le64(b, 0x38), 0);
    assert!(b[0x40..0x80].iter().all(|&x| x == 0), "main_id_v1 unused");
    assert_eq!(&b[0x80..0x88], &[0x00, 0x10, 0, 0, 0x00, 0x10, 0, 0]);
    let geo: Vec<u64> = (0..8).map(|i| le64(b, 0x88 + 8 * i)).collect();
    assert_eq!(geo, [64, 0, 48, 16, 16, 4, 4, 3]);
    assert_eq!((le64(b, 0xc8), le64(b, 0xd0)), (2, 1));
    assert_eq!(&b[0xd8..0xdc], &[0xD4, 0xC3, 0xB2, 0xA1]);
    assert_eq!(le32(b, 0xdc), 1);
    assert_eq!(&b[0xe0..0xeb], b"SERIAL-0001");
    assert!(b[0xeb..0x1e0].iter().all(|&x| x == 0));
    assert_eq!(&b[0x1e0..0x1e2], b"r0");
    assert!(b[0x1e2..0x260].iter().all(|&x| x == 0));
    assert_eq!((le64(b, 0x260), le64(b, 0x268)), (8, 1 << 19));
    assert!(b[0x270..].iter().all(|&x| x == 0));
    let mut z = b.to_vec();
    z[4..8].fill(0);
    assert_eq!(le32(b, 4), crc32c::crc32c(&z));
    assert_eq!(decode_superblock(b, CopyId::B, 64), Ok(sb));
    assert_eq!(
        decode_superblock(b, CopyId::A, 64),
        Err(CopyError::Superblock { field: Field::Copy })
    );
}

/// Rewrite a version 2 superblock block as version 1 wrote it: identity at 0x040 (at most 64
/// bytes), no name, everything from 0x0e0 zero.
fn to_v1(b: &mut [u8]) {
    let id: [u8; MAIN_ID_V1_LEN] = get_array(b, L::SB_MAIN_ID);
    assert!(b[L::SB_MAIN_ID + MAIN_ID_V1_LEN..L::SB_NAME]
        .iter()
        .all(|&x| x == 0));
    b[L::SB_MAIN_ID_V1..L::SB_MAIN_ID_V1 + MAIN_ID_V1_LEN].copy_from_slice(&id);
    b[L::SB_RESERVED_V1..MD_BLOCK_SIZE].fill(0);
    put_u32(b, L::SB_VERSION, 1);
    seal(b);
}

#[test]
fn version_1_superblock_decodes() {
    let mut set = small_set();
    set.name = SetInfo::name_from(b"r0").unwrap();
    let sb = Superblock {
        copy: CopyId::A,
        version: VERSION,
        seq: 7,
        set,
        nr_records: 0,
        nr_remapped: 0,
        nr_pending: 0,
        records_crc: crc32c::crc32c(&[]),
    };
    let mut b = vec![0u8; MD_BLOCK_SIZE];
    encode_superblock(&sb, &mut b).unwrap();
    to_v1(&mut b);
    let got = decode_superblock(&b, CopyId::A, 64).unwrap();
    assert_eq!(got.version, 1);
    assert_eq!(got.set.main.id_bytes(), b"SERIAL-0001");
    assert_eq!(got.set.name_bytes(), b"", "version 1 has no name");
    // Version 1 with bytes where version 2 keeps its new fields: reserved, refused.
    let mut bad = b.clone();
    bad[L::SB_NAME] = b'x';
    seal(&mut bad);
    assert_eq!(
        decode_superblock(&bad, CopyId::A, 64),
        Err(CopyError::Superblock {
            field: Field::Reserved
        })
    );
    // Version 2 with bytes in the old identity field: refused.
    let mut v2 = vec![0u8; MD_BLOCK_SIZE];
    encode_superblock(&sb, &mut v2).unwrap();
    v2[L::SB_MAIN_ID_V1] = b'x';
    seal(&mut v2);
    assert_eq!(
        decode_superblock(&v2, CopyId::A, 64),
        Err(CopyError::Superblock {
            field: Field::Reserved
        })
    );
    // Versions outside 1..=3: refused.
    for v in [0, 4, 0xffff_ffff] {
        let mut x = b.clone();
        put_u32(&mut x, L::SB_VERSION, v);
        seal(&mut x);
        assert_eq!(
            decode_superblock(&x, CopyId::A, 64),
            Err(CopyError::Superblock {
                field: Field::Version
            }),
            "version {v}"
        );
    }
    // A name without its terminating NUL, or with bytes after the NUL: refused.
    let mut x = v2.clone();
    x[L::SB_MAIN_ID_V1] = 0;
    x[L::SB_NAME..L::SB_NAME + NAME_LEN].fill(b'n');
    seal(&mut x);
    assert_eq!(
        decode_superblock(&x, CopyId::A, 64),
        Err(CopyError::Superblock { field: Field::Name })
    );
    assert_eq!(SetInfo::name_from(&[b'n'; NAME_LEN]), None);
    assert!(SetInfo::name_from(&[b'n'; NAME_LEN - 1]).is_some());
}

#[test]
fn identity_check_by_version() {
    let set = small_set();
    let e = Expect {
        main_id: Some(b"wwid-of-the-disk"),
        main_id_v1: Some(b"SERIAL-0001"),
        ..Expect::default()
    };
    // Version 1 recorded the kernel name: checked against main_id_v1.
    assert_eq!(e.check(&set, 1), Ok(()));
    // Version 2 records the stable identity: checked against main_id.
    assert_eq!(e.check(&set, 2), Err(Field::MainId));
    let renamed = Expect {
        main_id: Some(b"SERIAL-0001"),
        main_id_v1: Some(b"nvme1n1"),
        ..Expect::default()
    };
    assert_eq!(
        renamed.check(&set, 2),
        Ok(()),
        "kernel name not part of v2 identity"
    );
    assert_eq!(renamed.check(&set, 1), Err(Field::MainId));
}

#[test]
fn version_1_copies_load_and_migrate() {
    let set = small_set();
    let mut img = vec![0u8; 64 * 512];
    let recs: Recs = [(3, Entry::Remapped { slot: 1 }), (7, Entry::Pending)]
        .into_iter()
        .collect();
    commit(&mut img, &set, CopyId::A, 1, &recs);
    commit(&mut img, &set, CopyId::B, 2, &recs);
    for copy in [CopyId::A, CopyId::B] {
        let at = (set.geometry.sb_sector(copy) * 512) as usize;
        to_v1(&mut img[at..at + MD_BLOCK_SIZE]);
    }
    let e = Expect {
        main_id: Some(b"stable-id"),
        main_id_v1: Some(b"SERIAL-0001"),
        ..Expect::default()
    };
    let (l, got, _) = load_img(&img, &e).unwrap();
    assert_eq!((l.sb.version, l.sb.seq, l.winner), (1, 2, CopyId::B));
    assert_eq!(got, recs);
    let wrong = Expect {
        main_id_v1: Some(b"nvme9n1"),
        ..e
    };
    assert!(matches!(
        load_img(&img, &wrong),
        Err(LoadError::Mismatch {
            field: Field::MainId,
            ..
        })
    ));
    // Migration: the next commit writes version 2 with the stable identity over copy A;
    // it wins, and the old copy B is reported as belonging to another set (rewritten later).
    let mut set2 = l.sb.set;
    set2.main.id = MainDevice::id_from(b"stable-id").unwrap();
    set2.name = SetInfo::name_from(b"r0").unwrap();
    commit(&mut img, &set2, l.commit_target(), l.next_seq, &recs);
    let (l2, got2, _) = load_img(&img, &e).unwrap();
    assert_eq!(
        (l2.sb.version, l2.sb.seq, l2.winner),
        (VERSION, 3, CopyId::A)
    );
    assert_eq!(l2.sb.set.main.id_bytes(), b"stable-id");
    assert_eq!(l2.sb.set.name_bytes(), b"r0");
    assert_eq!(l2.other, CopyStatus::Bad(CopyError::OtherSet));
    assert_eq!(got2, recs);
    commit(&mut img, &set2, l2.commit_target(), l2.next_seq, &recs);
    let (l3, _, _) = load_img(&img, &e).unwrap();
    assert_eq!(l3.other, CopyStatus::Valid { seq: 3 });
}

#[test]
fn record_block_bytes() {
    let set = small_set();
    let mut enc = CopyEncoder::new(&set, CopyId::B, 9, None).unwrap();
    let mut it = [(5u64, Entry::Remapped { slot: 2 }), (9, Entry::Pending)].into_iter();
    let mut b = vec![0xEEu8; MD_BLOCK_SIZE];
    assert_eq!(enc.next_block(&mut it, &mut b), Ok(Some(48)));
    assert_eq!(&b[0..4], b"DMRR");
    assert_eq!(le64(&b, 0x08), 9);
    assert_eq!(&b[0x10..0x20], b"0123456789abcdef");
    assert_eq!(
        (le32(&b, 0x20), le32(&b, 0x24), le32(&b, 0x28)),
        (0x42, 0, 2)
    );
    assert!(b[0x2c..0x40].iter().all(|&x| x == 0));
    assert_eq!(
        &b[0x40..0x50],
        &[5, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1]
    );
    assert_eq!(
        &b[0x50..0x60],
        &[9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]
    );
    assert!(b[0x60..].iter().all(|&x| x == 0));
    let rb_crc = le32(&b, 4);
    let mut z = b.clone();
    z[4..8].fill(0);
    assert_eq!(rb_crc, crc32c::crc32c(&z));
    assert_eq!(enc.next_block(&mut it, &mut b), Ok(None));
    let (sector, sb) = enc.finish(&mut b).unwrap();
    assert_eq!(sector, 56);
    assert_eq!((sb.nr_records, sb.nr_remapped, sb.nr_pending), (2, 1, 1));
    assert_eq!(sb.records_crc, crc32c::crc32c(&rb_crc.to_le_bytes()));
    assert_eq!(
        entry_from_disk(0x0100_0000_0000_0007),
        Ok(Entry::Remapped { slot: 7 })
    );
    assert_eq!(entry_from_disk(0x0200_0000_0000_0000), Ok(Entry::Pending));
    assert_eq!(
        entry_from_disk(0x0200_0000_0000_0001),
        Err(RecordProblem::PendingSlot)
    );
    assert_eq!(entry_from_disk(0), Err(RecordProblem::State));
    assert_eq!(
        entry_from_disk(0x0300_0000_0000_0000),
        Err(RecordProblem::State)
    );
}

#[test]
fn format_then_load_round_trip() {
    let set = two_block_set();
    let r = recs(300, 3);
    let mut img = blank(&set);
    let mut buf = vec![0u8; MD_BLOCK_SIZE];
    format(
        &mut Image(&mut img[..]),
        &set,
        r.iter().copied(),
        &mut buf,
        None,
    )
    .unwrap();
    let (l, got, bits) = load_img(&img, &Expect::default()).unwrap();
    assert_eq!(got, r);
    assert_eq!(
        (l.winner, l.sb.seq, l.other, l.next_seq),
        (CopyId::B, 2, CopyStatus::Valid { seq: 1 }, 3)
    );
    assert_eq!(l.commit_target(), CopyId::A);
    assert_eq!(
        (l.sb.nr_records, l.sb.nr_remapped, l.sb.nr_pending),
        (300, 240, 60)
    );
    let used: u64 = bits.iter().map(|w| u64::from(w.count_ones())).sum();
    assert_eq!(used, 240);
    for (_, e) in &r {
        if let Entry::Remapped { slot } = e {
            assert!(bits[(slot / 64) as usize] & (1 << (slot % 64)) != 0);
        }
    }
    // Both copies are complete: blocks 0 and 1 of each, plus the superblocks.
    for s in [0u64, 8, 16, 528, 536, 544] {
        assert_ne!(
            &img[(s * 512) as usize..(s * 512 + 4) as usize],
            &[0, 0, 0, 0],
            "sector {s}"
        );
    }
    // The data area was not touched.
    assert!(img[24 * 512..528 * 512].iter().all(|&x| x == 0));
}

#[test]
fn empty_set_round_trip() {
    let set = small_set();
    let mut img = blank(&set);
    format_empty(&mut img, &set).unwrap();
    let (l, got, _) = load_img(&img, &Expect::default()).unwrap();
    assert!(got.is_empty());
    assert_eq!(
        (l.sb.nr_records, l.sb.records_crc, l.winner),
        (0, 0, CopyId::B)
    );
    // Nothing but the two superblocks was written.
    assert!(img[4096..56 * 512].iter().all(|&x| x == 0));
}

#[test]
fn blank_damaged_and_foreign_spares() {
    let set = small_set();
    let mut img = blank(&set);
    assert_eq!(
        load_img(&img, &Expect::default()).err(),
        Some(LoadError::Blank)
    );
    // Data outside the superblock blocks does not make it non-blank.
    img[20 * 512] = 1;
    assert_eq!(
        load_img(&img, &Expect::default()).err(),
        Some(LoadError::Blank)
    );
    format_empty(&mut img, &set).unwrap();
    assert!(load_img(&img, &Expect::default()).is_ok());
    // Formatting over metadata is refused and writes nothing.
    let before = img.clone();
    assert_eq!(format_empty(&mut img, &set), Err(FormatError::NotBlank));
    assert_eq!(img, before);
    // Both superblocks destroyed: damaged, not blank, and not formattable.
    img[100] ^= 0x10;
    img[56 * 512 + 7] ^= 0x01;
    let err = load_img(&img, &Expect::default()).unwrap_err();
    assert_eq!(
        err,
        LoadError::NoValidCopy {
            a: CopyError::Superblock { field: Field::Crc },
            b: CopyError::Superblock { field: Field::Crc }
        }
    );
    let msg = std::format!("{err}");
    assert!(
        msg.contains("copy A: superblock field crc")
            && msg.contains("copy B: superblock field crc"),
        "{msg}"
    );
    assert_eq!(format_empty(&mut img, &set), Err(FormatError::NotBlank));
    // Foreign data (no magic anywhere).
    let foreign: Vec<u8> = (0..64 * 512).map(|i| (i % 251) as u8).collect();
    assert!(matches!(
        load_img(&foreign, &Expect::default()),
        Err(LoadError::NoValidCopy {
            a: CopyError::Superblock {
                field: Field::Magic
            },
            b: CopyError::Superblock {
                field: Field::Magic
            }
        })
    ));
    // Only one superblock blank, the other garbage: damaged.
    let mut one = blank(&set);
    one[56 * 512..].fill(0xAB);
    assert!(matches!(
        load_img(&one, &Expect::default()),
        Err(LoadError::NoValidCopy {
            a: CopyError::Blank,
            ..
        })
    ));
    // Too small to hold anything.
    assert_eq!(
        load_img(&[0u8; 15 * 512], &Expect::default()).err(),
        Some(LoadError::SpareTooSmall { sectors: 15 })
    );
    // A geometry for another size is refused before anything is written.
    let mut small = vec![0u8; 72 * 512];
    assert_eq!(format_empty(&mut small, &set), Err(FormatError::SpareSize));
    assert!(small.iter().all(|&x| x == 0));
}

#[test]
fn torn_format_leaves_one_copy() {
    // Copy A written, copy B never: A loads, B is reported for rewriting.
    let set = small_set();
    let mut img = blank(&set);
    commit(&mut img, &set, CopyId::A, 1, &recs(3, 2));
    let (l, got, _) = load_img(&img, &Expect::default()).unwrap();
    assert_eq!(
        (l.winner, l.other, got.len()),
        (CopyId::A, CopyStatus::Bad(CopyError::Blank), 3)
    );
    assert!(l.other_bad());
    assert_eq!(l.commit_target(), CopyId::B);
}

#[test]
fn spare_of_another_main_device_is_refused() {
    let set = small_set();
    let img = two_commits(&set, &recs(3, 2), &recs(2, 2));
    let ok = Expect {
        uuid: Some(UUID),
        main_sectors: Some(1 << 20),
        main_offset: Some(0),
        main_id: Some(b"SERIAL-0001"),
        main_id_v1: None,
        block_size: Some(4096),
    };
    assert!(load_img(&img, &ok).is_ok());
    let cases: [(Expect<'_>, Field); 5] = [
        (
            Expect {
                main_id: Some(b"SERIAL-0002"),
                ..ok
            },
            Field::MainId,
        ),
        (
            Expect {
                main_id: Some(b"SERIAL-000"),
                ..ok
            },
            Field::MainId,
        ),
        (
            Expect {
                main_sectors: Some((1 << 20) + 8),
                ..ok
            },
            Field::MainSectors,
        ),
        (
            Expect {
                main_offset: Some(8),
                ..ok
            },
            Field::MainOffset,
        ),
        (
            Expect {
                block_size: Some(8192),
                ..ok
            },
            Field::BlockSize,
        ),
    ];
    for (e, field) in cases {
        let err = load_img(&img, &e).unwrap_err();
        assert_eq!(
            err,
            LoadError::Mismatch {
                copy: CopyId::A,
                field
            }
        );
        if field != Field::BlockSize {
            assert!(
                std::format!("{err}").contains("another main device"),
                "{err}"
            );
        }
    }
    let mut u = UUID;
    u[0] ^= 1;
    assert_eq!(
        load_img(
            &img,
            &Expect {
                uuid: Some(u),
                ..ok
            }
        )
        .unwrap_err(),
        LoadError::Mismatch {
            copy: CopyId::A,
            field: Field::Uuid
        }
    );
}

#[test]
fn resized_spare_is_refused() {
    let set = small_set();
    let mut img = two_commits(&set, &recs(3, 2), &recs(2, 2));
    img.extend_from_slice(&[0u8; 8 * 512]);
    assert_eq!(
        load_img(&img, &Expect::default()).unwrap_err(),
        LoadError::NoValidCopy {
            a: CopyError::SpareSize {
                recorded: 64,
                actual: 72
            },
            b: CopyError::Blank
        }
    );
}

#[test]
fn ping_pong_picks_highest_sequence_and_tracks_next() {
    let set = two_block_set();
    let mut img = blank(&set);
    format_empty(&mut img, &set).unwrap();
    let mut model: BTreeMap<u64, Entry> = BTreeMap::new();
    for round in 0..6u64 {
        let (l, got, _) = load_img(&img, &Expect::default()).unwrap();
        assert_eq!(got, model.iter().map(|(&b, &e)| (b, e)).collect::<Vec<_>>());
        assert_eq!(l.sb.seq, round + 2);
        // Add some remaps, commit to the copy the loader names.
        for i in 0..70 {
            let blk = round * 1000 + i * 7;
            let slot = round * 70 + i;
            model.insert(
                blk,
                if i % 9 == 0 {
                    Entry::Pending
                } else {
                    Entry::Remapped { slot }
                },
            );
        }
        let v: Recs = model.iter().map(|(&b, &e)| (b, e)).collect();
        commit(&mut img, &set, l.commit_target(), l.next_seq, &v);
    }
}

/// Bytes covered by a copy's commit in the small image: its superblock and its record block.
fn small_copy_bytes(copy: CopyId) -> Vec<usize> {
    let (sb, rb) = match copy {
        CopyId::A => (0usize, 8usize),
        CopyId::B => (56, 48),
    };
    (sb * 512..sb * 512 + MD_BLOCK_SIZE)
        .chain(rb * 512..rb * 512 + MD_BLOCK_SIZE)
        .collect()
}

/// Corrupt byte `pos` of `img` with `xor` and check that the load falls back to the other copy
/// (or keeps the winner when the loser was hit), reporting the hit copy as bad.
fn check_corruption(img: &mut [u8], pos: usize, xor: u8, hit: CopyId, a: &Recs, b: &Recs) {
    img[pos] ^= xor;
    let (l, got, _) = load_img(img, &Expect::default())
        .unwrap_or_else(|e| panic!("byte {pos} ^ {xor:#x}: no copy loaded: {e}"));
    img[pos] ^= xor;
    let (want_winner, want) = match hit {
        CopyId::A => (CopyId::B, b),
        CopyId::B => (CopyId::A, a),
    };
    assert_eq!(l.winner, want_winner, "byte {pos} ^ {xor:#x} not detected");
    assert!(
        matches!(l.other, CopyStatus::Bad(_)),
        "byte {pos} ^ {xor:#x}: {:?}",
        l.other
    );
    assert_eq!(&got, want, "byte {pos} ^ {xor:#x}");
}

/// Every byte of both copies of the small image, each changed by one value; the values
/// rotate through all 255 non-zero xor patterns along the positions. (Every position with
/// every value: `every_single_byte_value`.)
#[test]
fn single_byte_corruption_is_detected_small_image() {
    let set = small_set();
    let (a, b) = (recs(4, 3), recs(3, 5));
    let mut img = two_commits(&set, &a, &b);
    for hit in [CopyId::A, CopyId::B] {
        for (i, pos) in small_copy_bytes(hit).into_iter().enumerate() {
            check_corruption(&mut img, pos, (i % 255) as u8 + 1, hit, &a, &b);
        }
    }
}

/// Every byte of both copies with all 255 corrupting values (2 x 8192 x 255 loads). Slow in a
/// debug build: run with `cargo test --release -p dmremap-core -- --ignored`.
#[test]
#[ignore]
fn every_single_byte_value() {
    let set = small_set();
    let (a, b) = (recs(4, 3), recs(3, 5));
    let mut img = two_commits(&set, &a, &b);
    for hit in [CopyId::A, CopyId::B] {
        for pos in small_copy_bytes(hit) {
            for x in 1..=255u8 {
                check_corruption(&mut img, pos, x, hit, &a, &b);
            }
        }
    }
}

/// A commit in flight: which of its blocks reached the disk (and for a torn block, how many of
/// its sectors).
struct Recorder(Vec<(u64, Vec<u8>)>);
impl SpareWrite for Recorder {
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), IoError> {
        self.0.push((sector, buf.to_vec()));
        Ok(())
    }
}

fn commit_blocks(set: &SetInfo, copy: CopyId, seq: u64, r: &Recs) -> Vec<(u64, Vec<u8>)> {
    let mut rec = Recorder(Vec::new());
    let mut buf = vec![0u8; MD_BLOCK_SIZE];
    write_copy(&mut rec, set, copy, seq, r.iter().copied(), &mut buf, None).unwrap();
    rec.0
}

fn apply(img: &mut [u8], sector: u64, data: &[u8]) {
    let s = (sector * 512) as usize;
    img[s..s + data.len()].copy_from_slice(data);
}

#[test]
fn torn_commit_falls_back_to_previous_sequence() {
    let set = two_block_set();
    let (r3, r2) = (recs(260, 2), recs(255, 3));
    let base = two_commits(&set, &r3, &r2);
    let r4 = recs(480, 2);
    let blocks = commit_blocks(&set, CopyId::B, 4, &r4);
    assert_eq!(blocks.len(), 3, "two record blocks and the superblock");
    // Every subset of whole blocks.
    for mask in 0u32..(1 << blocks.len()) {
        let mut img = base.clone();
        for (i, (s, d)) in blocks.iter().enumerate() {
            if mask & (1 << i) != 0 {
                apply(&mut img, *s, d);
            }
        }
        let (l, got, _) = load_img(&img, &Expect::default()).unwrap();
        let sb_written = mask & 0b100 != 0;
        if mask == 0b111 {
            assert_eq!((l.winner, l.sb.seq, &got), (CopyId::B, 4, &r4));
            assert_eq!(l.other, CopyStatus::Valid { seq: 3 });
        } else if mask == 0 {
            assert_eq!((l.winner, l.sb.seq, &got), (CopyId::A, 3, &r3));
            assert_eq!(l.other, CopyStatus::Valid { seq: 2 });
        } else {
            assert_eq!(
                (l.winner, l.sb.seq, &got),
                (CopyId::A, 3, &r3),
                "mask {mask:#b}"
            );
            assert!(l.other_bad(), "mask {mask:#b}: {:?}", l.other);
        }
        // A sequence number seen in an intact superblock is never reused.
        assert_eq!(l.next_seq, if sb_written { 5 } else { 4 }, "mask {mask:#b}");
    }
    // Torn inside a block: only the first k sectors of one block are new.
    let mut torn = 0;
    for (i, (s, d)) in blocks.iter().enumerate() {
        for k in 1..8 {
            let mut img = base.clone();
            for (j, (s2, d2)) in blocks.iter().enumerate() {
                if j != i {
                    apply(&mut img, *s2, d2);
                }
            }
            apply(&mut img, *s, &d[..k * 512]);
            // When the sectors not written already held the new bytes, the commit is complete.
            let at = (*s * 512) as usize;
            let complete = img[at..at + MD_BLOCK_SIZE] == d[..];
            let (l, got, _) = load_img(&img, &Expect::default()).unwrap();
            if complete {
                assert_eq!(
                    (l.winner, l.sb.seq, got == r4),
                    (CopyId::B, 4, true),
                    "block {i} after {k} sectors"
                );
            } else {
                assert_eq!(
                    (l.winner, l.sb.seq, got == r3),
                    (CopyId::A, 3, true),
                    "block {i} torn after {k} sectors"
                );
                assert!(l.other_bad());
                torn += 1;
            }
        }
    }
    // Both record blocks tear at every sector boundary; the superblock's fields fit in its
    // first sector (the rest is zero in every version), so it cannot tear between sectors.
    assert_eq!(torn, 14);
}

#[test]
fn two_commits_with_the_same_sequence_do_not_mix() {
    // A commit with seq 4 lands completely in B, then another commit that (wrongly) reuses
    // seq 4 only gets its superblock and first record block down. Every block is intact and
    // carries seq 4, index and uuid are right: only records_crc shows the mix.
    let set = two_block_set();
    let (r3, r2) = (recs(260, 2), recs(255, 3));
    let mut img = two_commits(&set, &r3, &r2);
    for (s, d) in commit_blocks(&set, CopyId::B, 4, &recs(300, 4)) {
        apply(&mut img, s, &d);
    }
    let other: Recs = recs(300, 4).into_iter().map(|(b, e)| (b + 1, e)).collect();
    let second = commit_blocks(&set, CopyId::B, 4, &other);
    apply(&mut img, second[0].0, &second[0].1);
    apply(&mut img, second[2].0, &second[2].1);
    let (l, got, _) = load_img(&img, &Expect::default()).unwrap();
    assert_eq!((l.winner, &got), (CopyId::A, &r3));
    assert_eq!(
        l.other,
        CopyStatus::Bad(CopyError::Totals {
            field: Field::RecordsCrc
        })
    );
}

/// Overwrite a field of the block at `sector`, reseal it, and load.
fn forged(
    img: &[u8],
    sector: u64,
    off: usize,
    bytes: &[u8],
) -> Result<(Loaded, Recs, Vec<u64>), LoadError> {
    let mut img = img.to_vec();
    let s = (sector * 512) as usize;
    img[s + off..s + off + bytes.len()].copy_from_slice(bytes);
    seal(&mut img[s..s + MD_BLOCK_SIZE]);
    load_img(&img, &Expect::default())
}

fn a_error(r: Result<(Loaded, Recs, Vec<u64>), LoadError>, off: usize) -> CopyError {
    let (l, _, _) = r.unwrap();
    assert_eq!(l.winner, CopyId::B, "forged offset {off:#x} not rejected");
    match l.other {
        CopyStatus::Bad(e) => e,
        v => panic!("copy A not rejected: {v:?}"),
    }
}

#[test]
fn every_superblock_field_is_checked() {
    let set = small_set();
    let img = two_commits(&set, &recs(4, 3), &recs(3, 5));
    let sb = |f: Field| CopyError::Superblock { field: f };
    let cases: Vec<(usize, Vec<u8>, CopyError)> = vec![
        (L::SB_MAGIC, b"DMRX".to_vec(), sb(Field::Magic)),
        (
            L::SB_VERSION,
            4u32.to_le_bytes().to_vec(),
            sb(Field::Version),
        ),
        (
            L::SB_VERSION,
            0u32.to_le_bytes().to_vec(),
            sb(Field::Version),
        ),
        // Read as version 1, the identity at 0x040 is empty.
        (
            L::SB_VERSION,
            1u32.to_le_bytes().to_vec(),
            sb(Field::MainId),
        ),
        (L::SB_MAIN_ID_V1, [b'x'].to_vec(), sb(Field::Reserved)),
        (L::SB_NAME + 127, [b'x'].to_vec(), sb(Field::Name)),
        (
            L::SB_COPY,
            COPY_ID_B.to_le_bytes().to_vec(),
            sb(Field::Copy),
        ),
        (L::SB_SEQ, 0u64.to_le_bytes().to_vec(), sb(Field::Seq)),
        (
            L::SB_INCOMPAT,
            1u32.to_le_bytes().to_vec(),
            sb(Field::Features),
        ),
        (L::SB_UUID, [0u8; 16].to_vec(), sb(Field::Uuid)),
        (
            L::SB_MAIN_SECTORS,
            0u64.to_le_bytes().to_vec(),
            sb(Field::MainSectors),
        ),
        (
            L::SB_MAIN_OFFSET,
            (1u64 << 20).to_le_bytes().to_vec(),
            sb(Field::MainOffset),
        ),
        (L::SB_MAIN_ID, [0u8].to_vec(), sb(Field::MainId)),
        (L::SB_MAIN_ID + 20, [b'x'].to_vec(), sb(Field::MainId)),
        (
            L::SB_BLOCK_SIZE,
            3000u32.to_le_bytes().to_vec(),
            sb(Field::BlockSize),
        ),
        (
            L::SB_BLOCK_SIZE,
            8192u32.to_le_bytes().to_vec(),
            sb(Field::Geometry),
        ),
        (
            L::SB_MD_BLOCK_SIZE,
            512u32.to_le_bytes().to_vec(),
            sb(Field::MdBlockSize),
        ),
        (
            L::SB_SPARE_SECTORS,
            72u64.to_le_bytes().to_vec(),
            CopyError::SpareSize {
                recorded: 72,
                actual: 64,
            },
        ),
        (
            L::SB_META_A_START,
            8u64.to_le_bytes().to_vec(),
            sb(Field::Geometry),
        ),
        (
            L::SB_META_B_START,
            40u64.to_le_bytes().to_vec(),
            sb(Field::Geometry),
        ),
        (
            L::SB_META_SECTORS,
            24u64.to_le_bytes().to_vec(),
            sb(Field::Geometry),
        ),
        (
            L::SB_DATA_START,
            8u64.to_le_bytes().to_vec(),
            sb(Field::Geometry),
        ),
        (
            L::SB_DATA_SLOTS,
            5u64.to_le_bytes().to_vec(),
            sb(Field::Geometry),
        ),
        (
            L::SB_DATA_SLOTS,
            3u64.to_le_bytes().to_vec(),
            sb(Field::Geometry),
        ),
        (
            L::SB_RECORD_CAPACITY,
            3u64.to_le_bytes().to_vec(),
            sb(Field::Geometry),
        ),
        (
            L::SB_RECORD_CAPACITY,
            300u64.to_le_bytes().to_vec(),
            sb(Field::Geometry),
        ),
        (
            L::SB_NR_RECORDS,
            5u64.to_le_bytes().to_vec(),
            sb(Field::Counts),
        ),
        (
            L::SB_NR_REMAPPED,
            3u64.to_le_bytes().to_vec(),
            sb(Field::Counts),
        ),
        (
            L::SB_NR_PENDING,
            1u64.to_le_bytes().to_vec(),
            sb(Field::Counts),
        ),
        (
            L::SB_RECORD_BLOCKS,
            2u32.to_le_bytes().to_vec(),
            sb(Field::RecordBlocks),
        ),
        (L::SB_RESERVED + 100, [1u8].to_vec(), sb(Field::Reserved)),
        (MD_BLOCK_SIZE - 1, [1u8].to_vec(), sb(Field::Reserved)),
        (
            L::SB_RECORDS_CRC,
            1u32.to_le_bytes().to_vec(),
            CopyError::Totals {
                field: Field::RecordsCrc,
            },
        ),
    ];
    for (off, bytes, want) in cases {
        assert_eq!(
            a_error(forged(&img, 0, off, &bytes), off),
            want,
            "superblock offset {off:#x}"
        );
    }
    // Consistent counts that do not match the records.
    let mut both = img.clone();
    both[L::SB_NR_REMAPPED] = 2;
    both[L::SB_NR_PENDING] = 2;
    seal(&mut both[..MD_BLOCK_SIZE]);
    assert_eq!(
        a_error(load_img(&both, &Expect::default()), L::SB_NR_PENDING),
        CopyError::Totals {
            field: Field::Counts
        }
    );
}

#[test]
fn sequence_of_an_intact_but_invalid_superblock_is_not_reused() {
    let set = small_set();
    let mut img = two_commits(&set, &recs(4, 3), &recs(3, 5));
    // Copy A's superblock: seq 9, an impossible block size, checksum intact.
    img[L::SB_SEQ] = 9;
    img[L::SB_BLOCK_SIZE..L::SB_BLOCK_SIZE + 4].copy_from_slice(&3000u32.to_le_bytes());
    seal(&mut img[..MD_BLOCK_SIZE]);
    let (l, _, _) = load_img(&img, &Expect::default()).unwrap();
    assert_eq!((l.winner, l.sb.seq, l.next_seq), (CopyId::B, 2, 10));
    // With a broken checksum its seq means nothing.
    img[L::SB_CRC] ^= 1;
    let (l, _, _) = load_img(&img, &Expect::default()).unwrap();
    assert_eq!((l.winner, l.next_seq), (CopyId::B, 3));
}

#[test]
fn every_record_block_field_and_record_is_checked() {
    let set = small_set();
    // Copy A: blocks 1, 4, 7, 10 (slots 3, 2, 1, 0 / pending for i = 4 — not here).
    let a: Recs = vec![
        (1, Entry::Remapped { slot: 3 }),
        (4, Entry::Remapped { slot: 2 }),
        (7, Entry::Pending),
        (10, Entry::Remapped { slot: 0 }),
    ];
    let img = two_commits(&set, &a, &recs(3, 5));
    let rb = |f: Field| CopyError::RecordBlock { index: 0, field: f };
    let rec = |pos: u32, block: u64, p: RecordProblem| CopyError::Record {
        index: 0,
        pos,
        block,
        problem: p,
    };
    let r0 = L::RB_RECORDS;
    let state = |s: u64, slot: u64| ((s << 56) | slot).to_le_bytes().to_vec();
    let cases: Vec<(usize, Vec<u8>, CopyError)> = vec![
        (L::RB_MAGIC, b"DMRM".to_vec(), rb(Field::Magic)),
        (L::RB_SEQ, 2u64.to_le_bytes().to_vec(), rb(Field::Seq)),
        (L::RB_UUID + 3, [0u8].to_vec(), rb(Field::Uuid)),
        (
            L::RB_COPY,
            COPY_ID_B.to_le_bytes().to_vec(),
            rb(Field::Copy),
        ),
        (L::RB_INDEX, 1u32.to_le_bytes().to_vec(), rb(Field::Index)),
        (L::RB_COUNT, 3u32.to_le_bytes().to_vec(), rb(Field::Count)),
        (L::RB_RESERVED, [1u8].to_vec(), rb(Field::Reserved)),
        (0x3f, [1u8].to_vec(), rb(Field::Reserved)),
        (r0 + 8, state(3, 3), rec(0, 1, RecordProblem::State)),
        (r0 + 8, state(0, 3), rec(0, 1, RecordProblem::State)),
        (
            r0 + 32 + 8,
            state(2, 1),
            rec(2, 7, RecordProblem::PendingSlot),
        ),
        (
            r0 + 8,
            state(1, 4),
            rec(0, 1, RecordProblem::SlotOutOfRange),
        ),
        (r0 + 8, state(1, 2), rec(1, 4, RecordProblem::SlotInUse)),
        (
            r0,
            4u64.to_le_bytes().to_vec(),
            rec(1, 4, RecordProblem::Order),
        ),
        (
            r0 + 16,
            0u64.to_le_bytes().to_vec(),
            rec(1, 0, RecordProblem::Order),
        ),
        (
            r0 + 48,
            (1u64 << 17).to_le_bytes().to_vec(),
            rec(3, 1 << 17, RecordProblem::BlockOutOfRange),
        ),
        (
            r0 + 64 + 8,
            state(1, 1),
            rec(4, 0, RecordProblem::UnusedNotZero),
        ),
        (
            MD_BLOCK_SIZE - 1,
            [1u8].to_vec(),
            rec(251, 0, RecordProblem::UnusedNotZero),
        ),
    ];
    for (off, bytes, want) in cases {
        assert_eq!(
            a_error(forged(&img, 8, off, &bytes), off),
            want,
            "record block offset {off:#x}"
        );
    }
    // Display names the copy, the block and the field.
    let mut bad = img.clone();
    bad[8 * 512 + L::RB_SEQ] = 9;
    seal(&mut bad[8 * 512..9 * 512 + 3584]);
    bad[56 * 512] ^= 1;
    let err = load_img(&bad, &Expect::default()).unwrap_err();
    let msg = std::format!("{err}");
    assert!(
        msg.contains("copy A: record block 0: field seq")
            && msg.contains("copy B: superblock field magic"),
        "{msg}"
    );
}

#[test]
fn encoder_refuses_bad_input_and_format_writes_nothing() {
    let set = small_set();
    let mut buf = vec![0u8; MD_BLOCK_SIZE];
    let mut bits = vec![0u64; 1];
    let go = |r: Recs, bits: Option<&mut [u64]>| -> Result<Superblock, WriteError> {
        let mut img = blank(&set);
        let mut buf = vec![0u8; MD_BLOCK_SIZE];
        write_copy(
            &mut Image(&mut img[..]),
            &set,
            CopyId::A,
            1,
            r.into_iter(),
            &mut buf,
            bits,
        )
    };
    let rec = |block, problem| WriteError::Encode(EncodeError::Record { block, problem });
    let rm = |slot| Entry::Remapped { slot };
    assert_eq!(
        go(vec![(5, rm(0)), (5, rm(1))], None),
        Err(rec(5, RecordProblem::Order))
    );
    assert_eq!(
        go(vec![(5, rm(0)), (4, rm(1))], None),
        Err(rec(4, RecordProblem::Order))
    );
    assert_eq!(
        go(vec![(5, rm(4))], None),
        Err(rec(5, RecordProblem::SlotOutOfRange))
    );
    assert_eq!(
        go(vec![(5, rm(MAX_SLOT_TEST))], None),
        Err(rec(5, RecordProblem::SlotOutOfRange))
    );
    assert_eq!(
        go(vec![(1 << 17, rm(0))], None),
        Err(rec(1 << 17, RecordProblem::BlockOutOfRange))
    );
    assert_eq!(
        go(vec![(1, rm(2)), (2, rm(2))], Some(&mut bits)),
        Err(rec(2, RecordProblem::SlotInUse))
    );
    assert!(
        go(vec![(1, rm(2)), (2, rm(2))], None).is_ok(),
        "without a bitmap only the loader checks slots"
    );
    let five: Recs = (0..5).map(|i| (i, Entry::Pending)).collect();
    assert_eq!(
        go(five, None),
        Err(WriteError::Encode(EncodeError::TooManyRecords))
    );
    assert_eq!(
        CopyEncoder::new(&set, CopyId::A, 0, None).err().map(|_| ()),
        Some(()),
        "seq 0 refused"
    );
    let mut short = [0u64; 0];
    assert_eq!(
        CopyEncoder::new(&set, CopyId::A, 1, Some(&mut short)).err(),
        Some(EncodeError::BitmapTooSmall { need: 1 })
    );
    let mut bad = set;
    bad.geometry.data_slots += 1;
    assert_eq!(
        CopyEncoder::new(&bad, CopyId::A, 1, None).err(),
        Some(EncodeError::Set {
            field: Field::Geometry
        })
    );
    // A short buffer; finish before the iterator is exhausted, or after an error.
    let mut enc = CopyEncoder::new(&set, CopyId::A, 1, None).unwrap();
    let mut it = [(1u64, Entry::Pending)].into_iter();
    assert_eq!(
        enc.next_block(&mut it, &mut buf[..100]),
        Err(EncodeError::BufferTooSmall)
    );
    assert_eq!(enc.finish(&mut buf).err(), Some(EncodeError::Unfinished));
    let mut enc = CopyEncoder::new(&set, CopyId::A, 1, None).unwrap();
    let mut it = [(2u64, Entry::Pending), (1, Entry::Pending)].into_iter();
    assert!(enc.next_block(&mut it, &mut buf).is_err());
    assert_eq!(
        enc.next_block(&mut it, &mut buf),
        Err(EncodeError::Unfinished)
    );
    assert_eq!(enc.finish(&mut buf).err(), Some(EncodeError::Unfinished));
    // format with a bad record writes nothing.
    let mut img = blank(&set);
    let r = [(3u64, rm(0)), (2, rm(1))];
    assert!(matches!(
        format(
            &mut Image(&mut img[..]),
            &set,
            r.iter().copied(),
            &mut buf,
            None
        ),
        Err(FormatError::Write {
            copy: CopyId::A,
            error: WriteError::Encode(EncodeError::Record { .. })
        })
    ));
    assert!(img.iter().all(|&x| x == 0));
}

const MAX_SLOT_TEST: u64 = SLOT_MASK + 1;

#[test]
fn io_errors_name_the_sector_and_fall_back() {
    struct Failing<'a>(&'a [u8], u64);
    impl SpareRead for Failing<'_> {
        fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
            if sector == self.1 {
                return Err(IoError);
            }
            Image(self.0).read(sector, buf)
        }
    }
    let set = small_set();
    let (a, b) = (recs(4, 3), recs(3, 5));
    let img = two_commits(&set, &a, &b);
    let mut buf = vec![0u8; MD_BLOCK_SIZE];
    let mut bits = vec![0u64; 1];
    let mut out = Vec::new();
    let l = load(
        &mut Failing(&img, 8),
        64,
        &Expect::default(),
        &mut buf,
        &mut bits,
        |blk, e| {
            out.push((blk, e));
            Ok(())
        },
        |_, _| Ok(()),
    )
    .unwrap();
    assert_eq!(
        (l.winner, l.other, &out),
        (CopyId::B, CopyStatus::Bad(CopyError::Io { sector: 8 }), &b)
    );
    let r = load(
        &mut Failing(&img, 0),
        64,
        &Expect::default(),
        &mut buf,
        &mut [0u64; 0],
        |_, _| Ok(()),
        |_, _| Ok(()),
    );
    assert_eq!(r.err(), Some(LoadError::BitmapTooSmall { need: 1 }));
    // The sink can stop the load.
    let r = load(
        &mut Image(&img[..]),
        64,
        &Expect::default(),
        &mut buf,
        &mut bits,
        |blk, _| {
            if blk == 4 {
                Err(SinkError)
            } else {
                Ok(())
            }
        },
        |_, _| Ok(()),
    );
    assert_eq!(r.err(), Some(LoadError::Sink { block: 4 }));
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    /// A random remap set for a set of `slots` data slots and `main_blocks` main blocks.
    fn remap_set(slots: u64, main_blocks: u64, max: usize) -> impl Strategy<Value = Recs> {
        (
            proptest::collection::btree_map(0..main_blocks, any::<bool>(), 0..max),
            Just(slots),
        )
            .prop_flat_map(|(blocks, slots)| {
                let n = blocks.len();
                let all: Vec<u64> = (0..slots).collect();
                (
                    Just(blocks),
                    proptest::sample::subsequence(all, n.min(slots as usize)).prop_shuffle(),
                )
            })
            .prop_map(|(blocks, slots)| {
                let mut free = slots.into_iter();
                blocks
                    .into_iter()
                    .map(|(b, pending)| match (pending, free.next()) {
                        (false, Some(slot)) => (b, Entry::Remapped { slot }),
                        _ => (b, Entry::Pending),
                    })
                    .collect()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random geometries: the copies and the data area never overlap, the record area holds
        /// the capacity, and one more slot would not fit.
        #[test]
        fn geometry_invariants(spare in 40u64..(1 << 34), shift in 0u32..12, extra in 0u64..5000) {
            let bs = 512u32 << shift;
            let Ok(g) = Geometry::for_spare(spare, bs, extra) else {
                prop_assert!(fit(1, extra, u64::from(bs) / 512, (u64::from(bs) / 512).max(8), spare & !7).is_none());
                return Ok(());
            };
            let end = spare & !7;
            prop_assert_eq!(g.meta_a_start, 0);
            prop_assert!(g.meta_sectors <= g.data_start);
            prop_assert_eq!(g.data_start % g.block_sectors().max(8), 0);
            prop_assert!(g.data_end() <= g.meta_b_start);
            prop_assert_eq!(g.meta_b_start + g.meta_sectors, end);
            prop_assert_eq!(g.sb_sector(CopyId::B), end - 8);
            prop_assert!(g.record_blocks() * RECORDS_PER_BLOCK as u64 >= g.record_capacity);
            prop_assert_eq!(g.record_capacity, g.data_slots + extra);
            prop_assert!(fit(g.data_slots + 1, extra, g.block_sectors(), g.block_sectors().max(8), end).is_none());
            prop_assert_eq!(Geometry::for_spare(spare, bs, g.extra_records()), Ok(g));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Random remap sets survive format + load exactly.
        #[test]
        fn random_sets_round_trip(r in remap_set(504, 3000, 504)) {
            let set = two_block_set();
            let mut img = blank(&set);
            let mut buf = vec![0u8; MD_BLOCK_SIZE];
            let mut bits = vec![0u64; 8];
            format(&mut Image(&mut img[..]), &set, r.iter().copied(), &mut buf, Some(&mut bits)).unwrap();
            let (l, got, bits) = load_img(&img, &Expect::default()).unwrap();
            prop_assert_eq!(&got, &r);
            let remapped = r.iter().filter(|(_, e)| matches!(e, Entry::Remapped { .. })).count() as u64;
            prop_assert_eq!(l.sb.nr_remapped, remapped);
            prop_assert_eq!(bits.iter().map(|w| u64::from(w.count_ones())).sum::<u64>(), remapped);
        }

        /// A byte anywhere in the winning copy of a two-record-block image, changed to any other
        /// value, makes the load fall back to the older copy.
        #[test]
        fn corrupt_winner_falls_back(pos in 0usize..(3 * MD_BLOCK_SIZE), x in 1u8..=255, a in remap_set(504, 3000, 504), b in remap_set(504, 3000, 504)) {
            let set = two_block_set();
            prop_assume!(a.len() > RECORDS_PER_BLOCK);
            let img = two_commits(&set, &a, &b);
            // Copy A's blocks: sectors 0, 8, 16.
            let mut img2 = img.clone();
            img2[pos] ^= x;
            let (l, got, _) = load_img(&img2, &Expect::default()).unwrap();
            prop_assert_eq!(l.winner, CopyId::B);
            prop_assert!(l.other_bad());
            prop_assert_eq!(&got, &b);
            // And in copy B (the older one): the winner stays A.
            let bpos = 528 * 512 + pos;
            let mut img3 = img;
            img3[bpos] ^= x;
            let (l, got, _) = load_img(&img3, &Expect::default()).unwrap();
            prop_assert_eq!(l.winner, CopyId::A);
            prop_assert_eq!(&got, &a);
            // Copy B: record block 0, record block 1, superblock. A record block past the
            // commit's records is not part of the copy.
            let used = match pos / MD_BLOCK_SIZE {
                0 => !b.is_empty(),
                1 => b.len() > RECORDS_PER_BLOCK,
                _ => true,
            };
            if used {
                prop_assert!(l.other_bad(), "{:?}", l.other);
            } else {
                prop_assert_eq!(l.other, CopyStatus::Valid { seq: 2 });
            }
        }

        /// Arbitrary bytes in the superblock positions never panic the loader, and whatever loads
        /// is internally consistent.
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..(80 * 512)), reseal in any::<bool>()) {
            let mut img = data;
            if reseal && img.len() >= MD_BLOCK_SIZE {
                seal(&mut img[..MD_BLOCK_SIZE]);
            }
            if let Ok((l, got, _)) = load_img(&img, &Expect::default()) {
                prop_assert_eq!(got.len() as u64, l.sb.nr_records);
            }
        }
    }
}

// ---- The journal (format version 3) ----

/// A set with room for a journal: 2 MiB spare, 4 KiB blocks, 6 record blocks of extra room.
fn jset() -> SetInfo {
    set_for(
        4096,
        4096,
        6 * RECORDS_PER_BLOCK as u64,
        1 << 20,
        b"JOURNAL-1",
    )
}

/// Append a commit of `changes` to `j` on `img` (as the kernel does: one write at the head).
/// Returns the byte range it was written to.
fn jcommit(
    img: &mut [u8],
    set: &SetInfo,
    j: &mut Journal,
    seq: u64,
    changes: &[Change],
) -> core::ops::Range<usize> {
    let mut buf = vec![0u8; 8 * MD_BLOCK_SIZE];
    let n = encode_journal(set, j, seq, changes.iter().copied(), &mut buf).unwrap();
    let start = (j.sector(set, j.head) * SECTOR_SIZE) as usize;
    let len = n as usize * MD_BLOCK_SIZE;
    img[start..start + len].copy_from_slice(&buf[..len]);
    j.advance(n, seq);
    start..start + len
}

fn model(base: &Recs, commits: &[&[Change]]) -> Recs {
    let mut m: BTreeMap<u64, Entry> = base.iter().copied().collect();
    for c in commits {
        for &(b, e) in c.iter() {
            match e {
                Some(e) => m.insert(b, e),
                None => m.remove(&b),
            };
        }
    }
    m.into_iter().collect()
}

/// Copy A (seq 3) holding `base`, copy B (seq 2) empty, then three commits on A's journal:
/// single changes, a removal and a pending block healed, and a three-block commit.
struct JImage {
    set: SetInfo,
    img: Vec<u8>,
    base: Recs,
    commits: Vec<Vec<Change>>,
    ranges: Vec<core::ops::Range<usize>>,
    journal: Journal,
}

fn jimage() -> JImage {
    let set = jset();
    let base = recs(10, 7);
    let mut img = blank(&set);
    commit(&mut img, &set, CopyId::B, 2, &Vec::new());
    let sb = commit(&mut img, &set, CopyId::A, 3, &base);
    let mut j = Journal::after(&sb);
    let big: Vec<Change> = (0..600u64)
        .map(|i| (1000 + i, Some(Entry::Remapped { slot: 20 + i % 80 })))
        .map(|(b, e)| {
            if b % 3 == 0 {
                (b, Some(Entry::Pending))
            } else {
                (b, e)
            }
        })
        .collect();
    // Slots must stay unique: the big commit uses slots 20..100 only for blocks it later drops.
    let big: Vec<Change> = big
        .into_iter()
        .enumerate()
        .map(|(i, (b, e))| {
            if i >= 80 && e != Some(Entry::Pending) {
                (b, Some(Entry::Pending))
            } else {
                (b, e)
            }
        })
        .collect();
    let commits: Vec<Vec<Change>> = vec![
        vec![(500, Some(Entry::Remapped { slot: 11 }))],
        vec![
            (1, None),
            (5, Some(Entry::Remapped { slot: 12 })),
            (501, Some(Entry::Pending)),
        ],
        big,
    ];
    let mut ranges = Vec::new();
    for (i, c) in commits.iter().enumerate() {
        ranges.push(jcommit(&mut img, &set, &mut j, 4 + i as u64, c));
    }
    JImage {
        set,
        img,
        base,
        commits,
        ranges,
        journal: j,
    }
}

impl JImage {
    fn want(&self, n: usize) -> Recs {
        let c: Vec<&[Change]> = self.commits[..n].iter().map(|c| &c[..]).collect();
        model(&self.base, &c)
    }
}

#[test]
fn journal_block_bytes() {
    let set = jset();
    let mut img = blank(&set);
    let sb = commit(&mut img, &set, CopyId::A, 5, &recs(3, 2));
    let mut j = Journal::after(&sb);
    assert_eq!((j.first, j.head, j.last_seq), (1, 1, 5));
    assert_eq!(u64::from(j.end), set.geometry.record_blocks());
    let r = jcommit(
        &mut img,
        &set,
        &mut j,
        9,
        &[
            (7, None),
            (8, Some(Entry::Remapped { slot: 3 })),
            (9, Some(Entry::Pending)),
        ],
    );
    assert_eq!(
        r.start as u64,
        set.geometry.record_sector(CopyId::A, 1) * SECTOR_SIZE
    );
    let b = &img[r];
    assert_eq!(&b[0..4], b"DMRJ");
    assert_eq!(le64(b, 0x08), 9);
    assert_eq!(&b[0x10..0x20], b"0123456789abcdef");
    assert_eq!((le64(b, 0x20), le64(b, 0x28)), (5, 5));
    assert_eq!((le32(b, 0x30), le32(b, 0x34), le32(b, 0x38)), (0, 1, 3));
    assert_eq!(le32(b, 0x3c), crc32c::crc32c(&b[0x40..]));
    assert_eq!((le64(b, 0x40), le64(b, 0x48)), (7, 3 << 56));
    assert_eq!((le64(b, 0x50), le64(b, 0x58)), (8, (1 << 56) | 3));
    assert_eq!((le64(b, 0x60), le64(b, 0x68)), (9, 2 << 56));
    assert!(b[0x70..].iter().all(|&x| x == 0));
    let mut z = b.to_vec();
    z[4..8].fill(0);
    assert_eq!(le32(b, 4), crc32c::crc32c(&z));
    assert_eq!(j.last_seq, 9);
}

#[test]
fn journal_replays_in_order_on_the_newest_copy() {
    let ji = jimage();
    let (l, got, _) = load_img(&ji.img, &Expect::default()).unwrap();
    assert_eq!(got, ji.want(3));
    assert_eq!((l.winner, l.sb.seq, l.next_seq), (CopyId::A, 3, 7));
    assert_eq!(l.journal.journal, ji.journal);
    assert_eq!(l.journal.end, JournalEnd::Clean);
    assert_eq!(l.journal.journal.commits, 3);
    assert_eq!(l.journal.entries, 1 + 3 + 600);
    assert_eq!(l.journal.journal.used(), 1 + 1 + 3);
    assert_eq!(l.max_sb_seq, 3);
    let mut buf = vec![0u8; MD_BLOCK_SIZE];
    let cont = |img: &[u8], j: &Journal, buf: &mut [u8]| {
        journal_continues(&mut Image(img), &ji.set, j, buf).unwrap()
    };
    assert!(!cont(&ji.img, &l.journal.journal, &mut buf));
    let j2 = Journal {
        head: ji.journal.head - 3,
        last_seq: 5,
        commits: 2,
        ..ji.journal
    };
    assert!(
        cont(&ji.img, &j2, &mut buf),
        "the third commit follows the second"
    );
    // The next commit continues the chain where replay ended.
    let mut img = ji.img.clone();
    let mut j = l.journal.journal;
    let c4: Vec<Change> = vec![(500, None)];
    jcommit(&mut img, &ji.set, &mut j, l.next_seq, &c4);
    assert!(cont(&img, &l.journal.journal, &mut buf));
    assert!(!cont(&img, &j, &mut buf));
    let (l2, got2, _) = load_img(&img, &Expect::default()).unwrap();
    let mut all: Vec<&[Change]> = ji.commits.iter().map(|c| &c[..]).collect();
    all.push(&c4);
    assert_eq!(got2, model(&ji.base, &all));
    assert_eq!((l2.journal.journal.commits, l2.next_seq), (4, 8));
}

#[test]
fn torn_journal_commits_are_not_replayed() {
    let ji = jimage();
    let last = ji.ranges[2].clone();
    // Any block of the three-block commit missing (never written): the commit and nothing
    // after it is replayed.
    for missing in 0..3 {
        let mut img = ji.img.clone();
        let s = last.start + missing * MD_BLOCK_SIZE;
        img[s..s + MD_BLOCK_SIZE].fill(0);
        let (l, got, _) = load_img(&img, &Expect::default()).unwrap();
        assert_eq!(got, ji.want(2), "block {missing} missing");
        assert_eq!(l.journal.journal.commits, 2);
        assert_eq!(l.next_seq, 6);
        if missing > 0 {
            assert!(
                matches!(l.journal.end, JournalEnd::Invalid { .. }),
                "{:?}",
                l.journal.end
            );
        }
    }
    // A block torn inside (the first sectors new, the rest not).
    let mut img = ji.img.clone();
    img[last.start + 1024..last.start + MD_BLOCK_SIZE].fill(0);
    let (l, got, _) = load_img(&img, &Expect::default()).unwrap();
    assert_eq!(got, ji.want(2));
    assert_eq!(
        l.journal.end,
        JournalEnd::Invalid {
            index: ji.journal.head - 3,
            field: Field::Crc
        }
    );
    // After a torn commit the next commit (a new sequence number) goes to the same head: it is
    // replayed, the torn commit's remaining blocks behind it are not.
    let mut img = ji.img.clone();
    img[last.start..last.start + MD_BLOCK_SIZE].fill(0);
    let (l, _, _) = load_img(&img, &Expect::default()).unwrap();
    let mut j = l.journal.journal;
    let c: Vec<Change> = vec![(2000, Some(Entry::Remapped { slot: 100 }))];
    jcommit(&mut img, &ji.set, &mut j, l.next_seq, &c);
    let (l2, got2, _) = load_img(&img, &Expect::default()).unwrap();
    assert_eq!(got2, model(&ji.base, &[&ji.commits[0], &ji.commits[1], &c]));
    assert_eq!(l2.journal.journal.commits, 3);
    assert!(matches!(
        l2.journal.end,
        JournalEnd::Invalid {
            field: Field::PrevSeq,
            ..
        }
    ));
    // Blocks of two attempts with the same sequence number do not mix.
    let mut img = ji.img.clone();
    let mut j = Journal {
        head: ji.journal.head - 3,
        last_seq: 5,
        commits: 2,
        ..ji.journal
    };
    let other: Vec<Change> = ji.commits[2]
        .iter()
        .map(|&(b, _)| (b, Some(Entry::Pending)))
        .collect();
    let r = jcommit(&mut img, &ji.set, &mut j, 6, &other);
    img[r.start + MD_BLOCK_SIZE..r.end]
        .copy_from_slice(&ji.img[last.start + MD_BLOCK_SIZE..last.end]);
    let (l, got, _) = load_img(&img, &Expect::default()).unwrap();
    assert_eq!(got, ji.want(2));
    assert!(matches!(
        l.journal.end,
        JournalEnd::Invalid {
            field: Field::CommitCrc,
            ..
        }
    ));
}

#[test]
fn every_single_byte_corruption_of_the_journal_is_detected() {
    let ji = jimage();
    let (full, _, _) = load_img(&ji.img, &Expect::default()).unwrap();
    for (ci, r) in ji.ranges.iter().enumerate() {
        for pos in r.clone() {
            // One bit of every byte (each bit position in turn), and the whole byte.
            for x in [1u8 << (pos % 8), 0xff] {
                let mut img = ji.img.clone();
                img[pos] ^= x;
                let (l, got, _) = load_img(&img, &Expect::default()).unwrap();
                assert_eq!(got, ji.want(ci), "byte {pos} ^ {x:#x} of commit {ci}");
                assert_eq!(l.journal.journal.commits, ci as u64);
                assert!(
                    matches!(
                        l.journal.end,
                        JournalEnd::Invalid {
                            field: Field::Crc,
                            ..
                        }
                    ),
                    "byte {pos}: {:?}",
                    l.journal.end
                );
                assert!(l.next_seq <= full.next_seq);
            }
        }
    }
}

#[test]
fn every_journal_field_is_checked() {
    let ji = jimage();
    let first = ji.ranges[0].start;
    let big = ji.ranges[2].start;
    let cases: Vec<(usize, Vec<u8>, Field, usize)> = vec![
        (first + L::JB_UUID, [0x55u8].to_vec(), Field::Uuid, 0),
        (
            first + L::JB_PREV_SEQ,
            2u64.to_le_bytes().to_vec(),
            Field::PrevSeq,
            0,
        ),
        (
            first + L::JB_SEQ,
            3u64.to_le_bytes().to_vec(),
            Field::Seq,
            0,
        ),
        (
            first + L::JB_INDEX,
            1u32.to_le_bytes().to_vec(),
            Field::Index,
            0,
        ),
        (
            first + L::JB_BLOCKS,
            0u32.to_le_bytes().to_vec(),
            Field::Blocks,
            0,
        ),
        (
            first + L::JB_BLOCKS,
            10_000u32.to_le_bytes().to_vec(),
            Field::Blocks,
            0,
        ),
        (
            first + L::JB_COUNT,
            0u32.to_le_bytes().to_vec(),
            Field::Count,
            0,
        ),
        (
            first + L::JB_COUNT,
            2u32.to_le_bytes().to_vec(),
            Field::Entry,
            0,
        ),
        (
            first + L::JB_COMMIT_CRC,
            7u32.to_le_bytes().to_vec(),
            Field::CommitCrc,
            0,
        ),
        (
            first + L::JB_ENTRIES + 8,
            (4u64 << 56).to_le_bytes().to_vec(),
            Field::Entry,
            0,
        ),
        (
            first + L::JB_ENTRIES + 8,
            ((3u64 << 56) | 1).to_le_bytes().to_vec(),
            Field::Entry,
            0,
        ),
        (
            first + L::JB_ENTRIES,
            (1u64 << 20).to_le_bytes().to_vec(),
            Field::Entry,
            0,
        ),
        (
            first + L::JB_ENTRIES + 8,
            ((1u64 << 56) | 100_000).to_le_bytes().to_vec(),
            Field::Entry,
            0,
        ),
        (first + MD_BLOCK_SIZE - 1, [1u8].to_vec(), Field::Entry, 0),
        (
            big + MD_BLOCK_SIZE + L::JB_COUNT,
            251u32.to_le_bytes().to_vec(),
            Field::Count,
            2,
        ),
        (
            big + MD_BLOCK_SIZE + L::JB_SEQ,
            7u64.to_le_bytes().to_vec(),
            Field::Seq,
            2,
        ),
        (
            big + MD_BLOCK_SIZE + L::JB_BLOCKS,
            2u32.to_le_bytes().to_vec(),
            Field::Blocks,
            2,
        ),
        (
            big + MD_BLOCK_SIZE + L::JB_MAGIC,
            b"DMRR".to_vec(),
            Field::Magic,
            2,
        ),
        (
            big + MD_BLOCK_SIZE + L::JB_BASE_SEQ,
            2u64.to_le_bytes().to_vec(),
            Field::BaseSeq,
            2,
        ),
    ];
    for (off, bytes, field, commits) in cases {
        let mut img = ji.img.clone();
        img[off..off + bytes.len()].copy_from_slice(&bytes);
        let blk = off / MD_BLOCK_SIZE * MD_BLOCK_SIZE;
        seal(&mut img[blk..blk + MD_BLOCK_SIZE]);
        let (l, got, _) = load_img(&img, &Expect::default()).unwrap();
        assert_eq!(got, ji.want(commits), "offset {off:#x}");
        assert!(
            matches!(l.journal.end, JournalEnd::Invalid { field: f, .. } if f == field),
            "offset {off:#x}: {:?}, want {field:?}",
            l.journal.end
        );
    }
    // An intact block of another kind, or of an older journal, at the head: a clean end.
    for (off, bytes) in [
        (first + L::JB_MAGIC, b"DMRR".to_vec()),
        (first + L::JB_BASE_SEQ, 2u64.to_le_bytes().to_vec()),
    ] {
        let mut img = ji.img.clone();
        img[off..off + bytes.len()].copy_from_slice(&bytes);
        seal(&mut img[first..first + MD_BLOCK_SIZE]);
        let (l, got, _) = load_img(&img, &Expect::default()).unwrap();
        assert_eq!((got, l.journal.end), (ji.base.clone(), JournalEnd::Clean));
    }
}

#[test]
fn checkpoints_restart_the_journal() {
    let ji = jimage();
    let set = ji.set;
    let mut img = ji.img.clone();
    // Checkpoint: the whole index as copy B with a new sequence number. A's journal is older.
    let state = ji.want(3);
    let sb = commit(&mut img, &set, CopyId::B, 7, &state);
    let (l, got, _) = load_img(&img, &Expect::default()).unwrap();
    assert_eq!(
        (l.winner, got.clone(), l.journal.end),
        (CopyId::B, state.clone(), JournalEnd::Clean)
    );
    assert_eq!(l.other, CopyStatus::Valid { seq: 3 });
    assert_eq!(l.journal.journal, Journal::after(&sb));
    // A journal on B, then a checkpoint to A with fewer records: the old journal blocks left
    // in A's record area are not replayed (another base sequence number).
    let mut j = Journal::after(&sb);
    let c8: Vec<Change> = state.iter().skip(5).map(|&(b, _)| (b, None)).collect();
    jcommit(&mut img, &set, &mut j, 8, &c8);
    let state2 = model(&state, &[&c8]);
    let (_, got, _) = load_img(&img, &Expect::default()).unwrap();
    assert_eq!(got, state2);
    let sb_a = commit(&mut img, &set, CopyId::A, 9, &state2);
    assert!(Journal::after(&sb_a).first < ji.journal.head);
    let (l, got, _) = load_img(&img, &Expect::default()).unwrap();
    assert_eq!(
        (l.winner, got, l.journal.end),
        (CopyId::A, state2.clone(), JournalEnd::Clean)
    );
    // A checkpoint torn by a crash (superblock not written): B and its journal still win.
    let mut img2 = img.clone();
    let bsb = (set.geometry.sb_sector(CopyId::A) * SECTOR_SIZE) as usize;
    img2[bsb..bsb + MD_BLOCK_SIZE].fill(0);
    let (l, got, _) = load_img(&img2, &Expect::default()).unwrap();
    assert_eq!(
        (l.winner, got, l.journal.journal.commits),
        (CopyId::B, state2, 1)
    );
    // The journal fills the copy's record area: replay stops there, the encoder refuses more.
    let mut j = Journal::after(&sb_a);
    let mut seq = 10;
    while j.free() > 0 {
        jcommit(
            &mut img,
            &set,
            &mut j,
            seq,
            &[(3000 + seq, Some(Entry::Pending))],
        );
        seq += 1;
    }
    let (l, got, _) = load_img(&img, &Expect::default()).unwrap();
    assert_eq!(l.journal.end, JournalEnd::Full);
    assert_eq!(l.journal.journal.commits, u64::from(j.used()));
    assert_eq!(got.len(), 5 + j.used() as usize);
    let mut buf = vec![0u8; MD_BLOCK_SIZE];
    assert_eq!(
        encode_journal(&set, &j, seq, [(1, None)].into_iter(), &mut buf),
        Err(EncodeError::JournalSpace)
    );
}

#[test]
fn journal_encoder_refusals() {
    let set = jset();
    let mut img = blank(&set);
    let sb = commit(&mut img, &set, CopyId::A, 5, &Vec::new());
    let j = Journal::after(&sb);
    let mut buf = vec![0u8; MD_BLOCK_SIZE];
    let one = |e| [(3u64, e)].into_iter();
    assert_eq!(
        encode_journal(&set, &j, 5, one(None), &mut buf),
        Err(EncodeError::Seq)
    );
    assert_eq!(
        encode_journal(&set, &j, 6, core::iter::empty(), &mut buf),
        Ok(0)
    );
    assert_eq!(
        encode_journal(&set, &j, 6, [(1u64 << 30, None)].into_iter(), &mut buf),
        Err(EncodeError::Record {
            block: 1 << 30,
            problem: RecordProblem::BlockOutOfRange
        })
    );
    let slot = set.geometry.data_slots;
    assert_eq!(
        encode_journal(&set, &j, 6, one(Some(Entry::Remapped { slot })), &mut buf),
        Err(EncodeError::Record {
            block: 3,
            problem: RecordProblem::SlotOutOfRange
        })
    );
    // 253 changes need two blocks: refused with a one-block buffer.
    let many = (0..253u64).map(|b| (b, Some(Entry::Pending)));
    assert_eq!(
        encode_journal(&set, &j, 6, many.clone(), &mut buf),
        Err(EncodeError::JournalSpace)
    );
    let mut buf2 = vec![0u8; 2 * MD_BLOCK_SIZE];
    assert_eq!(encode_journal(&set, &j, 6, many, &mut buf2), Ok(2));
}

#[test]
fn version_2_copies_have_no_journal() {
    let ji = jimage();
    let mut img = ji.img.clone();
    // The same image with copy A's superblock as version 2 wrote it: its journal is ignored.
    let s = (ji.set.geometry.sb_sector(CopyId::A) * SECTOR_SIZE) as usize;
    put_u32(&mut img[s..s + MD_BLOCK_SIZE], L::SB_VERSION, 2);
    seal(&mut img[s..s + MD_BLOCK_SIZE]);
    let (l, got, _) = load_img(&img, &Expect::default()).unwrap();
    assert_eq!(
        (l.sb.version, got, l.journal.end),
        (2, ji.base.clone(), JournalEnd::None)
    );
    assert_eq!(l.next_seq, 4);
}

#[test]
fn journal_read_errors_fail_the_load() {
    struct Failing<'a>(&'a [u8], u64);
    impl SpareRead for Failing<'_> {
        fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
            if sector == self.1 {
                return Err(IoError);
            }
            Image(self.0).read(sector, buf)
        }
    }
    let ji = jimage();
    let sector = (ji.ranges[1].start as u64) / SECTOR_SIZE;
    let mut buf = vec![0u8; MD_BLOCK_SIZE];
    let mut bits = vec![0u64; words_for(ji.set.geometry.data_slots)];
    let r = load(
        &mut Failing(&ji.img, sector),
        ji.img.len() as u64 / SECTOR_SIZE,
        &Expect::default(),
        &mut buf,
        &mut bits,
        |_, _| Ok(()),
        |_, _| Ok(()),
    );
    assert_eq!(r.err(), Some(LoadError::JournalIo { sector }));
}

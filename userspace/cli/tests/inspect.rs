//! Runs `dmremap inspect` on spare images written with the core codec, and checks the header's
//! on-disk structures against the codec's offsets.

use std::mem::{offset_of, size_of};
use std::path::Path;
use std::process::{Command, Output};

use dmremap_core::alloc::words_for;
use dmremap_core::metadata::{
    format, layout, write_copy, CopyId, Geometry, Image, MainDevice, SetInfo, MD_BLOCK_SIZE,
};
use dmremap_core::remap::Entry;
use dmremap_lib::control::uapi;
use serde_json::Value;

const UUID: [u8; 16] = [
    0x6f, 0x1c, 0x2a, 0x90, 0x11, 0x22, 0x43, 0x44, 0x85, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc,
];
/// 8 MiB spare, 4 KiB blocks, room for 16 pending records.
const SPARE_SECTORS: u64 = 16384;

fn set() -> SetInfo {
    SetInfo {
        uuid: UUID,
        main: MainDevice {
            sectors: 1 << 21,
            offset: 0,
            id: MainDevice::id_from(b"QM00001-test").unwrap(),
        },
        geometry: Geometry::for_spare(SPARE_SECTORS, 4096, 16).unwrap(),
        features_compat: 0,
        name: [0; dmremap_core::metadata::NAME_LEN],
        target_begin: 0,
        target_len: 0,
    }
}

fn records() -> Vec<(u64, Entry)> {
    vec![
        (7, Entry::Remapped { slot: 0 }),
        (100, Entry::Pending),
        (4096, Entry::Remapped { slot: 5 }),
        (200_000, Entry::Remapped { slot: 1 }),
    ]
}

/// Test helper: an image file formatted with a few records (copy A seq 1, copy B seq 2), then
/// one more commit with one more record into copy A (seq 3).
fn write_image(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let set = set();
    let mut img = vec![0u8; (SPARE_SECTORS * 512) as usize];
    let mut buf = vec![0u8; MD_BLOCK_SIZE];
    let mut bits = vec![0u64; words_for(set.geometry.data_slots)];
    format(
        &mut Image(&mut img[..]),
        &set,
        records().into_iter(),
        &mut buf,
        Some(&mut bits),
    )
    .unwrap();
    let mut more = records();
    more.push((250_000, Entry::Remapped { slot: 9 }));
    write_copy(
        &mut Image(&mut img[..]),
        &set,
        CopyId::A,
        3,
        more.into_iter(),
        &mut buf,
        Some(&mut bits),
    )
    .unwrap();
    let path = dir.join("spare.img");
    std::fs::write(&path, &img).unwrap();
    (path, img)
}

fn inspect(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dmremap"))
        .arg("inspect")
        .args(args)
        .output()
        .expect("run dmremap")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn valid_image_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_image(dir.path());
    let p = path.to_str().unwrap();

    let out = inspect(&[p]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "status: valid",
        "copy A (superblock at sector 0): valid, seq 3, 5 records (4 remapped, 1 pending)",
        "copy B (superblock at sector 16376): valid, seq 2, 4 records (3 remapped, 1 pending)",
        "winner: copy A (seq 3)",
        "next commit: seq 4; next checkpoint: copy B",
        "journal: behind copy A, 0 commits (seq 3..3)",
        "uuid 6f1c2a90-1122-4344-8566-778899aabbcc",
        "id \"QM00001-test\"",
        "block size 4096 bytes",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(
        !text.contains("200000"),
        "records are listed only with --records"
    );

    let out = inspect(&[p, "--json", "--records"]);
    assert_eq!(out.status.code(), Some(0));
    let v = json_of(&out);
    let g = set().geometry;
    assert_eq!(v["status"], "valid");
    assert_eq!(v["sectors"], SPARE_SECTORS);
    assert_eq!(v["winner"], "A");
    assert_eq!(v["seq"], 3);
    assert_eq!(v["other"]["valid"], true);
    assert_eq!(v["other"]["seq"], 2);
    assert_eq!(v["next_commit"]["copy"], "B");
    assert_eq!(v["next_commit"]["seq"], 4);
    assert_eq!(v["counts"]["records"], 5);
    assert_eq!(v["counts"]["remapped"], 4);
    assert_eq!(v["counts"]["pending"], 1);
    assert_eq!(v["superblock"]["main"]["id"], "QM00001-test");
    assert_eq!(v["superblock"]["main"]["sectors"], 1u64 << 21);
    assert_eq!(v["superblock"]["geometry"]["data_slots"], g.data_slots);
    assert_eq!(v["superblock"]["geometry"]["data_start"], g.data_start);
    assert_eq!(
        v["superblock"]["geometry"]["record_capacity"],
        g.data_slots + 16
    );
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs.len(), 5);
    assert_eq!(recs[1]["block"], 100);
    assert_eq!(recs[1]["state"], "pending");
    assert_eq!(recs[3]["block"], 200_000);
    assert_eq!(recs[3]["slot"], 1);
    assert_eq!(recs[3]["spare_sector"], g.data_start + 8);
    assert_eq!(recs[4]["block"], 250_000);
    assert_eq!(v["copies"][1]["superblock_sector"], SPARE_SECTORS - 8);

    let out = inspect(&["--records", p]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["200000", "remapped", "1", &(g.data_start + 8).to_string()]),
        "{text}"
    );
}

#[test]
fn one_damaged_copy_falls_back_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut img) = write_image(dir.path());
    // Corrupt one byte of copy A's first record block: copy B (seq 2) wins.
    img[8 * 512 + 100] ^= 0x20;
    std::fs::write(&path, &img).unwrap();
    let out = inspect(&[path.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "a valid copy remains: {out:?}");
    let v = json_of(&out);
    assert_eq!(v["status"], "degraded");
    assert_eq!(v["winner"], "B");
    assert_eq!(v["counts"]["records"], 4);
    assert_eq!(v["copies"][0]["valid"], false);
    assert_eq!(
        v["copies"][0]["error"],
        "record block 0: field crc: checksum mismatch"
    );
    assert_eq!(v["other"]["valid"], false);
    assert_eq!(v["next_commit"]["copy"], "A");
    assert_eq!(
        v["next_commit"]["seq"], 4,
        "seq 3 was seen in an intact superblock"
    );
}

#[test]
fn no_valid_copy_exits_1_and_names_both_copies() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut img) = write_image(dir.path());
    img[0x10] ^= 1; // copy A superblock
    let b = ((SPARE_SECTORS - 8) * 512) as usize;
    img[b] = b'X'; // copy B superblock magic
    std::fs::write(&path, &img).unwrap();
    let p = path.to_str().unwrap();
    let out = inspect(&[p]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with(&format!(
            "dmremap: {p}: no valid metadata copy: copy A: superblock field crc"
        )) && err.contains("copy B: superblock field magic"),
        "{err}"
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("status: damaged") && text.contains("copy A (superblock at sector 0): BAD"),
        "{text}"
    );

    let out = inspect(&[p, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v = json_of(&out);
    assert_eq!(v["status"], "damaged");
    assert_eq!(v["winner"], Value::Null);
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("copy B: superblock field magic"));
}

#[test]
fn blank_resized_and_missing() {
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank.img");
    std::fs::write(&blank, vec![0u8; 1 << 20]).unwrap();
    let out = inspect(&[blank.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json_of(&out)["status"], "blank");
    assert!(String::from_utf8(out.stderr).unwrap().contains("blank"));

    // The image grew by 4 KiB: copy A names the size it was written for; copy B is not found.
    let (path, mut img) = write_image(dir.path());
    img.extend_from_slice(&[0u8; 4096]);
    std::fs::write(&path, &img).unwrap();
    let out = inspect(&[path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("written for a spare of 16384 sectors, device has 16392"),
        "{err}"
    );

    let tiny = dir.path().join("tiny.img");
    std::fs::write(&tiny, vec![0u8; 4096]).unwrap();
    let out = inspect(&[tiny.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr).unwrap().contains("too small"));

    let missing = dir.path().join("nope.img");
    let out = inspect(&[missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with(&format!("dmremap: {}: ", missing.display())),
        "{err}"
    );
}

#[test]
fn header_structs_match_the_codec() {
    use uapi::{dmr_md_record, dmr_md_record_block as rb, dmr_md_superblock as sb};
    assert_eq!(size_of::<sb>(), MD_BLOCK_SIZE);
    assert_eq!(size_of::<rb>(), MD_BLOCK_SIZE);
    assert_eq!(
        size_of::<dmr_md_record>(),
        dmremap_core::metadata::RECORD_SIZE
    );
    let sbf = [
        (offset_of!(sb, magic), layout::SB_MAGIC),
        (offset_of!(sb, crc), layout::SB_CRC),
        (offset_of!(sb, version), layout::SB_VERSION),
        (offset_of!(sb, copy), layout::SB_COPY),
        (offset_of!(sb, seq), layout::SB_SEQ),
        (offset_of!(sb, features_compat), layout::SB_COMPAT),
        (offset_of!(sb, features_incompat), layout::SB_INCOMPAT),
        (offset_of!(sb, uuid), layout::SB_UUID),
        (offset_of!(sb, main_sectors), layout::SB_MAIN_SECTORS),
        (offset_of!(sb, main_offset), layout::SB_MAIN_OFFSET),
        (offset_of!(sb, main_id_v1), layout::SB_MAIN_ID_V1),
        (offset_of!(sb, main_id), layout::SB_MAIN_ID),
        (offset_of!(sb, name), layout::SB_NAME),
        (offset_of!(sb, target_begin), layout::SB_TARGET_BEGIN),
        (offset_of!(sb, target_len), layout::SB_TARGET_LEN),
        (offset_of!(sb, block_size), layout::SB_BLOCK_SIZE),
        (offset_of!(sb, md_block_size), layout::SB_MD_BLOCK_SIZE),
        (offset_of!(sb, spare_sectors), layout::SB_SPARE_SECTORS),
        (offset_of!(sb, meta_a_start), layout::SB_META_A_START),
        (offset_of!(sb, meta_b_start), layout::SB_META_B_START),
        (offset_of!(sb, meta_sectors), layout::SB_META_SECTORS),
        (offset_of!(sb, data_start), layout::SB_DATA_START),
        (offset_of!(sb, data_slots), layout::SB_DATA_SLOTS),
        (offset_of!(sb, record_capacity), layout::SB_RECORD_CAPACITY),
        (offset_of!(sb, nr_records), layout::SB_NR_RECORDS),
        (offset_of!(sb, nr_remapped), layout::SB_NR_REMAPPED),
        (offset_of!(sb, nr_pending), layout::SB_NR_PENDING),
        (offset_of!(sb, records_crc), layout::SB_RECORDS_CRC),
        (offset_of!(sb, record_blocks), layout::SB_RECORD_BLOCKS),
        (offset_of!(sb, reserved), layout::SB_RESERVED),
    ];
    for (i, (h, c)) in sbf.iter().enumerate() {
        assert_eq!(h, c, "superblock field #{i}");
    }
    let rbf = [
        (offset_of!(rb, magic), layout::RB_MAGIC),
        (offset_of!(rb, crc), layout::RB_CRC),
        (offset_of!(rb, seq), layout::RB_SEQ),
        (offset_of!(rb, uuid), layout::RB_UUID),
        (offset_of!(rb, copy), layout::RB_COPY),
        (offset_of!(rb, index), layout::RB_INDEX),
        (offset_of!(rb, count), layout::RB_COUNT),
        (offset_of!(rb, reserved0), layout::RB_RESERVED),
        (offset_of!(rb, records), layout::RB_RECORDS),
        (offset_of!(dmr_md_record, block), layout::REC_BLOCK),
        (
            offset_of!(dmr_md_record, state_slot),
            layout::REC_STATE_SLOT,
        ),
    ];
    for (i, (h, c)) in rbf.iter().enumerate() {
        assert_eq!(h, c, "record block field #{i}");
    }
    use uapi::dmr_md_journal_block as jb;
    assert_eq!(size_of::<jb>(), MD_BLOCK_SIZE);
    let jbf = [
        (offset_of!(jb, magic), layout::JB_MAGIC),
        (offset_of!(jb, crc), layout::JB_CRC),
        (offset_of!(jb, seq), layout::JB_SEQ),
        (offset_of!(jb, uuid), layout::JB_UUID),
        (offset_of!(jb, base_seq), layout::JB_BASE_SEQ),
        (offset_of!(jb, prev_seq), layout::JB_PREV_SEQ),
        (offset_of!(jb, index), layout::JB_INDEX),
        (offset_of!(jb, blocks), layout::JB_BLOCKS),
        (offset_of!(jb, count), layout::JB_COUNT),
        (offset_of!(jb, commit_crc), layout::JB_COMMIT_CRC),
        (offset_of!(jb, entries), layout::JB_ENTRIES),
    ];
    for (i, (h, c)) in jbf.iter().enumerate() {
        assert_eq!(h, c, "journal block field #{i}");
    }
    use dmremap_core::metadata as m;
    assert_eq!(uapi::DMR_MD_VERSION, m::VERSION);
    assert_eq!(uapi::DMR_MD_SB_MAGIC, m::SB_MAGIC);
    assert_eq!(uapi::DMR_MD_RB_MAGIC, m::RB_MAGIC);
    assert_eq!(uapi::DMR_MD_JB_MAGIC, m::JB_MAGIC);
    assert_eq!(uapi::DMR_MD_STATE_REMOVED as u64, m::STATE_REMOVED);
    assert_eq!(uapi::DMR_MD_BLOCK_SIZE as usize, m::MD_BLOCK_SIZE);
    assert_eq!(
        uapi::DMR_MD_RECORDS_PER_BLOCK as usize,
        m::RECORDS_PER_BLOCK
    );
    assert_eq!(
        (uapi::DMR_MD_COPY_A, uapi::DMR_MD_COPY_B),
        (m::COPY_ID_A, m::COPY_ID_B)
    );
    assert_eq!(uapi::DMR_MD_STATE_SHIFT, m::STATE_SHIFT);
    assert_eq!(
        (
            uapi::DMR_MD_STATE_REMAPPED as u64,
            uapi::DMR_MD_STATE_PENDING as u64
        ),
        (m::STATE_REMAPPED, m::STATE_PENDING)
    );
    assert_eq!(uapi::DMR_MD_SLOT_MASK, m::SLOT_MASK);
    assert_eq!(uapi::DMR_MD_UUID_LEN as usize, m::UUID_LEN);
    assert_eq!(uapi::DMR_MD_MAIN_ID_LEN as usize, m::MAIN_ID_LEN);
    assert_eq!(uapi::DMR_MD_MAIN_ID_V1_LEN as usize, m::MAIN_ID_V1_LEN);
    assert_eq!(uapi::DMR_MD_NAME_LEN as usize, m::NAME_LEN);
    assert_eq!(uapi::DMR_MD_VERSION_MIN, m::VERSION_MIN);
    assert_eq!(
        uapi::DMR_MD_FEATURES_INCOMPAT_SUPPORTED,
        m::FEATURES_INCOMPAT_SUPPORTED
    );
    // Fields read at the header's offsets from a superblock the codec wrote.
    let mut img = vec![0u8; (SPARE_SECTORS * 512) as usize];
    let mut buf = vec![0u8; MD_BLOCK_SIZE];
    format(
        &mut Image(&mut img[..]),
        &set(),
        records().into_iter(),
        &mut buf,
        None,
    )
    .unwrap();
    let u32_at = |off: usize| u32::from_le_bytes(img[off..off + 4].try_into().unwrap());
    let u64_at = |off: usize| u64::from_le_bytes(img[off..off + 8].try_into().unwrap());
    assert_eq!(u32_at(offset_of!(sb, magic)), m::SB_MAGIC);
    assert_eq!(u64_at(offset_of!(sb, seq)), 1);
    assert_eq!(u64_at(offset_of!(sb, nr_records)), 4);
    assert_eq!(u64_at(offset_of!(sb, spare_sectors)), SPARE_SECTORS);
    assert_eq!(u32_at(offset_of!(sb, block_size)), 4096);
    assert_eq!(&img[offset_of!(sb, uuid)..offset_of!(sb, uuid) + 16], &UUID);
    assert_eq!(u32_at(offset_of!(sb, version)), 3);
    assert_eq!(
        &img[offset_of!(sb, main_id)..offset_of!(sb, main_id) + 12],
        b"QM00001-test"
    );
    let r0 = 8 * 512 + offset_of!(rb, records);
    assert_eq!(u64_at(r0 + offset_of!(dmr_md_record, block)), 7);
    assert_eq!(u64_at(r0 + offset_of!(dmr_md_record, state_slot)), 1 << 56);
}

#[test]
fn journal_is_replayed_and_reported() {
    use dmremap_core::metadata::{encode_journal, probe, Journal};
    let dir = tempfile::tempdir().unwrap();
    let (path, mut img) = write_image(dir.path());
    let set = set();
    let mut buf = vec![0u8; MD_BLOCK_SIZE];
    let sb = probe(&mut Image(&img[..]), SPARE_SECTORS, &mut buf)
        .unwrap()
        .a
        .unwrap();
    let mut j = Journal::after(&sb);
    // Commit 4: block 100 (pending) healed into slot 2, block 7 unremapped, block 300 pending.
    let changes = [
        (100, Some(Entry::Remapped { slot: 2 })),
        (7, None),
        (300, Some(Entry::Pending)),
    ];
    let n = encode_journal(&set, &j, 4, changes.into_iter(), &mut buf).unwrap();
    let at = (j.sector(&set, j.head) * 512) as usize;
    img[at..at + MD_BLOCK_SIZE].copy_from_slice(&buf);
    j.advance(n, 4);
    std::fs::write(&path, &img).unwrap();
    let p = path.to_str().unwrap();
    let out = inspect(&[p, "--json", "--records"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v = json_of(&out);
    assert_eq!(v["journal"]["commits"], 1);
    assert_eq!(v["journal"]["last_seq"], 4);
    assert_eq!(v["journal"]["end"], "clean");
    assert_eq!(v["journal"]["next_sector"], j.sector(&set, j.head));
    assert_eq!(v["next_commit"]["seq"], 5);
    assert_eq!(v["counts"]["records"], 5);
    assert_eq!(v["counts"]["remapped"], 4);
    assert_eq!(v["counts"]["pending"], 1);
    let blocks: Vec<u64> = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["block"].as_u64().unwrap())
        .collect();
    assert_eq!(blocks, [100, 300, 4096, 200_000, 250_000]);
    // A torn journal block: the commit is not replayed, and the report says why.
    img[at + 2000] ^= 1;
    std::fs::write(&path, &img).unwrap();
    let out = inspect(&[p]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("0 commits"), "{text}");
    assert!(
        text.contains("field crc: checksum mismatch (torn or damaged commit)"),
        "{text}"
    );
    assert!(text.contains("records: 5 (4 remapped, 1 pending"), "{text}");
}

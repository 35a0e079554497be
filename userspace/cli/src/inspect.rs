//! `dmremap inspect`: offline decode and validation of the metadata on a spare device or image
//! file, with the codec the kernel module uses (`dmremap_core::metadata`). Nothing is written.
//!
//! Prints each copy's superblock (or why it is not valid), which copy wins, its journal (the
//! commits since that copy, replayed on top of it), the geometry, the record counts and, with
//! `--records`, every record of the index (winning copy plus journal).
//!
//! Exit status: 0 when a valid copy exists (also when the other copy is bad: the report says
//! so), 1 when there is none (blank or damaged spare, read error), 3 when the path does not exist.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use clap::Args;
use dmremap_core::alloc::words_for;
use dmremap_core::metadata::{
    check_copy, load, probe, CopyError, CopyId, CopyStatus, CopyTotals, Expect, IoError,
    JournalEnd, LoadError, Loaded, Probe, SpareRead, Superblock, MD_BLOCK_SIZE, SECTOR_SIZE,
};
use dmremap_core::remap::Entry;
use serde_json::{json, Value};

use crate::error::{CliError, Kind};

/// Arguments of `dmremap inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Spare device or image file.
    pub path: PathBuf,
    /// Also list every record (block, state, slot) of the index: the winning copy with its
    /// journal replayed.
    #[arg(long)]
    pub records: bool,
}

/// A spare read with positioned reads; remembers the last OS error for the report.
struct FileSpare {
    file: File,
    last_error: Option<io::Error>,
}

impl SpareRead for FileSpare {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let off = sector.checked_mul(SECTOR_SIZE).ok_or(IoError)?;
        self.file.read_exact_at(buf, off).map_err(|e| {
            self.last_error = Some(e);
            IoError
        })
    }
}

fn open(path: &Path) -> Result<(FileSpare, u64), CliError> {
    let shown = path.display();
    let mut file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            CliError::new(Kind::NoDevice, format!("{shown}: no such file or device"))
        }
        io::ErrorKind::PermissionDenied => {
            CliError::new(Kind::Permission, format!("{shown}: open: {e}"))
        }
        _ => CliError::failed(format!("{shown}: open: {e}")),
    })?;
    // Block devices report size 0 in their metadata: ask by seeking to the end.
    let bytes = file
        .seek(SeekFrom::End(0))
        .map_err(|e| CliError::failed(format!("{shown}: cannot determine the size: {e}")))?;
    Ok((
        FileSpare {
            file,
            last_error: None,
        },
        bytes / SECTOR_SIZE,
    ))
}

/// The set UUID as 32 hex digits (the form in the device-mapper UUID `REMAP-<hex>`).
pub fn hex(u: &[u8; 16]) -> String {
    u.iter().map(|b| format!("{b:02x}")).collect()
}

fn uuid_text(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// What the identity string is: version 1 recorded the main device's kernel name.
fn id_kind(sb: &Superblock) -> &'static str {
    if sb.version == 1 {
        "kernel_name"
    } else {
        "main_id"
    }
}

fn superblock_json(sb: &Superblock) -> Value {
    let g = &sb.set.geometry;
    json!({
        "version": sb.version,
        "seq": sb.seq,
        "uuid": uuid_text(&sb.set.uuid),
        "name": String::from_utf8_lossy(sb.set.name_bytes()),
        "main": {
            "sectors": sb.set.main.sectors,
            "offset": sb.set.main.offset,
            "id": String::from_utf8_lossy(sb.set.main.id_bytes()),
            "id_kind": id_kind(sb),
        },
        "features_compat": sb.set.features_compat,
        "geometry": {
            "spare_sectors": g.spare_sectors,
            "block_size": g.block_size,
            "meta_a_start": g.meta_a_start,
            "meta_b_start": g.meta_b_start,
            "meta_sectors": g.meta_sectors,
            "data_start": g.data_start,
            "data_slots": g.data_slots,
            "record_capacity": g.record_capacity,
        },
        "nr_records": sb.nr_records,
        "nr_remapped": sb.nr_remapped,
        "nr_pending": sb.nr_pending,
        "records_crc": format!("{:#010x}", sb.records_crc),
    })
}

/// One copy as inspected on its own.
struct CopyReport {
    copy: CopyId,
    sector: Option<u64>,
    superblock: Option<Superblock>,
    result: Result<CopyTotals, CopyError>,
}

fn inspect_copy(dev: &mut FileSpare, p: &Probe, copy: CopyId, sectors: u64) -> CopyReport {
    let sector = match copy {
        CopyId::A => Some(0),
        CopyId::B => dmremap_core::metadata::sb_b_sector(sectors),
    };
    match p.get(copy) {
        Ok(sb) => {
            let mut buf = vec![0u8; MD_BLOCK_SIZE];
            let mut bits = vec![0u64; words_for(sb.set.geometry.data_slots)];
            let result = check_copy(dev, sb, &mut buf, &mut bits);
            CopyReport {
                copy,
                sector,
                superblock: Some(*sb),
                result,
            }
        }
        Err(e) => CopyReport {
            copy,
            sector,
            superblock: None,
            result: Err(*e),
        },
    }
}

fn copy_json(c: &CopyReport) -> Value {
    json!({
        "copy": c.copy.name(),
        "superblock_sector": c.sector,
        "valid": c.result.is_ok(),
        "error": c.result.err().map(|e| e.to_string()),
        "superblock": c.superblock.as_ref().map(superblock_json),
    })
}

fn copy_text(c: &CopyReport) -> String {
    let at = c
        .sector
        .map_or(String::new(), |s| format!(" (superblock at sector {s})"));
    match (&c.superblock, &c.result) {
        (Some(sb), Ok(t)) => format!(
            "copy {}{at}: valid, seq {}, {} records ({} remapped, {} pending)",
            c.copy, sb.seq, sb.nr_records, t.remapped, t.pending
        ),
        (Some(sb), Err(e)) => format!("copy {}{at}: BAD (seq {} superblock): {e}", c.copy, sb.seq),
        (None, Err(e)) => format!("copy {}{at}: BAD: {e}", c.copy),
        (None, Ok(_)) => format!("copy {}{at}: valid", c.copy),
    }
}

fn entry_json(block: u64, e: Entry, sb: &Superblock) -> Value {
    match e {
        Entry::Remapped { slot } => json!({
            "block": block,
            "state": "remapped",
            "slot": slot,
            "spare_sector": sb.set.geometry.slot_sector(slot),
        }),
        Entry::Pending => {
            json!({ "block": block, "state": "pending", "slot": null, "spare_sector": null })
        }
    }
}

/// Run `dmremap inspect`.
pub fn run(args: &InspectArgs, json: bool) -> Result<(), CliError> {
    let path = &args.path;
    let shown = path.display().to_string();
    let (mut dev, sectors) = open(path)?;
    let mut buf = vec![0u8; MD_BLOCK_SIZE];
    let p = match probe(&mut dev, sectors, &mut buf) {
        Ok(p) => p,
        Err(e) => {
            let msg = format!("{shown}: {e}");
            if json {
                println!(
                    "{}",
                    json!({ "path": shown, "sectors": sectors, "status": "damaged", "error": msg })
                );
            }
            return Err(CliError::failed(msg));
        }
    };
    let copies = [
        inspect_copy(&mut dev, &p, CopyId::A, sectors),
        inspect_copy(&mut dev, &p, CopyId::B, sectors),
    ];

    let mut bits = vec![0u64; p.bitmap_words()];
    let mut index: BTreeMap<u64, Entry> = BTreeMap::new();
    let mut journal: Vec<(u64, Option<Entry>)> = Vec::new();
    let want_records = args.records;
    let loaded = load(
        &mut dev,
        sectors,
        &Expect::default(),
        &mut buf,
        &mut bits,
        |b, e| {
            index.insert(b, e);
            Ok(())
        },
        |b, e| {
            journal.push((b, e));
            Ok(())
        },
    );
    for (b, e) in journal {
        match e {
            Some(e) => index.insert(b, e),
            None => index.remove(&b),
        };
    }
    let records: Vec<(u64, Entry)> = index.into_iter().collect();
    let io_note = dev
        .last_error
        .as_ref()
        .map(|e| format!(" (last read error: {e})"))
        .unwrap_or_default();

    let status = match &loaded {
        Ok(l) if l.other_bad() => "degraded",
        Ok(_) => "valid",
        Err(LoadError::Blank) => "blank",
        Err(_) => "damaged",
    };
    if json {
        print_json(
            &shown,
            sectors,
            status,
            &copies,
            &loaded,
            &records,
            want_records,
        );
    } else {
        print_text(
            &shown,
            sectors,
            status,
            &copies,
            &loaded,
            &records,
            want_records,
        );
    }
    match loaded {
        Ok(_) => Ok(()),
        Err(LoadError::Blank) => Err(CliError::failed(format!(
            "{shown}: no metadata: the spare is blank (all zeros)"
        ))),
        Err(e) => Err(CliError::failed(format!("{shown}: {e}{io_note}"))),
    }
}

/// Remapped and pending records of the index.
fn counts(records: &[(u64, Entry)]) -> (u64, u64) {
    let pending = records
        .iter()
        .filter(|(_, e)| matches!(e, Entry::Pending))
        .count() as u64;
    (records.len() as u64 - pending, pending)
}

fn end_text(end: &JournalEnd) -> String {
    match end {
        JournalEnd::None => "none".into(),
        JournalEnd::Clean => "clean".into(),
        JournalEnd::Full => "full".into(),
        e => e.to_string(),
    }
}

fn journal_json(l: &Loaded) -> Value {
    let j = &l.journal.journal;
    let set = &l.sb.set;
    json!({
        "copy": j.copy.name(),
        "base_seq": j.base_seq,
        "last_seq": j.last_seq,
        "commits": j.commits,
        "entries": l.journal.entries,
        "blocks_used": j.used(),
        "blocks_free": j.free(),
        "first_sector": j.sector(set, j.first),
        "next_sector": j.sector(set, j.head),
        "end": end_text(&l.journal.end),
    })
}

fn print_json(
    shown: &str,
    sectors: u64,
    status: &str,
    copies: &[CopyReport; 2],
    loaded: &Result<Loaded, LoadError>,
    records: &[(u64, Entry)],
    want_records: bool,
) {
    let mut v = json!({
        "path": shown,
        "sectors": sectors,
        "status": status,
        "copies": copies.iter().map(copy_json).collect::<Vec<_>>(),
    });
    match loaded {
        Ok(l) => {
            v["winner"] = json!(l.winner.name());
            v["seq"] = json!(l.sb.seq);
            v["other"] = match l.other {
                CopyStatus::Valid { seq } => {
                    json!({ "copy": l.winner.other().name(), "valid": true, "seq": seq })
                }
                CopyStatus::Bad(e) => {
                    json!({ "copy": l.winner.other().name(), "valid": false, "error": e.to_string() })
                }
            };
            v["next_commit"] = json!({ "copy": l.commit_target().name(), "seq": l.next_seq });
            v["superblock"] = superblock_json(&l.sb);
            v["journal"] = journal_json(l);
            let (remapped, pending) = counts(records);
            v["counts"] = json!({
                "records": records.len(),
                "remapped": remapped,
                "pending": pending,
            });
            if want_records {
                v["records"] = records
                    .iter()
                    .map(|&(b, e)| entry_json(b, e, &l.sb))
                    .collect();
            }
        }
        Err(e) => {
            v["winner"] = Value::Null;
            v["error"] = json!(e.to_string());
        }
    }
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
}

fn print_text(
    shown: &str,
    sectors: u64,
    status: &str,
    copies: &[CopyReport; 2],
    loaded: &Result<Loaded, LoadError>,
    records: &[(u64, Entry)],
    want_records: bool,
) {
    println!("spare: {shown} ({sectors} sectors)");
    println!("status: {status}");
    for c in copies {
        println!("{}", copy_text(c));
    }
    let Ok(l) = loaded else { return };
    let sb = &l.sb;
    let g = &sb.set.geometry;
    println!("winner: copy {} (seq {})", l.winner, sb.seq);
    match l.other {
        CopyStatus::Valid { seq } => println!("other: copy {} valid (seq {seq})", l.winner.other()),
        CopyStatus::Bad(e) => {
            println!("other: copy {} BAD, to be rewritten: {e}", l.winner.other())
        }
    }
    let j = &l.journal.journal;
    if l.journal.end == JournalEnd::None {
        println!("journal: none (format version {})", sb.version);
    } else {
        println!(
            "journal: behind copy {}, {} commits (seq {}..{}), {} entries, {} blocks used, {} free; next at sector {}; end: {}",
            j.copy,
            j.commits,
            j.base_seq,
            j.last_seq,
            l.journal.entries,
            j.used(),
            j.free(),
            j.sector(&sb.set, j.head),
            end_text(&l.journal.end)
        );
    }
    println!(
        "next commit: seq {}; next checkpoint: copy {}",
        l.next_seq,
        l.commit_target()
    );
    println!(
        "set: uuid {} (device-mapper uuid REMAP-{}), name {:?}, format version {}",
        uuid_text(&sb.set.uuid),
        hex(&sb.set.uuid),
        String::from_utf8_lossy(sb.set.name_bytes()),
        sb.version
    );
    println!(
        "main device: {} {:?}, {} sectors, remap block 0 at sector {}",
        id_kind(sb),
        String::from_utf8_lossy(sb.set.main.id_bytes()),
        sb.set.main.sectors,
        sb.set.main.offset
    );
    println!(
        "geometry: block size {} bytes; copy A sectors {}..{}; data sectors {}..{} ({} slots); copy B sectors {}..{}; record capacity {}",
        g.block_size,
        g.meta_a_start,
        g.meta_a_start + g.meta_sectors,
        g.data_start,
        g.data_end(),
        g.data_slots,
        g.meta_b_start,
        g.meta_b_start + g.meta_sectors,
        g.record_capacity
    );
    let (remapped, pending) = counts(records);
    println!(
        "records: {} ({remapped} remapped, {pending} pending; copy {}: {}, journal: {} changes)",
        records.len(),
        l.winner,
        sb.nr_records,
        l.journal.entries
    );
    if want_records {
        let r = records;
        println!(
            "{:>20}  {:<8}  {:>12}  {:>14}",
            "block", "state", "slot", "spare sector"
        );
        for &(b, e) in r {
            match e {
                Entry::Remapped { slot } => println!(
                    "{b:>20}  {:<8}  {slot:>12}  {:>14}",
                    "remapped",
                    g.slot_sector(slot)
                        .map_or("-".to_string(), |s| s.to_string())
                ),
                Entry::Pending => println!("{b:>20}  {:<8}  {:>12}  {:>14}", "pending", "-", "-"),
            }
        }
    }
}

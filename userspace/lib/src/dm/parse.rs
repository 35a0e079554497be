//! Parsers for what the target reports: the table line, the status INFO line, and the answers
//! of the `list`, `stats`, `remap`, `pending` and `unremap` messages.

use std::collections::BTreeMap;
use std::str::FromStr;

use dmremap_core::table as ktable;
use serde::Serialize;

use super::{Error, Result};

fn num(field: &str, s: &str) -> Result<u64> {
    ktable::parse_u64(s.as_bytes())
        .ok_or_else(|| Error::Parse(format!("{field} `{s}` is not a number")))
}

/// The parsed table line of a `remap` target (`STATUSTYPE_TABLE`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RemapTable {
    /// Main device as the kernel reports it (`major:minor`).
    pub main: String,
    pub main_offset: u64,
    pub spare: String,
    pub block_size: u32,
    pub read_retries: u32,
}

impl FromStr for RemapTable {
    type Err = Error;
    fn from_str(s: &str) -> Result<RemapTable> {
        let words: Vec<&str> = s.split_whitespace().collect();
        let parsed = ktable::parse_args(words.iter().map(|w| w.as_bytes()))
            .map_err(|e| Error::Parse(format!("table `{s}`: {e}")))?;
        Ok(RemapTable {
            main: words[0].to_string(),
            main_offset: parsed.main_offset,
            spare: words[2].to_string(),
            block_size: parsed.options.block_size,
            read_retries: parsed.options.read_retries,
        })
    }
}

/// The status INFO of a `remap` target:
/// `<remapped> <pending> <spare_used>/<spare_total> <read_errors> <write_errors> <metadata_seq> <state>`.
/// Fields a newer module appends after these are kept, in order, in `extra` (so a new kernel
/// field does not break this parser).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RemapStatus {
    pub remapped: u64,
    pub pending: u64,
    pub spare_used: u64,
    pub spare_total: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    pub metadata_seq: u64,
    pub state: String,
    /// Trailing fields this version does not know.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<String>,
}

impl FromStr for RemapStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<RemapStatus> {
        let w: Vec<&str> = s.split_whitespace().collect();
        if w.len() < 7 {
            return Err(Error::Parse(format!(
                "status `{s}` has {} fields, expected at least 7",
                w.len()
            )));
        }
        let (used, total) = w[2]
            .split_once('/')
            .ok_or_else(|| Error::Parse(format!("spare usage `{}` is not used/total", w[2])))?;
        let st = RemapStatus {
            remapped: num("remapped", w[0])?,
            pending: num("pending", w[1])?,
            spare_used: num("spare_used", used)?,
            spare_total: num("spare_total", total)?,
            read_errors: num("read_errors", w[3])?,
            write_errors: num("write_errors", w[4])?,
            metadata_seq: num("metadata_seq", w[5])?,
            state: w[6].to_string(),
            extra: w[7..].iter().map(|f| f.to_string()).collect(),
        };
        if st.spare_used > st.spare_total {
            return Err(Error::Parse(format!(
                "status `{s}`: spare used {} exceeds total {}",
                st.spare_used, st.spare_total
            )));
        }
        Ok(st)
    }
}

/// State of a block in the remap index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryState {
    /// Its data lives in a spare slot.
    Remapped,
    /// Unreadable on main, waiting for a full-block write.
    Pending,
}

/// One line of the `list` answer: `<sector> <block> <slot> <state>` (`-` for no slot).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RemapEntry {
    /// First device sector of the block.
    pub sector: u64,
    /// Block number inside its segment.
    pub block: u64,
    /// Spare slot, if the block has one.
    pub slot: Option<u64>,
    pub state: EntryState,
}

impl FromStr for RemapEntry {
    type Err = Error;
    fn from_str(s: &str) -> Result<RemapEntry> {
        let w: Vec<&str> = s.split_whitespace().collect();
        if w.len() != 4 {
            return Err(Error::Parse(format!(
                "list line `{s}` has {} fields, expected 4",
                w.len()
            )));
        }
        let state = match w[3] {
            "remapped" => EntryState::Remapped,
            "pending" => EntryState::Pending,
            other => {
                return Err(Error::Parse(format!(
                    "list line `{s}`: unknown state `{other}`"
                )))
            }
        };
        let slot = match w[2] {
            "-" => None,
            x => Some(num("slot", x)?),
        };
        if (state == EntryState::Remapped) != slot.is_some() {
            return Err(Error::Parse(format!(
                "list line `{s}`: slot and state disagree"
            )));
        }
        Ok(RemapEntry {
            sector: num("sector", w[0])?,
            block: num("block", w[1])?,
            slot,
            state,
        })
    }
}

/// Parses a whole `list` answer (one entry per line, possibly empty).
pub fn parse_list(answer: &str) -> Result<Vec<RemapEntry>> {
    answer
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::parse)
        .collect()
}

/// The `stats` answer (`key=value` lines). Keys this version does not know are kept: in `other`
/// when their value is a number, in `other_text` otherwise (both flattened into the JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub remapped: u64,
    pub pending: u64,
    pub spare_used: u64,
    pub spare_total: u64,
    pub block_size: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    pub remap_ops: u64,
    pub unremap_ops: u64,
    pub split_bios: u64,
    pub held_bios: u64,
    #[serde(flatten)]
    pub other: BTreeMap<String, u64>,
    #[serde(flatten)]
    pub other_text: BTreeMap<String, String>,
}

/// The keys [`Stats`] has fields for.
const STATS_KEYS: [&str; 11] = [
    "remapped",
    "pending",
    "spare_used",
    "spare_total",
    "block_size",
    "read_errors",
    "write_errors",
    "remap_ops",
    "unremap_ops",
    "split_bios",
    "held_bios",
];

impl FromStr for Stats {
    type Err = Error;
    fn from_str(s: &str) -> Result<Stats> {
        let mut map = BTreeMap::new();
        let mut text = BTreeMap::new();
        for line in s.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| Error::Parse(format!("stats line `{line}` is not key=value")))?;
            if k.is_empty()
                || !k
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
            {
                return Err(Error::Parse(format!("stats line `{line}`: bad key")));
            }
            if map.contains_key(k) || text.contains_key(k) {
                return Err(Error::Parse(format!("stats: key `{k}` appears twice")));
            }
            match num(k, v) {
                Ok(n) => {
                    map.insert(k.to_string(), n);
                }
                // Every known key is a number; an unknown one may be anything.
                Err(_) if !STATS_KEYS.contains(&k) => {
                    text.insert(k.to_string(), v.to_string());
                }
                Err(e) => return Err(e),
            }
        }
        let mut take = |k: &str| {
            map.remove(k)
                .ok_or_else(|| Error::Parse(format!("stats: key `{k}` is missing")))
        };
        Ok(Stats {
            remapped: take("remapped")?,
            pending: take("pending")?,
            spare_used: take("spare_used")?,
            spare_total: take("spare_total")?,
            block_size: take("block_size")?,
            read_errors: take("read_errors")?,
            write_errors: take("write_errors")?,
            remap_ops: take("remap_ops")?,
            unremap_ops: take("unremap_ops")?,
            split_bios: take("split_bios")?,
            held_bios: take("held_bios")?,
            other: map,
            other_text: text,
        })
    }
}

/// The answer of `remap <sector> <count>`:
/// `remapped <n> blocks, <m> already remapped[, then failed: error <e>]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RemapAnswer {
    /// Blocks moved to the spare by this message.
    pub remapped: u64,
    /// Blocks that were on the spare already.
    pub already_remapped: u64,
    /// The error (a negative errno, as the kernel prints it) that stopped the message part way.
    pub error: Option<i32>,
}

impl FromStr for RemapAnswer {
    type Err = Error;
    fn from_str(s: &str) -> Result<RemapAnswer> {
        let bad = || Error::Parse(format!("remap answer `{s}`"));
        let rest = s.trim().strip_prefix("remapped ").ok_or_else(bad)?;
        let (n, rest) = rest.split_once(" blocks, ").ok_or_else(bad)?;
        let (m, rest) = rest.split_once(" already remapped").ok_or_else(bad)?;
        let error = match rest {
            "" => None,
            r => Some(
                r.strip_prefix(", then failed: error ")
                    .and_then(|e| e.parse::<i32>().ok())
                    .ok_or_else(bad)?,
            ),
        };
        Ok(RemapAnswer {
            remapped: num("remapped", n)?,
            already_remapped: num("already remapped", m)?,
            error,
        })
    }
}

/// The answer of `unremap <sector>`: `unremapped block <b>`; returns `b`.
/// The answer to `pending`: `marked <N> blocks pending` (also `block`).
pub fn parse_pending_answer(s: &str) -> Result<u64> {
    let w: Vec<&str> = s.split_whitespace().collect();
    match w.as_slice() {
        ["marked", n, "blocks" | "block", "pending"] => n
            .parse()
            .map_err(|_| Error::Parse(format!("pending answer `{}`", s.trim()))),
        _ => Err(Error::Parse(format!("pending answer `{}`", s.trim()))),
    }
}

pub fn parse_unremap_answer(s: &str) -> Result<u64> {
    let b = s
        .trim()
        .strip_prefix("unremapped block ")
        .ok_or_else(|| Error::Parse(format!("unremap answer `{s}`")))?;
    num("block", b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_info() {
        let s: RemapStatus = "3 1 4/65536 7 2 42 active".parse().unwrap();
        assert_eq!(
            s,
            RemapStatus {
                remapped: 3,
                pending: 1,
                spare_used: 4,
                spare_total: 65536,
                read_errors: 7,
                write_errors: 2,
                metadata_seq: 42,
                state: "active".into(),
                extra: vec![],
            }
        );
        assert!(!serde_json::to_string(&s).unwrap().contains("extra"));
        // Fields a newer module appends are kept, not fatal.
        let s: RemapStatus = "3 1 4/65536 7 2 42 active extra 9".parse().unwrap();
        assert_eq!((s.state.as_str(), s.metadata_seq), ("active", 42));
        assert_eq!(s.extra, ["extra", "9"]);
        assert_eq!(
            serde_json::to_value(&s).unwrap()["extra"],
            serde_json::json!(["extra", "9"])
        );
        for bad in [
            "",
            "3 1 4/65536 7 2 42",
            "3 1 465536 7 2 42 active",
            "3 1 4/x 7 2 42 active",
            "-3 1 4/65536 7 2 42 active",
            "3 1 9/8 7 2 42 active",
            "3 1 4/65536 7 2 18446744073709551616 active",
        ] {
            assert!(
                matches!(bad.parse::<RemapStatus>(), Err(Error::Parse(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn table_parse() {
        let t: RemapTable = "259:0 2048 253:0".parse().unwrap();
        assert_eq!(
            (t.main_offset, t.block_size, t.read_retries),
            (2048, 4096, 3)
        );
        let t: RemapTable = "259:0 0 253:0 1 block_size:512".parse().unwrap();
        assert_eq!(t.block_size, 512);
        for bad in [
            "",
            "259:0",
            "259:0 x 253:0",
            "259:0 0 253:0 2 block_size:512",
        ] {
            assert!(bad.parse::<RemapTable>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn list_answer() {
        let l = parse_list("0 0 5 remapped\n4104 513 0 remapped\n8192 1024 - pending\n").unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(
            l[1],
            RemapEntry {
                sector: 4104,
                block: 513,
                slot: Some(0),
                state: EntryState::Remapped
            }
        );
        assert_eq!((l[2].slot, l[2].state), (None, EntryState::Pending));
        assert_eq!(parse_list("").unwrap(), vec![]);
        assert_eq!(parse_list("\n").unwrap(), vec![]);
        for bad in [
            "0 0 5",
            "0 0 5 remapped x",
            "0 0 - remapped",
            "0 0 5 pending",
            "0 0 5 gone",
            "a 0 5 remapped",
            "0 0 -5 remapped",
        ] {
            assert!(parse_list(bad).is_err(), "{bad:?}");
        }
        let json = serde_json::to_string(&l[2]).unwrap();
        assert_eq!(
            json,
            r#"{"sector":8192,"block":1024,"slot":null,"state":"pending"}"#
        );
    }

    const STATS: &str = "remapped=71\npending=0\nspare_used=71\nspare_total=65536\nblock_size=4096\nread_errors=1\nwrite_errors=2\nremap_ops=80\nunremap_ops=9\nsplit_bios=12\nheld_bios=3\n";

    #[test]
    fn stats_answer() {
        let s: Stats = STATS.parse().unwrap();
        assert_eq!(
            (s.remapped, s.spare_total, s.block_size, s.held_bios),
            (71, 65536, 4096, 3)
        );
        assert!(s.other.is_empty());
        let s: Stats = format!("{STATS}future_counter=5\n").parse().unwrap();
        assert_eq!(s.other.get("future_counter"), Some(&5));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["future_counter"], 5);
        assert_eq!(json["remap_ops"], 80);
        // Unknown keys with other values are kept too; known keys must still be numbers.
        let s: Stats = format!("{STATS}future_mode=fast\nfuture_counter=6\n")
            .parse()
            .unwrap();
        assert_eq!(
            s.other_text.get("future_mode").map(String::as_str),
            Some("fast")
        );
        assert_eq!(s.other.get("future_counter"), Some(&6));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            (
                json["future_mode"].as_str(),
                json["future_counter"].as_u64()
            ),
            (Some("fast"), Some(6))
        );
        assert!(format!("{STATS}future_mode=a\nfuture_mode=7\n")
            .parse::<Stats>()
            .is_err());
        for bad in [
            STATS.replace("held_bios=3\n", ""),
            STATS.replace("=71\npending", "=x\npending"),
            format!("{STATS}remapped=1\n"),
            format!("{STATS}garbage\n"),
            format!("{STATS}=4\n"),
            format!("{STATS}Bad Key=4\n"),
        ] {
            assert!(
                matches!(bad.parse::<Stats>(), Err(Error::Parse(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn remap_and_unremap_answers() {
        let a: RemapAnswer = "remapped 62 blocks, 2 already remapped".parse().unwrap();
        assert_eq!((a.remapped, a.already_remapped, a.error), (62, 2, None));
        let a: RemapAnswer = "remapped 3 blocks, 0 already remapped, then failed: error -28"
            .parse()
            .unwrap();
        assert_eq!(a.error, Some(-28));
        for bad in [
            "",
            "remapped x blocks, 0 already remapped",
            "remapped 1 blocks",
            "remapped 1 blocks, 0 already remapped, then",
        ] {
            assert!(bad.parse::<RemapAnswer>().is_err(), "{bad:?}");
        }
        assert_eq!(parse_unremap_answer("unremapped block 513").unwrap(), 513);
        assert!(parse_unremap_answer("pong").is_err());
        assert_eq!(
            parse_pending_answer("marked 3 blocks pending\n").unwrap(),
            3
        );
        assert_eq!(parse_pending_answer("marked 1 block pending").unwrap(), 1);
        assert!(parse_pending_answer("marked x blocks pending").is_err());
        assert!(parse_pending_answer("pong").is_err());
    }
}

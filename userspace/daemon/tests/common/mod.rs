//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex};

use dmremapd::nvme::{HealthProbe, HealthSnapshot};

/// One sample of an OpenMetrics text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed exposition: metric family types and samples.
#[derive(Debug, Default)]
pub struct Exposition {
    pub types: HashMap<String, String>,
    pub help: HashMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the single sample `name` whose labels include `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let m: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        match m.as_slice() {
            [one] => Some(one.value),
            _ => None,
        }
    }

    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    }
}

fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i] != '=' {
            i += 1;
        }
        let key: String = b[start..i].iter().collect();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label name {key:?} in {s:?}"));
        }
        i += 1;
        if b.get(i) != Some(&'"') {
            return Err(format!("label value not quoted in {s:?}"));
        }
        i += 1;
        let mut val = String::new();
        loop {
            match b.get(i) {
                None => return Err(format!("unterminated label value in {s:?}")),
                Some('"') => break,
                Some('\\') => {
                    i += 1;
                    match b.get(i) {
                        Some('n') => val.push('\n'),
                        Some('"') => val.push('"'),
                        Some('\\') => val.push('\\'),
                        other => return Err(format!("bad escape {other:?} in {s:?}")),
                    }
                }
                Some(c) => val.push(*c),
            }
            i += 1;
        }
        i += 1;
        if out.insert(key.clone(), val).is_some() {
            return Err(format!("duplicate label {key} in {s:?}"));
        }
        match b.get(i) {
            None => break,
            Some(',') => i += 1,
            Some(c) => return Err(format!("unexpected {c:?} after label in {s:?}")),
        }
    }
    Ok(out)
}

/// Parses the OpenMetrics text format strictly enough to catch malformed output: every sample
/// belongs to a family declared with `# TYPE` before it, counter samples end in `_total`, the
/// text ends with `# EOF`, values are numbers.
pub fn parse_openmetrics(text: &str) -> Result<Exposition, String> {
    let mut e = Exposition::default();
    let mut lines: Vec<&str> = text.lines().collect();
    if lines.pop() != Some("# EOF") {
        return Err("does not end with # EOF".into());
    }
    for line in lines {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest
                .split_once(' ')
                .ok_or(format!("bad HELP line {line:?}"))?;
            e.help.insert(name.to_string(), help.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, t) = rest
                .split_once(' ')
                .ok_or(format!("bad TYPE line {line:?}"))?;
            if ![
                "counter",
                "gauge",
                "histogram",
                "info",
                "summary",
                "unknown",
                "stateset",
                "gaugehistogram",
            ]
            .contains(&t)
            {
                return Err(format!("unknown type in {line:?}"));
            }
            e.types.insert(name.to_string(), t.to_string());
        } else if line.starts_with("# UNIT ") {
        } else if line.starts_with('#') {
            return Err(format!("unexpected comment {line:?}"));
        } else {
            let (series, value) = line
                .rsplit_once(' ')
                .ok_or(format!("no value in {line:?}"))?;
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().map_err(|_| format!("bad value in {line:?}"))?,
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (
                    n,
                    parse_labels(
                        l.strip_suffix('}')
                            .ok_or(format!("bad labels in {line:?}"))?,
                    )?,
                ),
                None => (series, BTreeMap::new()),
            };
            let family = e
                .types
                .keys()
                .filter(|f| {
                    name == f.as_str()
                        || name
                            .strip_prefix(f.as_str())
                            .is_some_and(|s| s.starts_with('_'))
                })
                .max_by_key(|f| f.len())
                .cloned()
                .ok_or(format!("sample {name} has no # TYPE before it"))?;
            let t = &e.types[&family];
            let suffix = &name[family.len()..];
            let ok = match t.as_str() {
                "counter" => suffix == "_total" || suffix == "_created",
                "gauge" => suffix.is_empty(),
                "histogram" => ["_bucket", "_sum", "_count", "_created"].contains(&suffix),
                _ => true,
            };
            if !ok {
                return Err(format!("sample {name} does not fit {t} family {family}"));
            }
            e.samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
    }
    Ok(e)
}

// Not every test file uses it.
#[allow(unused_imports)]
pub use dmremapd::sinks::MemorySink as Collect;

/// A scripted NVMe probe.
#[derive(Clone, Default)]
pub struct FakeProbe(pub Arc<Mutex<BTreeMap<String, HealthSnapshot>>>);

impl HealthProbe for FakeProbe {
    fn devices(&mut self) -> io::Result<Vec<String>> {
        Ok(self.0.lock().unwrap().keys().cloned().collect())
    }
    fn snapshot(&mut self, device: &str) -> io::Result<HealthSnapshot> {
        self.0
            .lock()
            .unwrap()
            .get(device)
            .copied()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
}

pub fn healthy() -> HealthSnapshot {
    HealthSnapshot {
        available_spare: 100,
        available_spare_threshold: 10,
        temperature_kelvin: 300,
        ..Default::default()
    }
}

/// Polls `f` every 10 ms for up to `secs` seconds.
pub fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let t = std::time::Instant::now();
    while t.elapsed() < std::time::Duration::from_secs(secs) {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

/// Reads a JSON-lines file into values (every complete line must parse; a last line still
/// being written, without its newline, is left out).
pub fn read_jsonl(p: &std::path::Path) -> Vec<serde_json::Value> {
    match std::fs::read_to_string(p) {
        Ok(s) => s[..s.rfind('\n').map_or(0, |i| i + 1)]
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
            .collect(),
        Err(_) => vec![],
    }
}

/// A free loopback port (bound and released; small race acceptable in tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

//! The TOML configuration: every key has a default, unknown keys are rejected by name, and every
//! problem is reported as `key.path: problem`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dmremap_lib::tune::{Ioprio, WorkerTuning};
use serde::{Deserialize, Serialize};

use crate::pipeline::{PipelineConfig, Policy};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub log: LogConfig,
    pub queue: QueueConfig,
    pub sinks: SinksConfig,
    pub sources: SourcesConfig,
    pub scrub: ScrubConfig,
    pub tune: TuneConfig,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

impl LogLevel {
    pub fn to_filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    pub level: LogLevel,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: LogLevel::Info,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueConfig {
    /// Events the queue holds.
    pub capacity: usize,
    /// `block` or `drop`.
    pub policy: Policy,
    /// Most events handed to the sinks at once.
    pub batch_max: usize,
    /// How long the dispatcher waits for a batch to fill once it has one event (µs, 0 = not at all).
    pub batch_linger_us: u64,
    /// Deprecated and ignored (there is one queue implementation now); still accepted so that
    /// older configuration files load, with a warning at start.
    #[serde(rename = "impl", skip_serializing_if = "Option::is_none")]
    pub queue_impl: Option<QueueImpl>,
}

/// The values the deprecated `queue.impl` key accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueImpl {
    Crossbeam,
    Mutex,
}

impl Default for QueueConfig {
    fn default() -> Self {
        let p = PipelineConfig::default();
        QueueConfig {
            capacity: p.capacity,
            policy: p.policy,
            batch_max: p.batch_max,
            batch_linger_us: p.batch_linger.as_micros() as u64,
            queue_impl: None,
        }
    }
}

impl QueueConfig {
    pub fn pipeline(&self) -> PipelineConfig {
        PipelineConfig {
            capacity: self.capacity,
            policy: self.policy,
            batch_max: self.batch_max,
            batch_linger: Duration::from_micros(self.batch_linger_us),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct SinksConfig {
    pub jsonl: JsonlConfig,
    pub prometheus: PrometheusConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JsonlConfig {
    pub enabled: bool,
    /// File to append to; `-` = standard output.
    pub path: String,
    /// Bytes collected before a write (KiB).
    pub buffer_kb: usize,
}

impl Default for JsonlConfig {
    fn default() -> Self {
        JsonlConfig {
            enabled: true,
            path: "/var/log/dmremapd/events.jsonl".into(),
            buffer_kb: 256,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PrometheusConfig {
    pub enabled: bool,
    /// Address of the HTTP listener for `/metrics` and `/debug/stats`.
    pub listen: String,
    /// Serve `/debug/stats`.
    pub debug_stats: bool,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            enabled: true,
            listen: "127.0.0.1:9477".into(),
            debug_stats: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct SourcesConfig {
    pub kernel: KernelSourceConfig,
    pub nvme: NvmeSourceConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KernelSourceConfig {
    pub enabled: bool,
    /// The control device events are read from.
    pub device: String,
    /// Longest blocking read, ms, of a reader that cannot be woken on stop (the control
    /// device reader sleeps in poll() until an event or a stop, without a timeout).
    pub poll_timeout_ms: u64,
    /// Where the next event sequence number to read is kept across restarts (empty: not kept;
    /// the daemon then starts at the end of the ring).
    pub cursor_file: String,
}

impl Default for KernelSourceConfig {
    fn default() -> Self {
        KernelSourceConfig {
            enabled: true,
            device: "/dev/dm-remap".into(),
            poll_timeout_ms: 500,
            cursor_file: "/var/lib/dmremapd/kernel-events.cursor".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NvmeSourceConfig {
    pub enabled: bool,
    /// Seconds between scrapes.
    pub interval_s: u64,
    /// Controllers to watch (`nvme0`, ...); empty = all.
    pub devices: Vec<String>,
    /// Where the highest Error Information log entry handled per controller (by serial number)
    /// is kept across restarts (empty: not kept; every entry is handled again after a restart).
    pub error_log_state: String,
}

impl Default for NvmeSourceConfig {
    fn default() -> Self {
        NvmeSourceConfig {
            enabled: true,
            interval_s: 60,
            devices: vec![],
            error_log_state: "/var/lib/dmremapd/nvme-error-log.json".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScrubConfig {
    pub enabled: bool,
    /// Block devices or files to scrub, one after the other.
    pub devices: Vec<String>,
    /// Read rate limit, MB/s (10^6 bytes).
    pub rate_mb_s: f64,
    /// Hours between the starts of two passes.
    pub interval_h: f64,
    /// Bytes per read (KiB).
    pub read_kb: usize,
    /// Bad-block granularity (bytes): the dm-remap block size.
    pub block_size: usize,
    /// Where checkpoints are kept.
    pub state_dir: String,
    /// Use O_DIRECT where possible.
    pub direct: bool,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        ScrubConfig {
            enabled: false,
            devices: vec![],
            rate_mb_s: 20.0,
            interval_h: 168.0,
            read_kb: 1024,
            block_size: 4096,
            state_dir: "/var/lib/dmremapd".into(),
            direct: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TuneConfig {
    pub enabled: bool,
    /// Event workers: the sources and the dispatcher.
    pub events: EventsTuneConfig,
    /// The scrubber.
    pub scrub: ScrubTuneConfig,
}

impl Default for TuneConfig {
    fn default() -> Self {
        TuneConfig {
            enabled: true,
            events: EventsTuneConfig::default(),
            scrub: ScrubTuneConfig::default(),
        }
    }
}

/// One worker class's tuning, with its own defaults (a table that sets only some keys keeps the
/// class defaults for the others).
macro_rules! worker_tune {
    ($name:ident, $nice:expr, $ioprio:expr) => {
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct $name {
            /// CPUs to pin to; empty = no pinning.
            pub cpus: Vec<usize>,
            /// Nice value, -20..=19.
            pub nice: Option<i32>,
            /// `none`, `idle`, `be[:0-7]` or `rt[:0-7]`.
            pub ioprio: Option<String>,
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    cpus: vec![],
                    nice: Some($nice),
                    ioprio: Some($ioprio.to_string()),
                }
            }
        }

        impl $name {
            /// The tuning to apply (call after [`Config::validate`]).
            pub fn tuning(&self) -> WorkerTuning {
                WorkerTuning {
                    cpus: self.cpus.clone(),
                    nice: self.nice,
                    ioprio: self
                        .ioprio
                        .as_deref()
                        .and_then(|s| s.parse::<Ioprio>().ok()),
                }
            }

            fn parts(&self) -> (&[usize], Option<i32>, Option<&str>) {
                (&self.cpus, self.nice, self.ioprio.as_deref())
            }
        }
    };
}

worker_tune!(EventsTuneConfig, -5, "rt:4");
worker_tune!(ScrubTuneConfig, 10, "idle");

/// One problem with a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path; empty for file-level problems.
    pub key: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "{}: {}", self.key, self.problem)
        }
    }
}

/// All problems found in a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

fn err(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        problem: problem.into(),
    }
}

/// serde_ignored writes `?` for an Option layer; key paths read better without it.
fn clean_path(p: &str) -> String {
    p.split('.')
        .filter(|s| *s != "?")
        .collect::<Vec<_>>()
        .join(".")
}

impl Config {
    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
        let de = toml::Deserializer::parse(text).map_err(|e| {
            let msg = e.to_string();
            ConfigErrors(vec![err("", format!("TOML syntax: {}", msg.trim_end()))])
        })?;
        let mut unknown = Vec::new();
        let mut track = |path: serde_ignored::Path| unknown.push(clean_path(&path.to_string()));
        let ignored = serde_ignored::Deserializer::new(de, &mut track);
        let res: Result<Config, _> = serde_path_to_error::deserialize(ignored);
        let mut errors: Vec<ConfigError> = unknown.iter().map(|k| err(k, "unknown key")).collect();
        match res {
            Ok(cfg) => {
                errors.extend(cfg.validate());
                if errors.is_empty() {
                    Ok(cfg)
                } else {
                    Err(ConfigErrors(errors))
                }
            }
            Err(e) => {
                let path = clean_path(&e.path().to_string());
                let inner = e.into_inner();
                errors.push(err(
                    if path == "." { "" } else { &path },
                    inner.message().to_string(),
                ));
                Err(ConfigErrors(errors))
            }
        }
    }

    /// Reads, parses and validates a file; errors are prefixed with the file name.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![err(
                "",
                format!("{}: cannot read: {e}", path.display()),
            )])
        })?;
        Config::parse(&text)
    }

    /// Semantic checks beyond types.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut v = Vec::new();
        let q = &self.queue;
        if q.capacity == 0 {
            v.push(err("queue.capacity", "must be > 0"));
        } else if q.capacity > 1 << 24 {
            v.push(err(
                "queue.capacity",
                format!("must be <= {} (got {})", 1 << 24, q.capacity),
            ));
        }
        if q.batch_max == 0 {
            v.push(err("queue.batch_max", "must be > 0"));
        } else if q.capacity > 0 && q.batch_max > q.capacity {
            v.push(err(
                "queue.batch_max",
                format!("must be <= queue.capacity ({})", q.capacity),
            ));
        }
        if q.batch_linger_us > 1_000_000 {
            v.push(err("queue.batch_linger_us", "must be <= 1000000 (1 s)"));
        }
        let j = &self.sinks.jsonl;
        if j.enabled && j.path.trim().is_empty() {
            v.push(err(
                "sinks.jsonl.path",
                "must not be empty (use \"-\" for standard output)",
            ));
        }
        if !(4..=65536).contains(&j.buffer_kb) {
            v.push(err(
                "sinks.jsonl.buffer_kb",
                format!("must be in 4..=65536 (got {})", j.buffer_kb),
            ));
        }
        let p = &self.sinks.prometheus;
        if p.listen.parse::<SocketAddr>().is_err() {
            v.push(err(
                "sinks.prometheus.listen",
                format!(
                    "`{}` is not an address:port such as 127.0.0.1:9477",
                    p.listen
                ),
            ));
        }
        let k = &self.sources.kernel;
        if k.poll_timeout_ms == 0 || k.poll_timeout_ms > 60_000 {
            v.push(err(
                "sources.kernel.poll_timeout_ms",
                "must be in 1..=60000",
            ));
        }
        if k.enabled && k.device.is_empty() {
            v.push(err("sources.kernel.device", "must not be empty"));
        }
        let n = &self.sources.nvme;
        if n.interval_s == 0 {
            v.push(err("sources.nvme.interval_s", "must be > 0"));
        }
        for (i, d) in n.devices.iter().enumerate() {
            if d.is_empty() || d.contains('/') {
                v.push(err(
                    &format!("sources.nvme.devices[{i}]"),
                    format!("`{d}` is not a controller name such as nvme0"),
                ));
            }
        }
        let s = &self.scrub;
        if !(s.rate_mb_s > 0.0 && s.rate_mb_s.is_finite()) {
            v.push(err("scrub.rate_mb_s", "must be > 0"));
        }
        if !(s.interval_h > 0.0 && s.interval_h.is_finite()) {
            v.push(err("scrub.interval_h", "must be > 0"));
        }
        if !s.block_size.is_power_of_two() || s.block_size < 512 {
            v.push(err(
                "scrub.block_size",
                format!("must be a power of two >= 512 (got {})", s.block_size),
            ));
        } else if s.read_kb == 0 || !(s.read_kb * 1024).is_multiple_of(s.block_size) {
            v.push(err(
                "scrub.read_kb",
                format!(
                    "must be a non-zero multiple of scrub.block_size ({} bytes)",
                    s.block_size
                ),
            ));
        }
        if s.read_kb > 64 * 1024 {
            v.push(err("scrub.read_kb", "must be <= 65536"));
        }
        if s.enabled && s.devices.is_empty() {
            v.push(err(
                "scrub.devices",
                "must list at least one device when scrub.enabled = true",
            ));
        }
        if s.enabled && s.state_dir.is_empty() {
            v.push(err("scrub.state_dir", "must not be empty"));
        }
        for (name, (cpus, nice, ioprio)) in [
            ("events", self.tune.events.parts()),
            ("scrub", self.tune.scrub.parts()),
        ] {
            if let Some(n) = nice {
                if !(-20..=19).contains(&n) {
                    v.push(err(
                        &format!("tune.{name}.nice"),
                        format!("must be in -20..=19 (got {n})"),
                    ));
                }
            }
            if let Some(io) = ioprio {
                if let Err(e) = io.parse::<Ioprio>() {
                    v.push(err(&format!("tune.{name}.ioprio"), e));
                }
            }
            if cpus.iter().any(|&c| c >= 1024) {
                v.push(err(
                    &format!("tune.{name}.cpus"),
                    "CPU numbers must be < 1024",
                ));
            }
        }
        v
    }

    /// The JSON-lines path as a PathBuf (`-` stays `-`).
    pub fn jsonl_path(&self) -> PathBuf {
        PathBuf::from(&self.sinks.jsonl.path)
    }

    /// The default configuration as TOML (documented in the README).
    pub fn default_toml() -> String {
        toml::to_string_pretty(&Config::default()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match Config::parse(text) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        assert!(Config::default().validate().is_empty());
    }

    #[test]
    fn example_file_is_valid_and_shows_the_defaults() {
        let p = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/dmremapd.toml"));
        assert_eq!(Config::load(p).unwrap(), Config::default());
    }

    #[test]
    fn default_toml_round_trips() {
        let t = Config::default_toml();
        assert_eq!(Config::parse(&t).unwrap(), Config::default(), "{t}");
    }

    #[test]
    fn values_are_read() {
        let c = Config::parse(
            r#"
            [queue]
            capacity = 100
            policy = "drop"
            batch_max = 10
            impl = "mutex"
            [sinks.jsonl]
            path = "-"
            [sources.nvme]
            devices = ["nvme0", "nvme2"]
            [tune.events]
            cpus = [1]
            ioprio = "be:2"
            "#,
        )
        .unwrap();
        assert_eq!(c.queue.capacity, 100);
        assert_eq!(c.queue.policy, Policy::Drop);
        assert_eq!(c.queue.queue_impl, Some(QueueImpl::Mutex));
        assert_eq!(c.sources.nvme.devices, vec!["nvme0", "nvme2"]);
        assert_eq!(c.tune.events.tuning().ioprio, Some(Ioprio::best_effort(2)));
        assert_eq!(
            c.tune.events.nice,
            Some(-5),
            "unset keys keep their default"
        );
    }

    #[test]
    fn capacity_zero_names_the_key() {
        assert_eq!(
            errors("[queue]\ncapacity = 0\n"),
            vec!["queue.capacity: must be > 0"]
        );
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_path() {
        let mut e = errors("[queue]\ncapacityy = 5\n[sinks.jsonl]\npth = \"x\"\n[bogus]\na = 1\n[tune.events]\nniceness = 1\n");
        e.sort();
        assert_eq!(
            e,
            vec![
                "bogus: unknown key",
                "queue.capacityy: unknown key",
                "sinks.jsonl.pth: unknown key",
                "tune.events.niceness: unknown key"
            ]
        );
    }

    #[test]
    fn type_errors_name_the_key() {
        let e = errors("[queue]\ncapacity = \"big\"\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("queue.capacity: invalid type: string"),
            "{e:?}"
        );
        let e = errors("[queue]\npolicy = \"maybe\"\n");
        assert!(
            e[0].starts_with("queue.policy: unknown variant `maybe`"),
            "{e:?}"
        );
        let e = errors("[sources.nvme]\ndevices = [1]\n");
        assert!(
            e[0].starts_with("sources.nvme.devices[0]: invalid type"),
            "{e:?}"
        );
        let e = errors("[sources.nvme]\ndevices = [\"nvme0\", \"/dev/nvme1\"]\n");
        assert_eq!(
            e,
            vec!["sources.nvme.devices[1]: `/dev/nvme1` is not a controller name such as nvme0"]
        );
    }

    #[test]
    fn semantic_errors_are_all_reported() {
        let e = errors(
            r#"
            [queue]
            capacity = 8
            batch_max = 9
            [sinks.prometheus]
            listen = "localhost"
            [sources.nvme]
            interval_s = 0
            [scrub]
            enabled = true
            block_size = 1000
            [tune.scrub]
            nice = 30
            ioprio = "turbo"
            "#,
        );
        assert_eq!(
            e,
            vec![
                "queue.batch_max: must be <= queue.capacity (8)",
                "sinks.prometheus.listen: `localhost` is not an address:port such as 127.0.0.1:9477",
                "sources.nvme.interval_s: must be > 0",
                "scrub.block_size: must be a power of two >= 512 (got 1000)",
                "scrub.devices: must list at least one device when scrub.enabled = true",
                "tune.scrub.nice: must be in -20..=19 (got 30)",
                "tune.scrub.ioprio: unknown I/O class `turbo` (expected none, idle, be[:N], rt[:N])",
            ]
        );
    }

    #[test]
    fn syntax_errors_and_missing_files() {
        let e = errors("[queue\ncapacity = 1");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("TOML syntax:"), "{e:?}");
        let e = Config::load(Path::new("/nonexistent/dmremapd.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/dmremapd.toml: cannot read"), "{e}");
    }
}

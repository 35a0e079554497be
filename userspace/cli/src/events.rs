//! `dmremap events`: the kernel's event ring, read with read() and poll() on the control device.
//! `--json` prints the event schema the daemon's JSON-lines sink writes ([`dmremap_lib::event`]).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use dmremap_lib::control::{Control, Event, EventType, Seek};
use dmremap_lib::dm::Dm;
use dmremap_lib::event::{self as schema, KernelRef, TargetFacts};

use crate::error::CliError;

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Keep waiting for new events (sleeps in poll() until the kernel raises one).
    #[arg(long)]
    follow: bool,
    /// First sequence number to show (default: the oldest still held).
    #[arg(long, default_value_t = 0, conflicts_with = "new")]
    since: u64,
    /// Show only events raised from now on (with --follow).
    #[arg(long, requires = "follow")]
    new: bool,
}

/// Records asked for per read().
const BATCH: usize = 256;

pub fn run(a: &EventsArgs, json: bool) -> Result<(), CliError> {
    let ctl = Control::open()?;
    ctl.set_nonblocking(true)?;
    let to = match (a.new, a.since) {
        (true, _) => Seek::Now,
        (false, 0) => Seek::Oldest,
        (false, s) => Seek::Seq(s),
    };
    if let Err(e) = ctl.seek_events(to) {
        // The kernel refuses a sequence number that has not been raised yet.
        if let Seek::Seq(s) = to {
            let next = ctl.seek_events(Seek::Now).unwrap_or(0);
            if next > 0 && s > next {
                return Err(CliError::usage(format!(
                    "--since {s}: no such event yet (the next event will be {next})"
                )));
            }
        }
        return Err(e.into());
    }
    let mut out = Printer::new(json);
    loop {
        let batch = ctl.read_events(BATCH)?;
        for e in &batch {
            out.print(e)?;
        }
        if batch.is_empty() {
            if !a.follow {
                return Ok(());
            }
            ctl.wait_events(-1)?;
        }
    }
}

/// How long a device's name and facts are reused (a device may be removed and its number
/// reused).
const DEVICE_TTL: Duration = Duration::from_secs(60);

/// Prints records as text or in the event schema; for the latter it looks up device names and
/// facts (block size, spare slots) once per device and minute.
struct Printer {
    json: bool,
    dm: Option<Dm>,
    devices: HashMap<u32, (Arc<str>, TargetFacts, Instant)>,
    source: Arc<str>,
    module: Arc<str>,
    buf: Vec<u8>,
}

impl Printer {
    fn new(json: bool) -> Printer {
        Printer {
            json,
            dm: None,
            devices: HashMap::new(),
            source: Arc::from("kernel"),
            module: Arc::from("dm-remap"),
            buf: Vec::new(),
        }
    }

    fn device(&mut self, e: &Event) -> (Arc<str>, TargetFacts) {
        if let Some((n, f, t)) = self.devices.get(&e.dev) {
            if t.elapsed() < DEVICE_TTL {
                return (n.clone(), *f);
            }
        }
        let name = schema::dm_name(e.major(), e.minor());
        if self.dm.is_none() {
            self.dm = Dm::open().ok();
        }
        let facts = match (&name, &self.dm) {
            (Some(n), Some(dm)) => TargetFacts::read(dm, n, e.sector).unwrap_or_default(),
            _ => TargetFacts::default(),
        };
        let name: Arc<str> = match name {
            Some(n) => Arc::from(n),
            None => Arc::from(format!("{}:{}", e.major(), e.minor())),
        };
        self.devices
            .insert(e.dev, (name.clone(), facts, Instant::now()));
        (name, facts)
    }

    fn print(&mut self, e: &Event) -> Result<(), CliError> {
        if e.kind == EventType::Overflow {
            eprintln!(
                "dmremap: events {}..{} were overwritten before they could be read",
                e.seq,
                e.seq + e.arg.saturating_sub(1)
            );
        }
        if !self.json {
            if e.kind != EventType::Overflow {
                println!(
                    "{:>8} {:>16} {:<15} dev {}:{} sector {} arg {}{}{}",
                    e.seq,
                    e.time_ns,
                    format!("{:?}", e.kind).to_lowercase(),
                    e.major(),
                    e.minor(),
                    e.sector,
                    e.arg,
                    if e.write { " write" } else { "" },
                    if e.spare { " spare" } else { "" }
                );
            }
            return Ok(());
        }
        let (device, facts) = if e.kind == EventType::Overflow {
            (self.module.clone(), TargetFacts::default())
        } else {
            self.device(e)
        };
        let Some(kind) = schema::kernel_kind(e, facts) else {
            eprintln!(
                "dmremap: event {} has a type this version does not know ({:?}); skipped",
                e.seq, e.kind
            );
            return Ok(());
        };
        let ev = schema::Event {
            ts: schema::record_time(e, schema::mono_to_wall_ns()),
            seq: e.seq,
            source: self.source.clone(),
            device,
            kind,
            kernel: KernelRef::of(e),
            enqueued_ns: 0,
        };
        self.buf.clear();
        schema::write_line(&mut self.buf, &ev).map_err(|e| CliError::failed(e.to_string()))?;
        let mut out = std::io::stdout().lock();
        out.write_all(&self.buf)
            .and_then(|()| out.flush())
            .map_err(|e| CliError::failed(format!("stdout: {e}")))
    }
}

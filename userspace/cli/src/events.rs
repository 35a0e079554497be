//! `dmremap events`: the kernel's event ring, read with read() and poll() on the control device.

use clap::Args;
use dmremap_lib::control::{Control, Event, EventType, Seek};

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
    loop {
        let batch = ctl.read_events(BATCH)?;
        for e in &batch {
            print_event(e, json)?;
        }
        if batch.is_empty() {
            if !a.follow {
                return Ok(());
            }
            ctl.wait_events(-1)?;
        }
    }
}

fn print_event(e: &Event, json: bool) -> Result<(), CliError> {
    if e.kind == EventType::Overflow {
        eprintln!(
            "dmremap: events {}..{} were overwritten before they could be read",
            e.seq,
            e.seq + e.arg.saturating_sub(1)
        );
    }
    if json {
        println!(
            "{}",
            serde_json::to_string(e).map_err(|e| CliError::failed(e.to_string()))?
        );
    } else if e.kind != EventType::Overflow {
        println!(
            "{:>8} {:>16} {:<15} dev {} sector {} arg {}{}{}",
            e.seq,
            e.time_ns,
            format!("{:?}", e.kind).to_lowercase(),
            e.dev,
            e.sector,
            e.arg,
            if e.write { " write" } else { "" },
            if e.spare { " spare" } else { "" }
        );
    }
    Ok(())
}

//! `dmremap events`: the kernel's event ring.

use std::time::Duration;

use clap::Args;
use dmremap_lib::control::Control;

use crate::error::CliError;

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Keep waiting for new events (polls the ring every --interval-ms).
    #[arg(long)]
    follow: bool,
    /// First sequence number to show (default: the oldest still held).
    #[arg(long, default_value_t = 0)]
    since: u64,
    /// Poll interval with --follow, in milliseconds.
    #[arg(long, default_value_t = 200)]
    interval_ms: u64,
}

pub fn run(a: &EventsArgs, json: bool) -> Result<(), CliError> {
    let ctl = Control::open().map_err(|e| CliError::failed(e.to_string()))?;
    let mut since = a.since;
    let mut lost_seen = None;
    loop {
        let batch = ctl.events(since, 1024).map_err(|e| CliError::failed(e.to_string()))?;
        if since > 0 && since < batch.oldest_seq {
            eprintln!("dmremap: events {}..{} were overwritten before they could be read", since, batch.oldest_seq - 1);
        }
        if lost_seen.is_some_and(|l| l != batch.lost) && !json {
            eprintln!("dmremap: the kernel ring overflowed ({} events lost since load)", batch.lost);
        }
        lost_seen = Some(batch.lost);
        for e in &batch.events {
            if json {
                println!("{}", serde_json::to_string(e).map_err(|e| CliError::failed(e.to_string()))?);
            } else {
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
        }
        since = batch.next_seq;
        if !a.follow {
            return Ok(());
        }
        if batch.events.is_empty() {
            std::thread::sleep(Duration::from_millis(a.interval_ms.max(10)));
        }
    }
}

//! `dmremap tune --check [--pid P]`: what CPU affinity, nice value, I/O priority and scheduling
//! policy every thread of a process really runs with, read back from the kernel
//! (`dmremap_lib::tune::check`).

use std::fmt::Write as _;

use dmremap_lib::tune::{self, TuneCheck};

use crate::error::{CliError, Kind};

/// Reads back the settings of process `pid` (default: this process) and prints them.
pub fn check(pid: Option<i32>, json: bool) -> Result<(), CliError> {
    let pid = pid.unwrap_or_else(|| std::process::id() as i32);
    if pid <= 0 {
        return Err(CliError::usage(format!("pid {pid}: not a process id")));
    }
    let c = tune::check(pid).map_err(|e| {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => Kind::NoDevice,
            std::io::ErrorKind::PermissionDenied => Kind::Permission,
            _ => Kind::Failed,
        };
        let msg = if kind == Kind::NoDevice {
            format!("pid {pid}: no such process")
        } else {
            format!("pid {pid}: {e}")
        };
        CliError::new(kind, msg)
    })?;
    if json {
        let s = serde_json::to_string_pretty(&c)
            .map_err(|e| CliError::failed(format!("JSON output: {e}")))?;
        println!("{s}");
    } else {
        print!("{}", render(&c));
    }
    Ok(())
}

/// The text form: a summary line, then one line per thread.
pub fn render(c: &TuneCheck) -> String {
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "pid {}: online CPUs {}; CAP_SYS_NICE {}, CAP_SYS_ADMIN {}, CAP_SYS_RAWIO {} (CapEff {})",
        c.pid,
        tune::format_cpu_list(&c.online_cpus),
        yes(c.capabilities.cap_sys_nice),
        yes(c.capabilities.cap_sys_admin),
        yes(c.capabilities.cap_sys_rawio),
        c.capabilities.effective
    );
    let _ = writeln!(
        s,
        "{:>8}  {:<16} {:<10} {:>5}  {:<7} {:<9}  POLICY",
        "TID", "NAME", "CPUS", "NICE", "IOPRIO", "EFFECTIVE"
    );
    for t in &c.threads {
        let _ = writeln!(
            s,
            "{:>8}  {:<16} {:<10} {:>5}  {:<7} {:<9}  {}",
            t.tid,
            t.name,
            t.cpu_list,
            t.nice,
            t.ioprio.to_string(),
            t.ioprio_effective.to_string(),
            t.policy
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_this_process() {
        let c = tune::check(std::process::id() as i32).unwrap();
        let text = render(&c);
        let mut lines = text.lines();
        assert!(lines
            .next()
            .unwrap()
            .starts_with(&format!("pid {}: online CPUs ", c.pid)));
        assert!(lines.next().unwrap().contains("IOPRIO"));
        // One line per thread, each starting with its tid.
        let rest: Vec<&str> = lines.collect();
        assert_eq!(rest.len(), c.threads.len());
        for (l, t) in rest.iter().zip(&c.threads) {
            assert_eq!(l.split_whitespace().next().unwrap(), t.tid.to_string());
        }
    }
}

//! Process figures from `/proc/self/status` and `getrusage`.

use serde::Serialize;

/// Memory and thread figures of this process.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ProcStatus {
    /// Resident set size (`VmRSS`), KiB.
    pub rss_kb: u64,
    /// Peak resident set size (`VmHWM`), KiB.
    pub rss_peak_kb: u64,
    /// Threads.
    pub threads: u64,
}

/// Parses `/proc/self/status`.
pub fn status() -> ProcStatus {
    parse_status(&std::fs::read_to_string("/proc/self/status").unwrap_or_default())
}

pub fn parse_status(text: &str) -> ProcStatus {
    let mut s = ProcStatus::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(key), Some(val)) = (it.next(), it.next()) else {
            continue;
        };
        let v: u64 = val.parse().unwrap_or(0);
        match key {
            "VmRSS:" => s.rss_kb = v,
            "VmHWM:" => s.rss_peak_kb = v,
            "Threads:" => s.threads = v,
            _ => {}
        }
    }
    s
}

/// User and system CPU time of the whole process, seconds.
pub fn cpu_times() -> (f64, f64) {
    use nix::sys::resource::{getrusage, UsageWho};
    use nix::sys::time::TimeValLike;
    let Ok(ru) = getrusage(UsageWho::RUSAGE_SELF) else {
        return (0.0, 0.0);
    };
    let t = |tv: nix::sys::time::TimeVal| tv.num_microseconds() as f64 / 1e6;
    (t(ru.user_time()), t(ru.system_time()))
}

/// CPU time of the calling thread, nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|ts| ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_fields() {
        let s = parse_status("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t3\n");
        assert_eq!(
            s,
            ProcStatus {
                rss_kb: 1024,
                rss_peak_kb: 2048,
                threads: 3
            }
        );
        let me = status();
        assert!(me.rss_kb > 0 && me.threads >= 1);
    }
}

//! A small stderr logger. Under systemd (`JOURNAL_STREAM` set) each line starts with the
//! syslog priority in angle brackets (`<3>` error .. `<7>` debug), which journald turns into the
//! entry's priority; otherwise lines read `dmremapd: warning: ...`.

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Logger {
    journal: bool,
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let mut e = std::io::stderr().lock();
        let _ = if self.journal {
            let prio = match r.level() {
                Level::Error => 3,
                Level::Warn => 4,
                Level::Info => 6,
                Level::Debug | Level::Trace => 7,
            };
            writeln!(e, "<{prio}>{}", r.args())
        } else {
            let lvl = match r.level() {
                Level::Error => "error",
                Level::Warn => "warning",
                Level::Info => "info",
                Level::Debug => "debug",
                Level::Trace => "trace",
            };
            writeln!(e, "dmremapd: {lvl}: {}", r.args())
        };
    }

    fn flush(&self) {}
}

/// Installs the logger (once per process; later calls only change the level).
pub fn init(level: LevelFilter) {
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let _ = log::set_boxed_logger(Box::new(Logger { journal }));
    log::set_max_level(level);
}

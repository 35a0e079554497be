//! Real signals delivered to this test process (kept alone in its own test binary because
//! signal handlers are process-wide): SIGHUP reloads the configuration and reopens the
//! JSON-lines file after a rename; SIGTERM drains, and nothing accepted is lost.

mod common;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use dmremapd::config::Config;
use dmremapd::daemon::{self, Backends};
use dmremapd::loadgen::LoadGen;

fn kill(sig: i32) {
    // SAFETY: sends a signal to this process; handlers are installed by daemon::run.
    assert_eq!(unsafe { libc::kill(libc::getpid(), sig) }, 0);
}

#[test]
fn sighup_reopens_and_sigterm_drains_everything_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.jsonl");
    let rotated = dir.path().join("events.jsonl.1");
    let cfg_path: PathBuf = dir.path().join("dmremapd.toml");
    let port = free_port();
    let write_cfg = |policy: &str| {
        std::fs::write(
            &cfg_path,
            format!(
                "[queue]\ncapacity = 256\nbatch_max = 64\npolicy = \"{policy}\"\n[sinks.jsonl]\npath = \"{}\"\n[sinks.prometheus]\nlisten = \"127.0.0.1:{port}\"\n[sources.kernel]\nenabled = false\n[sources.nvme]\nenabled = false\n",
                out.display()
            ),
        )
        .unwrap();
    };
    write_cfg("block");
    let cfg = Config::load(&cfg_path).unwrap();

    // A generator that keeps the queue busy for the whole test (50K events/s for up to 60 s; it
    // stops when the daemon drains).
    let gen = LoadGen::new("gen", 50_000.0, Duration::from_secs(60), 2);
    let gen_stats = gen.stats();
    let p2 = cfg_path.clone();
    let h = std::thread::spawn(move || {
        daemon::run(
            Some(p2),
            cfg,
            Backends {
                extra_sources: vec![Box::new(gen)],
                ..Default::default()
            },
        )
    });
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        daemon::wait_http(addr, Duration::from_secs(10)),
        "daemon did not come up"
    );
    assert!(wait_for(10, || read_jsonl(&out).len() > 1000));

    // logrotate: rename, then SIGHUP; the new configuration switches to the drop policy.
    std::fs::rename(&out, &rotated).unwrap();
    write_cfg("drop");
    kill(libc::SIGHUP);
    assert!(wait_for(10, || out.exists()
        && read_jsonl(&out)
            .iter()
            .any(|v| v["fields"]["phase"] == "reloaded")));
    assert!(
        wait_for(10, || read_jsonl(&out).len() > 1000),
        "events keep flowing into the new file"
    );
    let (_, stats) = dmremapd::http::get(addr, "/debug/stats").unwrap();
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["pipeline"]["policy"], "drop");

    // A broken configuration on SIGHUP is rejected; the file is still reopened.
    std::fs::write(&cfg_path, "[queue]\ncapacity = 0\n").unwrap();
    kill(libc::SIGHUP);
    assert!(wait_for(10, || {
        let (_, m) = dmremapd::http::get(addr, "/metrics").unwrap();
        parse_openmetrics(&m)
            .unwrap()
            .get("dmremapd_config_reload_errors_total", &[])
            == Some(1.0)
    }));
    assert_eq!(
        read_jsonl(&out)
            .iter()
            .filter(|v| v["fields"]["phase"] == "reloaded")
            .count(),
        1,
        "a rejected reload emits no reloaded event"
    );

    kill(libc::SIGTERM);
    let rep = h.join().unwrap().unwrap();
    let old = read_jsonl(&rotated);
    let new = read_jsonl(&out);
    let total = (old.len() + new.len()) as u64;
    let p = &rep.pipeline;
    assert!(p.accepted() > 2000);
    assert_eq!(
        total,
        p.accepted(),
        "every accepted event is in one of the two files"
    );
    assert_eq!(
        p.sinks.iter().find(|s| s.name == "jsonl").unwrap().written,
        p.accepted()
    );
    let gen = p.sources.iter().find(|s| s.name == "gen").unwrap();
    assert_eq!(
        gen.accepted + gen.dropped,
        gen_stats.offered.load(Ordering::Relaxed),
        "every offer accounted"
    );
    assert_eq!(gen.accepted, gen_stats.accepted.load(Ordering::Relaxed));
    // Sequence numbers run on across the rotation without a gap.
    let seqs: Vec<u64> = old
        .iter()
        .chain(new.iter())
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
    assert_eq!(new.last().unwrap()["fields"]["phase"], "stopping");
    assert!(
        dmremapd::http::get(addr, "/metrics").is_err(),
        "HTTP server stopped"
    );
}

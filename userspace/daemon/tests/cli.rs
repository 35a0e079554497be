//! The `dmremapd` binary: check-config, the daemon under real signals, scrub, loadtest (with the
//! `devtools` feature), and that the production build has none of the development commands.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dmremapd"))
}

#[test]
fn check_config_accepts_defaults_and_names_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let def = bin().arg("print-default-config").output().unwrap();
    assert!(def.status.success());
    let p = dir.path().join("default.toml");
    std::fs::write(&p, &def.stdout).unwrap();
    let ok = bin()
        .args(["check-config", p.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(v["queue"]["capacity"], 16384);

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[queue]\ncapacity = 0\nsize = 3\n").unwrap();
    let out = bin()
        .args(["check-config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("queue.capacity: must be > 0"), "{err}");
    assert!(err.contains("queue.size: unknown key"), "{err}");

    // The daemon refuses the same file with the same message and exit code 2.
    let out = bin()
        .args(["--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("queue.capacity: must be > 0"));
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: signals a child we started.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

#[test]
fn daemon_process_reopens_on_sighup_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ev.jsonl");
    let port = free_port();
    let cfg = dir.path().join("d.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sinks.jsonl]\npath = \"{}\"\n[sinks.prometheus]\nlisten = \"127.0.0.1:{port}\"\n[sources.kernel]\nenabled = false\n[sources.nvme]\nenabled = false\n",
            out.display()
        ),
    )
    .unwrap();
    let mut child = bin()
        .args(["--config", cfg.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(dmremapd::daemon::wait_http(addr, Duration::from_secs(10)));
    assert!(wait_for(5, || read_jsonl(&out)
        .iter()
        .any(|v| v["fields"]["phase"] == "started")));
    std::fs::rename(&out, dir.path().join("ev.jsonl.1")).unwrap();
    signal(child.id(), libc::SIGHUP);
    assert!(wait_for(5, || read_jsonl(&out)
        .iter()
        .any(|v| v["fields"]["phase"] == "reloaded")));
    signal(child.id(), libc::SIGTERM);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let lines = read_jsonl(&out);
    assert_eq!(lines.last().unwrap()["fields"]["phase"], "stopping");
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("SIGHUP"), "{err}");
    assert!(err.contains("draining"), "{err}");
}

#[test]
fn warns_when_debug_stats_listen_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("d.toml");
    for (listen, debug, warns) in [
        (format!("0.0.0.0:{port}"), true, true),
        (format!("0.0.0.0:{port}"), false, false),
        (format!("127.0.0.1:{port}"), true, false),
    ] {
        std::fs::write(
            &cfg,
            format!(
                "[sinks.jsonl]\nenabled = false\n[sinks.prometheus]\nlisten = \"{listen}\"\ndebug_stats = {debug}\n[sources.kernel]\nenabled = false\n[sources.nvme]\nenabled = false\n"
            ),
        )
        .unwrap();
        let mut child = bin()
            .args(["--config", cfg.to_str().unwrap()])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        assert!(dmremapd::daemon::wait_http(addr, Duration::from_secs(10)));
        signal(child.id(), libc::SIGTERM);
        assert_eq!(child.wait().unwrap().code(), Some(0));
        let mut err = String::new();
        use std::io::Read;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(
            err.contains("reachable beyond this host"),
            warns,
            "{listen} debug_stats={debug}: {err}"
        );
    }
}

#[test]
fn scrub_command_reads_a_file_and_writes_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    std::fs::write(&img, vec![7u8; 5 << 20]).unwrap();
    let ck = dir.path().join("ck.json");
    let out = bin()
        .args([
            "scrub",
            img.to_str().unwrap(),
            "--checkpoint",
            ck.to_str().unwrap(),
            "--rate",
            "500",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rep = &lines.last().unwrap()["report"];
    assert_eq!(rep["complete"], true);
    assert_eq!(rep["bytes_read"], 5 << 20);
    assert_eq!(rep["unreadable"], serde_json::json!([]));
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ck).unwrap()).unwrap();
    assert_eq!(c["complete"], true);
    assert_eq!(c["offset"], 5 << 20);

    let bad = bin()
        .args(["scrub", img.to_str().unwrap(), "--block-size", "1000"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("block size 1000"));
    let missing = bin().args(["scrub", "/nonexistent/dev"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/dev"));
}

#[cfg(feature = "devtools")]
#[test]
fn loadtest_json_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lt.jsonl");
    let o = bin()
        .args([
            "loadtest",
            "--rate",
            "20000",
            "--duration",
            "0.3",
            "--workers",
            "2",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["delivered"], r["accepted"]);
    assert_eq!(r["dropped"], 0);
    assert!(r["latency"]["p99_ms"].as_f64().unwrap() > 0.0);
    assert!(
        r["allocs_per_event"].as_f64().is_some(),
        "counting allocator enabled for loadtest"
    );
    assert!(r["rss_max_kb"].as_u64().unwrap() > 0);
    assert_eq!(
        read_jsonl(std::path::Path::new(&out)).len() as u64,
        r["delivered"].as_u64().unwrap()
    );
    let bad = bin()
        .args(["loadtest", "--sink", "kafka"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[cfg(not(feature = "devtools"))]
#[test]
fn production_build_has_no_development_commands() {
    let help = bin().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("check-config"), "{help}");
    for cmd in ["loadtest", "bench", "testing-inject-error-log"] {
        assert!(!help.contains(cmd), "{cmd} in --help:\n{help}");
        let o = bin().args([cmd, "--help"]).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{cmd}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("unrecognized subcommand"));
    }
}

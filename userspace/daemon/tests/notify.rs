//! The daemon binary under a notification socket, as systemd runs it with `Type=notify-reload`:
//! `READY=1` once it serves, `RELOADING=1` + `MONOTONIC_USEC=` then `READY=1` on SIGHUP, a
//! rejected configuration reported with `ERRNO=` and `STATUS=` while the old one keeps running,
//! `STOPPING=1` on SIGTERM.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::free_port;

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn ready_reload_rejected_reload_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let cfg = dir.path().join("dmremapd.toml");
    let port = free_port();
    let good = |level: &str| {
        format!(
            "[log]\nlevel = \"{level}\"\n[sinks.jsonl]\npath = \"{}\"\n[sinks.prometheus]\nlisten = \"127.0.0.1:{port}\"\n[sources.kernel]\nenabled = false\n[sources.nvme]\nenabled = false\n[tune]\nenabled = false\n",
            dir.path().join("events.jsonl").display()
        )
    };
    std::fs::write(&cfg, good("info")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dmremapd"))
        .arg("--config")
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &sock_path)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let ready = recv(&sock);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");

    // A good reload: RELOADING=1 with the time, then READY=1.
    std::fs::write(&cfg, good("debug")).unwrap();
    // SAFETY: signals the child process.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let r = recv(&sock);
    assert!(r.lines().any(|l| l == "RELOADING=1"), "{r}");
    let usec: u64 = r
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .expect("MONOTONIC_USEC")
        .parse()
        .unwrap();
    assert!(usec > 0);
    let r = recv(&sock);
    assert!(r.lines().any(|l| l == "READY=1"), "{r}");
    assert!(r.contains("STATUS=running; reloaded: 1 applied"), "{r}");
    assert!(!r.contains("ERRNO="), "{r}");

    // A broken configuration: reported, the running one kept.
    std::fs::write(&cfg, "[queue]\ncapacity = 0\n").unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    assert!(recv(&sock).contains("RELOADING=1"));
    let r = recv(&sock);
    assert!(r.lines().any(|l| l == "READY=1"), "{r}");
    assert!(
        r.lines().any(|l| l == format!("ERRNO={}", libc::EINVAL)),
        "{r}"
    );
    assert!(
        r.contains("STATUS=running the previous configuration; reload rejected")
            && r.contains("queue.capacity"),
        "{r}"
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        dmremapd::http::get(addr, "/metrics").is_ok(),
        "still serving"
    );

    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let r = recv(&sock);
    assert!(r.lines().any(|l| l == "STOPPING=1"), "{r}");
    assert!(child.wait().unwrap().success());
}

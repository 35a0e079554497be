//! The service manager's notification protocol (`sd_notify(3)`): one datagram of
//! newline-separated `KEY=value` assignments to the `AF_UNIX` socket named by `$NOTIFY_SOCKET`
//! (a path, or an abstract name written with a leading `@`). Without the variable (not run by
//! systemd with `Type=notify-reload`) every call does nothing.
//!
//! The daemon sends `READY=1` once its sources and sinks run, `RELOADING=1` with
//! `MONOTONIC_USEC=` when a SIGHUP reload starts and `READY=1` when it is done (with `STATUS=`
//! saying whether the new configuration was taken or rejected), `STOPPING=1` on SIGTERM.

use std::io;
use std::os::unix::net::UnixDatagram;

/// Sends `state` to the service manager; `Ok(false)` when there is none.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let path = path.to_string_lossy().into_owned();
    send_to(&path, state)?;
    Ok(true)
}

/// Sends `state` to the notification socket `path` (`@name`: abstract namespace).
pub fn send_to(path: &str, state: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

/// `CLOCK_MONOTONIC` in microseconds (for `MONOTONIC_USEC=`).
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// Sends `state`, logging (once per call) when the socket refuses it.
pub fn tell(state: &str) {
    if let Err(e) = notify(state) {
        log::warn!("sd_notify: {e}");
    }
}

/// One-line `STATUS=` text: newlines would end the assignment.
pub fn status_line(s: &str) -> String {
    s.replace('\n', "; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_reach_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notify");
        let rx = UnixDatagram::bind(&p).unwrap();
        send_to(p.to_str().unwrap(), "READY=1\nSTATUS=running").unwrap();
        let mut buf = [0u8; 128];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=running");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("dmremapd-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        send_to(&format!("@{name}"), "RELOADING=1").unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"RELOADING=1");
        assert!(send_to(dir.path().join("none").to_str().unwrap(), "X=1").is_err());
    }

    #[test]
    fn monotonic_and_status() {
        let a = monotonic_usec();
        let b = monotonic_usec();
        assert!(a > 0 && b >= a);
        assert_eq!(status_line("a\nb"), "a; b");
    }
}

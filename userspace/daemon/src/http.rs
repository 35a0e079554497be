//! A minimal HTTP/1.1 server for `/metrics` and `/debug/stats`.
//!
//! One thread accepts connections and hands each to a short-lived handler thread (at most
//! [`MAX_CONNS`] at once; beyond that a connection gets 503 at once), so a slow or stalled
//! client cannot keep another from being served. A handler reads the request head (at most
//! [`MAX_HEAD`] bytes, 431 beyond) within a deadline for the whole head ([`HEAD_DEADLINE`],
//! however the bytes trickle in; 408 after it), answers `GET`/`HEAD` with `Connection: close`
//! within [`REQUEST_DEADLINE`] of the accept, and closes. Anything else gets 400/404/405.
//! Stopping connects to the listener once to wake the blocking `accept`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A response body with its content type and status.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status: 200,
            content_type,
            body: body.into(),
        }
    }

    pub fn not_found() -> Response {
        Response {
            status: 404,
            content_type: "text/plain; charset=utf-8",
            body: b"not found\n".to_vec(),
        }
    }
}

/// Maps a request path (query string removed) to a response.
pub type Handler = Arc<dyn Fn(&str) -> Response + Send + Sync>;

pub struct HttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Largest request head (request line and headers) read.
pub const MAX_HEAD: usize = 8192;
/// Time from the accept until the whole request head must have arrived.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(2);
/// Time from the accept until the answer must have been written.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Connections served at once.
pub const MAX_CONNS: usize = 8;

impl HttpServer {
    /// Binds `addr` and starts serving. `on_start` runs first on the server thread.
    pub fn start(
        addr: SocketAddr,
        handler: Handler,
        on_start: Box<dyn FnOnce() + Send>,
    ) -> io::Result<HttpServer> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let active = Arc::new(AtomicUsize::new(0));
        let thread = std::thread::Builder::new()
            .name("dmremapd-http".into())
            .spawn(move || {
                on_start();
                for conn in listener.incoming() {
                    if st.load(Ordering::SeqCst) {
                        break;
                    }
                    match conn {
                        Ok(c) => dispatch(c, &handler, &active),
                        Err(e) => {
                            log::warn!("http: accept failed: {e}");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })?;
        Ok(HttpServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = t.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn respond(c: &mut TcpStream, r: &Response, head_only: bool) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    c.write_all(head.as_bytes())?;
    if !head_only {
        c.write_all(&r.body)?;
    }
    c.flush()
}

fn plain(status: u16, msg: &str) -> Response {
    Response {
        status,
        content_type: "text/plain; charset=utf-8",
        body: format!("{msg}\n").into_bytes(),
    }
}

/// Serves `c` on a handler thread of its own, or answers 503 when [`MAX_CONNS`] are busy.
fn dispatch(mut c: TcpStream, handler: &Handler, active: &Arc<AtomicUsize>) {
    let accepted = Instant::now();
    if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNS {
        active.fetch_sub(1, Ordering::SeqCst);
        let _ = c.set_write_timeout(Some(Duration::from_secs(1)));
        let _ = respond(&mut c, &plain(503, "too many connections"), false);
        return;
    }
    let (h, a) = (handler.clone(), active.clone());
    let spawned = std::thread::Builder::new()
        .name("dmremapd-http-conn".into())
        .spawn(move || {
            if let Err(e) = serve(c, &h, accepted) {
                log::debug!("http: {e}");
            }
            a.fetch_sub(1, Ordering::SeqCst);
        });
    if let Err(e) = spawned {
        active.fetch_sub(1, Ordering::SeqCst);
        log::warn!("http: cannot start a connection thread: {e}");
    }
}

/// Time left until `deadline`, or a timed-out error.
fn left(deadline: Instant) -> io::Result<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "request deadline passed"))
}

fn serve(mut c: TcpStream, handler: &Handler, accepted: Instant) -> io::Result<()> {
    let head_deadline = accepted + HEAD_DEADLINE;
    let deadline = accepted + REQUEST_DEADLINE;
    c.set_write_timeout(Some(left(deadline)?))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            break;
        }
        if buf.len() > MAX_HEAD {
            respond(&mut c, &plain(431, "request head too large"), false)?;
            // Read a little of what the client still sends so closing does not reset the
            // connection before it has read the answer.
            c.set_read_timeout(Some(Duration::from_millis(100)))?;
            let mut left = 64 * 1024;
            while left > 0 {
                match c.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left -= n.min(left),
                }
            }
            return Ok(());
        }
        // The timeout of each read is what is left of the deadline of the whole head, so a
        // client sending a byte now and then cannot hold the connection longer.
        let n = match left(head_deadline).and_then(|t| {
            c.set_read_timeout(Some(t))?;
            c.read(&mut chunk)
        }) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                c.set_write_timeout(Some(Duration::from_secs(1)))?;
                respond(
                    &mut c,
                    &plain(408, "request head not received in time"),
                    false,
                )?;
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request head not received in time",
                ));
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            if buf.is_empty() {
                return Ok(()); // a bare connect, e.g. the shutdown wake-up
            }
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return respond(&mut c, &plain(400, "bad request line"), false);
    };
    if !version.starts_with("HTTP/1.") {
        return respond(&mut c, &plain(400, "unsupported HTTP version"), false);
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return respond(&mut c, &plain(405, "only GET and HEAD"), false),
    };
    let path = target.split('?').next().unwrap_or(target);
    let r = handler(path);
    c.set_write_timeout(Some(left(deadline)?))?;
    respond(&mut c, &r, head_only)
}

/// A tiny blocking HTTP GET client for tests and `loadtest --sink prometheus`: returns (status,
/// body). Loopback use only.
pub fn get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut s = String::new();
    c.read_to_string(&mut s)?;
    let (head, body) = s
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other("no header end"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|x| x.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line in {head:?}")))?;
    Ok((status, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> HttpServer {
        let h: Handler = Arc::new(|p: &str| match p {
            "/hello" => Response::ok("text/plain", "hi\n"),
            _ => Response::not_found(),
        });
        HttpServer::start("127.0.0.1:0".parse().unwrap(), h, Box::new(|| {})).unwrap()
    }

    #[test]
    fn serves_get_and_errors() {
        let s = server();
        let a = s.addr();
        assert_eq!(get(a, "/hello?x=1").unwrap(), (200, "hi\n".to_string()));
        assert_eq!(get(a, "/nope").unwrap().0, 404);
        let mut c = TcpStream::connect(a).unwrap();
        c.write_all(b"POST /hello HTTP/1.1\r\n\r\n").unwrap();
        let mut r = String::new();
        c.read_to_string(&mut r).unwrap();
        assert!(r.starts_with("HTTP/1.1 405"), "{r}");
        let mut c = TcpStream::connect(a).unwrap();
        c.write_all(b"HEAD /hello HTTP/1.1\r\n\r\n").unwrap();
        let mut r = String::new();
        c.read_to_string(&mut r).unwrap();
        assert!(
            r.contains("Content-Length: 3") && r.ends_with("\r\n\r\n"),
            "{r}"
        );
        let mut c = TcpStream::connect(a).unwrap();
        c.write_all(&vec![b'a'; 10_000]).unwrap();
        let mut r = String::new();
        c.read_to_string(&mut r).unwrap();
        assert!(r.starts_with("HTTP/1.1 431"), "{r}");
        s.stop();
        assert!(TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_err());
    }

    #[test]
    fn a_slow_client_does_not_stall_others_and_is_cut_at_the_deadline() {
        let s = server();
        let a = s.addr();
        // One byte every 1.9 s: under a per-read timeout of 2 s this would hold the connection
        // for hours (8 KiB of head).
        let slow = std::thread::spawn(move || {
            let mut c = TcpStream::connect(a).unwrap();
            // Between two bytes, wait 1.9 s for an answer (and stop sending once there is one).
            c.set_read_timeout(Some(Duration::from_millis(1900)))
                .unwrap();
            let t0 = Instant::now();
            let mut r = Vec::new();
            let mut chunk = [0u8; 256];
            for b in b"GET /hello HTTP/1.1\r\n\r\n" {
                c.write_all(&[*b]).unwrap();
                match c.read(&mut chunk) {
                    Ok(n) => {
                        r.extend_from_slice(&chunk[..n]);
                        break;
                    }
                    Err(e) => assert!(
                        matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ),
                        "{e}"
                    ),
                }
            }
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = c.read_to_end(&mut r);
            (String::from_utf8_lossy(&r).into_owned(), t0.elapsed())
        });
        std::thread::sleep(Duration::from_millis(300));
        for _ in 0..3 {
            let t0 = Instant::now();
            assert_eq!(get(a, "/hello").unwrap(), (200, "hi\n".to_string()));
            assert!(
                t0.elapsed() < Duration::from_millis(1500),
                "answer took {:?} while a slow client was connected",
                t0.elapsed()
            );
            std::thread::sleep(Duration::from_millis(700));
        }
        let (r, took) = slow.join().unwrap();
        assert!(r.starts_with("HTTP/1.1 408"), "{r:?}");
        assert!(took < HEAD_DEADLINE + Duration::from_secs(3), "{took:?}");
    }

    #[test]
    fn connections_beyond_the_cap_get_503() {
        let s = server();
        let a = s.addr();
        let idle: Vec<_> = (0..MAX_CONNS)
            .map(|_| TcpStream::connect(a).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let mut c = TcpStream::connect(a).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut r = String::new();
        c.read_to_string(&mut r).unwrap();
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        drop(idle);
        // Once the idle connections are gone (closed by their clients), serving resumes.
        let t0 = Instant::now();
        while get(a, "/hello").ok().map(|r| r.0) != Some(200) {
            assert!(t0.elapsed() < Duration::from_secs(5), "not serving again");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn bind_error_names_the_address() {
        let s = server();
        let e = HttpServer::start(
            s.addr(),
            Arc::new(|_| Response::not_found()),
            Box::new(|| {}),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains(&s.addr().to_string()), "{e}");
    }
}

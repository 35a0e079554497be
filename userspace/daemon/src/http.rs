//! A minimal HTTP/1.1 server for `/metrics` and `/debug/stats`.
//!
//! One thread accepts and serves connections one at a time (scrapes are rare and cheap): it reads
//! the request head (at most 8 KiB, 2 s timeout), answers `GET`/`HEAD` with `Connection: close`,
//! and closes. Anything else gets 400/404/405. Stopping connects to the listener once to wake the
//! blocking `accept`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

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

const MAX_HEAD: usize = 8192;

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
        let thread = std::thread::Builder::new()
            .name("dmremapd-http".into())
            .spawn(move || {
                on_start();
                for conn in listener.incoming() {
                    if st.load(Ordering::SeqCst) {
                        break;
                    }
                    match conn {
                        Ok(c) => {
                            if let Err(e) = serve(c, &handler) {
                                log::debug!("http: {e}");
                            }
                        }
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
        431 => "Request Header Fields Too Large",
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

fn serve(mut c: TcpStream, handler: &Handler) -> io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(2)))?;
    c.set_write_timeout(Some(Duration::from_secs(5)))?;
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
        let n = c.read(&mut chunk)?;
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

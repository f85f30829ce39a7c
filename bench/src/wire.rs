//! A minimal HTTP/1.1 keep-alive client for the fleet's load generators:
//! one connection per simulated agent, each request's bytes built once,
//! answers read by their `Content-Length`, their bodies counted and dropped
//! (a 4 MiB package is read through one buffer, never held).
//!
//! With reqwest, building each request and its header map took more CPU
//! than headquarters took to answer it (`perf`: the generator's threads
//! 58 % of the samples, the server's 40 %), on the same two cores: the
//! fleet's figures measured the generator as much as the server.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest answer head read.
const MAX_HEAD: usize = 16 * 1024;

/// Bytes one read asks for.
const READ: usize = 64 * 1024;

/// One agent's connection, reopened when the server closes it.
pub struct Conn {
    addr: SocketAddr,
    request: Vec<u8>,
    stream: Option<TcpStream>,
    /// The answer's head (and whatever of the body came with it).
    buf: Vec<u8>,
    /// Where the rest of a body is read and dropped.
    scratch: Vec<u8>,
    /// Body bytes of the last answer.
    body: usize,
}

impl Conn {
    /// A `GET path`, with `authorization` if given, sent to `addr` again
    /// and again.
    pub fn get(addr: SocketAddr, path: &str, authorization: Option<&str>) -> Conn {
        let authorization = authorization
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{authorization}\
             Accept: application/json\r\n\r\n"
        )
        .into_bytes();
        Conn {
            addr,
            request,
            stream: None,
            buf: Vec::with_capacity(READ),
            scratch: Vec::new(),
            body: 0,
        }
    }

    /// Opens the connection now, so that a timed request does not.
    pub async fn connect(&mut self) -> io::Result<()> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
        }
        Ok(())
    }

    /// The body bytes of the last answer read whole.
    pub fn body_len(&self) -> usize {
        self.body
    }

    /// Sends the request and reads the whole answer; returns its status.
    /// After an error the connection is dropped, and the next call opens
    /// another.
    pub async fn send(&mut self) -> io::Result<u16> {
        let answer = self.exchange().await;
        if answer.is_err() {
            self.stream = None;
        }
        answer
    }

    async fn exchange(&mut self) -> io::Result<u16> {
        self.body = 0;
        self.connect().await?;
        let stream = self.stream.as_mut().expect("connected above");
        stream.write_all(&self.request).await?;
        self.buf.clear();
        let head_end = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                break end + 4;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(io::Error::other("an answer head of more than 16 KiB"));
            }
            read_more(stream, &mut self.buf).await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end])
            .map_err(|_| io::Error::other("an answer head that is not UTF-8"))?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| io::Error::other(format!("no status in {head:?}")))?;
        let mut length = None;
        let mut close = false;
        for line in head.split("\r\n").skip(1) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.trim().eq_ignore_ascii_case("close");
            }
        }
        let length = match (length, status) {
            (Some(n), _) => n,
            (None, 204 | 304) => 0,
            (None, _) => return Err(io::Error::other("an answer without Content-Length")),
        };
        // One request is in flight at a time: nothing past this body comes.
        let mut have = self.buf.len() - head_end;
        if have < length && self.scratch.is_empty() {
            self.scratch = vec![0; READ];
        }
        while have < length {
            let want = (length - have).min(READ);
            let n = stream.read(&mut self.scratch[..want]).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            have += n;
        }
        self.body = length;
        if close {
            self.stream = None;
        }
        Ok(status)
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers with and without a body, split across reads, on one kept
    /// connection, and a closing one that the next request reopens.
    #[tokio::test]
    async fn answers_are_read_whole_and_connections_kept_or_reopened() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut accepted = 0;
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                accepted += 1;
                let mut request = vec![0u8; 1024];
                // Two answers on the first connection, the second closing it.
                let n = socket.read(&mut request).await.unwrap();
                assert!(std::str::from_utf8(&request[..n])
                    .unwrap()
                    .contains("Authorization: Basic x\r\n"));
                if accepted == 1 {
                    socket
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Le")
                        .await
                        .unwrap();
                    socket.flush().await.unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    socket.write_all(b"ngth: 5\r\n\r\nhel").await.unwrap();
                    socket.flush().await.unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    socket.write_all(b"lo").await.unwrap();
                    let _ = socket.read(&mut request).await.unwrap();
                    socket
                        .write_all(b"HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n")
                        .await
                        .unwrap();
                } else {
                    socket
                        .write_all(b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .unwrap();
                    return accepted;
                }
            }
        });
        let mut conn = Conn::get(addr, "/v1/ping", Some("Basic x"));
        assert_eq!(conn.send().await.unwrap(), 200);
        assert_eq!(conn.body_len(), 5);
        assert_eq!(conn.send().await.unwrap(), 304);
        assert_eq!(conn.body_len(), 0);
        assert_eq!(conn.send().await.unwrap(), 503);
        assert_eq!(
            server.await.unwrap(),
            2,
            "the closed connection was not reopened"
        );
    }
}

//! A minimal keep-alive HTTP/1.1 client for `POST`/`GET` with a `Content-Length` body: what
//! kube-scheduler does to the extender, reduced to what colo's benchmark and tests need to time
//! and check real requests over a real socket (plain TCP, or any stream such as a TLS one).

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A failed exchange.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Socket trouble.
    #[error("HTTP I/O with {addr}: {source}")]
    Io {
        /// The server.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server's answer is not HTTP/1.1 as expected.
    #[error("malformed HTTP response from {addr}: {what}")]
    Malformed {
        /// The server.
        addr: SocketAddr,
        /// What was wrong.
        what: String,
    },
}

/// A response: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// `Content-Type`, if sent.
    pub content_type: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// One keep-alive connection over `S` (plain TCP by default).
#[derive(Debug)]
pub struct HttpConnection<S = TcpStream> {
    addr: SocketAddr,
    stream: BufReader<S>,
}

impl HttpConnection {
    /// Connects (with `TCP_NODELAY`, as Go's client does).
    ///
    /// # Errors
    /// [`HttpError::Io`] when the connection fails.
    pub async fn connect(addr: SocketAddr) -> Result<Self, HttpError> {
        let io = |source| HttpError::Io { addr, source };
        let s = TcpStream::connect(addr).await.map_err(io)?;
        s.set_nodelay(true).map_err(io)?;
        Ok(Self::over(s, addr))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> HttpConnection<S> {
    /// Speaks HTTP over an established `stream` to `addr` (for messages).
    pub fn over(stream: S, addr: SocketAddr) -> Self {
        Self {
            addr,
            stream: BufReader::new(stream),
        }
    }

    /// `POST path` with a JSON body.
    ///
    /// # Errors
    /// [`HttpError`] on socket trouble or a malformed answer.
    pub async fn post_json(&mut self, path: &str, body: &[u8]) -> Result<HttpResponse, HttpError> {
        self.exchange("POST", path, body).await
    }

    /// `GET path`.
    ///
    /// # Errors
    /// [`HttpError`] on socket trouble or a malformed answer.
    pub async fn get(&mut self, path: &str) -> Result<HttpResponse, HttpError> {
        self.exchange("GET", path, &[]).await
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<HttpResponse, HttpError> {
        let addr = self.addr;
        let io = |source| HttpError::Io { addr, source };
        let bad = |what: String| HttpError::Malformed { addr, what };
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        // One write for head and body, as Go's client sends them through one buffered writer:
        // the server is not woken for a head whose body has not left yet.
        let mut request = Vec::with_capacity(head.len() + body.len());
        request.extend_from_slice(head.as_bytes());
        request.extend_from_slice(body);
        self.stream
            .get_mut()
            .write_all(&request)
            .await
            .map_err(io)?;

        let mut line = String::new();
        self.stream.read_line(&mut line).await.map_err(io)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| bad(format!("status line {line:?}")))?;
        let mut length: Option<usize> = None;
        let mut content_type = None;
        loop {
            line.clear();
            let n = self.stream.read_line(&mut line).await.map_err(io)?;
            if n == 0 {
                return Err(bad("connection closed inside the headers".into()));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = Some(
                        v.trim()
                            .parse()
                            .map_err(|_| bad(format!("Content-Length {v:?}")))?,
                    );
                } else if k.eq_ignore_ascii_case("content-type") {
                    content_type = Some(v.trim().to_owned());
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    return Err(bad(format!("unsupported Transfer-Encoding {v:?}")));
                }
            }
        }
        let length = length.ok_or_else(|| bad("no Content-Length".into()))?;
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await.map_err(io)?;
        Ok(HttpResponse {
            status,
            content_type,
            body,
        })
    }
}

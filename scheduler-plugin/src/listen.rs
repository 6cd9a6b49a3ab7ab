//! The listeners' connections: accepted from TCP and, on a TLS listener, through a handshake that
//! must finish within a deadline and present a client certificate from the configured CA; each
//! tagged with its peer (address, and the names its certificate gives).
//!
//! Both servers take their connections from [`accept`], so both ports get the same handshake
//! deadline (a connection that never speaks is closed after it) and the same idea of who the peer
//! is. Handshakes run in their own tasks: a slow one holds up no other connection. On the gRPC
//! port the deadline also covers the HTTP/2 preface ([`Preface`]): HTTP/2 has no header timeout
//! of its own, and its keep-alive pings start only after the preface.
//!
//! tokio-rustls directly, with hyper-util serving HTTP on top, rather than axum-server or
//! tonic's own TLS: one accept loop then gives both ports the handshake deadline and the peer's
//! certificate names, which neither of those exposes for the other's protocol.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;

use crate::identity::PeerIdentity;
use crate::metrics as m;
use crate::tls::ServerTls;

/// Connections accepted but not yet taken by the server.
const READY_QUEUE: usize = 64;

/// Bytes a connection must send within the deadline after its handshake, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Preface {
    /// Nothing more (HTTP/1.1: hyper's header timeout takes over).
    None,
    /// The 24-byte HTTP/2 client preface.
    Http2,
}

impl Preface {
    fn bytes(self) -> usize {
        match self {
            Self::None => 0,
            Self::Http2 => 24,
        }
    }
}

/// A deadline by which a connection must have sent its first `need` bytes.
#[derive(Debug)]
struct Opening {
    need: usize,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

/// A bound listener, plain or with TLS.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    tls: Option<Arc<ServerTls>>,
}

impl From<TcpListener> for Listener {
    fn from(tcp: TcpListener) -> Self {
        Self::plain(tcp)
    }
}

impl Listener {
    /// Plain TCP: no encryption, no client authentication (for loopback).
    #[must_use]
    pub fn plain(tcp: TcpListener) -> Self {
        Self { tcp, tls: None }
    }

    /// TLS with required client certificates.
    #[must_use]
    pub fn tls(tcp: TcpListener, tls: Arc<ServerTls>) -> Self {
        Self {
            tcp,
            tls: Some(tls),
        }
    }

    /// The bound address.
    ///
    /// # Errors
    /// When the socket cannot tell.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The TLS configuration, if any (to reload it).
    #[must_use]
    pub fn tls_config(&self) -> Option<&Arc<ServerTls>> {
        self.tls.as_ref()
    }
}

/// Who is at the other end of a connection.
#[derive(Clone, Debug)]
pub struct Peer {
    /// The remote address.
    pub addr: SocketAddr,
    /// The names of the client certificate, on a TLS listener (empty when they cannot be read);
    /// `None` on a plain one.
    pub identity: Option<Arc<PeerIdentity>>,
}

/// An accepted connection, after its handshake.
#[derive(Debug)]
pub struct Conn {
    io: Io,
    peer: Peer,
    opening: Option<Opening>,
}

#[derive(Debug)]
enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    /// Who is at the other end.
    #[must_use]
    pub fn peer(&self) -> &Peer {
        &self.peer
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_read(cx, buf),
        };
        if let Some(o) = &mut this.opening {
            match &read {
                Poll::Ready(Ok(())) => {
                    let got = buf.filled().len() - before;
                    if got >= o.need {
                        this.opening = None;
                    } else {
                        o.need -= got;
                    }
                }
                Poll::Pending if o.deadline.as_mut().poll(cx).is_ready() => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client sent no HTTP/2 preface within --header-read-timeout",
                    )));
                }
                _ => {}
            }
        }
        read
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Accepts on `listener` until `shutdown` turns true; connections come out of the returned
/// channel once plain, or once their TLS handshake succeeded within `handshake_timeout`; the
/// same deadline, counted from the accept, then holds for the `preface`. `name` labels logs and
/// metrics (`grpc`, `http`).
pub(crate) fn accept(
    listener: Listener,
    name: &'static str,
    handshake_timeout: Duration,
    preface: Preface,
    mut shutdown: watch::Receiver<bool>,
) -> mpsc::Receiver<Conn> {
    let (tx, rx) = mpsc::channel(READY_QUEUE);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                biased;
                _ = shutdown.wait_for(|s| *s) => return,
                a = listener.tcp.accept() => a,
            };
            let (tcp, addr) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was taken: wait
                    // a little rather than spin; the listener itself is fine.
                    tracing::warn!(listener = name, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // As Go's servers do: an answer's last segment must not wait on Nagle.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(listener = name, %addr, "cannot set TCP_NODELAY: {e}");
            }
            let opening = (preface != Preface::None).then(|| Opening {
                need: preface.bytes(),
                deadline: Box::pin(tokio::time::sleep(handshake_timeout)),
            });
            match &listener.tls {
                None => {
                    let conn = Conn {
                        io: Io::Plain(tcp),
                        peer: Peer {
                            addr,
                            identity: None,
                        },
                        opening,
                    };
                    if tx.send(conn).await.is_err() {
                        return;
                    }
                }
                Some(tls) => {
                    let handshake = handshake(tls, tcp, addr, name, handshake_timeout, opening);
                    let (tx, mut shutdown) = (tx.clone(), shutdown.clone());
                    tokio::spawn(async move {
                        let conn = tokio::select! {
                            _ = shutdown.wait_for(|s| *s) => return,
                            c = handshake => c,
                        };
                        if let Some(conn) = conn {
                            let _ = tx.send(conn).await;
                        }
                    });
                }
            }
        }
    });
    rx
}

/// The TLS handshake of one connection, bounded by `limit`; `None` when it failed (counted and
/// logged at debug level: scanners and misconfigured clients would flood the log).
fn handshake(
    tls: &ServerTls,
    tcp: TcpStream,
    addr: SocketAddr,
    name: &'static str,
    limit: Duration,
    opening: Option<Opening>,
) -> impl Future<Output = Option<Conn>> + Send + 'static {
    let acceptor = tls.acceptor();
    async move {
        let failed = |reason: &'static str| {
            metrics::counter!(m::TLS_HANDSHAKE_FAILURES, "listener" => name, "reason" => reason)
                .increment(1);
        };
        let stream = match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                failed("refused");
                tracing::debug!(listener = name, %addr, "TLS handshake refused: {e}");
                return None;
            }
            Err(_) => {
                failed("timeout");
                tracing::debug!(listener = name, %addr, "TLS handshake unfinished after {limit:?}");
                return None;
            }
        };
        let identity = match stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(<[_]>::first)
        {
            Some(der) => PeerIdentity::from_der(der).unwrap_or_else(|e| {
                tracing::warn!(listener = name, %addr, "{e}; the connection may report no node");
                PeerIdentity::default()
            }),
            None => PeerIdentity::default(),
        };
        Some(Conn {
            io: Io::Tls(Box::new(stream)),
            peer: Peer {
                addr,
                identity: Some(Arc::new(identity)),
            },
            opening,
        })
    }
}

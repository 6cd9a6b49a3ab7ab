//! Extender request bodies, read under three bounds: size (`--max-request-bytes`, refused from
//! `Content-Length` before a byte is read), time (`--body-read-timeout`, counted from the
//! header's arrival, waiting for room included), and the bytes all requests hold together
//! (`--max-body-bytes-in-flight`). A flood of large or slow bodies gets 413, 408 and 503 answers
//! instead of the server's memory.
//!
//! The shared bound is a semaphore counted in KiB: a body reserves its `Content-Length` (or the
//! largest size allowed when it has none) before reading, and holds it until its answer is made.
//! Reserving all at once, never in pieces, means two half-read bodies can never wait on each
//! other.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::HttpState;
use crate::metrics as m;

/// The bodies-in-flight budget and the per-body bounds.
#[derive(Debug)]
pub struct BodyBudget {
    kib: Arc<Semaphore>,
    max_request_bytes: usize,
    timeout: Duration,
}

impl BodyBudget {
    /// Bodies of at most `max_request_bytes` each, `in_flight` bytes together, each read within
    /// `timeout`.
    #[must_use]
    pub fn new(max_request_bytes: usize, in_flight: usize, timeout: Duration) -> Self {
        Self {
            kib: Arc::new(Semaphore::new(
                usize::try_from(kib(in_flight))
                    .unwrap_or(usize::MAX)
                    .min(Semaphore::MAX_PERMITS),
            )),
            max_request_bytes,
            timeout,
        }
    }

    /// KiB free in the budget now.
    #[must_use]
    pub fn available_kib(&self) -> usize {
        self.kib.available_permits()
    }
}

fn kib(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(1024)
}

/// A request body read in full; it holds its share of the budget until dropped.
#[derive(Debug)]
pub struct BoundedBody {
    /// The body.
    pub bytes: Bytes,
    _reserved: OwnedSemaphorePermit,
}

/// Why a body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    TooLarge(usize, usize),
    Timeout(Duration),
    Busy,
    Broken,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, reason, text) = match self {
            Self::TooLarge(size, max) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "request body of {size} bytes or more is over colo-scheduler's limit of \
                     {max} bytes (--max-request-bytes)\n"
                ),
            ),
            Self::Timeout(limit) => (
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!(
                    "request body not received within {limit:?} (colo-scheduler's \
                     --body-read-timeout)\n"
                ),
            ),
            Self::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many request bodies in flight (colo-scheduler's \
                 --max-body-bytes-in-flight): retry\n"
                    .to_owned(),
            ),
            Self::Broken => (
                StatusCode::BAD_REQUEST,
                "broken",
                "the request body could not be read\n".to_owned(),
            ),
        };
        if reason != "broken" {
            metrics::counter!(m::HTTP_BODIES_REFUSED, "reason" => reason).increment(1);
        }
        let mut r = (status, text).into_response();
        // The rest of the body is not read, so the connection cannot carry another request.
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    }
}

impl FromRequest<HttpState> for BoundedBody {
    type Rejection = Response;

    async fn from_request(req: Request, state: &HttpState) -> Result<Self, Response> {
        let budget = &state.bodies;
        let deadline = Instant::now() + budget.timeout;
        let max = budget.max_request_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if let Some(n) = declared.filter(|n| *n > max) {
            return Err(Refusal::TooLarge(n, max).into_response());
        }
        let reserve = declared.unwrap_or(max);
        // At most `max` KiB, which the config check keeps within u32.
        let want = u32::try_from(kib(reserve)).unwrap_or(u32::MAX);
        let reserved = match tokio::time::timeout_at(
            deadline,
            Arc::clone(&budget.kib).acquire_many_owned(want),
        )
        .await
        {
            Ok(Ok(p)) => p,
            _ => return Err(Refusal::Busy.into_response()),
        };
        let mut body = req.into_body();
        // One frame (the usual case for a body that arrives at once) is kept as it came; more
        // are gathered into one buffer sized from `Content-Length`.
        let mut first: Option<Bytes> = None;
        let mut gathered: Option<BytesMut> = None;
        let mut total = 0usize;
        loop {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) => return Err(Refusal::Timeout(budget.timeout).into_response()),
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    tracing::debug!("extender request body: {e}");
                    return Err(Refusal::Broken.into_response());
                }
                Ok(Some(Ok(f))) => f,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            total += data.len();
            if total > reserve {
                return Err(Refusal::TooLarge(total, max).into_response());
            }
            match (&mut first, &mut gathered) {
                (None, None) => first = Some(data),
                (Some(f), None) => {
                    let mut buf = BytesMut::with_capacity(reserve);
                    buf.extend_from_slice(f);
                    buf.extend_from_slice(&data);
                    first = None;
                    gathered = Some(buf);
                }
                (_, Some(buf)) => buf.extend_from_slice(&data),
            }
        }
        let bytes = match (first, gathered) {
            (_, Some(buf)) => buf.freeze(),
            (Some(f), None) => f,
            (None, None) => Bytes::new(),
        };
        Ok(Self {
            bytes,
            _reserved: reserved,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_counts_whole_kib() {
        assert_eq!(kib(0), 0);
        assert_eq!(kib(1), 1);
        assert_eq!(kib(1024), 1);
        assert_eq!(kib(1025), 2);
        let b = BodyBudget::new(64 << 20, 160 << 20, Duration::from_secs(1));
        assert_eq!(b.available_kib(), 160 << 10);
    }

    #[test]
    fn refusals_say_which_flag_to_change() {
        for (r, status, flag) in [
            (
                Refusal::TooLarge(70 << 20, 64 << 20),
                413,
                "--max-request-bytes",
            ),
            (
                Refusal::Timeout(Duration::from_secs(30)),
                408,
                "--body-read-timeout",
            ),
            (Refusal::Busy, 503, "--max-body-bytes-in-flight"),
        ] {
            let resp = r.into_response();
            assert_eq!(resp.status().as_u16(), status);
            assert_eq!(resp.headers()[header::CONNECTION], "close");
            let body = futures_body(resp);
            assert!(body.contains(flag), "{body}");
        }
    }

    fn state(in_flight: usize, timeout: Duration) -> HttpState {
        let config = crate::SchedulerConfig {
            max_request_bytes: 4 << 10,
            ..crate::SchedulerConfig::default()
        };
        let mut s = HttpState::new(
            Arc::new(crate::NodeTable::new(config.scoring.admission)),
            Arc::new(config),
            None,
        );
        s.bodies = Arc::new(BodyBudget::new(4 << 10, in_flight, timeout));
        s
    }

    fn request(length: Option<usize>, body: &'static [u8]) -> Request {
        let mut b = axum::http::Request::post("/colo/filter");
        if let Some(n) = length {
            b = b.header(header::CONTENT_LENGTH, n);
        }
        b.body(axum::body::Body::from(body)).unwrap()
    }

    #[tokio::test]
    async fn a_body_is_read_whole_and_holds_its_share_until_dropped() {
        let s = state(8 << 10, Duration::from_secs(5));
        let b = BoundedBody::from_request(request(Some(5), b"hello"), &s)
            .await
            .unwrap();
        assert_eq!(&b.bytes[..], b"hello");
        assert_eq!(s.bodies.available_kib(), 7, "one KiB reserved for 5 bytes");
        drop(b);
        assert_eq!(s.bodies.available_kib(), 8);
        // No length declared: the largest body allowed is reserved while reading.
        let b = BoundedBody::from_request(request(None, b"{}"), &s)
            .await
            .unwrap();
        assert_eq!(s.bodies.available_kib(), 4);
        drop(b);
        let r = BoundedBody::from_request(request(Some(5 << 10), b""), &s)
            .await
            .unwrap_err();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(s.bodies.available_kib(), 8, "a refusal holds nothing");
    }

    #[tokio::test]
    async fn no_room_in_time_is_busy() {
        let s = state(4 << 10, Duration::from_millis(50));
        let held = Arc::clone(&s.bodies.kib)
            .acquire_many_owned(4)
            .await
            .unwrap();
        let r = BoundedBody::from_request(request(Some(4 << 10), b""), &s)
            .await
            .unwrap_err();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        drop(held);
        // Room freed before the deadline: served.
        let held = Arc::clone(&s.bodies.kib)
            .acquire_many_owned(4)
            .await
            .unwrap();
        let s2 = s.clone();
        let waiting = tokio::spawn(async move {
            BoundedBody::from_request(request(Some(2), b"{}"), &s2)
                .await
                .map(|b| b.bytes)
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(held);
        assert_eq!(&waiting.await.unwrap().unwrap()[..], b"{}");
    }

    fn futures_body(r: Response) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let b = rt
            .block_on(axum::body::to_bytes(r.into_body(), 1 << 20))
            .unwrap();
        String::from_utf8(b.to_vec()).unwrap()
    }
}

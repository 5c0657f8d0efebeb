//! The health endpoint (`--health-bind`) for a load balancer and for monitoring: HTTP/1.1
//! (hyper) with three routes.
//!
//! - `GET /ready`: `200` while the server accepts sessions, `503` once it is shutting down, so a
//!   balancer (HAProxy `option httpchk GET /ready`) sends new sessions elsewhere while running
//!   transfers finish;
//! - `GET /live`: `200` while the process serves at all;
//! - `GET /metrics`: libunftp's Prometheus metrics (sessions, commands, replies, bytes, errors)
//!   in the Prometheus text format.
//!
//! [`route`] is pure; [`serve`] owns the sockets.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Health requests handled at once; beyond, a connection waits in the listen backlog.
const MAX_CLIENTS: usize = 16;

/// How long a client has to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the server accepts new sessions (shared between the accept loop and the endpoint).
#[derive(Debug, Default)]
pub struct Readiness(AtomicBool);

impl Readiness {
    /// Marks the server ready (accepting) or not (shutting down).
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Whether the server accepts new sessions.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A reply: status, content type, body.
pub type Reply = (StatusCode, &'static str, Vec<u8>);

/// Answers one request. `metrics` renders the metrics (only called for `/metrics`).
pub fn route(method: &Method, path: &str, ready: bool, metrics: impl FnOnce() -> Vec<u8>) -> Reply {
    const TEXT: &str = "text/plain; charset=utf-8";
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, TEXT, b"GET only\n".to_vec());
    }
    match path {
        "/ready" if ready => (StatusCode::OK, TEXT, b"ready\n".to_vec()),
        "/ready" => (
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            b"shutting down\n".to_vec(),
        ),
        "/live" => (StatusCode::OK, TEXT, b"live\n".to_vec()),
        "/metrics" => (StatusCode::OK, prometheus::TEXT_FORMAT, metrics()),
        _ => (StatusCode::NOT_FOUND, TEXT, b"not found\n".to_vec()),
    }
}

/// libunftp's metrics (they live in the Prometheus default registry), in the text format.
fn render_metrics() -> Vec<u8> {
    use prometheus::Encoder;
    let mut out = Vec::new();
    if let Err(e) = prometheus::TextEncoder::new().encode(&prometheus::gather(), &mut out) {
        tracing::warn!(error = %e, "cannot encode the metrics");
    }
    out
}

/// Serves the endpoint on `listener` until `stop` is cancelled.
pub async fn serve(listener: TcpListener, ready: Arc<Readiness>, stop: CancellationToken) {
    let clients = Arc::new(Semaphore::new(MAX_CLIENTS));
    let tracker = TaskTracker::new();
    loop {
        let Ok(permit) = Arc::clone(&clients).acquire_owned().await else {
            break;
        };
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            a = listener.accept() => match a {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "health: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let ready = ready.clone();
        let stop = stop.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                let (status, kind, body) =
                    route(req.method(), req.uri().path(), ready.get(), render_metrics);
                let mut resp = Response::new(Full::new(Bytes::from(body)));
                *resp.status_mut() = status;
                resp.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static(kind),
                );
                async move { Ok::<_, Infallible>(resp) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                () = stop.cancelled() => {}
                r = conn => if let Err(e) = r {
                    tracing::debug!(peer = %peer, error = %e, "health: connection failed");
                },
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let none = || -> Vec<u8> { panic!("metrics rendered for another route") };
        assert_eq!(route(&Method::GET, "/ready", true, none).0, StatusCode::OK);
        assert_eq!(
            route(&Method::GET, "/ready", false, none).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(route(&Method::GET, "/live", false, none).0, StatusCode::OK);
        assert_eq!(route(&Method::HEAD, "/live", true, none).0, StatusCode::OK);
        assert_eq!(
            route(&Method::GET, "/../ready", true, none).0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            route(&Method::POST, "/ready", true, none).0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        let (s, kind, body) = route(&Method::GET, "/metrics", true, || b"m 1\n".to_vec());
        assert_eq!(
            (s, kind, body.as_slice()),
            (StatusCode::OK, prometheus::TEXT_FORMAT, &b"m 1\n"[..])
        );
    }
}

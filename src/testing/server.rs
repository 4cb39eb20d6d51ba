//! The fake's HTTP side: an accept loop that can reset a connection on demand (the routes
//! are in `routes`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tower::Service;

use super::State;

pub(super) type Shared = Arc<State>;

/// Ends the connection a request came on (inserted into every request's extensions).
#[derive(Clone)]
pub(crate) struct Kill(pub(super) Arc<Notify>);

pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::spawn(serve_connection(stream, router.clone(), tls.clone(), stop.clone()));
                }
                // Out of descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
}

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn serve_connection(
    stream: tokio::net::TcpStream,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    // Linger 0: dropping the socket sends a RST, which is what `Fault::Reset` is about.
    // Graceful closes are unaffected in practice: the client closes idle connections first.
    let _ = socket_zero_linger(&stream);
    let _ = stream.set_nodelay(true);
    let kill = Arc::new(Notify::new());
    let request_kill = Kill(kill.clone());
    let service =
        hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(request_kill.clone());
            let mut router = router.clone();
            async move { Ok::<_, Infallible>(router.call(request).await.into_response()) }
        });
    match tls {
        None => serve_io(stream, service, &kill, &mut stop).await,
        Some(acceptor) => {
            let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
            else {
                return;
            };
            serve_io(stream, service, &kill, &mut stop).await;
        }
    }
}

/// Serves one connection, plain or TLS, until it ends, a request kills it or the fake stops:
/// HTTP/1.1 and HTTP/2 (h2c by prior knowledge, or h2 by ALPN) on the same port.
async fn serve_io<I, S>(io: I, service: S, kill: &Notify, stop: &mut watch::Receiver<bool>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::select! {
        _ = connection => {}
        _ = kill.notified() => {}
        _ = stop.changed() => {}
    }
}

#[allow(deprecated)] // `set_linger` is the call that exists on every tokio 1.x we support.
fn socket_zero_linger(stream: &tokio::net::TcpStream) -> std::io::Result<()> {
    stream.set_linger(Some(Duration::ZERO))
}

pub(crate) fn router(state: Shared) -> Router {
    super::grpc::with_grpc(super::routes::rest_router(state))
}

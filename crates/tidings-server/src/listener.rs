//! The accept loop: a semaphore caps concurrent connections (accepting waits when full, so
//! the kernel backlog absorbs bursts), each connection is served by hyper's HTTP/1 machinery
//! with a header-read timeout, and shutdown drains connections for a bounded grace period.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::io::{Rewind, WriteTimeout};
use crate::lean::{self, Head, LeanRoutes};

/// Connection handling settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    pub(crate) max_connections: usize,
    pub(crate) grace: Duration,
    pub(crate) write_timeout: Duration,
}

/// How long a client may take to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn serve(
    listener: TcpListener,
    app: axum::Router,
    lean: LeanRoutes,
    options: Options,
    shutdown: impl Future<Output = ()> + Send,
) {
    let limit = Arc::new(Semaphore::new(options.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a clone; `recv` returns `None` once all have ended.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(message = "Accept failed.", error = %e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(message = "Could not set TCP_NODELAY.", error = %e);
        }
        let service = TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        let done = done_tx.clone();
        let lean = lean.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            // The head reader and hyper's connection are boxed: a task's future is as large
            // as its largest state, and every long-lived lean stream would pay for them.
            let head = Box::pin(lean::read_head(&mut stream, &lean, HEADER_READ_TIMEOUT)).await;
            let prefix = match head {
                Head::Gone => {
                    drop((permit, done));
                    return;
                }
                Head::Stream(parts, ctx) => {
                    lean::serve(stream, parts, ctx, options.write_timeout).await;
                    drop((permit, done));
                    return;
                }
                Head::Other(prefix) => prefix,
            };
            let io = Rewind::new(prefix, WriteTimeout::new(stream, options.write_timeout));
            let mut conn = Box::pin(
                http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(io), service)
                    .with_upgrades(),
            );
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
                    conn.as_mut().graceful_shutdown();
                    conn.as_mut().await
                }
            };
            if let Err(e) = result {
                tracing::debug!(message = "Connection ended with an error.", error = %e);
            }
            drop(permit);
            drop(done);
        });
    }
    drop(listener);
    stop_tx.send_replace(true);
    drop(done_tx);
    if tokio::time::timeout(options.grace, done_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!(message = "Grace period over; closing the remaining connections.");
    }
}

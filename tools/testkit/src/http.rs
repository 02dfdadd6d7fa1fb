//! Local HTTP servers standing in for endpoints the functions call.

use std::net::SocketAddr;

use axum::serve::ListenerExt as _;

/// Serves `router` on an ephemeral loopback port until the test ends.
pub async fn serve(router: axum::Router) -> SocketAddr {
    spawn(router).await.expect("bind a loopback port").0
}

/// Serves `router` on an ephemeral loopback port until the returned task is aborted.
///
/// Accepted sockets set `TCP_NODELAY` (axum's server does not): a response written in more than
/// one send would otherwise wait for the peer's delayed ACK, about 40 ms, and every figure timed
/// through the server would measure that.
///
/// # Errors
/// When no loopback port can be bound.
pub async fn spawn(
    router: axum::Router,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let listener = listener.tap_io(|stream| {
        if let Err(e) = stream.set_nodelay(true) {
            eprintln!("TCP_NODELAY could not be set: {e}");
        }
    });
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((address, server))
}

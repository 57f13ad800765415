//! The HTTP listener, bounded: at most [`MAX_CONNECTIONS`] connections at once. Beyond them a
//! new connection waits in the kernel's backlog until one ends, so that slow or idle clients
//! cannot take every file descriptor of the process (in `switchyard dev` the dispatcher and
//! the workers share it).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The most connections served at once.
pub const MAX_CONNECTIONS: usize = 512;

/// A TCP listener that holds one permit per open connection.
#[derive(Debug)]
pub struct BoundedListener {
    listener: TcpListener,
    permits: Arc<Semaphore>,
}

impl BoundedListener {
    /// Bounds `listener` to `max` connections at once.
    pub fn new(listener: TcpListener, max: usize) -> Self {
        Self {
            listener,
            permits: Arc::new(Semaphore::new(max)),
        }
    }
}

/// A connection and the permit it holds until it is dropped.
#[derive(Debug)]
pub struct Held {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl axum::serve::Listener for BoundedListener {
    type Io = Held;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        loop {
            match self.listener.accept().await {
                Ok((stream, address)) => {
                    return (
                        Held {
                            stream,
                            _permit: permit,
                        },
                        address,
                    )
                }
                // Out of descriptors or a connection reset before it was accepted: wait a
                // moment rather than spin, as axum's own listener does.
                Err(error) => {
                    tracing::debug!(%error, "the console could not accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

impl AsyncRead for Held {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Held {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn ask(address: SocketAddr) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn connections_beyond_the_bound_wait_for_one_to_end() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let bounded = BoundedListener::new(listener, 2);
        let router = axum::Router::new().route("/", get(|| async { "served" }));
        let server = tokio::spawn(async move { axum::serve(bounded, router).await });

        assert!(ask(address).await.ends_with("served"));
        // Two idle clients hold both permits (each sent one byte, so both were accepted).
        let mut idle = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream.write_all(b"G").await.unwrap();
            idle.push(stream);
        }
        let mut third = tokio::spawn(ask(address));
        let waited = tokio::time::timeout(Duration::from_millis(300), &mut third).await;
        assert!(
            waited.is_err(),
            "a connection beyond the bound was served at once"
        );
        drop(idle.pop());
        let answer = tokio::time::timeout(Duration::from_secs(10), third)
            .await
            .expect("served once a connection ended")
            .unwrap();
        assert!(answer.ends_with("served"), "{answer}");
        server.abort();
    }
}

//! Polling with a deadline, in place of fixed sleeps.

use std::future::Future;
use std::time::Duration;

use tokio::time::{sleep, timeout};

/// The first pause between checks; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(5);
const MAX_PAUSE: Duration = Duration::from_millis(200);

/// A condition given to [`wait_until`] was still false at the deadline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("condition still false after {timeout:?} ({checks} checks)")]
pub struct TimedOut {
    /// The time allowed.
    pub timeout: Duration,
    /// How many times the condition was checked.
    pub checks: u32,
}

/// Checks `condition` until it is true, pausing a little longer after each miss.
///
/// A check still running at the deadline is abandoned, so a condition that hangs times out too.
///
/// # Errors
///
/// [`TimedOut`] when `timeout` passes first; `.expect("what was awaited")` names it in the panic.
///
/// # Examples
///
/// ```no_run
/// # async fn f(server: &switchyard_tests::TestServer) {
/// use std::time::Duration;
/// let port = server.port();
/// switchyard_tests::wait_until(Duration::from_secs(5), || async move {
///     std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
/// })
/// .await
/// .expect("the server accepts connections");
/// # }
/// ```
pub async fn wait_until<F, Fut>(timeout_after: Duration, mut condition: F) -> Result<(), TimedOut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut checks = 0;
    let polling = async {
        let mut pause = FIRST_PAUSE;
        loop {
            checks += 1;
            if condition().await {
                return;
            }
            sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    };
    timeout(timeout_after, polling).await.map_err(|_| TimedOut {
        timeout: timeout_after,
        checks,
    })
}

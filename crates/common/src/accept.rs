// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The accept loop both servers run: each connection holds one of a fixed number of permits,
//! and a failing `accept` (typically out of file descriptors) backs off instead of spinning.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tracing::{debug, warn};

/// What the loop does while every connection permit is taken.
pub enum WhenFull {
    /// Accept no more until a connection closes: further clients wait in the listen backlog.
    Wait,
    /// Accept the client anyway and call `make_room` (which asks idle connections to close: a
    /// waiting client is what makes them worth closing); should no permit free up within
    /// `wait`, close the new connection.
    MakeRoom {
        /// Asks the open connections to make room.
        make_room: Box<dyn FnMut() + Send>,
        /// How long the new client may wait for a permit.
        wait: Duration,
    },
}

impl std::fmt::Debug for WhenFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WhenFull::Wait => f.write_str("Wait"),
            WhenFull::MakeRoom { wait, .. } => {
                f.debug_struct("MakeRoom").field("wait", wait).finish()
            }
        }
    }
}

/// How a listener's loop behaves.
#[derive(Debug)]
pub struct Policy {
    /// What to do while every permit is taken.
    pub when_full: WhenFull,
    /// The warning logged when accepting starts to fail, once for each run of failures.
    pub failing: &'static str,
}

/// Accepts connections on `listener` and hands each, with its peer address and a permit from
/// `permits`, to `serve`, which must not block (it spawns the connection's task, and drops the
/// permit when the connection ends). Returns once `permits` is closed; runs until dropped
/// otherwise.
pub async fn run<F>(
    listener: TcpListener,
    permits: Arc<Semaphore>,
    mut policy: Policy,
    mut serve: F,
) where
    F: FnMut(TcpStream, SocketAddr, OwnedSemaphorePermit),
{
    let mut backoff = None;
    loop {
        let early = match &policy.when_full {
            WhenFull::Wait => match permits.clone().acquire_owned().await {
                Ok(permit) => Some(permit),
                Err(_) => return,
            },
            WhenFull::MakeRoom { .. } => match permits.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(TryAcquireError::NoPermits) => None,
                Err(TryAcquireError::Closed) => return,
            },
        };
        let Some((stream, peer)) = accept(&listener, &mut backoff, policy.failing).await else {
            continue;
        };
        let permit = match early {
            Some(permit) => permit,
            None => match make_room(&permits, &mut policy.when_full, peer).await {
                Room::Made(permit) => permit,
                Room::NotInTime => continue,
                Room::Closed => return,
            },
        };
        serve(stream, peer, permit);
    }
}

/// The next connection; `None` after a failed accept and the back-off that follows it.
async fn accept(
    listener: &TcpListener,
    backoff: &mut Option<Duration>,
    failing: &str,
) -> Option<(TcpStream, SocketAddr)> {
    match listener.accept().await {
        Ok(connection) => {
            *backoff = None;
            Some(connection)
        }
        Err(error) => {
            // Back off, longer while it lasts, and warn once per run of failures.
            let wait = backoff_after(*backoff);
            if backoff.is_none() {
                warn!(%error, "{failing}");
            } else {
                debug!(%error, ?wait, "still cannot accept connections");
            }
            *backoff = Some(wait);
            tokio::time::sleep(wait).await;
            None
        }
    }
}

/// Whether a permit freed up for a client accepted while every one was taken.
enum Room {
    Made(OwnedSemaphorePermit),
    NotInTime,
    Closed,
}

async fn make_room(permits: &Arc<Semaphore>, when_full: &mut WhenFull, peer: SocketAddr) -> Room {
    let WhenFull::MakeRoom { make_room, wait } = when_full else {
        // Waiting for a permit before accepting never gets here.
        return Room::Closed;
    };
    make_room();
    match tokio::time::timeout(*wait, permits.clone().acquire_owned()).await {
        Ok(Ok(permit)) => Room::Made(permit),
        Ok(Err(_)) => Room::Closed,
        Err(_) => {
            debug!(%peer, "no connection slot freed in time: closing the new connection");
            Room::NotInTime
        }
    }
}

/// How long to wait after a failed accept, given the previous wait in this run of failures:
/// from 10 ms, doubling, up to 1 s.
fn backoff_after(previous: Option<Duration>) -> Duration {
    previous.map_or(Duration::from_millis(10), |wait| {
        (wait * 2).min(Duration::from_secs(1))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;
    use tokio::sync::mpsc;

    #[test]
    fn backs_off_doubling_up_to_a_second() {
        let ms = Duration::from_millis;
        for (previous, want) in [
            (None, ms(10)),
            (Some(ms(10)), ms(20)),
            (Some(ms(640)), ms(1000)),
            (Some(ms(1000)), ms(1000)),
        ] {
            assert_eq!(backoff_after(previous), want, "{previous:?}");
        }
    }

    type Handed = (TcpStream, OwnedSemaphorePermit);

    /// A loop on a loopback listener with `max` permits, handing its connections to the
    /// returned channel.
    async fn start(
        max: usize,
        when_full: WhenFull,
    ) -> (SocketAddr, Arc<Semaphore>, mpsc::UnboundedReceiver<Handed>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let permits = Arc::new(Semaphore::new(max));
        let (tx, rx) = mpsc::unbounded_channel();
        let policy = Policy {
            when_full,
            failing: "cannot accept connections",
        };
        tokio::spawn(run(
            listener,
            permits.clone(),
            policy,
            move |stream, _, permit| {
                let _ = tx.send((stream, permit));
            },
        ));
        (addr, permits, rx)
    }

    async fn nothing_within(rx: &mut mpsc::UnboundedReceiver<Handed>, wait: Duration) -> bool {
        tokio::time::timeout(wait, rx.recv()).await.is_err()
    }

    #[tokio::test]
    async fn waits_for_a_permit_before_accepting() {
        let (addr, permits, mut rx) = start(1, WhenFull::Wait).await;
        let _first = TcpStream::connect(addr).await.expect("connect");
        let (_, permit) = rx.recv().await.expect("first handed over");
        assert_eq!(permits.available_permits(), 0);
        // The second client is queued in the backlog, not handed over...
        let _second = TcpStream::connect(addr).await.expect("connect");
        assert!(nothing_within(&mut rx, Duration::from_millis(200)).await);
        // ...until the first connection gives its permit back.
        drop(permit);
        let handed = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert!(matches!(handed, Ok(Some(_))), "second not handed over");
    }

    #[tokio::test]
    async fn makes_room_for_a_client_when_full() {
        let asked = Arc::new(AtomicUsize::new(0));
        let (room_tx, mut room_rx) = mpsc::unbounded_channel();
        let make_room = {
            let asked = asked.clone();
            Box::new(move || {
                asked.fetch_add(1, Ordering::SeqCst);
                let _ = room_tx.send(());
            })
        };
        let when_full = WhenFull::MakeRoom {
            make_room,
            wait: Duration::from_secs(5),
        };
        let (addr, _permits, mut rx) = start(1, when_full).await;
        let _first = TcpStream::connect(addr).await.expect("connect");
        let (_, permit) = rx.recv().await.expect("first handed over");
        assert_eq!(asked.load(Ordering::SeqCst), 0);
        // The second client is accepted at once and room asked for; once the first closes,
        // it gets the permit.
        let _second = TcpStream::connect(addr).await.expect("connect");
        room_rx.recv().await.expect("asked for room");
        assert!(nothing_within(&mut rx, Duration::from_millis(100)).await);
        drop(permit);
        let handed = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert!(matches!(handed, Ok(Some(_))), "second not handed over");
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn closes_a_client_no_room_is_made_for() {
        let when_full = WhenFull::MakeRoom {
            make_room: Box::new(|| {}),
            wait: Duration::from_millis(100),
        };
        let (addr, _permits, mut rx) = start(1, when_full).await;
        let _first = TcpStream::connect(addr).await.expect("connect");
        let _held = rx.recv().await.expect("first handed over");
        let mut second = TcpStream::connect(addr).await.expect("connect");
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), second.read(&mut byte)).await;
        // Closed by the server: end of stream (or a reset), not a timeout.
        assert!(matches!(read, Ok(Ok(0) | Err(_))), "{read:?}");
        assert!(rx.try_recv().is_err(), "the second client was handed over");
    }

    #[tokio::test]
    async fn ends_when_the_permits_are_closed() {
        let permits = Arc::new(Semaphore::new(1));
        permits.close();
        for when_full in [
            WhenFull::Wait,
            WhenFull::MakeRoom {
                make_room: Box::new(|| {}),
                wait: Duration::from_secs(1),
            },
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let policy = Policy {
                when_full,
                failing: "cannot accept connections",
            };
            let run = run(listener, permits.clone(), policy, |_, _, _| {});
            let ended = tokio::time::timeout(Duration::from_secs(5), run).await;
            assert!(ended.is_ok(), "still running");
        }
    }
}

//! A TCP proxy for fault tests: it forwards a local port to a broker's listener and can drop
//! every connection, stall traffic (stop forwarding without closing anything) or refuse
//! connections, as a network between a worker and its broker can.
//!
//! Kafka clients connect where metadata sends them, so the broker must advertise the proxy's port
//! for the listener behind it (`scripts/kafka.sh start --listener NAME:PORT:PROXY_PORT`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forwards both ways.
    Open,
    /// Accepts connections and keeps them open, but forwards nothing either way.
    Stalled,
    /// Closes every connection at once and every new one as soon as it is accepted.
    Down,
}

struct Inner {
    upstream: SocketAddr,
    mode: watch::Sender<Mode>,
    conns: Mutex<Vec<JoinHandle<()>>>,
    accepted: Mutex<u64>,
}

/// A running proxy; stops (closing every connection) when dropped.
pub struct Proxy {
    inner: Arc<Inner>,
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("addr", &self.addr)
            .field("upstream", &self.inner.upstream)
            .field("mode", &*self.inner.mode.borrow())
            .finish()
    }
}

impl Proxy {
    /// Listens on `listen` and forwards every connection to `upstream`.
    ///
    /// # Panics
    /// When `listen` cannot be bound.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind(listen)
            .await
            .unwrap_or_else(|e| panic!("proxy: cannot listen on {listen}: {e}"));
        let addr = listener.local_addr().unwrap_or(listen);
        let (mode, _) = watch::channel(Mode::Open);
        let inner = Arc::new(Inner {
            upstream,
            mode,
            conns: Mutex::new(Vec::new()),
            accepted: Mutex::new(0),
        });
        let i = inner.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if *i.mode.borrow() == Mode::Down {
                    drop(client);
                    continue;
                }
                *i.accepted.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                let conn = tokio::spawn(serve(client, i.upstream, i.mode.subscribe()));
                let mut conns = i.conns.lock().unwrap_or_else(|p| p.into_inner());
                conns.retain(|c| !c.is_finished());
                conns.push(conn);
            }
        });
        Self {
            inner,
            addr,
            accept,
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far (refused ones not counted).
    pub fn accepted(&self) -> u64 {
        *self
            .inner
            .accepted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        let mut conns = self.inner.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.retain(|c| !c.is_finished());
        conns.len()
    }

    /// Closes every open connection (both sides); new ones are served as before.
    pub fn drop_connections(&self) {
        let conns: Vec<JoinHandle<()>> = self
            .inner
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for c in conns {
            c.abort();
        }
    }

    /// Switches to `mode`; [`Mode::Down`] also closes every open connection.
    pub fn set_mode(&self, mode: Mode) {
        self.inner.mode.send_replace(mode);
        if mode == Mode::Down {
            self.drop_connections();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.drop_connections();
    }
}

/// One proxied connection: forwards both ways until either side closes or the task is aborted
/// (which drops, and so closes, both sockets).
async fn serve(client: TcpStream, upstream: SocketAddr, mode: watch::Receiver<Mode>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::select! {
        () = pump(cr, sw, mode.clone()) => {}
        () = pump(sr, cw, mode) => {}
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Stalled: neither read nor write until traffic flows again (or the proxy goes down).
        let Ok(m) = mode.wait_for(|m| *m != Mode::Stalled).await.map(|m| *m) else {
            return;
        };
        if m == Mode::Down {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // A chunk read just before a stall waits for the end of the stall.
        let Ok(m) = mode.wait_for(|m| *m != Mode::Stalled).await.map(|m| *m) else {
            return;
        };
        if m == Mode::Down || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

//! A server on its own thread, for in-process use by the demo and tests.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

use actix_web::dev::ServerHandle;

use super::http::serve;
use super::store::Store;

/// A server running on a dedicated thread with its own `actix_rt::System`.
/// Dropping it stops the server (without waiting for requests in flight)
/// and joins the thread.
pub struct RunningServer {
    addr: SocketAddr,
    store: Store,
    handle: ServerHandle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

/// Opens `data_dir` and serves it on `addr` (use port 0 for any free port)
/// from a new thread.
pub fn spawn(
    data_dir: impl AsRef<Path>,
    addr: impl ToSocketAddrs,
) -> std::io::Result<RunningServer> {
    let store = Store::open(data_dir).map_err(std::io::Error::other)?;
    spawn_store(store, addr)
}

/// Serves `store` on `addr` from a new thread.
pub fn spawn_store(store: Store, addr: impl ToSocketAddrs) -> std::io::Result<RunningServer> {
    let listener = TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    let (handle_tx, handle_rx) = mpsc::channel();
    let served = store.clone();
    let thread = std::thread::Builder::new()
        .name(format!("cdx-server {addr}"))
        .spawn(move || {
            actix_rt::System::new().block_on(async move {
                let server = serve(served, listener)?;
                let _ = handle_tx.send(server.handle());
                server.await
            })
        })?;
    match handle_rx.recv() {
        Ok(handle) => Ok(RunningServer {
            addr,
            store,
            handle,
            thread: Some(thread),
        }),
        // The thread ended before it could start the server: report why.
        Err(_) => Err(match thread.join() {
            Ok(Err(e)) => e,
            _ => std::io::Error::other("the server thread ended before it started"),
        }),
    }
}

impl RunningServer {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the base URL for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The store the server serves; publishing through it wakes long polls
    /// at once.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stops the server and waits for its thread.
    pub fn stop(mut self) -> std::io::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> std::io::Result<()> {
        // The stop command is sent at once; its future only reports completion.
        let _stopping = self.handle.stop(false);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(std::io::Error::other("the server thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "stopping the server");
        }
    }
}

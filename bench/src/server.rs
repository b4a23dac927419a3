//! Hyper wiring: the accept loop, one HTTP/1.1 connection per task, and the
//! control that lets a request abort its connection with a TCP RST.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::handler;
use crate::state::State;

/// Lets a request (or its body) reset the connection it arrived on.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnControl {
    reset: Arc<Notify>,
}

impl ConnControl {
    /// Asks the connection task to drop the connection with SO_LINGER 0.
    pub(crate) fn reset(&self) {
        self.reset.notify_one();
    }

    async fn reset_requested(&self) {
        self.reset.notified().await;
    }
}

/// Accepts connections until the task is aborted; aborting it also ends
/// every connection it serves.
pub(crate) async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    state.count_connection();
                    connections.spawn(serve_connection(stream, Arc::clone(&state)));
                }
                // Out of file descriptors or similar: back off briefly.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Serves one connection; resets it with an RST when a request asks to.
async fn serve_connection(stream: TcpStream, state: Arc<State>) {
    // A second descriptor for the socket keeps it open after hyper drops its
    // stream, so that SO_LINGER 0 can be set before the last close.
    let Ok((stream, socket)) = with_spare_descriptor(stream) else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let control = ConnControl::default();
    let service_control = control.clone();
    let service = service_fn(move |request| handler::handle(Arc::clone(&state), service_control.clone(), request));
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let reset = tokio::select! {
        _ = connection => false,
        () = control.reset_requested() => true,
    };
    if reset {
        let _ = socket2::SockRef::from(&socket).set_linger(Some(Duration::ZERO));
    }
    drop(socket);
}

fn with_spare_descriptor(stream: TcpStream) -> io::Result<(TcpStream, std::net::TcpStream)> {
    let stream = stream.into_std()?;
    let spare = stream.try_clone()?;
    Ok((TcpStream::from_std(stream)?, spare))
}

//! What a PostgreSQL server receives: a proxy on 127.0.0.1 between the
//! client and the server that counts the statements passing through it,
//! each simple `Query` message and each `Execute` of the extended protocol
//! (a prepared statement run once), and the waits for the server (`Sync`
//! and `Query`: sqlx also syncs once when a connection goes back to its pool).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy counted so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// `Query` and `Execute` messages: statements the server runs.
    pub statements: u64,
    /// `Query` and `Sync` messages: times the client waits for the server.
    pub syncs: u64,
}

impl std::ops::Sub for Counts {
    type Output = Self;

    fn sub(self, before: Self) -> Self {
        Self { statements: self.statements - before.statements, syncs: self.syncs - before.syncs }
    }
}

/// A counting proxy to one server, until dropped.
pub struct Counting {
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    statements: Arc<AtomicU64>,
    syncs: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Counting {
    /// Listens on a free port of 127.0.0.1, forwarding to `upstream`
    /// (`host:port`). Clients must not ask for TLS (`sslmode=disable`): the
    /// proxy reads the plain protocol.
    ///
    /// # Panics
    /// When no port is free.
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let port = listener.local_addr().expect("an address").port();
        let (statements, syncs) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let counters = (Arc::clone(&statements), Arc::clone(&syncs));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else { continue };
                tokio::spawn(relay(client, server, counters.clone()));
            }
        });
        Self { port, statements, syncs, task }
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        Counts { statements: self.statements.load(Ordering::SeqCst), syncs: self.syncs.load(Ordering::SeqCst) }
    }
}

/// The server's answers go back as they are; the client's messages are
/// read one by one, counted and forwarded.
async fn relay(client: TcpStream, server: TcpStream, counters: (Arc<AtomicU64>, Arc<AtomicU64>)) {
    let (from_client, mut to_client) = client.into_split();
    let (mut from_server, to_server) = server.into_split();
    let answers = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
    });
    let _ = forward(from_client, to_server, counters).await;
    answers.abort();
}

/// Forwards the client's messages until either side closes.
async fn forward(
    mut from_client: OwnedReadHalf,
    mut to_server: OwnedWriteHalf,
    (statements, syncs): (Arc<AtomicU64>, Arc<AtomicU64>),
) -> std::io::Result<()> {
    // Untyped messages until the startup message: SSL or GSS requests, then it.
    loop {
        let message = read(&mut from_client, None).await?;
        to_server.write_all(&message).await?;
        let code = message.get(4..8).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
        if !matches!(code, Some(80_877_103 | 80_877_104)) {
            break;
        }
    }
    loop {
        let mut kind = [0u8; 1];
        from_client.read_exact(&mut kind).await?;
        let message = read(&mut from_client, Some(kind[0])).await?;
        match kind[0] {
            b'Q' => {
                statements.fetch_add(1, Ordering::SeqCst);
                syncs.fetch_add(1, Ordering::SeqCst);
            }
            b'E' => {
                statements.fetch_add(1, Ordering::SeqCst);
            }
            b'S' => {
                syncs.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
        to_server.write_all(&message).await?;
    }
}

/// One message: its type byte (if it has one), its length, its body.
async fn read(from: &mut OwnedReadHalf, kind: Option<u8>) -> std::io::Result<Vec<u8>> {
    let mut length = [0u8; 4];
    from.read_exact(&mut length).await?;
    let length = usize::try_from(u32::from_be_bytes(length)).unwrap_or(usize::MAX);
    let body = length.checked_sub(4).ok_or_else(|| std::io::Error::other("a message shorter than its length"))?;
    let mut message = Vec::with_capacity(length + 1);
    message.extend(kind);
    message.extend_from_slice(&u32::try_from(length).unwrap_or(u32::MAX).to_be_bytes());
    message.resize(message.len() + body, 0);
    let start = message.len() - body;
    from.read_exact(&mut message[start..]).await?;
    Ok(message)
}

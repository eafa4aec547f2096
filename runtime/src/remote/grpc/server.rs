//! The server: the logs of the machines registered with it, to any client
//! whose token allows them.

use super::auth::{bearer, Grant, Verifier};
use super::generated as pb;
use super::generated::event_log_server::{EventLog, EventLogServer};
use super::{wire, TransportError};
use crate::backend::Backend;
use crate::envelope::Envelope;
use crate::error::Error;
use crate::machine::Machine;
use crate::store::Store;
use crate::stream::reader::Reader;
use crate::stream::{Position, Start, StreamOptions};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tonic::transport::server::TcpIncoming;
use tonic::transport::ServerTlsConfig;
use tonic::{Request, Response, Status};

/// A gRPC server of event logs: each registered machine's log, read
/// through its store's gap-safe stream, sent in batches to the clients
/// whose bearer token allows that machine.
///
/// - **Per stream**: the events after the client's position (or from the
///   start, or the head), catch-up in batches of up to
///   [`batch_size`](Self::batch_size), then the live tail; a heartbeat
///   after [`heartbeat`](Self::heartbeat) without events, so that idle
///   streams stay open through proxies.
/// - **Bounded memory**: a stream holds at most [`buffer`](Self::buffer)
///   batches waiting for the client (plus HTTP/2's flow-control window);
///   a client that stops reading stops the stream's reads from the
///   database until it reads again. [`Monitor::streams`] shows each
///   stream's queue.
/// - **Auth**: `authorization: Bearer <token>`, checked by a [`Verifier`]
///   ([`Tokens`](super::Tokens) for a static list): `UNAUTHENTICATED`
///   without a valid token, `PERMISSION_DENIED` for a machine outside its
///   grant, `NOT_FOUND` for a machine not served, `RESOURCE_EXHAUSTED`
///   past [`max_streams_per_client`](Self::max_streams_per_client). Tokens
///   never appear in logs or errors.
/// - **Shutdown**: when the future given to [`serve`](Self::serve)
///   completes, every stream ends (clients resume elsewhere or later from
///   their position) and the server returns once connections are closed.
///
/// ```no_run
/// # use statefold::{Machine, Sqlite, Store};
/// # #[derive(Debug, Clone, Machine)]
/// # #[machine(table = "orders")]
/// # enum Order { #[initial] Placed }
/// use statefold::remote::grpc::{Grant, Server, Tokens};
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = Store::<Order, Sqlite>::connect("sqlite:orders.db").await?;
/// let tokens = Tokens::new().token("shipping-token", Grant::new("shipping").machine("orders"));
/// let server = Server::new(tokens).register(&store);
/// // Serves until the future completes: a signal, a shutdown channel.
/// server.serve_at("127.0.0.1:50051".parse()?, std::future::pending()).await?;
/// # Ok(())
/// # }
/// ```
pub struct Server {
    config: Config,
    shared: Arc<Shared>,
}

/// What a server was built with.
struct Config {
    verifier: Arc<dyn Verifier>,
    logs: HashMap<String, Arc<dyn Log>>,
    batch: u32,
    buffer: usize,
    heartbeat: Duration,
    max_streams: usize,
    tls: Option<ServerTlsConfig>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut machines: Vec<_> = self.config.logs.keys().collect();
        machines.sort();
        f.debug_struct("Server")
            .field("machines", &machines)
            .field("batch", &self.config.batch)
            .field("buffer", &self.config.buffer)
            .field("heartbeat", &self.config.heartbeat)
            .field("max_streams", &self.config.max_streams)
            .field("tls", &self.config.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server whose clients present tokens `verifier` checks, serving no
    /// machine yet. Defaults: batches of 500, a buffer of 4 batches per
    /// stream, a heartbeat every 15 s, 16 concurrent streams per client,
    /// no TLS.
    pub fn new(verifier: impl Verifier) -> Self {
        let (closing, _) = watch::channel(false);
        Self {
            config: Config {
                verifier: Arc::new(verifier),
                logs: HashMap::new(),
                batch: 500,
                buffer: 4,
                heartbeat: Duration::from_secs(15),
                max_streams: 16,
                tls: None,
            },
            shared: Arc::new(Shared {
                closing,
                streams: Mutex::default(),
                per_client: Mutex::default(),
                next: 0.into(),
            }),
        }
    }

    /// Serves `store`'s machine under its name ([`MachineDef::name`](crate::MachineDef::name)),
    /// read with the default [`StreamOptions`].
    #[must_use]
    pub fn register<M: Machine, B: Backend>(self, store: &Store<M, B>) -> Self {
        self.register_as(M::DEF.name, store, StreamOptions::default())
    }

    /// Serves `store`'s machine under `name`, read as `options` say (its
    /// poll interval, gap settings and wake-ups: `listen(true)` wakes the
    /// server's streams on PostgreSQL `NOTIFY` from writers in other
    /// processes; the batch size is the server's).
    #[must_use]
    pub fn register_as<M: Machine, B: Backend>(
        mut self,
        name: impl Into<String>,
        store: &Store<M, B>,
        options: StreamOptions,
    ) -> Self {
        let log = Served { store: store.clone(), options, reader: tokio::sync::Mutex::new(None) };
        self.config.logs.insert(name.into(), Arc::new(log));
        self
    }

    /// Sends at most `n` events per message (at least 1); a client may ask for fewer.
    #[must_use]
    pub fn batch_size(mut self, n: u32) -> Self {
        self.config.batch = n.max(1);
        self
    }

    /// Holds at most `batches` messages per stream waiting for a slow
    /// client (at least 1): the bound on a stream's memory, beside
    /// HTTP/2's window and the store stream's two batches.
    #[must_use]
    pub fn buffer(mut self, batches: usize) -> Self {
        self.config.buffer = batches.max(1);
        self
    }

    /// Sends a heartbeat after this long without events.
    #[must_use]
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.config.heartbeat = every;
        self
    }

    /// Refuses a client (by its grant's name) more than `n` streams at once
    /// with `RESOURCE_EXHAUSTED`.
    #[must_use]
    pub fn max_streams_per_client(mut self, n: usize) -> Self {
        self.config.max_streams = n;
        self
    }

    /// Serves over TLS (rustls), e.g.
    /// `ServerTlsConfig::new().identity(Identity::from_pem(cert, key))`.
    #[must_use]
    pub fn tls(mut self, tls: ServerTlsConfig) -> Self {
        self.config.tls = Some(tls);
        self
    }

    /// What the server's streams are doing, while it serves.
    pub fn monitor(&self) -> Monitor {
        Monitor { shared: Arc::clone(&self.shared) }
    }

    /// Listens on `addr` and serves until `shutdown` completes.
    ///
    /// # Errors
    /// [`TransportError`] when the address cannot be bound, the TLS
    /// configuration is refused, or the server fails.
    pub async fn serve_at(
        self,
        addr: SocketAddr,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), TransportError> {
        let listener = TcpListener::bind(addr).await.map_err(TransportError::Bind)?;
        self.serve(listener, shutdown).await
    }

    /// Serves the connections of `listener` until `shutdown` completes:
    /// then every stream ends, and this returns once the connections have
    /// closed.
    ///
    /// # Errors
    /// As [`serve_at`](Self::serve_at).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), TransportError> {
        let Self { mut config, shared } = self;
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = config.tls.take() {
            builder = builder.tls_config(tls)?;
        }
        let closing = shared.closing.clone();
        let service = Service { config: Arc::new(config), shared };
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let signal = async move {
            shutdown.await;
            // Ends every stream: the connections can then close.
            closing.send_replace(true);
        };
        builder.add_service(EventLogServer::new(service)).serve_with_incoming_shutdown(incoming, signal).await?;
        Ok(())
    }
}

/// A view of a running server's streams.
#[derive(Clone)]
pub struct Monitor {
    shared: Arc<Shared>,
}

impl fmt::Debug for Monitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitor").field("streams", &self.streams().len()).finish()
    }
}

impl Monitor {
    /// The streams open now.
    pub fn streams(&self) -> Vec<StreamStats> {
        let streams = self.shared.streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut stats: Vec<_> = streams.iter().map(|(id, stream)| stream.stats(*id)).collect();
        stats.sort_by_key(|s| s.id);
        stats
    }
}

/// One open stream, as [`Monitor::streams`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamStats {
    /// A number for the stream, unique in the server's life.
    pub id: u64,
    /// The machine it reads.
    pub machine: String,
    /// The client, by its grant's name.
    pub client: String,
    /// Messages waiting for the client now: at most `capacity`.
    pub queued: usize,
    /// The most messages that may wait ([`Server::buffer`]).
    pub capacity: usize,
    /// Events read from the log and queued for the client so far.
    pub events_read: u64,
    /// The last position queued.
    pub position: Position,
}

/// State shared by the server's streams and its monitor.
struct Shared {
    closing: watch::Sender<bool>,
    streams: Mutex<HashMap<u64, Arc<Live>>>,
    per_client: Mutex<HashMap<String, usize>>,
    next: AtomicU64,
}

/// One open stream's counters.
struct Live {
    machine: String,
    client: String,
    capacity: usize,
    /// Messages queued minus messages taken; briefly negative when a
    /// message is taken before its sender counted it.
    queued: AtomicIsize,
    events_read: AtomicU64,
    position: Mutex<Position>,
}

impl Live {
    fn stats(&self, id: u64) -> StreamStats {
        StreamStats {
            id,
            machine: self.machine.clone(),
            client: self.client.clone(),
            queued: usize::try_from(self.queued.load(Ordering::SeqCst)).unwrap_or(0),
            capacity: self.capacity,
            events_read: self.events_read.load(Ordering::SeqCst),
            position: *self.position.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        }
    }
}

/// A stream's place among its client's: given back, and its counters
/// removed, when the stream ends.
struct Slot {
    shared: Arc<Shared>,
    client: String,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_client = self.shared.per_client.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = per_client.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_client.remove(&self.client);
            }
        }
        drop(per_client);
        self.shared.streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.id);
    }
}

impl Shared {
    /// A slot for a new stream of `client`, unless it has `max` already.
    fn slot(self: &Arc<Self>, client: &str, max: usize, live: Arc<Live>) -> Option<Slot> {
        let mut per_client = self.per_client.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = per_client.entry(client.to_owned()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        drop(per_client);
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        self.streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id, live);
        Some(Slot { shared: Arc::clone(self), client: client.to_owned(), id })
    }
}

/// A registered machine's log, whatever its machine and backend.
trait Log: Send + Sync + 'static {
    /// The log's events from `start`, in batches of up to `batch`.
    fn subscribe(&self, start: Start, batch: u32) -> BoxStream<'static, Result<Vec<pb::Event>, Error>>;

    /// A position after which nothing committed from now on is missed.
    fn head(&self) -> BoxFuture<'_, Result<Position, Error>>;

    /// Where the log ends, and what follows `after`.
    fn describe(&self, after: Position, count: bool) -> BoxFuture<'_, Result<pb::DescribeResponse, Error>>;
}

struct Served<M: Machine, B: Backend> {
    store: Store<M, B>,
    options: StreamOptions,
    /// The reader that answers [`Log::describe`], opened on first use.
    reader: tokio::sync::Mutex<Option<Reader<M, B>>>,
}

impl<M: Machine, B: Backend> Log for Served<M, B> {
    fn subscribe(&self, start: Start, batch: u32) -> BoxStream<'static, Result<Vec<pb::Event>, Error>> {
        let options = self.options.clone().batch_size(batch);
        self.store
            .stream_with(start, options)
            .ready_chunks(batch as usize)
            .flat_map(|chunk| futures::stream::iter(batches(chunk)))
            .boxed()
    }

    fn head(&self) -> BoxFuture<'_, Result<Position, Error>> {
        self.store.head().boxed()
    }

    fn describe(&self, after: Position, count: bool) -> BoxFuture<'_, Result<pb::DescribeResponse, Error>> {
        async move {
            let mut reader = self.reader.lock().await;
            if reader.is_none() {
                let options = self.options.clone().listen(false);
                *reader = Some(Reader::open(self.store.clone(), options, Start::Beginning, "").await?);
            }
            let Some(reader) = reader.as_mut() else { unreachable!("opened above") };
            reader.check(after)?;
            let end = reader.end().await?;
            let first_after = reader.first_after(after).await?;
            let count_after = if count { reader.count_after(after).await? } else { 0 };
            Ok(pb::DescribeResponse {
                end: end.map(|(position, _)| wire::position(position)),
                end_unix_nanos: end.map_or(0, |(_, at)| wire::nanos(at)),
                first_after_unix_nanos: first_after.map(wire::nanos),
                count_after,
            })
        }
        .boxed()
    }
}

/// Events read together, as messages: the ones before an error, then the error.
fn batches<M: Machine>(chunk: Vec<Result<Envelope<M>, Error>>) -> Vec<Result<Vec<pb::Event>, Error>> {
    let mut events = Vec::with_capacity(chunk.len());
    for item in chunk {
        match item.and_then(|envelope| wire::event(&envelope)) {
            Ok(event) => events.push(event),
            Err(error) => {
                let mut out = Vec::with_capacity(2);
                if !events.is_empty() {
                    out.push(Ok(events));
                }
                out.push(Err(error));
                return out;
            }
        }
    }
    vec![Ok(events)]
}

/// The tonic service.
struct Service {
    config: Arc<Config>,
    shared: Arc<Shared>,
}

type Responses = Pin<Box<dyn Stream<Item = Result<pb::SubscribeResponse, Status>> + Send>>;

impl Service {
    /// The grant of the request's token, if it may read `machine`, and the machine's log.
    async fn authorize<T>(&self, request: &Request<T>, machine: &str) -> Result<(Grant, Arc<dyn Log>), Status> {
        let token = request.metadata().get("authorization").and_then(|value| value.to_str().ok()).and_then(bearer);
        let Some(token) = token else {
            return Err(Status::unauthenticated("missing bearer token: send `authorization: Bearer <token>`"));
        };
        let Some(grant) = self.config.verifier.verify(token).await else {
            tracing::warn!(machine, "gRPC call refused: unknown token");
            return Err(Status::unauthenticated("unknown bearer token"));
        };
        if !grant.allows(machine) {
            tracing::warn!(client = grant.name(), machine, "gRPC call refused: machine not granted");
            return Err(Status::permission_denied(format!(
                "client `{}` may not read machine `{machine}`",
                grant.name()
            )));
        }
        let log = self
            .config
            .logs
            .get(machine)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("machine `{machine}` is not served here")))?;
        Ok((grant, log))
    }
}

#[tonic::async_trait]
impl EventLog for Service {
    type SubscribeStream = Responses;

    async fn subscribe(&self, request: Request<pb::SubscribeRequest>) -> Result<Response<Responses>, Status> {
        let machine = request.get_ref().machine.clone();
        let (grant, log) = self.authorize(&request, &machine).await?;
        let request = request.into_inner();
        let start = match request.start {
            None | Some(pb::subscribe_request::Start::Beginning(_)) => Start::Beginning,
            Some(pb::subscribe_request::Start::After(after)) => Start::After(wire::from_position(Some(after))),
            Some(pb::subscribe_request::Start::Head(_)) => Start::Head,
        };
        let batch = match request.max_batch {
            0 => self.config.batch,
            n => n.min(self.config.batch),
        };
        let capacity = self.config.buffer;
        let live = Arc::new(Live {
            machine: machine.clone(),
            client: grant.name().to_owned(),
            capacity,
            queued: 0.into(),
            events_read: 0.into(),
            position: Mutex::new(Position::START),
        });
        let slot = self.shared.slot(grant.name(), self.config.max_streams, Arc::clone(&live)).ok_or_else(|| {
            Status::resource_exhausted(format!(
                "client `{}` has {} streams open, the most it may: close one, or raise the server's limit",
                grant.name(),
                self.config.max_streams
            ))
        })?;
        tracing::info!(client = grant.name(), machine, ?start, "gRPC stream opened");
        let (sender, receiver) = mpsc::channel(capacity);
        let producer = Producer {
            log,
            live: Arc::clone(&live),
            sender,
            closing: self.shared.closing.subscribe(),
            heartbeat: self.config.heartbeat,
            _slot: slot,
        };
        tokio::spawn(producer.run(start, batch));
        let responses = futures::stream::unfold((receiver, live), |(mut receiver, live)| async move {
            let message = receiver.recv().await?;
            live.queued.fetch_sub(1, Ordering::SeqCst);
            Some((message, (receiver, live)))
        });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn describe(&self, request: Request<pb::DescribeRequest>) -> Result<Response<pb::DescribeResponse>, Status> {
        let machine = request.get_ref().machine.clone();
        let (_, log) = self.authorize(&request, &machine).await?;
        let request = request.into_inner();
        let after = wire::from_position(request.after);
        log.describe(after, request.count).await.map(Response::new).map_err(status)
    }
}

/// Reads one stream's events into its bounded queue.
struct Producer {
    log: Arc<dyn Log>,
    live: Arc<Live>,
    sender: mpsc::Sender<Result<pb::SubscribeResponse, Status>>,
    closing: watch::Receiver<bool>,
    heartbeat: Duration,
    _slot: Slot,
}

impl Producer {
    async fn run(mut self, start: Start, batch: u32) {
        // The head is fixed first, and told the client in a heartbeat: a
        // client that resumes before any event still resumes from there.
        let start = match start {
            Start::Head => match self.log.head().await {
                Ok(head) => Start::After(head),
                Err(error) => {
                    self.send(Err(status(error))).await;
                    return;
                }
            },
            start => start,
        };
        let mut position = match start {
            Start::After(position) => position,
            _ => Position::START,
        };
        if !self.send(Ok(heartbeat(position))).await {
            return;
        }
        let mut events = self.log.subscribe(start, batch);
        loop {
            let next = tokio::select! {
                biased;
                _ = self.closing.wait_for(|closing| *closing) => break,
                () = self.sender.closed() => break,
                next = tokio::time::timeout(self.heartbeat, events.next()) => next,
            };
            let message = match next {
                Err(_idle) => Ok(heartbeat(position)),
                Ok(None) => break,
                Ok(Some(Ok(batch))) => {
                    position = wire::from_position(batch.last().and_then(|event| event.position));
                    self.live.events_read.fetch_add(batch.len() as u64, Ordering::SeqCst);
                    *self.live.position.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = position;
                    Ok(pb::SubscribeResponse {
                        message: Some(pb::subscribe_response::Message::Batch(pb::Batch { events: batch })),
                    })
                }
                Ok(Some(Err(error))) => {
                    tracing::warn!(client = %self.live.client, machine = %self.live.machine, %error, "gRPC stream failed");
                    self.send(Err(status(error))).await;
                    break;
                }
            };
            if !self.send(message).await {
                break;
            }
        }
        tracing::info!(client = %self.live.client, machine = %self.live.machine, %position, "gRPC stream closed");
    }

    /// Queues a message, waiting while the queue is full; `false` when the
    /// client left or the server is closing.
    async fn send(&mut self, message: Result<pb::SubscribeResponse, Status>) -> bool {
        let sent = tokio::select! {
            biased;
            _ = self.closing.wait_for(|closing| *closing) => false,
            sent = self.sender.send(message) => sent.is_ok(),
        };
        if sent {
            // Counted once queued: the count never exceeds what the queue holds.
            self.live.queued.fetch_add(1, Ordering::SeqCst);
        }
        sent
    }
}

fn heartbeat(position: Position) -> pb::SubscribeResponse {
    pb::SubscribeResponse {
        message: Some(pb::subscribe_response::Message::Heartbeat(pb::Heartbeat {
            position: Some(wire::position(position)),
        })),
    }
}

/// An error of the server's store, as the client sees it.
fn status(error: Error) -> Status {
    let message = error.to_string();
    match error {
        Error::InvalidPosition { .. } => Status::invalid_argument(message),
        Error::Decode { .. } | Error::CorruptRow { .. } | Error::Encode { .. } => Status::data_loss(message),
        Error::MissingTable { .. } | Error::SchemaMismatch { .. } | Error::PrivilegeRequired { .. } => {
            Status::failed_precondition(message)
        }
        _ => Status::unavailable(message),
    }
}

//! The client: another service's log as a stream of the same envelopes,
//! and as a [`Source`] for consumers.

use super::generated as pb;
use super::generated::event_log_client::EventLogClient;
use super::wire;
use crate::envelope::Envelope;
use crate::error::Error;
use crate::machine::Machine;
use crate::stream::{Backoff, EventStream, Feed, Position, Source, Start, StreamOptions};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status, Streaming};

/// The largest message a client accepts: a batch of large events.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// A client of a [`Server`](super::Server): another service's machine logs
/// as [`EventStream`]s of the same [`Envelope`]s a local store gives, typed
/// by the same `#[derive(Machine)]` declaration (share it as a crate), and
/// as a [`Source`] for [`Consumer::with_source`](crate::Consumer::with_source).
///
/// Cheap to clone: clones share one HTTP/2 connection, opened on first use
/// and reopened as needed. Streams resume from their last position after a
/// disconnect, waiting [`Backoff`] between attempts; a refused token or an
/// unknown machine ends them with [`Error::Remote`].
///
/// ```no_run
/// # use statefold::Machine;
/// # #[derive(Debug, Clone, Machine)]
/// # #[machine(table = "orders")]
/// # enum Order { #[initial] Placed }
/// use futures::StreamExt;
/// use statefold::remote::grpc::Client;
/// use statefold::Start;
/// # #[tokio::main]
/// # async fn main() -> Result<(), statefold::Error> {
/// let client = Client::builder("http://127.0.0.1:50051").token("shipping-token").build()?;
/// let mut orders = client.stream::<Order>(Start::Beginning);
/// while let Some(envelope) = orders.next().await {
///     let envelope = envelope?;
///     println!("{} {} {}", envelope.position, envelope.record_id, envelope.to);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    channel: Channel,
    endpoint: String,
    token: Option<MetadataValue<Ascii>>,
    backoff: Backoff,
    batch: u32,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.inner.endpoint)
            .field("token", &self.inner.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// How a [`Client`] connects: see [`Client::builder`].
pub struct ClientBuilder {
    endpoint: String,
    token: Option<String>,
    tls: Option<ClientTlsConfig>,
    backoff: Backoff,
    batch: u32,
    connect_timeout: Duration,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the server at `endpoint` (`http://host:port`, or
    /// `https://..` with [`tls`](ClientBuilder::tls)).
    pub fn builder(endpoint: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            endpoint: endpoint.into(),
            token: None,
            tls: None,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(10)),
            batch: 0,
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// `M`'s log, registered on the server under `M`'s name, from `start`:
    /// batched catch-up, then the live tail, resuming after its last
    /// position when the connection drops (waiting the backoff between
    /// attempts, as long as it takes). An item is an error, and the last,
    /// when the server refuses the token or the machine, or an event does
    /// not decode.
    pub fn stream<M: Machine>(&self, start: Start) -> EventStream<M> {
        self.stream_of(M::DEF.name, start)
    }

    /// As [`stream`](Self::stream), for the machine registered as `machine`.
    pub fn stream_of<M: Machine>(&self, machine: &str, start: Start) -> EventStream<M> {
        let mut feed = RemoteFeed::new(self.clone(), machine.to_owned(), self.inner.batch);
        if let Start::After(position) = start {
            feed.cursor = position;
        }
        let follow = Follow { feed, start, known: start != Start::Head, failures: 0, done: false };
        EventStream::from_items(futures::stream::unfold(follow, Follow::next).boxed())
    }

    /// `M`'s log, registered under `M`'s name, as a [`Source`] for
    /// [`Consumer::with_source`](crate::Consumer::with_source).
    pub fn source<M: Machine>(&self) -> GrpcSource<M> {
        self.source_of(M::DEF.name)
    }

    /// As [`source`](Self::source), for the machine registered as `machine`.
    pub fn source_of<M: Machine>(&self, machine: &str) -> GrpcSource<M> {
        GrpcSource { client: self.clone(), machine: machine.to_owned(), machine_type: PhantomData }
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(token) = &self.inner.token {
            request.metadata_mut().insert("authorization", token.clone());
        }
        request
    }

    fn rpc(&self) -> EventLogClient<Channel> {
        EventLogClient::new(self.inner.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }

    async fn subscribe(
        &self,
        machine: &str,
        start: Start,
        batch: u32,
    ) -> Result<Streaming<pb::SubscribeResponse>, Status> {
        let start = match start {
            Start::Beginning => pb::subscribe_request::Start::Beginning(true),
            Start::After(position) => pb::subscribe_request::Start::After(wire::position(position)),
            Start::Head => pb::subscribe_request::Start::Head(true),
        };
        let request = pb::SubscribeRequest { machine: machine.to_owned(), start: Some(start), max_batch: batch };
        Ok(self.rpc().subscribe(self.request(request)).await?.into_inner())
    }

    async fn describe(&self, machine: &str, after: Position, count: bool) -> Result<pb::DescribeResponse, Error> {
        let request = pb::DescribeRequest { machine: machine.to_owned(), after: Some(wire::position(after)), count };
        let response = self.rpc().describe(self.request(request)).await;
        response.map(tonic::Response::into_inner).map_err(|status| self.failure(machine, &status))
    }

    /// A status as the error callers see.
    fn failure(&self, machine: &str, status: &Status) -> Error {
        let retryable = !matches!(
            status.code(),
            Code::Unauthenticated
                | Code::PermissionDenied
                | Code::NotFound
                | Code::InvalidArgument
                | Code::DataLoss
                | Code::Unimplemented
        );
        Error::Remote {
            machine: machine.to_owned(),
            endpoint: self.inner.endpoint.clone(),
            message: format!("{}: {}", code_name(status.code()), status.message()),
            retryable,
        }
    }
}

impl ClientBuilder {
    /// Sends `token` as `authorization: Bearer <token>` on every call.
    #[must_use]
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Connects over TLS (rustls), e.g. `ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca))`.
    #[must_use]
    pub fn tls(mut self, tls: ClientTlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Waits between attempts to resume a stream (default: 100 ms doubling up to 10 s).
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Asks for at most `n` events per message (default: the server's batch size).
    #[must_use]
    pub fn batch_size(mut self, n: u32) -> Self {
        self.batch = n;
        self
    }

    /// Gives up a connection attempt after this long (default 5 s); streams then retry.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The client. Connects on first use, not now.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] for an endpoint that is not a URL or a TLS
    /// configuration refused; [`Error::Remote`] for a token that cannot be
    /// sent in a header (visible ASCII only).
    pub fn build(self) -> Result<Client, Error> {
        let invalid = |reason: String| Error::InvalidUrl { backend: "gRPC", reason };
        let mut endpoint = Endpoint::from_shared(self.endpoint.clone())
            .map_err(|e| invalid(format!("`{}`: {e}", self.endpoint)))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        if let Some(tls) = self.tls {
            endpoint = endpoint.tls_config(tls).map_err(|e| invalid(format!("TLS: {e}")))?;
        }
        let token = match self.token {
            Some(token) => {
                let mut value = MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| Error::Remote {
                    machine: String::new(),
                    endpoint: self.endpoint.clone(),
                    message: "the token cannot be sent in a header: use visible ASCII only".to_owned(),
                    retryable: false,
                })?;
                // Never indexed by HPACK, shown as `Sensitive` by `Debug`.
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let inner = Inner {
            channel: endpoint.connect_lazy(),
            endpoint: self.endpoint,
            token,
            backoff: self.backoff,
            batch: self.batch,
        };
        Ok(Client { inner: Arc::new(inner) })
    }
}

/// A machine's log on a [`Server`](super::Server), as a [`Source`] for
/// [`Consumer::with_source`](crate::Consumer::with_source): each run of the
/// consumer subscribes after its saved cursor, and again after a
/// disconnect, with the consumer's backoff.
pub struct GrpcSource<M: Machine> {
    client: Client,
    machine: String,
    machine_type: PhantomData<fn() -> M>,
}

impl<M: Machine> fmt::Debug for GrpcSource<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcSource").field("client", &self.client).field("machine", &self.machine).finish()
    }
}

impl<M: Machine> Source<M> for GrpcSource<M> {
    fn feed(&self, _consumer: &str, options: &StreamOptions) -> Box<dyn Feed<M>> {
        Box::new(RemoteFeed::<M>::new(self.client.clone(), self.machine.clone(), options.get_batch_size()))
    }
}

/// One subscription at a time to a machine's log, from a cursor.
struct RemoteFeed<M: Machine> {
    client: Client,
    machine: String,
    batch: u32,
    cursor: Position,
    live: Option<Streaming<pb::SubscribeResponse>>,
    /// Events received after the cursor, not handed out yet.
    ready: VecDeque<Envelope<M>>,
    /// An event that does not decode, reported after the ones before it.
    pending: Option<Error>,
}

impl<M: Machine> RemoteFeed<M> {
    fn new(client: Client, machine: String, batch: u32) -> Self {
        Self { client, machine, batch, cursor: Position::START, live: None, ready: VecDeque::new(), pending: None }
    }

    fn take_ready(&mut self) -> Vec<Envelope<M>> {
        let events: Vec<_> = self.ready.drain(..).collect();
        if let Some(last) = events.last() {
            self.cursor = last.position;
        }
        events
    }

    async fn open(&mut self, start: Start) -> Result<(), Error> {
        if self.live.is_none() {
            let live = self.client.subscribe(&self.machine, start, self.batch).await;
            self.live = Some(live.map_err(|status| self.client.failure(&self.machine, &status))?);
        }
        Ok(())
    }

    /// Takes a message in: events into `ready`, a heartbeat's position
    /// (when nothing was handed out yet past it) into the cursor. `true`
    /// when events came.
    fn receive(&mut self, message: Result<Option<pb::SubscribeResponse>, Status>) -> Result<bool, Error> {
        use pb::subscribe_response::Message;
        match message {
            Ok(Some(pb::SubscribeResponse { message: Some(Message::Batch(batch)) })) => {
                for event in batch.events {
                    match wire::envelope::<M>(event) {
                        Ok(envelope) => self.ready.push_back(envelope),
                        Err(error) => {
                            self.pending = Some(error);
                            break;
                        }
                    }
                }
                Ok(true)
            }
            Ok(Some(pb::SubscribeResponse { message: Some(Message::Heartbeat(heartbeat)) })) => {
                let at = wire::from_position(heartbeat.position);
                if self.ready.is_empty() && at > self.cursor {
                    // The head the server fixed: resuming goes on from there.
                    self.cursor = at;
                }
                Ok(false)
            }
            Ok(Some(pb::SubscribeResponse { message: None })) => Ok(false),
            Ok(None) => {
                self.live = None;
                Err(Error::Remote {
                    machine: self.machine.clone(),
                    endpoint: self.client.inner.endpoint.clone(),
                    message: "the server ended the stream (shutting down)".to_owned(),
                    retryable: true,
                })
            }
            Err(status) => {
                self.live = None;
                Err(self.client.failure(&self.machine, &status))
            }
        }
    }
}

impl<M: Machine> Feed<M> for RemoteFeed<M> {
    fn seek(&mut self, after: Position) {
        if after != self.cursor {
            self.cursor = after;
            self.live = None;
            self.ready.clear();
            self.pending = None;
        }
    }

    fn cursor(&self) -> Position {
        self.cursor
    }

    fn fetch(&mut self) -> BoxFuture<'_, Result<Vec<Envelope<M>>, Error>> {
        async move {
            if !self.ready.is_empty() {
                return Ok(self.take_ready());
            }
            if let Some(error) = self.pending.take() {
                self.live = None;
                return Err(error);
            }
            self.open(Start::After(self.cursor)).await?;
            loop {
                let Some(live) = self.live.as_mut() else { return Ok(Vec::new()) };
                let Some(message) = live.message().now_or_never() else { return Ok(Vec::new()) };
                if self.receive(message)? {
                    return Ok(self.take_ready());
                }
            }
        }
        .boxed()
    }

    fn wait(&mut self, max: Duration) -> BoxFuture<'_, ()> {
        async move {
            if !self.ready.is_empty() || self.pending.is_some() {
                return;
            }
            let Some(live) = self.live.as_mut() else { return };
            if let Ok(message) = tokio::time::timeout(max, live.message()).await {
                // An error is met again by the next fetch, which reopens.
                let _ = self.receive(message);
            }
        }
        .boxed()
    }

    fn end(&mut self) -> BoxFuture<'_, Result<Option<(Position, DateTime<Utc>)>, Error>> {
        async move {
            let described = self.client.describe(&self.machine, self.cursor, false).await?;
            Ok(described.end.map(|end| (wire::from_position(Some(end)), wire::time(described.end_unix_nanos))))
        }
        .boxed()
    }

    fn first_after(&mut self, after: Position) -> BoxFuture<'_, Result<Option<DateTime<Utc>>, Error>> {
        async move {
            let described = self.client.describe(&self.machine, after, false).await?;
            Ok(described.first_after_unix_nanos.map(wire::time))
        }
        .boxed()
    }

    fn count_after(&mut self, after: Position) -> BoxFuture<'_, Result<u64, Error>> {
        async move { Ok(self.client.describe(&self.machine, after, true).await?.count_after) }.boxed()
    }
}

/// A stream that resumes: a feed, reopened after a disconnect.
struct Follow<M: Machine> {
    feed: RemoteFeed<M>,
    start: Start,
    /// Whether the feed's cursor is where to resume: from the start, or
    /// once the server told where the head it fixed is.
    known: bool,
    failures: u32,
    done: bool,
}

impl<M: Machine> Follow<M> {
    async fn next(mut self) -> Option<(Result<Envelope<M>, Error>, Self)> {
        loop {
            if let Some(envelope) = self.feed.ready.pop_front() {
                self.feed.cursor = envelope.position;
                return Some((Ok(envelope), self));
            }
            if self.done {
                return None;
            }
            if let Some(error) = self.feed.pending.take() {
                // The stream ends after it, like a local one.
                self.done = true;
                return Some((Err(error), self));
            }
            let result = match self.feed.live.as_mut() {
                None => {
                    let start = if self.known { Start::After(self.feed.cursor) } else { self.start };
                    self.feed.open(start).await
                }
                Some(live) => {
                    let message = live.message().await;
                    self.feed.receive(message).map(|_| {
                        self.known = true;
                        self.failures = 0;
                    })
                }
            };
            match result {
                Ok(()) => {}
                Err(Error::Remote { retryable: true, message, .. }) => {
                    self.failures = self.failures.saturating_add(1);
                    let delay = self.feed.client.inner.backoff.delay(self.failures);
                    tracing::warn!(
                        machine = %self.feed.machine,
                        endpoint = %self.feed.client.inner.endpoint,
                        %message,
                        position = %self.feed.cursor,
                        retry_in = ?delay,
                        "remote stream interrupted; resuming after its last position"
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(error) => {
                    self.done = true;
                    return Some((Err(error), self));
                }
            }
        }
    }
}

/// A status code's name, as the gRPC specification writes it.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

//! Event streams and consumers (Luno's reflex, gap-safe on every backend).
//!
//! - [`Store::stream`] gives a typed [`futures::Stream`] of [`Envelope`]s
//!   from any [`Start`]: batched catch-up, then the live tail. It holds at
//!   most two batches in memory whatever the backlog (the one handed out,
//!   and the next, read ahead while the first is consumed), never skips an event whose
//!   transaction commits late nor shows one that rolled back (ADR 0002:
//!   single writer on SQLite, transaction fencing on PostgreSQL, locking
//!   probes of holes on MySQL).
//! - A stream wakes up after each commit through the same store (or a
//!   clone), on PostgreSQL `NOTIFY` from other processes when asked
//!   ([`StreamOptions::listen`], [`Store::with_notifications`]), and polls
//!   every [`StreamOptions::poll_interval`] in any case.
//! - [`Consumer`] runs a [`Handler`] over a stream with a durable,
//!   forward-only cursor saved in the handler's own transaction (so an SQL
//!   projection is exactly-once), retries with backoff, filters, shards, a
//!   lease per consumer and shard across processes, dead letters, and
//!   rebuilds. [`metrics`] lists what it reports.
//! - [`Consumer::with_source`] runs the same over a log that lives
//!   elsewhere (a [`Source`], such as another service's log over gRPC),
//!   into the consumer's own database.

pub(crate) mod consumer;
pub mod metrics;
mod position;
pub(crate) mod reader;
mod source;

pub use consumer::{Backoff, Consumer, Handler, HandlerError, Projection};
pub use position::{InvalidPosition, Position, Start};
pub use source::{Feed, Source};

use crate::backend::Backend;
use crate::envelope::Envelope;
use crate::error::Error;
use crate::machine::Machine;
use crate::schema::MachineDef;
use crate::store::Store;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use reader::Reader;
use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// How a stream reads: batch size, waits, and wake-ups.
///
/// ```
/// use std::time::Duration;
/// let options = statefold::StreamOptions::default().batch_size(1_000).poll_interval(Duration::from_millis(200));
/// assert_eq!(options.get_batch_size(), 1_000);
/// ```
#[derive(Debug, Clone)]
pub struct StreamOptions {
    batch_size: u32,
    poll_interval: Duration,
    gap_retry: Duration,
    gap_grace: Duration,
    stall_warning: Duration,
    listen: bool,
}

impl Default for StreamOptions {
    /// Batches of 500, a poll every second, gaps looked at again after 20
    /// ms (doubling while they last, up to the poll interval) with a grace of
    /// 500 ms, a warning after 10 s stalled, no cross-process notifications.
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
            gap_retry: Duration::from_millis(20),
            gap_grace: Duration::from_millis(500),
            stall_warning: Duration::from_secs(10),
            listen: false,
        }
    }
}

impl StreamOptions {
    /// Reads up to `n` events at a time (at least 1). A stream holds at most
    /// two batches in memory: after a full batch, it reads the next ahead.
    #[must_use]
    pub fn batch_size(mut self, n: u32) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// The batch size.
    pub fn get_batch_size(&self) -> u32 {
        self.batch_size
    }

    /// Looks for new events at least this often, whatever wake-ups arrive:
    /// the fallback for writes from other processes without notifications.
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How soon to look again while committed events wait behind a
    /// transaction still running (a MySQL hole, the PostgreSQL fence): such
    /// a transaction may end by rolling back, which wakes no one. The wait
    /// doubles with each look while the stall lasts, up to the poll interval.
    #[must_use]
    pub fn gap_retry(mut self, interval: Duration) -> Self {
        self.gap_retry = interval;
        self
    }

    /// MySQL: how long after a hole in the ids is first seen a locking probe
    /// that finds nothing proves it permanent (a rolled-back insert) rather
    /// than an insert a few microseconds from writing its row.
    #[must_use]
    pub fn gap_grace(mut self, grace: Duration) -> Self {
        self.gap_grace = grace;
        self
    }

    /// After events have waited this long behind a transaction still
    /// running, warns (`tracing`, at most once per this long) naming the
    /// transactions they wait behind: the PostgreSQL session (`pid`) or
    /// prepared transaction holding the fence, the MySQL threads writing.
    #[must_use]
    pub fn stall_warning(mut self, after: Duration) -> Self {
        self.stall_warning = after;
        self
    }

    /// Also wakes on notifications from other processes (PostgreSQL
    /// `LISTEN`, on the one listening connection the process keeps per
    /// pool, shared by all its streams; elsewhere nothing).
    /// Writers send them when built [`with_notifications`](Store::with_notifications).
    #[must_use]
    pub fn listen(mut self, on: bool) -> Self {
        self.listen = on;
        self
    }
}

/// A typed stream of a machine's events: catch-up in batches, then the live
/// tail, forever. An item is an error when the database fails or an event
/// cannot be decoded; the stream ends after it (open a new one to go on).
///
/// ```
/// use futures::StreamExt;
/// use statefold::{Machine, Sqlite, Start, Store};
///
/// #[derive(Debug, Clone, Machine)]
/// #[machine(table = "doors")]
/// enum Door {
///     #[initial]
///     #[from(Open)]
///     Closed { who: String },
///     #[from(Closed)]
///     Open { who: String },
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), statefold::Error> {
/// let store = Store::<Door, Sqlite>::connect("sqlite::memory:").await?;
/// store.create_tables().await?;
/// let door = store.insert(DoorClosed { who: "ada".into() }).await?;
///
/// let mut events = store.stream(Start::Beginning);
/// store.apply(door.transition(DoorOpen { who: "bob".into() })).await?;
/// let first = events.next().await.unwrap()?;
/// let second = events.next().await.unwrap()?;
/// assert!(matches!(first.event, Door::Closed { .. }));
/// assert_eq!((second.from, second.to), (Some(DoorStatus::Closed), DoorStatus::Open));
/// assert!(first.position < second.position);
/// # Ok(())
/// # }
/// ```
pub struct EventStream<M: Machine> {
    inner: BoxStream<'static, Result<Envelope<M>, Error>>,
}

impl<M: Machine> fmt::Debug for EventStream<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream").field("machine", &M::DEF.name).finish_non_exhaustive()
    }
}

impl<M: Machine> EventStream<M> {
    /// A stream of these items (a remote log's, say).
    pub(crate) fn from_items(inner: BoxStream<'static, Result<Envelope<M>, Error>>) -> Self {
        Self { inner }
    }
}

impl<M: Machine> Stream for EventStream<M> {
    type Item = Result<Envelope<M>, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

/// The stream's state between items: the reader and what is left of its batch.
struct Tail<M: Machine, B: Backend> {
    reader: Option<Reader<M, B>>,
    batch: VecDeque<Envelope<M>>,
}

impl<M: Machine, B: Backend> Store<M, B> {
    /// A position after which a stream misses nothing committed from the
    /// moment this returns ([`Position::START`] for an empty log): start a
    /// stream [`After`](Start::After) it to see only what is written from
    /// now on.
    ///
    /// It may come before events already committed (they are delivered
    /// too), never after one still to commit: on PostgreSQL it is the last
    /// event below the fence of running transactions; on MySQL it is the
    /// last event, returned once every transaction that had written rows
    /// when called has ended (read from the server's list of transactions,
    /// which needs the `PROCESS` privilege). On MySQL, do not call it while
    /// holding a write transaction: it would wait for it.
    ///
    /// # Errors
    /// [`Error::Database`]; [`Error::MissingTable`] without the events table;
    /// on MySQL, [`Error::PrivilegeRequired`] without the `PROCESS`
    /// privilege, and [`Error::HeadNotSettled`] when writers keep running for 30 s.
    pub async fn head(&self) -> Result<Position, Error> {
        Reader::open(self.clone(), StreamOptions::default(), Start::Head, "").await.map(|reader| reader.cursor())
    }

    /// The machine's events from `start`, with the default [`StreamOptions`].
    ///
    /// The stream reads nothing until first polled: [`Start::Head`] is the
    /// end of the log at that moment (use [`head`](Self::head) to fix it
    /// earlier).
    pub fn stream(&self, start: Start) -> EventStream<M> {
        self.stream_with(start, StreamOptions::default())
    }

    /// The machine's events from `start`, read as `options` say.
    pub fn stream_with(&self, start: Start, options: StreamOptions) -> EventStream<M> {
        let store = self.clone();
        let opened = async move { Reader::open(store, options, start, "").await };
        let inner = futures::stream::once(opened)
            .flat_map(|reader| {
                let (reader, error) = match reader {
                    Ok(reader) => (Some(reader), None),
                    Err(error) => (None, Some(error)),
                };
                let tail = Tail { reader, batch: VecDeque::new() };
                futures::stream::iter(error.map(Err)).chain(futures::stream::unfold(tail, next))
            })
            .boxed();
        EventStream { inner }
    }
}

/// The stream's next item: from the batch, else from the next batch read,
/// waiting for commits as long as it takes.
async fn next<M: Machine, B: Backend>(mut tail: Tail<M, B>) -> Option<(Result<Envelope<M>, Error>, Tail<M, B>)> {
    loop {
        if let Some(envelope) = tail.batch.pop_front() {
            return Some((Ok(envelope), tail));
        }
        let reader = tail.reader.as_mut()?;
        match reader.fetch().await {
            Ok(batch) if batch.is_empty() => reader.wait(Duration::MAX).await,
            Ok(batch) => tail.batch = batch.into(),
            Err(error) => {
                tail.reader = None;
                return Some((Err(error), tail));
            }
        }
    }
}

/// The PostgreSQL channel of a machine's wake-ups (at most 63 bytes, as
/// PostgreSQL truncates identifiers).
pub(crate) fn channel(def: &MachineDef) -> String {
    let mut channel = format!("statefold_{}", def.events_table);
    let mut end = channel.len().min(63);
    while !channel.is_char_boundary(end) {
        end -= 1;
    }
    channel.truncate(end);
    channel
}

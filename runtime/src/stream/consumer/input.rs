//! Where a consumer's run reads its events: its store's own log, or a
//! [`Source`](crate::stream::Source) elsewhere, behind the same calls.

use crate::backend::Backend;
use crate::envelope::Envelope;
use crate::error::Error;
use crate::machine::Machine;
use crate::stream::position::Position;
use crate::stream::reader::Reader;
use crate::stream::Feed;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// A run's reader: the store's log, or a remote source's feed.
// One per run of a consumer: the local reader is not worth a box.
#[allow(clippy::large_enum_variant)]
pub(super) enum Input<M: Machine, B: Backend> {
    Local(Reader<M, B>),
    Remote(Box<dyn Feed<M>>),
}

impl<M: Machine, B: Backend> Input<M, B> {
    pub(super) fn cursor(&self) -> Position {
        match self {
            Self::Local(reader) => reader.cursor(),
            Self::Remote(feed) => feed.cursor(),
        }
    }

    pub(super) fn seek(&mut self, position: Position) {
        match self {
            Self::Local(reader) => reader.seek(position),
            Self::Remote(feed) => feed.seek(position),
        }
    }

    pub(super) async fn fetch(&mut self) -> Result<Vec<Envelope<M>>, Error> {
        match self {
            Self::Local(reader) => reader.fetch().await,
            Self::Remote(feed) => feed.fetch().await,
        }
    }

    pub(super) async fn wait(&mut self, max: Duration) {
        match self {
            Self::Local(reader) => reader.wait(max).await,
            Self::Remote(feed) => feed.wait(max).await,
        }
    }

    pub(super) async fn end(&mut self) -> Result<Option<(Position, DateTime<Utc>)>, Error> {
        match self {
            Self::Local(reader) => reader.end().await,
            Self::Remote(feed) => feed.end().await,
        }
    }

    pub(super) async fn first_after(&mut self, after: Position) -> Result<Option<DateTime<Utc>>, Error> {
        match self {
            Self::Local(reader) => reader.first_after(after).await,
            Self::Remote(feed) => feed.first_after(after).await,
        }
    }

    pub(super) async fn count_after(&mut self, after: Position) -> Result<u64, Error> {
        match self {
            Self::Local(reader) => reader.count_after(after).await,
            Self::Remote(feed) => feed.count_after(after).await,
        }
    }
}

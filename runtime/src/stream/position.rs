//! Positions in a machine's event log, and the envelopes delivered at them.

use std::fmt;
use std::str::FromStr;

/// Where an event sits in its machine's log, in the order streams deliver
/// events: opaque, totally ordered, and what consumer cursors store.
///
/// On PostgreSQL it is the pair (writing transaction, event id), since
/// streams deliver whole transactions in the order they became visible (see
/// ADR 0002); elsewhere it is the event id. Its text form (`Display`,
/// `FromStr`, and serde, as a string) is `tx:id` on PostgreSQL and `id`
/// elsewhere, and parses back.
///
/// A position cannot be misread: a stream refuses to start after a position
/// of another backend's form ([`Error::InvalidPosition`](crate::Error::InvalidPosition)),
/// so an id alone (`"42"`) given to a PostgreSQL stream is an error, not a
/// replay of the whole log.
///
/// ```
/// use statefold::Position;
/// let after: Position = "42".parse().unwrap();
/// assert_eq!((after.tx(), after.id()), (0, 42));
/// assert!(Position::START < after);
/// let pg: Position = "7:3".parse().unwrap();
/// assert_eq!((pg.tx(), pg.id(), pg.to_string()), (7, 3, "7:3".to_owned()));
/// assert_eq!(serde_json::to_string(&pg).unwrap(), r#""7:3""#);
/// assert_eq!(serde_json::from_str::<Position>(r#""7:3""#).unwrap(), pg);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    tx: i64,
    id: i64,
}

impl Position {
    /// Before every event.
    pub const START: Self = Self { tx: 0, id: 0 };

    pub(crate) const fn new(tx: i64, id: i64) -> Self {
        Self { tx, id }
    }

    /// The event's id in the events table (its `id` column).
    pub const fn id(self) -> i64 {
        self.id
    }

    /// The writing transaction's id on PostgreSQL; 0 elsewhere.
    pub const fn tx(self) -> i64 {
        self.tx
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tx == 0 {
            write!(f, "{}", self.id)
        } else {
            write!(f, "{}:{}", self.tx, self.id)
        }
    }
}

/// Text that is not a [`Position`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a stream position: expected `id` or `tx:id`, non-negative integers")]
pub struct InvalidPosition(String);

impl FromStr for Position {
    type Err = InvalidPosition;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let number = |part: &str| part.parse::<i64>().ok().filter(|n| *n >= 0);
        let parsed = match text.split_once(':') {
            Some((tx, id)) => number(tx).zip(number(id)),
            None => number(text).map(|id| (0, id)),
        };
        parsed.map(|(tx, id)| Self { tx, id }).ok_or_else(|| InvalidPosition(text.to_owned()))
    }
}

impl serde::Serialize for Position {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Position {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// With the first event of the log.
    Beginning,
    /// With the first event after this position (a saved cursor).
    After(Position),
    /// With the first event appended after the log's current end.
    Head,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_transaction_then_id_and_round_trip_as_text() {
        let (a, b, c) = (Position::new(5, 9), Position::new(6, 2), Position::new(0, 10));
        assert!(c < a && a < b);
        for p in [a, b, c, Position::START] {
            assert_eq!(p.to_string().parse::<Position>(), Ok(p));
        }
        for bad in ["", "x", "-1", "1:", ":2", "1:2:3"] {
            assert!(bad.parse::<Position>().is_err(), "{bad}");
        }
    }
}

//! given / when / then for machines: given a record's history, when a
//! transition (typed or dynamic), then these events and this state, or
//! this error. Pure, or against a store.

use super::diff;
use crate::backend::Backend;
use crate::error::Error;
use crate::fold::Fold;
use crate::machine::{Event, Machine, Metadata, Record, Row, RowHeader, Status, Transition};
use crate::store::Store;
use crate::value::{Column, Value};
use chrono::{DateTime, Utc};
use std::fmt::{self, Debug};

/// Starts a scenario: a record whose history is `events`, oldest first
/// (the first in an `#[initial]` state, each next along a declared edge).
/// An empty history is a record not created yet: the scenario's `when` then
/// creates it.
///
/// ```
/// use statefold::testing::given;
/// use statefold::{Error, Machine, Record};
///
/// #[derive(Machine, Clone, Debug, PartialEq)]
/// enum Door {
///     #[initial]
///     #[from(Open)]
///     Closed { who: String },
///     #[from(Closed)]
///     Open { who: String },
/// }
///
/// // Given a closed door, when opened (typed), then one event and the door is open.
/// given([Door::Closed { who: "ada".into() }])
///     .when(|door: Record<Door, DoorClosed>| door.transition(DoorOpen { who: "bob".into() }))
///     .then([Door::Open { who: "bob".into() }])
///     .state(DoorStatus::Open)
///     .row(|row| assert_eq!((row.who.as_str(), row.version), ("bob", 2)));
///
/// // When opened again (dynamic, say from a request), then the typed error.
/// given([Door::Closed { who: "ada".into() }, Door::Open { who: "bob".into() }])
///     .when_dynamic(Door::Open { who: "eve".into() })
///     .then_error(|e| matches!(e, Error::InvalidTransition { from: "Open", to: "Open", .. }));
/// ```
pub fn given<M: Machine>(events: impl IntoIterator<Item = M>) -> Given<M> {
    Given { history: events.into_iter().collect(), id: None }
}

/// A record's history, waiting for its `when` ([`given`]).
#[must_use = "a scenario does nothing until its `when` and `then`"]
pub struct Given<M: Machine> {
    history: Vec<M>,
    id: Option<M::Id>,
}

impl<M: Machine> Given<M> {
    /// The record's key. Needed for machines whose keys callers supply
    /// (`#[machine(id = ..)]`) unless they are integers or `String`, whose
    /// default is `1`; ignored against a store for machines whose keys the
    /// database assigns.
    pub fn with_id(mut self, id: M::Id) -> Self {
        self.id = Some(id);
        self
    }

    /// When a typed transition: `command` receives the record, typed in the
    /// state its history ends in (its parameter's type names that state:
    /// `|order: Record<Order, OrderPaid>| ..`), and returns the transition.
    ///
    /// # Panics
    /// (When the scenario runs.) When the history is empty or ends in
    /// another state than the one `command` takes.
    pub fn when<S, E>(self, command: impl FnOnce(Record<M, S>) -> Transition<M, E> + Send + 'static) -> When<M>
    where
        S: Event<Machine = M>,
        E: Event<Machine = M>,
    {
        let command = Command::Typed {
            state: S::STATUS,
            run: Box::new(move |row| {
                let transition = command(Record::__from_row(row));
                Step {
                    from: transition.from,
                    version: transition.version,
                    event: transition.event.into(),
                    metadata: transition.metadata,
                }
            }),
        };
        When { history: self.history, id: self.id, command }
    }

    /// When a transition known only at run time (a value of the machine's
    /// enum, as `Store::transition` takes); after an empty history, an
    /// insert (as `Store::insert_dynamic`).
    pub fn when_dynamic(self, event: M) -> When<M> {
        When { history: self.history, id: self.id, command: Command::Dynamic(event, Metadata::new()) }
    }
}

/// A transition's outcome, as one [`Step`] of a typed command.
struct Step<M: Machine> {
    from: M::Status,
    version: i64,
    event: M,
    metadata: Metadata,
}

enum Command<M: Machine> {
    Typed { state: M::Status, run: Box<dyn FnOnce(M::Row) -> Step<M> + Send> },
    Dynamic(M, Metadata),
}

/// A scenario with its `when`: run it purely with [`then`](When::then) or
/// [`then_error`](When::then_error), or against a store with [`on`](When::on).
#[must_use = "a scenario does nothing until its `then`"]
pub struct When<M: Machine> {
    history: Vec<M>,
    id: Option<M::Id>,
    command: Command<M>,
}

impl<M: Machine> When<M> {
    /// Runs the scenario without a database: the history and the
    /// transition are checked against the machine's declaration as the
    /// store checks them, and folded into the row.
    ///
    /// # Panics
    /// When the history is not one a store would have written.
    pub fn outcome(self) -> Then<M> {
        let id = self.id.unwrap_or_else(default_id::<M>);
        check_history(&self.history);
        let mut events = self.history;
        let given = events.len();
        let step = match self.command {
            Command::Typed { state, run } => {
                let row = row_of(&id, &events).unwrap_or_else(|| panic!("given no history, `when` has no record"));
                expect_state(state, row.status());
                run(row)
            }
            Command::Dynamic(event, metadata) => {
                let current = events.last().map(|e| (e.status(), i64::try_from(events.len()).unwrap_or(i64::MAX)));
                match current {
                    Some((from, version)) => Step { from, version, event, metadata },
                    None => {
                        let status = event.status();
                        if !status.def().initial {
                            let initial = M::DEF.initial_states().map(|s| s.name).collect();
                            let error = Error::NotInitial { machine: M::DEF.name, state: status.name(), initial };
                            return Then { result: Err(error) };
                        }
                        events.push(event);
                        let row = row_of(&id, &events).expect("one event");
                        return Then { result: Ok((events.split_off(given), row)) };
                    }
                }
            }
        };
        let Step { from, event, .. } = step;
        let to = event.status();
        if !M::DEF.can_transition(from.name(), to.name()) {
            let error = Error::InvalidTransition {
                machine: M::DEF.name,
                id: id.to_string(),
                from: from.name(),
                to: to.name(),
                valid: M::DEF.sources_of(to.name()).collect(),
            };
            return Then { result: Err(error) };
        }
        events.push(event);
        let row = row_of(&id, &events).expect("a history");
        Then { result: Ok((events.split_off(given), row)) }
    }

    /// Runs the scenario without a database and checks its events
    /// ([`Then::then`]).
    ///
    /// # Panics
    /// As [`outcome`](Self::outcome) and [`Then::then`].
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = M>) -> Then<M>
    where
        M: Debug + PartialEq,
    {
        self.outcome().then(expected)
    }

    /// Runs the scenario without a database and checks that it fails with
    /// an error `expected` accepts ([`Then::then_error`]).
    ///
    /// # Panics
    /// As [`outcome`](Self::outcome) and [`Then::then_error`].
    #[track_caller]
    pub fn then_error(self, expected: impl FnOnce(&Error) -> bool) -> Error
    where
        M: Debug,
    {
        self.outcome().then_error(expected)
    }

    /// Runs the scenario against `store`: writes the history as a new
    /// record (each event by `insert_dynamic`, then `transition_if_match`),
    /// then the transition as the store's own `apply` or `transition` would.
    ///
    /// # Panics
    /// When the history cannot be written.
    pub async fn on<B: Backend>(self, store: &Store<M, B>) -> Then<M> {
        let written = |e: Error| -> ! { panic!("the given history could not be written: {e}") };
        let mut events = self.history.into_iter();
        let mut row = None::<M::Row>;
        let mut given = 0_i64;
        let id = if M::DEF.id.generated { None } else { Some(self.id.unwrap_or_else(default_id::<M>)) };
        if let Some(first) = events.next() {
            let inserted = store.insert_row(id.clone(), first, Metadata::new()).await;
            let mut current = inserted.unwrap_or_else(|e| written(e));
            for event in events {
                let moved = store.transition_if_match_row(
                    current.id(),
                    current.status(),
                    current.version(),
                    event,
                    Metadata::new(),
                );
                current = moved.await.unwrap_or_else(|e| written(e));
            }
            given = current.version();
            row = Some(current);
        }
        let result = match (self.command, row) {
            (Command::Typed { state, run }, Some(row)) => {
                expect_state(state, row.status());
                let id = row.id().clone();
                let step = run(row);
                store.transition_if_match_row(&id, step.from, step.version, step.event, step.metadata).await
            }
            (Command::Typed { .. }, None) => panic!("given no history, `when` has no record"),
            (Command::Dynamic(event, metadata), Some(row)) => store.transition_row(row.id(), event, metadata).await,
            (Command::Dynamic(event, metadata), None) => store.insert_row(id, event, metadata).await,
        };
        let result = match result {
            Ok(row) => {
                let history = store.history(row.id()).await;
                let history = history.unwrap_or_else(|e| panic!("the record's history could not be read: {e}"));
                let events = history.into_iter().filter(|e| e.version > given).map(|e| e.event).collect();
                Ok((events, row))
            }
            Err(e) => Err(e),
        };
        Then { result }
    }
}

/// A scenario's outcome: the events its `when` wrote and the row after
/// them, or the error. Each check panics with what differs.
pub struct Then<M: Machine> {
    result: Result<(Vec<M>, M::Row), Error>,
}

impl<M: Machine> Then<M> {
    /// Checks that the `when` succeeded and wrote exactly `expected`.
    ///
    /// # Panics
    /// With a line diff when the events differ; with the error when it failed.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = M>) -> Self
    where
        M: Debug + PartialEq,
    {
        let expected: Vec<M> = expected.into_iter().collect();
        let (events, _) = self.succeeded();
        if *events != expected {
            panic!("the events differ from the expected ones (- expected, + actual):\n{}", diff(&expected, events));
        }
        self
    }

    /// Checks that the record ends in `status`.
    ///
    /// # Panics
    /// When it ends in another, or the `when` failed.
    #[track_caller]
    pub fn state(self, status: M::Status) -> Self {
        let (_, row) = self.succeeded();
        if row.status() != status {
            panic!("the record is in `{}`, not in `{status}` as expected; its row:\n{row:#?}", row.status());
        }
        self
    }

    /// Checks the record's row after the `when` with `check` (which asserts).
    ///
    /// # Panics
    /// When `check` does, or the `when` failed.
    #[track_caller]
    pub fn row(self, check: impl FnOnce(&M::Row)) -> Self {
        check(&self.succeeded().1);
        self
    }

    /// Checks that the `when` failed with an error `expected` accepts
    /// (`|e| matches!(e, Error::InvalidTransition { .. })`), and returns it.
    ///
    /// # Panics
    /// When it succeeded, or failed with an error `expected` refuses.
    #[track_caller]
    pub fn then_error(self, expected: impl FnOnce(&Error) -> bool) -> Error
    where
        M: Debug,
    {
        match self.result {
            Err(error) if expected(&error) => error,
            Err(error) => panic!("the error is not the expected one: {error}\n{error:#?}"),
            Ok((events, _)) => panic!("expected an error, but the `when` succeeded with the events:\n{events:#?}"),
        }
    }

    /// The events and the row, or the error, for checks of your own.
    pub fn into_result(self) -> Result<(Vec<M>, M::Row), Error> {
        self.result
    }

    #[track_caller]
    fn succeeded(&self) -> &(Vec<M>, M::Row) {
        match &self.result {
            Ok(outcome) => outcome,
            Err(error) => panic!("the `when` failed: {error}"),
        }
    }
}

impl<M: Machine + Debug> Debug for Then<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Then").field("result", &self.result).finish()
    }
}

/// The key of a record whose history is given without one: `1`, for
/// integer and string keys.
fn default_id<M: Machine>() -> M::Id {
    M::Id::from_value(Value::I64(1))
        .or_else(|_| M::Id::from_value(Value::Text("1".into())))
        .unwrap_or_else(|_| panic!("`{}` records have keys of their own: give one with `.with_id(..)`", M::DEF.name))
}

/// Panics unless `history` starts in an initial state and follows declared edges.
fn check_history<M: Machine>(history: &[M]) {
    let mut previous: Option<M::Status> = None;
    for (n, event) in history.iter().enumerate() {
        let status = event.status();
        match previous {
            None if !status.def().initial => {
                panic!(
                    "the given history starts in `{status}`, which is not an `#[initial]` state of `{}`",
                    M::DEF.name
                )
            }
            Some(from) if !M::DEF.can_transition(from.name(), status.name()) => {
                panic!("event {} of the given history goes from `{from}` to `{status}`: no `#[from(..)]` edge", n + 1)
            }
            _ => previous = Some(status),
        }
    }
}

#[track_caller]
fn expect_state<S: Status>(expected: S, actual: S) {
    if expected != actual {
        panic!("the given history ends in `{actual}`, but `when` takes a record in `{expected}`");
    }
}

/// The row a record has after `events`; `None` without events. Pure
/// scenarios have no clock: both timestamps are the Unix epoch.
fn row_of<M: Machine>(id: &M::Id, events: &[M]) -> Option<M::Row> {
    let last = events.last()?;
    let mut fold = Fold::new(M::DEF);
    for event in events {
        fold.apply(event).unwrap_or_else(|e| panic!("an event of the scenario does not encode: {e}"));
    }
    let at = DateTime::<Utc>::UNIX_EPOCH;
    let version = i64::try_from(events.len()).unwrap_or(i64::MAX);
    let header = RowHeader { id: id.clone(), status: last.status(), version, created_at: at, updated_at: at };
    Some(M::Row::from_parts(header, fold.into_columns()).unwrap_or_else(|e| panic!("the folded row does not fit: {e}")))
}

//! `Effects`: what a pure handler decided, as data.

use super::change::Change;
use super::outgoing::{Message, Outgoing, Request};
use crate::error::Error;
use std::iter::Sum;

/// What a command does, as a value: transitions of records (of one machine
/// or several), outgoing messages and outgoing HTTP requests.
///
/// A handler that returns `Effects` does no I/O: it can be called in a
/// test and its result compared with `==` (see
/// [`testing::assert_effects`](crate::testing::assert_effects)), and
/// effects compose: [`merge`](Self::merge), `Extend`, `FromIterator`,
/// `Sum`. A [`Runner`](super::Runner) executes them once per idempotency
/// key, in one transaction, and an outbox [`Dispatcher`](super::Dispatcher)
/// delivers the messages and requests after the commit.
///
/// Transitions come from [`Record::transition`](crate::Record::transition),
/// so an illegal edge does not compile. Messages and requests keep their
/// order, and are delivered in that order per key.
///
/// ```
/// use statefold::effects::{Effects, Message};
/// # use statefold::{Machine, Record};
/// # #[derive(Machine, Clone, Debug, PartialEq)]
/// # #[machine(table = "cards")]
/// # enum Card {
/// #     #[initial]
/// #     Active { customer: String },
/// #     #[from(Active)]
/// #     Blocked { reason: String },
/// # }
///
/// /// Blocks an active card and says so: a pure function.
/// fn block(card: Record<Card, CardActive>, reason: &str) -> Effects {
///     let id = *card.id();
///     Effects::new()
///         .transition(card.transition(CardBlocked { reason: reason.into() }))
///         .message(Message::new("card-status-changed", id.to_string(), &("blocked", id)))
/// }
///
/// # let card = |id| Record::<Card, CardActive>::__from_row(CardRow {
/// #   id, status: CardStatus::Active, version: 1,
/// #   created_at: chrono::DateTime::UNIX_EPOCH, updated_at: chrono::DateTime::UNIX_EPOCH,
/// #   customer: "ada".into(), reason: None,
/// # });
/// let both: Effects = [block(card(1), "lost"), block(card(2), "lost")].into_iter().sum();
/// assert_eq!(both.transitions().len(), 2);
/// assert_eq!(both.messages().count(), 2);
/// assert_eq!(both, block(card(1), "lost").merge(block(card(2), "lost")));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    transitions: Vec<Change>,
    outgoing: Vec<Outgoing>,
}

impl Effects {
    /// No effects.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a transition (`record.transition(event)`).
    #[must_use]
    pub fn transition(mut self, transition: impl Into<Change>) -> Self {
        self.transitions.push(transition.into());
        self
    }

    /// Adds an outgoing message.
    #[must_use]
    pub fn message(mut self, message: Message) -> Self {
        self.outgoing.push(Outgoing::Message(message));
        self
    }

    /// Adds an outgoing HTTP request.
    #[must_use]
    pub fn request(mut self, request: Request) -> Self {
        self.outgoing.push(Outgoing::Request(request));
        self
    }

    /// These effects, then `other`'s.
    #[must_use]
    pub fn merge(mut self, other: Self) -> Self {
        self.extend([other]);
        self
    }

    /// The transitions, in order.
    pub fn transitions(&self) -> &[Change] {
        &self.transitions
    }

    /// The messages and requests, in order.
    pub fn outgoing(&self) -> &[Outgoing] {
        &self.outgoing
    }

    /// The messages, in order.
    pub fn messages(&self) -> impl Iterator<Item = &Message> {
        self.outgoing.iter().filter_map(|o| match o {
            Outgoing::Message(m) => Some(m),
            Outgoing::Request(_) => None,
        })
    }

    /// The requests, in order.
    pub fn requests(&self) -> impl Iterator<Item = &Request> {
        self.outgoing.iter().filter_map(|o| match o {
            Outgoing::Request(r) => Some(r),
            Outgoing::Message(_) => None,
        })
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.transitions.is_empty() && self.outgoing.is_empty()
    }

    /// Whether every message and request can be sent (the runner checks
    /// this before writing anything).
    ///
    /// # Errors
    /// [`Error::InvalidEffect`] for the first one built from bad input.
    pub fn check(&self) -> Result<(), Error> {
        self.outgoing.iter().try_for_each(Outgoing::check)
    }
}

impl Extend<Effects> for Effects {
    fn extend<I: IntoIterator<Item = Effects>>(&mut self, iter: I) {
        for effects in iter {
            self.transitions.extend(effects.transitions);
            self.outgoing.extend(effects.outgoing);
        }
    }
}

impl FromIterator<Effects> for Effects {
    fn from_iter<I: IntoIterator<Item = Effects>>(iter: I) -> Self {
        let mut all = Self::new();
        all.extend(iter);
        all
    }
}

impl Sum for Effects {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.collect()
    }
}

//! A consumer's protocol as data: the states of a run and the outcome that
//! moves it from one to the next, with no I/O (the driver does that).

/// What a run is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Handle events as they come, until shutdown.
    Run,
    /// Handle events up to the log's end as of the start, then stop.
    CatchUp,
    /// Reset the projection and the cursor, then replay up to the log's
    /// end as of the reset, then stop.
    Rebuild,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Ask for the lease: take it, or renew it when due.
    Lease,
    /// Another run holds the lease: wait a while, then ask again.
    Standby,
    /// The lease is new, or an error came between: read the cursor again
    /// (a rebuild resets it, once, with the projection) and fix the target.
    Load,
    /// Read the next batch and handle it.
    Work,
    /// Caught up: wait for a commit, a poll, or the lease's renewal.
    Idle,
    /// A database error: wait the backoff of this many failures in a row,
    /// then ask for the lease again.
    Recover(u32),
    /// Finished: shutdown, or the target reached.
    Stop,
}

/// What a state's work came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The lease is this run's.
    Leased,
    /// Another run holds the lease.
    Held,
    /// The cursor is read (or reset) and the target fixed.
    Ready,
    /// A batch was handled.
    Handled,
    /// Nothing to read now.
    Empty,
    /// The target of a catch-up or rebuild is reached.
    Reached,
    /// The lease was lost, or the cursor found past an event: another run
    /// moved it. Lease and cursor are read again.
    Lost,
    /// A wait ended: a commit, a poll, the backoff.
    Waited,
    /// An error that retrying may fix.
    Failed,
    /// Shutdown was asked for.
    Shutdown,
}

/// A run's state, and what it knows across states.
#[derive(Debug)]
pub(super) struct Run {
    state: State,
    /// Whether the reader stands at the saved cursor under the lease held now.
    loaded: bool,
    /// Failed steps in a row: the backoff grows with them.
    failures: u32,
}

impl Run {
    pub(super) fn new() -> Self {
        Self { state: State::Lease, loaded: false, failures: 0 }
    }

    pub(super) fn state(&self) -> State {
        self.state
    }

    /// Whether the reader stands at the saved cursor: the lease, when
    /// renewed recently, need not be asked for again.
    pub(super) fn loaded(&self) -> bool {
        self.loaded
    }

    /// The next state after `outcome`.
    pub(super) fn on(&mut self, outcome: Outcome) -> State {
        use Outcome as O;
        use State as S;
        self.state = match (self.state, outcome) {
            (_, O::Shutdown) | (S::Stop, _) | (S::Load | S::Work, O::Reached) => S::Stop,
            (_, O::Failed) => {
                // While the database was away, the lease may have expired and
                // another run moved the cursor: both are read again.
                self.loaded = false;
                self.failures = self.failures.saturating_add(1);
                S::Recover(self.failures)
            }
            (S::Lease, O::Leased) if self.loaded => S::Work,
            (S::Lease, O::Leased) => S::Load,
            (S::Lease, O::Held) | (S::Work, O::Lost) => {
                self.loaded = false;
                if outcome == O::Held {
                    S::Standby
                } else {
                    S::Lease
                }
            }
            (S::Load, O::Ready) => {
                self.loaded = true;
                S::Work
            }
            (S::Work, O::Handled) => {
                self.failures = 0;
                S::Lease
            }
            (S::Work, O::Empty) => {
                self.failures = 0;
                S::Idle
            }
            (S::Standby | S::Idle | S::Recover(_), O::Waited) => S::Lease,
            // No other outcome comes out of these states; were one to, the
            // lease and the cursor are the safe place to start again.
            (state, outcome) => {
                debug_assert!(false, "no transition from {state:?} on {outcome:?}");
                self.loaded = false;
                S::Lease
            }
        };
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::{Outcome as O, Run, State as S};

    fn run(outcomes: &[O]) -> Vec<S> {
        let mut run = Run::new();
        outcomes.iter().map(|&outcome| run.on(outcome)).collect()
    }

    #[test]
    fn a_new_lease_reads_the_cursor_before_working() {
        assert_eq!(run(&[O::Leased, O::Ready, O::Handled, O::Leased]), [S::Load, S::Work, S::Lease, S::Work]);
    }

    #[test]
    fn caught_up_it_idles_then_asks_for_the_lease_again() {
        assert_eq!(
            run(&[O::Leased, O::Ready, O::Empty, O::Waited, O::Leased]),
            [S::Load, S::Work, S::Idle, S::Lease, S::Work]
        );
    }

    #[test]
    fn a_lease_held_elsewhere_means_standby_and_a_fresh_cursor_after() {
        let states = run(&[O::Leased, O::Ready, O::Handled, O::Held, O::Waited, O::Leased]);
        assert_eq!(states, [S::Load, S::Work, S::Lease, S::Standby, S::Lease, S::Load]);
    }

    #[test]
    fn errors_back_off_longer_each_time_and_reload_the_cursor() {
        let states = run(&[O::Leased, O::Ready, O::Failed, O::Waited, O::Failed, O::Waited, O::Leased]);
        assert_eq!(states, [S::Load, S::Work, S::Recover(1), S::Lease, S::Recover(2), S::Lease, S::Load]);
        // A success starts the count over.
        let states = run(&[O::Failed, O::Waited, O::Leased, O::Ready, O::Handled, O::Failed]);
        assert_eq!(states.last(), Some(&S::Recover(1)));
    }

    #[test]
    fn a_lost_lease_or_a_cursor_moved_elsewhere_reads_both_again() {
        assert_eq!(run(&[O::Leased, O::Ready, O::Lost, O::Leased]), [S::Load, S::Work, S::Lease, S::Load]);
    }

    #[test]
    fn shutdown_and_reached_targets_stop_for_good() {
        assert_eq!(run(&[O::Leased, O::Shutdown, O::Leased]), [S::Load, S::Stop, S::Stop]);
        assert_eq!(run(&[O::Leased, O::Reached]), [S::Load, S::Stop]);
        assert_eq!(run(&[O::Leased, O::Ready, O::Reached]), [S::Load, S::Work, S::Stop]);
    }
}

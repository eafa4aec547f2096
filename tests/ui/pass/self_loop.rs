use statefold::{Machine, Record};

/// A counter that may be bumped any number of times.
#[derive(Machine, Clone, Debug, PartialEq)]
enum Counter {
    #[initial]
    Started { count: i32 },
    #[from(Started, Bumped)]
    Bumped { count: i32 },
}

fn bump(counter: Record<Counter, CounterBumped>) -> statefold::Transition<Counter, CounterBumped> {
    counter.transition(CounterBumped { count: 2 })
}

fn main() {
    let _ = bump;
    assert!(Counter::DEF.can_transition("Bumped", "Bumped"));
    assert!(Counter::DEF.mermaid.contains("Bumped --> Bumped"));
}

//! A user crate under the strictest lints, reaching statefold as `sf`.
//!
//! CI's `cargo clippy --workspace --all-targets -- -D warnings` builds it, so
//! any warning that generated code raises in a user's crate, under
//! `clippy::pedantic` or `missing_docs`, fails CI. The dependency is renamed,
//! so the derive's paths must all go through `#[machine(crate = "sf")]`.
#![deny(clippy::pedantic, missing_docs, unreachable_pub, rust_2018_idioms, warnings)]

use sf::{Machine, Metadata, Sqlite, Store};

/// A library loan.
#[derive(Machine, Clone, Debug, PartialEq)]
#[machine(crate = "sf", table = "loans")]
pub enum Loan {
    /// A reader borrowed a book.
    #[initial]
    Borrowed {
        /// Who borrowed it.
        reader: String,
        /// Days until it is due.
        days: i32,
    },
    /// The loan was extended.
    #[from(Borrowed, Extended)]
    Extended {
        /// Days added.
        days: i32,
    },
    /// The book came back.
    #[from(Borrowed, Extended)]
    Returned,
}

/// Keyed by the caller: a membership card.
#[derive(Machine, Clone, Debug, PartialEq)]
#[machine(crate = "sf", id = String)]
pub(crate) enum Card {
    /// Issued to a reader.
    #[initial]
    Issued {
        /// The reader.
        reader: String,
    },
}

/// Lends a book, extends the loan once, takes it back: the typed API end to end.
///
/// # Errors
/// Any store error.
pub async fn lend_extend_return(store: &Store<Loan, Sqlite>, reader: &str) -> Result<i64, sf::Error> {
    let borrowed = store.insert(LoanBorrowed { reader: reader.to_owned(), days: 14 }).await?;
    let extended = store.apply(borrowed.transition(LoanExtended { days: 7 })).await?;
    let returned = store.apply(extended.transition(LoanReturned).with_metadata(Metadata::new().actor(reader))).await?;
    Ok(returned.version())
}

/// Issues a card under the caller's key.
///
/// # Errors
/// Any store error.
pub async fn issue_card(pool: sf::sqlx::SqlitePool, number: &str) -> Result<String, sf::Error> {
    let store = Store::<Card, Sqlite>::new(pool);
    store.create_tables().await?;
    let card = store.insert_with_id(number.to_owned(), CardIssued { reader: "ada".to_owned() }).await?;
    Ok(card.id().clone())
}

#[cfg(test)]
mod tests {
    use super::{issue_card, lend_extend_return, Loan, LoanStatus};
    use sf::{Machine, Sqlite, Store};

    #[tokio::test]
    async fn the_renamed_runtime_runs_the_machines() {
        let store = Store::<Loan, Sqlite>::connect("sqlite::memory:").await.unwrap();
        store.create_tables().await.unwrap();
        assert_eq!(lend_extend_return(&store, "ada").await.unwrap(), 3);
        assert_eq!(issue_card(store.pool().clone(), "c-1").await.unwrap(), "c-1");
        assert_eq!(Loan::DEF.table, "loans");
        assert_eq!(LoanStatus::Returned.to_string(), "Returned");
    }
}

//! A wallet, after the event-sourcing lecture's exercise: accounts are the
//! stewards of their balance; money moves only by events (opened, credited,
//! debited, frozen); a transfer debits one account and credits another in
//! one transaction, and a refused side is compensated by a new event, never
//! half applied; a "balances" view is an opinion rebuilt from the facts;
//! when a balance row is tampered with, the audit catches it and the repair
//! rebuilds it from the events.
//!
//! Run with `cargo run -p wallet` (embedded SQLite, in memory: no server needed).

use statefold::{
    Consumer, Envelope, Error, Handler, HandlerError, Machine, Metadata, Projection, RepairOptions, Sqlite, Store, Tx,
};
use std::process::ExitCode;

/// An account: the steward of its balance.
#[derive(Debug, Clone, PartialEq, Machine)]
#[machine(table = "accounts")]
pub enum Account {
    /// The account exists, empty.
    #[initial]
    Opened {
        /// Whose it is.
        owner: String,
        /// The balance, in cents.
        balance_cents: i64,
    },
    /// Money came in: a deposit, the credit side of a transfer, or a refund.
    #[from(Opened, Credited, Debited)]
    Credited {
        /// How much.
        amount_cents: i64,
        /// The balance after it.
        balance_cents: i64,
        /// Why: a deposit, or the transfer it belongs to.
        reference: String,
    },
    /// Money went out: a withdrawal, or the debit side of a transfer.
    #[from(Opened, Credited, Debited)]
    Debited {
        /// How much.
        amount_cents: i64,
        /// The balance after it.
        balance_cents: i64,
        /// Why.
        reference: String,
    },
    /// No money moves any more.
    #[from(Opened, Credited, Debited)]
    Frozen {
        /// Why.
        reason: String,
    },
}

/// Why money could not move.
#[derive(Debug)]
enum Refused {
    /// The account would go below zero.
    Insufficient { balance_cents: i64 },
    /// The store refused (a frozen account cannot be credited or debited).
    Store(Error),
}

impl From<Error> for Refused {
    fn from(error: Error) -> Self {
        Self::Store(error)
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Insufficient { balance_cents } => write!(f, "insufficient funds (balance {balance_cents})"),
            Self::Store(error) => write!(f, "{error}"),
        }
    }
}

type Wallet = Store<Account, Sqlite>;

/// The balance of an account, read in `tx`.
async fn balance(wallet: &Wallet, tx: &mut Tx<'static, Sqlite>, id: i64) -> Result<i64, Error> {
    Ok(wallet.load_in(tx, &id).await?.row().balance_cents)
}

/// Moves money into an account, inside `tx`.
async fn credit(
    wallet: &Wallet,
    tx: &mut Tx<'static, Sqlite>,
    id: i64,
    cents: i64,
    reference: &str,
) -> Result<(), Refused> {
    let balance_cents = balance(wallet, tx, id).await? + cents;
    let event = Account::Credited { amount_cents: cents, balance_cents, reference: reference.into() };
    wallet.transition_in(tx, &id, event, Metadata::new().actor("wallet")).await?;
    Ok(())
}

/// Moves money out of an account, inside `tx`, if it has enough.
async fn debit(
    wallet: &Wallet,
    tx: &mut Tx<'static, Sqlite>,
    id: i64,
    cents: i64,
    reference: &str,
) -> Result<(), Refused> {
    let balance_cents = balance(wallet, tx, id).await?;
    if balance_cents < cents {
        return Err(Refused::Insufficient { balance_cents });
    }
    let event =
        Account::Debited { amount_cents: cents, balance_cents: balance_cents - cents, reference: reference.into() };
    wallet.transition_in(tx, &id, event, Metadata::new().actor("wallet")).await?;
    Ok(())
}

/// A transfer: the debit and the credit in one transaction. When the
/// credit is refused, the debit is compensated by a refund, a new fact in
/// the same transaction: the money is never half moved, and the history
/// says what happened.
async fn transfer(wallet: &Wallet, from: i64, to: i64, cents: i64, reference: &str) -> Result<&'static str, Refused> {
    let mut tx = wallet.begin().await?;
    debit(wallet, &mut tx, from, cents, reference).await?;
    let outcome = match credit(wallet, &mut tx, to, cents, reference).await {
        Ok(()) => "done",
        Err(refused) => {
            println!("    the credit side was refused: {refused}");
            credit(wallet, &mut tx, from, cents, &format!("refund of {reference}")).await?;
            "compensated"
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

/// The "balances" view: an opinion, in a table of its own, rebuilt from the facts.
struct Balances;

impl Handler<Account, Sqlite> for Balances {
    async fn handle(&mut self, tx: &mut Tx<'static, Sqlite>, event: &Envelope<Account>) -> Result<(), HandlerError> {
        let balance = match &event.event {
            Account::Opened { balance_cents, .. }
            | Account::Credited { balance_cents, .. }
            | Account::Debited { balance_cents, .. } => *balance_cents,
            Account::Frozen { .. } => return Ok(()),
        };
        sqlx::query("INSERT INTO balances (account, cents) VALUES (?, ?) ON CONFLICT (account) DO UPDATE SET cents = excluded.cents")
            .bind(event.record_id)
            .bind(balance)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

impl Projection<Account, Sqlite> for Balances {
    async fn reset(&mut self, tx: &mut Tx<'static, Sqlite>) -> Result<(), HandlerError> {
        sqlx::query("DELETE FROM balances").execute(&mut **tx).await?;
        Ok(())
    }
}

async fn view(wallet: &Wallet) -> Result<Vec<(i64, i64)>, Error> {
    Ok(sqlx::query_as("SELECT account, cents FROM balances ORDER BY account").fetch_all(wallet.pool()).await?)
}

async fn rows(wallet: &Wallet) -> Result<Vec<(i64, i64)>, Error> {
    Ok(sqlx::query_as("SELECT id, balance_cents FROM accounts ORDER BY id").fetch_all(wallet.pool()).await?)
}

async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    let wallet = Wallet::connect("sqlite::memory:").await?;
    wallet.create_tables().await?;
    wallet.create_support_tables().await?;
    sqlx::query("CREATE TABLE balances (account INTEGER PRIMARY KEY, cents INTEGER NOT NULL)")
        .execute(wallet.pool())
        .await?;

    println!("== three accounts, deposits");
    let mut ids = Vec::new();
    for (owner, deposit) in [("ada", 10_000), ("bob", 5_000), ("cy", 0)] {
        let opened = wallet.insert(AccountOpened { owner: owner.into(), balance_cents: 0 }).await?;
        let id = *opened.id();
        if deposit > 0 {
            let mut tx = wallet.begin().await?;
            credit(&wallet, &mut tx, id, deposit, "deposit").await.map_err(|e| e.to_string())?;
            tx.commit().await?;
        }
        println!("  {owner}: account {id}");
        ids.push(id);
    }
    let (ada, bob, cy) = (ids[0], ids[1], ids[2]);
    wallet
        .transition(&cy, Account::Frozen { reason: "identity check".into() }, Metadata::new().actor("compliance"))
        .await?;

    println!("\n== transfers");
    for (from, to, cents, reference) in
        [(ada, bob, 3_000, "t1: rent"), (bob, ada, 50_000, "t2: too much"), (ada, cy, 1_000, "t3: to a frozen account")]
    {
        match transfer(&wallet, from, to, cents, reference).await {
            Ok(outcome) => println!("  {reference}: {outcome}"),
            Err(refused) => println!("  {reference}: refused, nothing moved: {refused}"),
        }
    }
    println!("  balances (rows): {:?}", rows(&wallet).await?);
    println!("  ada's history:");
    for event in wallet.history(&ada).await? {
        println!("    v{} {:?}", event.version, event.event);
    }

    println!("\n== the balances view, built from the facts");
    let consumer = Consumer::new(&wallet, "balances");
    consumer.catch_up(&mut Balances).await?;
    println!("  view: {:?}", view(&wallet).await?);

    println!("\n== someone edits a balance by hand");
    sqlx::query("UPDATE accounts SET balance_cents = 1000000 WHERE id = ?").bind(ada).execute(wallet.pool()).await?;
    let audit = wallet.audit().await?;
    println!("  {audit}");
    let plan = wallet.repair(RepairOptions::default()).await?;
    println!("  {plan}");
    let done = wallet.repair(RepairOptions::apply("ops")).await?;
    println!("  {done}");
    let clean = wallet.audit().await?;
    println!("  {clean}");

    println!("\n== the view, rebuilt from the facts, agrees with the rows");
    let replayed = consumer.rebuild(&mut Balances, std::future::pending()).await?;
    let (view, rows) = (view(&wallet).await?, rows(&wallet).await?);
    println!("  replayed {replayed} events; view {view:?}; rows {rows:?}");
    if !clean.is_clean() || view != rows {
        return Err("the books do not agree".into());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match demo().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo checks its own books: the audit clean after the repair, and
    /// the rebuilt view equal to the rows.
    #[tokio::test]
    async fn the_books_agree() {
        demo().await.expect("the demo's books agree");
    }

    /// A transfer refused on its credit side is compensated in the same
    /// transaction; one refused on its debit side moves nothing.
    #[tokio::test]
    async fn transfers_are_never_half_applied() {
        let wallet = Wallet::connect("sqlite::memory:").await.unwrap();
        wallet.create_tables().await.unwrap();
        let open = |owner: &str| AccountOpened { owner: owner.into(), balance_cents: 0 };
        let (a, b) = (*wallet.insert(open("a")).await.unwrap().id(), *wallet.insert(open("b")).await.unwrap().id());
        let mut tx = wallet.begin().await.unwrap();
        credit(&wallet, &mut tx, a, 100, "deposit").await.unwrap();
        tx.commit().await.unwrap();
        wallet.transition(&b, Account::Frozen { reason: "test".into() }, Metadata::new()).await.unwrap();

        assert_eq!(transfer(&wallet, a, b, 60, "t").await.unwrap(), "compensated");
        assert!(matches!(transfer(&wallet, a, b, 500, "u").await, Err(Refused::Insufficient { balance_cents: 100 })));
        assert_eq!(rows(&wallet).await.unwrap(), [(a, 100), (b, 0)]);
        let kinds: Vec<String> = wallet.history(&a).await.unwrap().iter().map(|e| format!("{:?}", e.to)).collect();
        assert_eq!(kinds, ["Opened", "Credited", "Debited", "Credited"]);
        assert!(wallet.audit().await.unwrap().is_clean());
    }
}

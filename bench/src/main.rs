//! statefold's benchmarks, one per `--bench`:
//!
//! - `transitions` (the default): commands per second for the workloads
//!   place -> pay -> ship, place alone, and place -> pay -> ship with
//!   If-Match, each command a separate call that arrives with the order's id,
//!   through statefold (`Store::insert`, `Store::transition` and
//!   `Store::transition_if_match` by id) and through the SQL a sqlx expert
//!   would write by hand for the same tables (see `hand.rs`);
//! - `catchup`: a stream reading the log from position 0 against a raw
//!   keyset loop over the same columns;
//! - `latency`: commit-to-consumer latency, by how the stream learns of a write;
//! - `effects`: a run of effects (a transition and a message) against the
//!   transition alone, the dispatcher's throughput, commit-to-send latency
//!   (see `effects.rs`);
//! - `relay`: the NATS JetStream relay against a plain `async-nats` publish
//!   loop, and commit-to-handler latency through JetStream (needs
//!   `--nats-url` or `STATEFOLD_TEST_NATS_URL`);
//! - `grpc`: catch-up over gRPC against the local stream, and
//!   commit-to-remote-handler latency (see `grpc.rs`);
//! - `all`: transitions, catchup, latency, effects and grpc in turn.
//!
//! ```text
//! cargo run --release -p statefold-bench -- [--bench transitions|catchup|latency|effects|relay|grpc|all]
//!     [--backend sqlite|postgres|mysql|all] [--clients 1,8] [--workload commands|insert|if-match|all]
//!     [--orders N] [--rounds N]
//!     [--events N] [--batch N] [--samples N] [--messages N] [--postgres-url URL] [--mysql-url URL]
//!     [--nats-url URL]
//! ```
//!
//! Every timed run of `transitions` and `catchup` is a child process (this
//! binary again, with `--side statefold|hand --url URL`) that runs one side
//! once and prints its rate and its peak resident set (`VmHWM`), so each
//! side's memory is its own. Rounds alternate which side goes first; each
//! figure is the median of the rounds. Both sides open their pool with
//! [`Backend::connect`](statefold::Backend::connect), statefold's settings:
//! sqlx's defaults (10 connections) with `test_before_acquire(false)`, and
//! SQLite on a file in WAL mode.
//!
//! SQLite runs on temporary files. PostgreSQL and MySQL run in a database
//! created for the run on the server of `--postgres-url` / `--mysql-url`
//! (default: `STATEFOLD_TEST_POSTGRES_URL` / `STATEFOLD_TEST_MYSQL_URL`) and
//! dropped afterwards.

use statefold::Machine;
use std::process::ExitCode;
use std::time::Duration;

mod catchup;
mod child;
mod effects;
mod grpc;
mod hand;
mod latency;
mod relay;
mod scratch;
mod transitions;

/// An order's life, as in the README.
#[derive(Debug, Clone, PartialEq, Machine)]
#[machine(table = "orders")]
enum Order {
    /// The customer placed the order.
    #[initial]
    Placed {
        /// Who ordered.
        customer: String,
        /// The total, in cents.
        amount_cents: i64,
    },
    /// The payment went through.
    #[from(Placed)]
    Paid {
        /// The payment provider's reference.
        payment_ref: String,
    },
    /// The parcel left.
    #[from(Paid)]
    Shipped {
        /// The carrier's tracking number.
        tracking: String,
    },
    /// Called off before shipping.
    #[from(Placed, Paid)]
    Cancelled {
        /// Why.
        reason: String,
    },
    /// The parcel arrived.
    #[from(Shipped)]
    Delivered,
}

/// The longest a child's timed work may take before it gives up.
const RUN_LIMIT: Duration = Duration::from_secs(240);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which benchmark runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bench {
    Transitions,
    Catchup,
    Latency,
    Effects,
    Relay,
    Grpc,
    All,
}

/// A database the benchmarks run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Db {
    Sqlite,
    Postgres,
    MySql,
}

impl Db {
    /// The `--backend` value.
    fn flag(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::MySql => "mysql",
        }
    }

    /// The name in tables.
    fn label(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
            Self::MySql => "MySQL",
        }
    }
}

/// One side of a comparison, as a child process runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// Through statefold's public API.
    Statefold,
    /// Through hand-written sqlx.
    Hand,
    /// PostgreSQL catch-up only: the stream's gap-safe query in a raw loop.
    Fenced,
    /// Effects only: `Store::transition` by id alone.
    Transition,
    /// Effects only: `Store::load`, then `Runner::run` of a transition and a message.
    Effects,
    /// Catch-up only: the stream over gRPC, from a server in the same process.
    Grpc,
}

impl Side {
    fn flag(self) -> &'static str {
        match self {
            Self::Statefold => "statefold",
            Self::Hand => "hand",
            Self::Fenced => "fenced",
            Self::Transition => "transition",
            Self::Effects => "effects",
            Self::Grpc => "grpc",
        }
    }
}

struct Options {
    bench: Bench,
    backends: Vec<Db>,
    clients: Vec<usize>,
    workloads: Vec<transitions::Workload>,
    orders: usize,
    rounds: usize,
    events: usize,
    batch: u32,
    samples: usize,
    /// Events relayed per round of `relay`.
    messages: usize,
    postgres_url: Option<String>,
    nats_url: Option<String>,
    mysql_url: Option<String>,
    /// Child mode: run this side once against `url` and print its figures.
    side: Option<Side>,
    url: Option<String>,
}

impl Options {
    /// The server URL for `db` (none for SQLite).
    fn server(&self, db: Db) -> Result<Option<&str>, BoxError> {
        let (url, flag, var) = match db {
            Db::Sqlite => return Ok(None),
            Db::Postgres => (&self.postgres_url, "--postgres-url", "STATEFOLD_TEST_POSTGRES_URL"),
            Db::MySql => (&self.mysql_url, "--mysql-url", "STATEFOLD_TEST_MYSQL_URL"),
        };
        match url {
            Some(url) => Ok(Some(url)),
            None => {
                Err(format!("{} needs a server: pass {flag} or set {var} (or choose --backend)", db.label()).into())
            }
        }
    }
}

const USAGE: &str = "usage: statefold-bench [--bench transitions|catchup|latency|effects|relay|grpc|all] \
    [--backend sqlite|postgres|mysql|all] [--clients 1,8] [--workload commands|insert|if-match|all] \
    [--orders N] [--rounds N] [--events N] [--batch N] [--samples N] [--messages N] [--postgres-url URL] \
    [--mysql-url URL] [--nats-url URL]\n\
    child mode (one side once, as the benchmark runs it): [--bench transitions|catchup|effects] --backend DB \
    --side statefold|hand|fenced|grpc|transition|effects --url DATABASE_URL [--clients N] [--workload W] \
    [--orders N] [--events N] \
    [--batch N]";

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        bench: Bench::Transitions,
        backends: vec![Db::Sqlite, Db::Postgres, Db::MySql],
        clients: vec![1, 8],
        workloads: transitions::Workload::ALL.to_vec(),
        orders: 1_000,
        rounds: 5,
        events: 300_000,
        batch: 1_000,
        samples: 500,
        messages: 20_000,
        postgres_url: std::env::var("STATEFOLD_TEST_POSTGRES_URL").ok(),
        mysql_url: std::env::var("STATEFOLD_TEST_MYSQL_URL").ok(),
        nats_url: std::env::var("STATEFOLD_TEST_NATS_URL").ok(),
        side: None,
        url: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        let number = |text: String| text.parse::<usize>().map_err(|e| format!("{arg}: {e}"));
        match arg.as_str() {
            "--backend" => {
                options.backends = match value()?.as_str() {
                    "sqlite" => vec![Db::Sqlite],
                    "postgres" => vec![Db::Postgres],
                    "mysql" => vec![Db::MySql],
                    "all" => vec![Db::Sqlite, Db::Postgres, Db::MySql],
                    other => return Err(format!("unknown backend `{other}`: use sqlite, postgres, mysql or all")),
                }
            }
            "--bench" => {
                options.bench = match value()?.as_str() {
                    "transitions" => Bench::Transitions,
                    "catchup" => Bench::Catchup,
                    "latency" => Bench::Latency,
                    "effects" => Bench::Effects,
                    "relay" => Bench::Relay,
                    "grpc" => Bench::Grpc,
                    "all" => Bench::All,
                    other => {
                        return Err(format!(
                            "unknown bench `{other}`: use transitions, catchup, latency, effects, relay, grpc or all"
                        ))
                    }
                }
            }
            "--clients" => {
                options.clients = value()?
                    .split(',')
                    .map(|n| n.trim().parse::<usize>().map_err(|e| format!("--clients: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--workload" => {
                options.workloads = match value()?.as_str() {
                    "all" => transitions::Workload::ALL.to_vec(),
                    other => vec![transitions::Workload::parse(other)
                        .ok_or_else(|| format!("unknown workload `{other}`: use commands, insert, if-match or all"))?],
                }
            }
            "--orders" => options.orders = number(value()?)?,
            "--rounds" => options.rounds = number(value()?)?,
            "--events" => options.events = number(value()?)?,
            "--batch" => options.batch = value()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--samples" => options.samples = number(value()?)?,
            "--messages" => options.messages = number(value()?)?,
            "--nats-url" => options.nats_url = Some(value()?),
            "--postgres-url" => options.postgres_url = Some(value()?),
            "--mysql-url" => options.mysql_url = Some(value()?),
            "--side" => {
                options.side = Some(match value()?.as_str() {
                    "statefold" => Side::Statefold,
                    "hand" => Side::Hand,
                    "fenced" => Side::Fenced,
                    "transition" => Side::Transition,
                    "effects" => Side::Effects,
                    "grpc" => Side::Grpc,
                    other => {
                        return Err(format!(
                            "unknown side `{other}`: use statefold, hand, fenced, grpc, transition or effects"
                        ))
                    }
                })
            }
            "--url" => options.url = Some(value()?),
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}`; see --help")),
        }
    }
    if options.clients.is_empty() || options.clients.iter().any(|&c| c == 0 || c > 64) {
        return Err("--clients takes numbers from 1 to 64".into());
    }
    if options.orders == 0 || options.rounds == 0 {
        return Err("--orders and --rounds must be at least 1".into());
    }
    if options.events == 0 || options.batch == 0 || options.samples < 2 || options.messages == 0 {
        return Err("--events, --batch and --messages must be at least 1, --samples at least 2".into());
    }
    if options.side.is_some() != options.url.is_some() {
        return Err("--side and --url go together (child mode)".into());
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let result = match (options.side, options.url.as_deref()) {
        (Some(side), Some(url)) => child::serve(&options, side, url).await,
        _ => run(&options).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: &Options) -> Result<(), BoxError> {
    let all = options.bench == Bench::All;
    if all || options.bench == Bench::Transitions {
        transitions::run(options).await?;
    }
    if all || options.bench == Bench::Catchup {
        catchup::run(options).await?;
    }
    if all || options.bench == Bench::Latency {
        latency::run(options).await?;
    }
    if all || options.bench == Bench::Effects {
        effects::run(options).await?;
    }
    if all || options.bench == Bench::Grpc {
        grpc::run(options).await?;
    }
    if options.bench == Bench::Relay {
        relay::run(options).await?;
    }
    Ok(())
}

/// The median of at least one value.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}

//! What a run of effects costs on PostgreSQL, in statements the server
//! receives (counted by a proxy in front of it, `statefold_tests::wire`):
//! a transition by id alone, a run of one transition and one message, and
//! its replay.

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use statefold::effects::Runner;
use statefold::{Backend, Metadata, Postgres, Store};
use statefold_tests::db::TestBackend;
use statefold_tests::effects::{block, Card, CardActive};
use statefold_tests::wire::Counting;
use std::str::FromStr;

/// Given a store and a runner whose connection goes through the counting
/// proxy, when a card is blocked by id, and another is blocked by effects
/// of one transition and one message, then the run costs at most one
/// statement more than the transition alone (it costs one: the same as
/// the transition), and its replay two (the refused claim, the outcome's read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(statefold_no_postgres_url, ignore = "STATEFOLD_TEST_POSTGRES_URL is not set (see DEVELOPERS.md)")]
async fn a_run_costs_at_most_one_statement_more_than_its_transition() {
    let Some(db) = Postgres::create("statements").await else { return };
    db.store::<Card>().await.create_support_tables().await.expect("support tables are created");
    let options = PgConnectOptions::from_str(&db.url).expect("the test database's URL parses");
    let proxy = Counting::start(format!("{}:{}", options.get_host(), options.get_port())).await;
    let through_proxy = options.host("127.0.0.1").port(proxy.port).ssl_mode(PgSslMode::Disable);
    let pool = Postgres::pool_options().max_connections(1).connect_with(through_proxy).await.expect("connects");
    let cards = Store::<Card, Postgres>::new(pool.clone());
    let runner = Runner::new(pool).with_store(&cards);

    // The first round prepares each statement (a wait more, once per connection).
    for round in 0..3 {
        let card = cards.insert(CardActive { customer: format!("ada {round}") }).await.expect("inserted");
        let before = proxy.counts();
        let blocked = statefold_tests::effects::Card::Blocked { reason: "lost".into() };
        cards.transition(card.id(), blocked, Metadata::new()).await.expect("blocked by id");
        let transition = proxy.counts() - before;

        let card = cards.insert(CardActive { customer: format!("bob {round}") }).await.expect("inserted");
        let effects = block(card, "lost");
        let key = format!("block-{round}");
        let before = proxy.counts();
        assert!(!runner.run(&key, &effects).await.expect("runs").replayed);
        let run = proxy.counts() - before;
        let before = proxy.counts();
        assert!(runner.run(&key, &effects).await.expect("replays").replayed);
        let replay = proxy.counts() - before;

        eprintln!("round {round}: transition {transition:?}, run {run:?}, replay {replay:?}");
        if round > 0 {
            assert_eq!(transition.statements, 1);
            assert!(run.statements <= transition.statements + 1, "the target: {run:?} vs {transition:?}");
            assert_eq!(run.statements, transition.statements, "as many statements as the transition alone");
            assert_eq!(replay.statements, 2);
        }
    }
}

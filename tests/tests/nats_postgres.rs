//! The JetStream relay, source and destination over PostgreSQL.

statefold_tests::nats_suite!(statefold::Postgres, ignore if any(statefold_no_postgres_url, statefold_no_nats_url), "needs STATEFOLD_TEST_NATS_URL and the database's URL (see DEVELOPERS.md)");

//! The JetStream relay, source and destination over SQLite.

statefold_tests::nats_suite!(statefold::Sqlite, ignore if statefold_no_nats_url, "needs STATEFOLD_TEST_NATS_URL (see DEVELOPERS.md)");

//! The JetStream relay, source and destination over MySQL.

statefold_tests::nats_suite!(statefold::MySql, ignore if any(statefold_no_mysql_url, statefold_no_nats_url), "needs STATEFOLD_TEST_NATS_URL and the database's URL (see DEVELOPERS.md)");

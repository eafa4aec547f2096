//! Side effects, idempotency keys and the outbox on MySQL.

statefold_tests::effects_suite!(statefold::MySql, ignore if statefold_no_mysql_url, "STATEFOLD_TEST_MYSQL_URL is not set (see DEVELOPERS.md)");

//! Side effects, idempotency keys and the outbox on PostgreSQL.

statefold_tests::effects_suite!(statefold::Postgres, ignore if statefold_no_postgres_url, "STATEFOLD_TEST_POSTGRES_URL is not set (see DEVELOPERS.md)");

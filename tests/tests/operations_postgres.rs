//! What operators rely on, on PostgreSQL: runs against `STATEFOLD_TEST_POSTGRES_URL`.

statefold_tests::operations_suite!(statefold::Postgres);

//! The store's behaviour suite on PostgreSQL: runs against `STATEFOLD_TEST_POSTGRES_URL`.

statefold_tests::suite!(statefold::Postgres);

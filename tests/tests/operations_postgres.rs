//! What operators rely on, on PostgreSQL: runs against `STATEFOLD_TEST_POSTGRES_URL`.

statefold_tests::operations_suite!(statefold::Postgres, ignore if statefold_no_postgres_url, "STATEFOLD_TEST_POSTGRES_URL is not set (see DEVELOPERS.md)");

//! The store's behaviour suite on PostgreSQL: runs against `STATEFOLD_TEST_POSTGRES_URL`.

statefold_tests::suite!(statefold::Postgres, ignore if statefold_no_postgres_url, "STATEFOLD_TEST_POSTGRES_URL is not set (see DEVELOPERS.md)");

//! Streams and consumers on Postgres.

statefold_tests::stream_suite!(statefold::Postgres, ignore if statefold_no_postgres_url, "STATEFOLD_TEST_POSTGRES_URL is not set (see DEVELOPERS.md)");

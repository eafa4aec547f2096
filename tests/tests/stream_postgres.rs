//! Streams and consumers on Postgres.

statefold_tests::stream_suite!(statefold::Postgres);

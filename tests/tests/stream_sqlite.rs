//! Streams and consumers on Sqlite.

statefold_tests::stream_suite!(statefold::Sqlite);

//! Streams and consumers on MySql.

statefold_tests::stream_suite!(statefold::MySql);

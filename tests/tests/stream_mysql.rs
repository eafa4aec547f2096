//! Streams and consumers on MySql.

statefold_tests::stream_suite!(statefold::MySql, ignore if statefold_no_mysql_url, "STATEFOLD_TEST_MYSQL_URL is not set (see DEVELOPERS.md)");

//! What operators rely on, on MySQL: runs against `STATEFOLD_TEST_MYSQL_URL`.

statefold_tests::operations_suite!(statefold::MySql, ignore if statefold_no_mysql_url, "STATEFOLD_TEST_MYSQL_URL is not set (see DEVELOPERS.md)");

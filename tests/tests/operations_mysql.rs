//! What operators rely on, on MySQL: runs against `STATEFOLD_TEST_MYSQL_URL`.

statefold_tests::operations_suite!(statefold::MySql);

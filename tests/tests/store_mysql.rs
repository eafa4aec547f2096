//! The store's behaviour suite on MySQL: runs against `STATEFOLD_TEST_MYSQL_URL` (MySQL or MariaDB).

statefold_tests::suite!(statefold::MySql, ignore if statefold_no_mysql_url, "STATEFOLD_TEST_MYSQL_URL is not set (see DEVELOPERS.md)");

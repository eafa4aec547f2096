//! The store's behaviour suite on MySQL: runs against `STATEFOLD_TEST_MYSQL_URL` (MySQL or MariaDB).

statefold_tests::suite!(statefold::MySql);

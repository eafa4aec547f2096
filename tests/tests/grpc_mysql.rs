//! Event streams over gRPC from MySQL.

statefold_tests::grpc_suite!(statefold::MySql, ignore if statefold_no_mysql_url, "STATEFOLD_TEST_MYSQL_URL is not set (see DEVELOPERS.md)");

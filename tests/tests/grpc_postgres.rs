//! Event streams over gRPC from Postgres.

statefold_tests::grpc_suite!(statefold::Postgres, ignore if statefold_no_postgres_url, "STATEFOLD_TEST_POSTGRES_URL is not set (see DEVELOPERS.md)");

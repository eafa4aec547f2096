//! Event streams over gRPC from SQLite.

statefold_tests::grpc_suite!(statefold::Sqlite);

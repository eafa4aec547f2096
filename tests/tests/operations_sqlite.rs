//! What operators rely on, on SQLite.

statefold_tests::operations_suite!(statefold::Sqlite);

//! The store's behaviour suite on SQLite: always runs, on a temporary file.

statefold_tests::suite!(statefold::Sqlite);

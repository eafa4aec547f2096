//! Side effects, idempotency keys and the outbox on SQLite.

statefold_tests::effects_suite!(statefold::Sqlite);

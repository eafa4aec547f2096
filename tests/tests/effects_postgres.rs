//! Side effects, idempotency keys and the outbox on PostgreSQL.

statefold_tests::effects_suite!(statefold::Postgres);

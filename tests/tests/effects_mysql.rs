//! Side effects, idempotency keys and the outbox on MySQL.

statefold_tests::effects_suite!(statefold::MySql);

//! Machines shared by statefold's tests.

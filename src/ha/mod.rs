//! High availability (`[ha]`): nodes sharing one PostgreSQL database elect one leader through a
//! lease row in it (docs/high-availability.md).
//!
//! - `sql`: ADAPTER: the lease, nodes and inbox rows in PostgreSQL (tokio-postgres).
//! - `lease`: PURE: one node's view of the lease; the database's answers and `now` in,
//!   questions, "lead" and "step down" out.

pub mod lease;
pub mod sql;

#[cfg(test)]
mod lease_tests;

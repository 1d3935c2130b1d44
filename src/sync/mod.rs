//! The sync core: pure logic, no I/O, no clock reads. It imports no other module of the crate.
pub mod engine;
mod engine_types;
pub mod mapping;
pub mod pacing;
mod packed;
pub(crate) mod table;
pub mod types;

//! The sync core: pure logic, no I/O, no clock reads. It imports no other module of the crate.
pub mod engine;
pub mod mapping;
pub mod types;

//! Change-notification subscriptions, decided purely: no I/O, no clock reads.
pub mod shards;

//! pbx (in progress)

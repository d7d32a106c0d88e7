//! Formats spoken with others: the worker's environment protocols, the
//! control protocol.
pub mod control;
pub mod env;

//! Formats spoken with others: the worker's environment protocols, the
//! control protocol, sd_notify datagrams and einhorn's messages.
pub mod control;
pub mod einhorn;
pub mod env;
pub mod event;
pub mod sd_notify;

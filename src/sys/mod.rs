//! The only module with `unsafe`: starting processes, daemonizing, taking
//! ownership of inherited fds.
#![allow(unsafe_code)]

pub mod spawn;

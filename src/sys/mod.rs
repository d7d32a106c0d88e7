//! The only module with `unsafe`: fork and exec of workers, daemonizing,
//! a child's death signal, and the ownership of inherited fds. Every block
//! carries a `// SAFETY:` line; the functions offered are safe to call.
#![allow(unsafe_code)]

pub mod fd;
pub mod process;
pub mod spawn;

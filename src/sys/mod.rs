//! The only module with `unsafe`: fork and exec of workers, daemonizing,
//! a child's death signal, the ownership of inherited fds (from a service
//! manager, or from this process's previous image after a self-upgrade)
//! and their close-on-exec flags, reading a carried record by number,
//! executing an fd kept by number, signal dispositions held across an
//! exec, taking a variable out of the environment, and reading what other
//! processes wait in (`observe`). Every block carries a `// SAFETY:` line;
//! the functions offered are safe to call.
#![allow(unsafe_code)]

pub mod clock;
pub mod fd;
pub mod observe;
pub mod process;
pub mod sockfilter;
pub mod spawn;

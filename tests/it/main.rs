//! Integration tests: the real `handover` binary with the example workers.
mod harness;

mod errors;
mod files;
mod lifecycle;

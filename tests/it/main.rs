//! Integration tests: the real `handover` binary with the example workers.
mod harness;

mod lifecycle;

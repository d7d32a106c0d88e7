//! Integration tests: the real `handover` binary with the example workers.
mod harness;

mod compat;
mod errors;
mod files;
mod lifecycle;
mod protocols;
mod systemd;

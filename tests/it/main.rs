//! Integration tests: the real `handover` binary with the example workers.
mod harness;

mod activation;
mod compat;
mod errors;
mod files;
mod lifecycle;
mod logs;
mod processes;
mod protocols;
mod systemd;

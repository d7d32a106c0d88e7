//! Integration tests: the real `handover` binary with the example workers.
mod harness;

mod activation;
mod attacks;
mod compat;
mod control;
mod control_abuse;
mod drill;
mod errors;
mod faults;
mod files;
mod layers;
mod lifecycle;
mod listeners;
mod logger;
mod logs;
mod packaging;
mod processes;
mod protocols;
mod readiness;
mod servers;
mod servers_drilled;
mod systemd;
mod upgrade;
mod upgrade_config;
mod upgrade_refused;
mod upgrade_rollback;

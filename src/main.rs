//! handover: zero-downtime restarts for network servers.
//!
//! The entry point only (see `handover::supervisor_main`). Exit codes: 0
//! clean stop; 1 runtime failure; 2 usage or configuration error; 126/127
//! the worker cannot be executed / found at the first start (or `handover
//! drill`'s executable); 128+N ended by signal N.
fn main() -> std::process::ExitCode {
    handover::supervisor_main()
}

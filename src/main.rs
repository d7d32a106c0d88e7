//! handover: zero-downtime restarts for network servers.
//!
//! Thin entry point: parse, run, map the outcome to an exit code and at
//! most one line on stderr. Exit codes: 0 clean stop; 1 runtime failure;
//! 2 usage or configuration error; 126/127 the worker cannot be executed /
//! found at the first start.
mod cli;
mod client;
mod config;
mod drill;
mod error;
mod listen;
mod machine;
mod state;
mod supervisor;
mod sys;
mod wire;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use clap::error::ErrorKind;

use crate::cli::{Client, HandoverCli, StartServerCli, StartServerOpts, Target};
use crate::config::{Config, parse_duration};
use crate::error::Fatal;
use crate::wire::control::Command;

fn main() -> ExitCode {
    let args = cli::normalize_args(std::env::args_os().collect());
    let compat =
        args.first().and_then(|arg0| Path::new(arg0).file_name()).is_some_and(|name| name == "start_server");
    let name = if compat { "start_server" } else { "handover" };
    match run(compat, args) {
        Ok(code) => ExitCode::from(code as u8),
        Err(fatal) => {
            if !fatal.message.is_empty() {
                eprintln!("{name}: {}", fatal.message);
            }
            ExitCode::from(fatal.code as u8)
        }
    }
}

fn run(compat: bool, args: Vec<OsString>) -> Result<i32, Fatal> {
    if !compat && args.get(1).is_some_and(|a| a == "drill") {
        return drill::main(args.into_iter().skip(2).collect());
    }
    let (opts, more, client, command) = if compat {
        let cli = StartServerCli::try_parse_from(args).map_err(|e| usage(e, compat))?;
        (cli.opts, Default::default(), None, cli.command.command)
    } else {
        let cli = HandoverCli::try_parse_from(args).map_err(|e| usage(e, compat))?;
        (cli.opts, cli.more, cli.client, cli.command.command)
    };
    if let Some(client) = client {
        return run_client(client);
    }
    if opts.restart || opts.stop {
        return run_legacy_client(&opts);
    }
    let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let config = Config::new(compat, opts, more, command, env).map_err(|e| Fatal::new(2, e.0))?;
    supervisor::setup::run(config)
}

/// clap's help and version go to stdout with exit 0; errors become one line.
fn usage(err: clap::Error, compat: bool) -> Fatal {
    if compat && err.kind() == ErrorKind::DisplayVersion {
        // start_server prints the bare number; scripts compare it.
        println!("0.35");
        return Fatal::new(0, "");
    }
    if matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = err.print();
        return Fatal::new(0, "");
    }
    let rendered = err.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid arguments");
    let first = first.trim_start_matches("error: ");
    Fatal::new(2, format!("{first} (see --help)"))
}

fn require(path: &Option<PathBuf>, option: &str, mode: &str) -> Result<PathBuf, Fatal> {
    path.clone().ok_or_else(|| Fatal::new(2, format!("{mode} needs {option}")))
}

fn client_error(e: client::ClientError) -> Fatal {
    Fatal::new(e.code, e.message)
}

/// start_server's `--restart` and `--stop`.
fn run_legacy_client(opts: &StartServerOpts) -> Result<i32, Fatal> {
    let pid_file = require(&opts.pid_file, "--pid-file", if opts.restart { "--restart" } else { "--stop" })?;
    if opts.restart {
        let status_file = require(&opts.status_file, "--status-file", "--restart")?;
        let timeout = std::time::Duration::from_secs(120);
        client::restart(&pid_file, &status_file, timeout, |_| {}).map_err(client_error)?;
    } else {
        client::stop(&pid_file, None, announce_stop).map_err(client_error)?;
    }
    Ok(0)
}

fn announce_stop(target: u32) {
    eprintln!("stop_server (pid:{}) stopping now (pid:{target})...", std::process::id());
}

fn run_client(client: Client) -> Result<i32, Fatal> {
    let duration = |option: &str, text: &str| parse_duration(option, text).map_err(|e| Fatal::new(2, e.0));
    let over_control = |target: &Target| target.control.clone();
    match client {
        Client::Restart { target, wait, timeout } => {
            let timeout = duration("timeout", &timeout)?;
            if let Some(path) = over_control(&target) {
                if !wait {
                    client::control::send(&path, Command::Restart).map_err(client_error)?;
                    return Ok(0);
                }
                let reply = client::control::call(&path, Command::Restart, Some(timeout))
                    .and_then(client::control::check);
                println!("{}", supervisor::report::outcome_text(&reply.map_err(client_error)?));
                return Ok(0);
            }
            let pid_file = require(&target.pid_file, "--control or --pid-file", "handover restart")?;
            if !wait {
                client::hup(&pid_file).map_err(client_error)?;
                return Ok(0);
            }
            let status_file = require(&target.status_file, "--status-file", "handover restart --wait")?;
            let generation =
                client::restart(&pid_file, &status_file, timeout, |_| {}).map_err(client_error)?;
            println!("generation {generation} is serving");
        }
        Client::Stop { target, timeout } => {
            let timeout = timeout.map(|t| duration("timeout", &t)).transpose()?;
            if let Some(path) = over_control(&target) {
                let reply =
                    client::control::call(&path, Command::Stop, timeout).and_then(client::control::check);
                if let Some(pid) = reply.map_err(client_error)?["pid"].as_u64() {
                    client::wait_gone(pid as u32);
                }
                return Ok(0);
            }
            let pid_file = require(&target.pid_file, "--control or --pid-file", "handover stop")?;
            client::stop(&pid_file, timeout, |_| {}).map_err(client_error)?;
        }
        Client::Status { target, json } => {
            if let Some(path) = over_control(&target) {
                let reply = client::control::call(&path, Command::Status, Some(Duration::from_secs(10)));
                let reply = reply.and_then(client::control::check).map_err(client_error)?;
                match json {
                    true => println!("{reply}"),
                    false => print!("{}", supervisor::report::status_text(&reply)),
                }
                return Ok(0);
            }
            let status = client::status(target.pid_file.as_deref(), target.status_file.as_deref())
                .map_err(client_error)?;
            if json {
                println!("{}", serde_json::to_string(&status).unwrap_or_default());
            } else {
                print!("{}", status.to_text());
            }
        }
    }
    Ok(0)
}

//! From parsed arguments to what runs: the supervisor, a client command
//! (`restart`, `stop`, `status`, start_server's `--restart`/`--stop`), or
//! the drill. Returns the exit code; failures are `Error`s.
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use clap::error::ErrorKind;

use super::{Client, HandoverCli, StartServerCli, StartServerOpts, Target};
use crate::client;
use crate::config::{Config, parse_duration};
use crate::error::{Error, Result};
use crate::supervisor;
use crate::wire::control::{Command, Restarted, Status, Stopping, encode};

pub fn run(compat: bool, args: Vec<OsString>) -> Result<u8> {
    let parsed = if compat {
        StartServerCli::try_parse_from(args)
            .map(|cli| (cli.opts, Default::default(), None, cli.command.command))
    } else {
        HandoverCli::try_parse_from(args).map(|cli| (cli.opts, cli.more, cli.client, cli.command.command))
    };
    let (opts, more, client, command) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return usage(e, compat),
    };
    if let Some(client) = client {
        return run_client(client);
    }
    if opts.restart || opts.stop {
        return run_legacy_client(&opts);
    }
    let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let config = Config::new(compat, opts, more, command, env)?;
    supervisor::setup::run(config)
}

/// clap's help and version go to stdout with exit 0; errors become one line.
fn usage(err: clap::Error, compat: bool) -> Result<u8> {
    if compat && err.kind() == ErrorKind::DisplayVersion {
        // start_server prints the bare number; scripts compare it.
        println!("0.35");
        return Ok(0);
    }
    if matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = err.print();
        return Ok(0);
    }
    let rendered = err.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid arguments");
    let first = first.trim_start_matches("error: ");
    Err(Error::usage(format!("{first} (see --help)")))
}

fn require(path: &Option<PathBuf>, option: &str, mode: &str) -> Result<PathBuf> {
    path.clone().ok_or_else(|| Error::usage(format!("{mode} needs {option}")))
}

/// start_server's `--restart` and `--stop`.
fn run_legacy_client(opts: &StartServerOpts) -> Result<u8> {
    let pid_file = require(&opts.pid_file, "--pid-file", if opts.restart { "--restart" } else { "--stop" })?;
    if opts.restart {
        let status_file = require(&opts.status_file, "--status-file", "--restart")?;
        let timeout = std::time::Duration::from_secs(120);
        client::restart(&pid_file, &status_file, timeout, |_| {})?;
    } else {
        client::stop(&pid_file, None, announce_stop)?;
    }
    Ok(0)
}

fn announce_stop(target: u32) {
    eprintln!("stop_server (pid:{}) stopping now (pid:{target})...", std::process::id());
}

fn run_client(client: Client) -> Result<u8> {
    let duration = parse_duration;
    let over_control = |target: &Target| target.control.clone();
    match client {
        Client::Restart { target, wait, timeout } => {
            let timeout = duration("timeout", &timeout)?;
            if let Some(path) = over_control(&target) {
                if !wait {
                    client::control::send(&path, Command::Restart)?;
                    return Ok(0);
                }
                let done: Restarted = client::control::call(&path, Command::Restart, Some(timeout))?;
                println!("{}", client::show::outcome_text(&done));
                return Ok(0);
            }
            let pid_file = require(&target.pid_file, "--control or --pid-file", "handover restart")?;
            if !wait {
                client::hup(&pid_file)?;
                return Ok(0);
            }
            let status_file = require(&target.status_file, "--status-file", "handover restart --wait")?;
            let generation = client::restart(&pid_file, &status_file, timeout, |_| {})?;
            println!("generation {generation} is serving");
        }
        Client::Stop { target, timeout } => {
            let timeout = timeout.map(|t| duration("timeout", &t)).transpose()?;
            if let Some(path) = over_control(&target) {
                let stopping: Stopping = client::control::call(&path, Command::Stop, timeout)?;
                client::wait_gone(stopping.pid);
                return Ok(0);
            }
            let pid_file = require(&target.pid_file, "--control or --pid-file", "handover stop")?;
            client::stop(&pid_file, timeout, |_| {})?;
        }
        Client::Status { target, json } => {
            if let Some(path) = over_control(&target) {
                let status: Status =
                    client::control::call(&path, Command::Status, Some(Duration::from_secs(10)))?;
                match json {
                    true => println!("{}", String::from_utf8_lossy(&encode(&status)).trim_end()),
                    false => print!("{}", client::show::status_text(&status)),
                }
                return Ok(0);
            }
            let status = client::status(target.pid_file.as_deref(), target.status_file.as_deref())?;
            if json {
                println!("{}", serde_json::to_string(&status).unwrap_or_default());
            } else {
                print!("{}", status.to_text());
            }
        }
    }
    Ok(0)
}

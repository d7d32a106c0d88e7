//! From parsed arguments to what runs: the supervisor, a client command
//! (`restart`, `stop`, `status`, `upgrade`, `reopen`, start_server's
//! `--restart`/`--stop`), the new program of a self-upgrade, its verify
//! run, or the drill. Returns the exit code; failures are `Error`s.
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use clap::error::ErrorKind;

use super::{Client, HandoverCli, StartServerCli, StartServerOpts};
use crate::client;
use crate::config::{Config, parse_duration};
use crate::error::{Error, Result};
use crate::supervisor;
use crate::wire::control::{
    Command, Metrics, Reopened, Request, Restarted, Status, Stopping, Upgraded, encode,
};

/// `handed`: what the previous image handed over, when this process is a
/// supervisor that just executed a new handover binary: it takes over with
/// the configuration its record carries.
pub fn run(compat: bool, args: Vec<OsString>, handed: Option<supervisor::upgrade::Handed>) -> Result<u8> {
    if let Some(handed) = handed {
        return supervisor::upgrade::resume(handed, supervisor_config);
    }
    let (opts, more, client, command) = match parse(compat, args) {
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

/// The configuration of the supervisor a state record describes: its
/// command line and environment, parsed by this handover, with what the
/// record says the first start took from elsewhere (the envdir, socket
/// activation, users). A record without it (an older handover's) has
/// those looked up again.
pub fn supervisor_config(record: &supervisor::upgrade::record::Record) -> Result<Config> {
    let args = super::normalize_args(record.argv.clone());
    let compat = super::invoked_as_start_server(&args);
    let not_supervisor = || Error::runtime("the recorded command line does not run a supervisor");
    let (opts, more, client, command) = parse(compat, args).map_err(|_| not_supervisor())?;
    if client.is_some() || opts.restart || opts.stop {
        return Err(not_supervisor());
    }
    let carried = record.config.as_ref().map(|config| config.given());
    Config::build(compat, opts, more, command, record.env.clone(), carried)
}

type Parsed = (StartServerOpts, super::HandoverOpts, Option<Client>, Vec<OsString>);

fn parse(compat: bool, args: Vec<OsString>) -> std::result::Result<Parsed, clap::Error> {
    if compat {
        StartServerCli::try_parse_from(args)
            .map(|cli| (cli.opts, Default::default(), None, cli.command.command))
    } else {
        HandoverCli::try_parse_from(args).map(|cli| (cli.opts, cli.more, cli.client, cli.command.command))
    }
}

/// The verify run, by a supervisor before it upgrades to this binary
/// (`HANDOVER_UPGRADE_STATE=verify` with the supervisor's own command
/// line, as the exec would run it; `--verify-upgrade-state` from a
/// handover before roll-back): reads the state record on stdin, checks that
/// this handover can take over with it (its format, its command line, its
/// state machine), and says so on stdout. Exit 0 only then.
pub fn verify_upgrade() -> Result<u8> {
    use supervisor::upgrade::{self, VERIFY_OK, VERSION, record::FORMAT};
    let record = upgrade::resume::read_record(std::io::stdin().lock())?;
    let config = supervisor_config(&record)?;
    upgrade::check(&config, &record)?;
    println!("{VERIFY_OK} {VERSION} format={FORMAT}");
    Ok(0)
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
    let mut lines = rendered.lines();
    let first = lines.next().unwrap_or("invalid arguments").trim_start_matches("error: ");
    // "the following required arguments were not provided:" lists them below.
    let listed: Vec<&str> = match first.ends_with(':') {
        true => lines.map(str::trim).take_while(|l| !l.is_empty()).collect(),
        false => Vec::new(),
    };
    let first = if listed.is_empty() { first.to_string() } else { format!("{first} {}", listed.join(", ")) };
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
    // What `reopen`, `metrics` and `status` wait for their answer.
    let short = Some(Duration::from_secs(10));
    match client {
        Client::Restart { target, wait, timeout } => {
            let timeout = duration("timeout", &timeout)?;
            if let Some(path) = &target.control {
                if !wait {
                    client::control::send(path, Command::Restart)?;
                    return Ok(0);
                }
                let done: Restarted = client::control::call(path, Command::Restart, Some(timeout))?;
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
            if let Some(path) = &target.control {
                let stopping: Stopping = client::control::call(path, Command::Stop, timeout)?;
                client::wait_gone(stopping.pid);
                return Ok(0);
            }
            let pid_file = require(&target.pid_file, "--control or --pid-file", "handover stop")?;
            client::stop(&pid_file, timeout, |_| {})?;
        }
        Client::Upgrade { control, binary, wait, timeout } => {
            let timeout = duration("timeout", &timeout)?;
            let absolute = |b: PathBuf| match std::path::absolute(&b) {
                Ok(path) => Ok(path.to_string_lossy().into_owned()),
                Err(e) => Err(Error::usage(format!("--binary {}: {e}", b.display()))),
            };
            let binary = binary.map(absolute).transpose()?;
            let request = Request { command: Command::Upgrade, binary, wait };
            let done: Upgraded = client::control::request(&control, &request, Some(timeout))?;
            println!("{}", client::show::upgrade_text(&done));
        }
        Client::Events { control, follow } => return client::events::run(&control, follow),
        Client::Metrics { control } => {
            let page: Metrics = client::control::call(&control, Command::Metrics, short)?;
            print!("{}", page.text);
        }
        Client::Reopen { control } => {
            let done: Reopened = client::control::call(&control, Command::Reopen, short)?;
            println!("{}", client::show::reopen_text(&done));
        }
        Client::Status { target, json, serving } => {
            if let Some(path) = &target.control {
                let status: Status = client::control::call(path, Command::Status, short)?;
                if serving {
                    return client::show::not_serving(&status).map_or(Ok(0), |why| Err(Error::runtime(why)));
                }
                match json {
                    true => println!("{}", String::from_utf8_lossy(&encode(&status)).trim_end()),
                    false => print!("{}", client::show::status_text(&status)),
                }
                return Ok(0);
            }
            let status = client::status(target.pid_file.as_deref(), target.status_file.as_deref())?;
            if serving {
                let why = match (status.running, status.generations.is_empty()) {
                    (true, false) => return Ok(0),
                    (true, true) => "the status file lists none",
                    (false, _) => "the supervisor is not running",
                };
                return Err(Error::runtime(format!("no generation is serving: {why}")));
            }
            if json {
                println!("{}", serde_json::to_string(&status).unwrap_or_default());
            } else {
                print!("{}", status.to_text());
            }
        }
    }
    Ok(0)
}

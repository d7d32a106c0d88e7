//! The validated, immutable configuration.
//!
//! Everything an operator can get wrong is checked here, before anything is
//! bound, written or spawned: a bad value ends the program with one line and
//! exit code 2, leaving nothing behind.
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;

pub mod options;

use crate::error::{Error, Result, printable};
use crate::listen::ListenSpec;
use crate::machine::{Policy, ReadyMode};
use crate::state;
use crate::sys::spawn::Credentials;
use crate::wire::env as protocol;
use options::{HandoverOpts, LogFormat, ReadyArg, SignalTarget, StartServerOpts};

fn fail<T>(message: impl Into<String>) -> Result<T> {
    Err(Error::usage(message))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    File(PathBuf),
    /// `| COMMAND`: run by `/bin/sh -c`, fed our stdout and stderr.
    Pipe(String),
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Invoked as `start_server`: print only its lines, unprefixed.
    pub compat: bool,
    pub listeners: Vec<ListenSpec>,
    /// The fd each listener gets in the worker, in listener order.
    pub fds: Vec<i32>,
    pub backlog: i32,
    pub command: Vec<OsString>,
    pub dir: Option<PathBuf>,
    pub policy: Policy,
    pub pid_file: Option<PathBuf>,
    pub status_file: Option<PathBuf>,
    pub envdir: Option<PathBuf>,
    pub log: Option<LogTarget>,
    /// Sockets our own service manager passed us (LISTEN_PID is ours).
    pub activation: Option<protocol::Activation>,
    /// `--signal-target group`: signals go to the worker's process group.
    pub signal_group: bool,
    /// `--announce`: the fd protocols the workers are told about.
    pub announce: protocol::Announce,
    /// `--user`/`--group`: who the workers run as.
    pub credentials: Option<crate::sys::spawn::Credentials>,
    /// `--log-capture`: workers' output through our pipes, in this format.
    pub capture: Option<LogFormat>,
    /// `--watch`: paths whose changes restart the worker.
    pub watch: Vec<PathBuf>,
    /// `--control`: the control socket's path.
    pub control: Option<PathBuf>,
    pub daemonize: bool,
    /// The supervisor's environment at startup, minus its private variables,
    /// plus the variables start_server exports (ENVDIR, KILL_OLD_DELAY, ...).
    pub base_env: Vec<(OsString, OsString)>,
}

/// The most workers a generation may have: each is a process, and all N
/// are forked in one turn of the loop.
pub const MAX_WORKERS: usize = 10_000;

/// The longest duration any option or variable accepts. Longer is a typo
/// (or `u64::MAX`), and every deadline stays far from the clock's limits.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Plain seconds (start_server) or a humane duration (`500ms`, `2s`, `1m`),
/// at most `MAX_DURATION`, for `--OPTION`.
pub fn parse_duration(option: &str, text: &str) -> Result<Duration> {
    parse_duration_of(&format!("--{option}"), text)
}

/// `parse_duration` for a value named `name` (`--interval`, `KILL_OLD_DELAY`).
fn parse_duration_of(name: &str, text: &str) -> Result<Duration> {
    let text = text.trim();
    let invalid = |why: &str| fail(format!("invalid {name} value {text:?}: {why}"));
    if text.starts_with('-') {
        return invalid("must not be negative");
    }
    let parsed = if let Ok(secs) = text.parse::<u64>() {
        Some(Duration::from_secs(secs))
    } else if let Ok(secs) = text.parse::<f64>() {
        if !secs.is_finite() {
            return invalid("expected seconds or a duration like 500ms, 2s, 1m");
        }
        // Finite and not negative: only too large a value fails here.
        Duration::try_from_secs_f64(secs).ok()
    } else {
        match humantime::parse_duration(text) {
            Ok(duration) => Some(duration),
            Err(humantime::DurationError::NumberOverflow) => None,
            Err(_) => return invalid("expected seconds or a duration like 500ms, 2s, 1m"),
        }
    };
    match parsed {
        Some(duration) if duration <= MAX_DURATION => Ok(duration),
        _ => invalid("at most 365 days"),
    }
}

/// `TERM`, `SIGTERM`, `term` or a number, as start_server; checked now, not
/// at the first HUP (start_server's quirk Q5).
pub fn parse_signal(option: &str, text: &str) -> Result<Signal> {
    let upper = text.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    let parsed = match bare.parse::<i32>() {
        Ok(number) => Signal::try_from(number).ok(),
        Err(_) => Signal::from_str(&format!("SIG{bare}")).ok(),
    };
    match parsed {
        Some(signal @ (Signal::SIGKILL | Signal::SIGSTOP)) => fail(format!(
            "invalid --{option} value {text:?}: {signal} cannot be caught, so the worker could not finish \
             its requests; give TERM or QUIT (--drain-timeout and --stop-timeout end with SIGKILL)"
        )),
        None => fail(format!(
            "invalid --{option} value {text:?}: expected a signal name such as TERM, QUIT, USR1"
        )),
        Some(signal) => Ok(signal),
    }
}

/// `--stop-on-exit` codes: exit statuses, 0 to 255.
fn exit_codes(codes: &[i32]) -> Result<Vec<i32>> {
    match codes.iter().find(|code| !(0..=255).contains(*code)) {
        Some(code) => fail(format!("invalid --stop-on-exit value {code}: exit codes run from 0 to 255")),
        None => Ok(codes.to_vec()),
    }
}

/// systemd's watchdog, when it is meant for us: ping at half its period.
fn watchdog(env: &[(OsString, OsString)]) -> Option<Duration> {
    let usec: u64 = lookup(env, protocol::WATCHDOG_USEC)?.to_str()?.parse().ok()?;
    let ours = match lookup(env, protocol::WATCHDOG_PID) {
        Some(pid) => pid.to_str().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id()),
        None => true,
    };
    // A period beyond a year is as good as none; pinging then keeps deadlines small.
    (ours && usec > 0).then(|| Duration::from_micros(usec / 2).min(MAX_DURATION))
}

/// `--user`/`--group` as ids, with the user's supplementary groups.
fn credentials(user: Option<&str>, group: Option<&str>) -> Result<Option<Credentials>> {
    use nix::unistd::{Gid, Group, Uid, User, getgrouplist};
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    let user = match user {
        None => None,
        Some(name) => {
            let found = match name.parse::<u32>() {
                Ok(uid) => User::from_uid(Uid::from_raw(uid)),
                Err(_) => User::from_name(name),
            };
            let hint = "give an existing user name or uid";
            let name = printable(name);
            Some(
                found
                    .ok()
                    .flatten()
                    .ok_or_else(|| Error::usage(format!("--user {name}: no such user; {hint}")))?,
            )
        }
    };
    let gid = match group {
        None => None,
        Some(name) => {
            let found = match name.parse::<u32>() {
                Ok(gid) => Group::from_gid(Gid::from_raw(gid)),
                Err(_) => Group::from_name(name),
            };
            let hint = "give an existing group name or gid";
            let name = printable(name);
            Some(
                found
                    .ok()
                    .flatten()
                    .ok_or_else(|| Error::usage(format!("--group {name}: no such group; {hint}")))?
                    .gid,
            )
        }
    };
    let (uid, gid, groups) = match user {
        Some(user) => {
            let gid = gid.unwrap_or(user.gid);
            let name =
                std::ffi::CString::new(user.name.clone()).map_err(|_| Error::usage("bad user name"))?;
            let groups = getgrouplist(&name, gid).unwrap_or_else(|_| vec![gid]);
            (user.uid, gid, groups)
        }
        None => (Uid::effective(), gid.unwrap_or(Gid::effective()), vec![gid.unwrap_or(Gid::effective())]),
    };
    if !Uid::effective().is_root() && (uid != Uid::effective() || gid != Gid::effective()) {
        return fail("--user and --group need handover to run as root");
    }
    Ok(Some(Credentials {
        uid: uid.as_raw(),
        gid: gid.as_raw(),
        groups: groups.iter().map(|g| g.as_raw()).collect(),
    }))
}

/// Perl truth, as start_server reads ENABLE_AUTO_RESTART.
fn truthy(value: &OsStr) -> bool {
    !value.is_empty() && value != "0"
}

fn lookup<'a>(env: &'a [(OsString, OsString)], name: &str) -> Option<&'a OsStr> {
    env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_os_str())
}

impl Config {
    /// Build from the parsed options and the process environment.
    pub fn new(
        compat: bool,
        opts: StartServerOpts,
        more: HandoverOpts,
        command: Vec<OsString>,
        env: Vec<(OsString, OsString)>,
    ) -> Result<Config> {
        if opts.daemonize && opts.log_file.is_none() {
            return fail("--daemonize needs --log-file: a daemon's output has to go somewhere");
        }
        if more.workers == 0 {
            return fail("invalid --workers value 0: a generation needs at least one worker");
        }
        if more.workers > MAX_WORKERS {
            let n = more.workers;
            return fail(format!(
                "invalid --workers value {n}: at most {MAX_WORKERS} workers per generation"
            ));
        }
        if more.max_start_attempts == Some(0) {
            return fail(
                "invalid --max-start-attempts value 0: give 1 or more (without it, starts are retried for ever)",
            );
        }
        if command.is_empty() {
            return fail("no worker command given; usage: handover [OPTIONS] -- COMMAND [ARGS...]");
        }
        let mut listeners = Vec::new();
        for spec in &opts.port {
            listeners.push(ListenSpec::parse_port(spec)?);
        }
        listeners.extend(opts.path.iter().map(|p| ListenSpec::parse_path(&p.to_string_lossy())));
        for spec in &more.listen {
            listeners.push(ListenSpec::parse_listen(spec)?);
        }
        crate::listen::check_unique_names(&listeners)?;
        // TCP_NODELAY by default under handover's name: a request/response
        // server that forgets it waits 40 ms on Nagle and delayed ACKs.
        // start_server's name keeps its sockets as they were.
        let nodelay = !compat && !more.no_tcp_nodelay;
        for spec in &mut listeners {
            if matches!(spec.address, crate::listen::Address::Inet { udp: false, .. })
                && spec.nodelay.is_none()
            {
                spec.nodelay = Some(nodelay);
            }
        }
        let activation = protocol::decode_activation(&env, std::process::id()).map_err(Error::usage)?;
        let names: Vec<Option<&str>> = match &activation {
            Some(a) if listeners.is_empty() => a.names.iter().map(Option::as_deref).collect(),
            _ => listeners.iter().map(|l| l.name.as_deref()).collect(),
        };
        protocol::check_placeholders(&command, &names).map_err(Error::usage)?;
        let pins: Vec<Option<i32>> = listeners.iter().map(|l| l.pin).collect();
        let fds = protocol::place(&pins).map_err(Error::usage)?;
        if more.log_capture && fds.iter().any(|fd| (1..=2).contains(fd)) {
            return fail("--log-capture needs fds 1 and 2: do not pin a listener there (=1, =2)");
        }
        if let Some(dir) = &opts.dir
            && !dir.is_dir()
        {
            return fail(format!("--dir {}: not a directory", printable(&dir.to_string_lossy())));
        }

        // start_server takes these from its environment when the option is absent.
        let mut base_env: Vec<(OsString, OsString)> =
            env.iter().filter(|(k, _)| !protocol::is_supervisor_private(k)).cloned().collect();
        let mut export = |name: &str, value: OsString| {
            base_env.retain(|(k, _)| k != name);
            base_env.push((name.into(), value));
        };
        let envdir = opts.envdir.clone().or_else(|| lookup(&env, protocol::ENVDIR).map(PathBuf::from));
        let mut startup = env.clone();
        if let Some(dir) = &envdir {
            export(protocol::ENVDIR, dir.clone().into());
            let loaded = state::read_envdir(dir).map_err(Error::usage)?;
            startup = state::overlay_env(&env, &loaded.vars);
        }
        let auto =
            opts.enable_auto_restart || lookup(&startup, protocol::ENABLE_AUTO_RESTART).is_some_and(truthy);
        if opts.enable_auto_restart {
            export(protocol::ENABLE_AUTO_RESTART, "1".into());
        }
        let auto_interval = opts
            .auto_restart_interval
            .clone()
            .map(OsString::from)
            .or_else(|| lookup(&startup, protocol::AUTO_RESTART_INTERVAL).map(OsStr::to_os_string));
        if let Some(value) = auto_interval.clone().filter(|_| auto) {
            export(protocol::AUTO_RESTART_INTERVAL, value);
        }
        let kill_old_delay = opts
            .kill_old_delay
            .clone()
            .map(OsString::from)
            .or_else(|| lookup(&startup, protocol::KILL_OLD_DELAY).map(OsStr::to_os_string));
        if let Some(value) = &kill_old_delay {
            export(protocol::KILL_OLD_DELAY, value.clone());
        }

        // A value from the environment is named as its variable.
        let duration = |option: &str, value: Option<&OsStr>, default: Duration| match value {
            Some(text) => parse_duration(option, &text.to_string_lossy()),
            None => Ok(default),
        };
        let either = |option: &str, given: &Option<String>, variable: &str, value: Option<&OsStr>| match value
        {
            Some(text) if given.is_none() => parse_duration_of(variable, &text.to_string_lossy()).map(Some),
            Some(text) => parse_duration(option, &text.to_string_lossy()).map(Some),
            None => Ok(None),
        };
        let optional = |option: &str, value: &Option<String>| {
            value.as_deref().map(|text| parse_duration(option, text)).transpose()
        };
        let interval =
            duration("interval", opts.interval.as_deref().map(OsStr::new), Duration::from_secs(1))?;
        // The option is checked even when auto-restart is off (a bad value is
        // a mistake either way); the variable only when it is used.
        let given = &opts.auto_restart_interval;
        let value = auto_interval.as_deref().filter(|_| auto || given.is_some());
        let auto_interval = either("auto-restart-interval", given, protocol::AUTO_RESTART_INTERVAL, value)?;
        let auto_restart = auto.then(|| auto_interval.unwrap_or(Duration::from_secs(360)));
        let default_delay = Duration::from_secs(if auto { 5 } else { 0 });
        let stop_timeout = optional("stop-timeout", &more.stop_timeout)?;
        let policy = Policy {
            interval,
            ready: match more.ready {
                ReadyArg::Auto => ReadyMode::Auto,
                ReadyArg::Alive => ReadyMode::Alive,
                ReadyArg::Notify => ReadyMode::Notify,
            },
            ready_timeout: Some(
                optional("ready-timeout", &more.ready_timeout)?.unwrap_or(Duration::from_secs(60)),
            ),
            kill_old_delay: either(
                "kill-old-delay",
                &opts.kill_old_delay,
                protocol::KILL_OLD_DELAY,
                kill_old_delay.as_deref(),
            )?
            .unwrap_or(default_delay),
            drain_timeout: optional("drain-timeout", &more.drain_timeout)?,
            stop_timeout,
            signal_on_hup: parse_signal("signal-on-hup", opts.signal_on_hup.as_deref().unwrap_or("TERM"))?,
            signal_on_term: parse_signal("signal-on-term", opts.signal_on_term.as_deref().unwrap_or("TERM"))?,
            auto_restart,
            workers: more.workers,
            watchdog: watchdog(&env),
            stop_on_exit: exit_codes(&more.stop_on_exit)?,
            max_start_attempts: more.max_start_attempts,
            watch_debounce: Duration::from_millis(300),
            // What the workers left behind gets as long as the workers had
            // to stop (--stop-timeout), or 10 s when that is unlimited: the
            // supervisor's exit must not hang on a process it never started.
            orphan_grace: stop_timeout.unwrap_or(Duration::from_secs(10)),
        };
        let log = opts.log_file.as_deref().map(|text| match text.trim_start().strip_prefix('|') {
            Some(command) => LogTarget::Pipe(command.trim().to_string()),
            None => LogTarget::File(PathBuf::from(text)),
        });
        if let Some(LogTarget::Pipe(command)) = &log
            && command.is_empty()
        {
            return fail("--log-file \"|\" names no command: give \"| COMMAND\" or a file");
        }
        let backlog = match opts.backlog {
            Some(n) if n < 0 => {
                return fail(format!("invalid --backlog value {n}: must be 0 (default) or more"));
            }
            Some(n) if n > 0 => n,
            _ => 4096,
        };
        Ok(Config {
            compat,
            listeners,
            fds,
            backlog,
            command,
            dir: opts.dir,
            policy,
            pid_file: opts.pid_file,
            status_file: opts.status_file,
            envdir,
            log,
            activation,
            signal_group: more.signal_target == SignalTarget::Group,
            announce: match &more.announce {
                Some(text) => protocol::Announce::parse(text).map_err(Error::usage)?,
                None => protocol::Announce::ALL,
            },
            credentials: credentials(more.user.as_deref(), more.group.as_deref())?,
            capture: more.log_capture.then_some(more.log_format),
            watch: more.watch.clone(),
            control: more.control.clone(),
            daemonize: opts.daemonize,
            base_env,
        })
    }
}

#[cfg(test)]
mod tests;

//! The validated, immutable configuration.
//!
//! Everything an operator can get wrong is checked here, before anything is
//! bound, written or spawned: a bad value ends the program with one line and
//! exit code 2, leaving nothing behind.
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

pub mod options;
mod values;

use crate::error::{Error, Result, printable};
use crate::listen::ListenSpec;
use crate::machine::{Policy, ReadyMode};
use crate::state;
use crate::wire::env as protocol;
pub use options::OnUsr1;
use options::{CgroupMode, HandoverOpts, LogFormat, ReadyArg, SignalTarget, StartServerOpts};
#[cfg(test)]
pub use values::MAX_DURATION;
use values::{credentials, exit_codes, lookup, parse_duration_of, truthy, watchdog};
pub use values::{parse_duration, parse_signal};

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
    /// `--on-usr1`, its default resolved.
    pub on_usr1: OnUsr1,
    /// Sockets our own service manager passed us (LISTEN_PID is ours).
    pub activation: Option<protocol::Activation>,
    /// `--signal-target group`: signals go to the worker's process group.
    pub signal_group: bool,
    /// `--cgroup auto`: workers in cgroups of their own where possible.
    pub cgroups: bool,
    /// `--announce`: the fd protocols the workers are told about.
    pub announce: protocol::Announce,
    /// `--user`/`--group`: who the workers run as.
    pub credentials: Option<crate::sys::spawn::Credentials>,
    /// `--log-capture`: workers' output through our pipes, in this format.
    pub capture: Option<LogFormat>,
    /// `--log-format json`: the supervisor's own lines as JSON records.
    pub log_json: bool,
    /// `--metrics-listen`: where to serve the metrics over HTTP.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `--watch`: paths whose changes restart the worker.
    pub watch: Vec<PathBuf>,
    /// `--control`: the control socket's path.
    pub control: Option<PathBuf>,
    pub daemonize: bool,
    /// The supervisor's environment at startup, minus its private variables,
    /// plus the variables start_server exports (ENVDIR, KILL_OLD_DELAY, ...).
    pub base_env: Vec<(OsString, OsString)>,
    /// What was taken from outside the command line and the environment.
    pub given: Given,
}

/// What the configuration took from outside its command line and
/// environment at the first start: carried across a self-upgrade, so that
/// the new program builds the same configuration without looking again
/// (an upgrade changes the program, never the policy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Given {
    /// The envdir's values of the variables the configuration reads.
    pub envdir: Vec<(OsString, OsString)>,
    /// Socket activation addressed to the supervisor at its start.
    pub activation: Option<protocol::Activation>,
    /// `--user`/`--group` as they were looked up.
    pub credentials: Option<crate::sys::spawn::Credentials>,
}

/// The most workers a generation may have: each is a process, and all N
/// are forked in one turn of the loop.
pub const MAX_WORKERS: usize = 10_000;

impl Config {
    /// Build from the parsed options and the process environment.
    pub fn new(
        compat: bool,
        opts: StartServerOpts,
        more: HandoverOpts,
        command: Vec<OsString>,
        env: Vec<(OsString, OsString)>,
    ) -> Result<Config> {
        Config::build(compat, opts, more, command, env, None)
    }

    /// With `carried`, the configuration a self-upgrade's new program
    /// takes over with: the same command line and environment, and what
    /// `carried` says instead of reading the envdir, decoding socket
    /// activation and looking up users again (nor checking that `--dir` is
    /// still there).
    pub fn build(
        compat: bool,
        opts: StartServerOpts,
        more: HandoverOpts,
        command: Vec<OsString>,
        env: Vec<(OsString, OsString)>,
        carried: Option<Given>,
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
        let mut listeners: Vec<_> =
            opts.port.iter().map(|s| ListenSpec::parse_port(s)).collect::<Result<_>>()?;
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
        let activation = match &carried {
            Some(given) => given.activation.clone(),
            None => protocol::decode_activation(&env, std::process::id())?,
        };
        let names: Vec<Option<&str>> = match &activation {
            Some(a) if listeners.is_empty() => a.names.iter().map(Option::as_deref).collect(),
            _ => listeners.iter().map(|l| l.name.as_deref()).collect(),
        };
        protocol::check_placeholders(&command, &names)?;
        let pins: Vec<Option<i32>> = listeners.iter().map(|l| l.pin).collect();
        let fds = protocol::place(&pins)?;
        if more.log_capture && fds.iter().any(|fd| (1..=2).contains(fd)) {
            return fail("--log-capture needs fds 1 and 2: do not pin a listener there (=1, =2)");
        }
        if let Some(dir) = opts.dir.as_ref().filter(|_| carried.is_none())
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
        let mut from_envdir = Vec::new();
        if let Some(dir) = &envdir {
            export(protocol::ENVDIR, dir.clone().into());
            from_envdir = match &carried {
                Some(given) => given.envdir.clone(),
                None => {
                    let read = state::read_envdir(dir)?.vars;
                    let policy = [
                        protocol::ENABLE_AUTO_RESTART,
                        protocol::AUTO_RESTART_INTERVAL,
                        protocol::KILL_OLD_DELAY,
                    ];
                    read.into_iter().filter(|(k, _)| policy.iter().any(|p| k == *p)).collect()
                }
            };
            startup = state::overlay_env(&env, &from_envdir);
        }
        let auto =
            opts.enable_auto_restart || lookup(&startup, protocol::ENABLE_AUTO_RESTART).is_some_and(truthy);
        if opts.enable_auto_restart {
            export(protocol::ENABLE_AUTO_RESTART, "1".into());
        }
        let option_or_env = |given: &Option<String>, name| {
            given.clone().map(OsString::from).or_else(|| lookup(&startup, name).map(OsStr::to_os_string))
        };
        let auto_interval = option_or_env(&opts.auto_restart_interval, protocol::AUTO_RESTART_INTERVAL);
        if let Some(value) = auto_interval.clone().filter(|_| auto) {
            export(protocol::AUTO_RESTART_INTERVAL, value);
        }
        let kill_old_delay = option_or_env(&opts.kill_old_delay, protocol::KILL_OLD_DELAY);
        if let Some(value) = &kill_old_delay {
            export(protocol::KILL_OLD_DELAY, value.clone());
        }

        // A value from the environment is named as its variable.
        let either = |option: &str, given: &Option<String>, variable: &str, value: Option<&OsStr>| match value
        {
            Some(text) if given.is_none() => parse_duration_of(variable, &text.to_string_lossy()).map(Some),
            Some(text) => parse_duration(option, &text.to_string_lossy()).map(Some),
            None => Ok(None),
        };
        let optional = |option: &str, value: &Option<String>| {
            value.as_deref().map(|text| parse_duration(option, text)).transpose()
        };
        let interval = optional("interval", &opts.interval)?.unwrap_or(Duration::from_secs(1));
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
                ReadyArg::Accepting => ReadyMode::Accepting,
            },
            // start_server's name keeps its timer; nothing to watch without listeners.
            observe: !compat && (!listeners.is_empty() || activation.is_some()),
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
        let file = matches!(log, Some(LogTarget::File(_)));
        let on_usr1 = match more.on_usr1 {
            Some(what @ (OnUsr1::Reopen | OnUsr1::Both)) if !file => {
                let name = if what == OnUsr1::Reopen { "reopen" } else { "both" };
                return fail(format!(
                    "--on-usr1 {name} needs --log-file FILE: there is no log file to reopen (use --on-usr1 forward)"
                ));
            }
            Some(what) => what,
            None if file => OnUsr1::Reopen,
            None => OnUsr1::Forward,
        };
        let backlog = match opts.backlog {
            Some(n) if n < 0 => {
                return fail(format!("invalid --backlog value {n}: must be 0 (default) or more"));
            }
            Some(n) if n > 0 => n,
            _ => 4096,
        };
        let credentials = match &carried {
            Some(given) => given.credentials.clone(),
            None => credentials(more.user.as_deref(), more.group.as_deref())?,
        };
        Ok(Config {
            given: Given {
                envdir: from_envdir,
                activation: activation.clone(),
                credentials: credentials.clone(),
            },
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
            on_usr1,
            activation,
            signal_group: more.signal_target == SignalTarget::Group,
            cgroups: more.cgroup == CgroupMode::Auto,
            announce: match &more.announce {
                Some(text) => protocol::Announce::parse(text)?,
                None => protocol::Announce::ALL,
            },
            credentials,
            capture: more.log_capture.then_some(more.log_format),
            log_json: more.log_format == LogFormat::Json,
            metrics_listen: (more.metrics_listen.as_deref())
                .map(|addr| {
                    addr.parse().map_err(|_| {
                        Error::usage(format!(
                            "--metrics-listen {addr}: not an address such as 127.0.0.1:9100"
                        ))
                    })
                })
                .transpose()?,
            watch: more.watch.clone(),
            control: more.control.clone(),
            daemonize: opts.daemonize,
            base_env,
        })
    }
}

#[cfg(test)]
mod tests;

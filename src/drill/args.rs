//! `handover drill`'s command line: its own options are picked out by
//! exact name (so they never steal a supervisor option's abbreviation);
//! everything else, up to and including the worker command, is passed to
//! the supervisor under test unchanged.
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use super::load::MAX_SAMPLES;
use super::report::RetryLimit;
use crate::config::parse_duration;

mod unknown;
pub use unknown::unknown;

/// Run a server under handover (or another supervisor), drive load at its listeners
/// through hot restarts, and report whether any client noticed.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "handover drill",
    override_usage = "handover drill [SUPERVISOR OPTIONS] [DRILL OPTIONS] -- COMMAND [ARGS...]"
)]
pub struct Drill {
    /// Hot restarts to perform (at most 100000).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=MAX_STEPS).map(|n| n as usize))]
    pub restarts: usize,
    /// Upgrades of handover in place to perform, in turns with the restarts;
    /// each must keep the pids and the log lines (at most 100000).
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=MAX_STEPS).map(|n| n as usize))]
    pub upgrades: usize,
    /// Upgrade to this handover binary; given more than once, to each in
    /// turn [default: the one the supervisor was started from].
    #[arg(long, value_name = "PATH")]
    pub upgrade_binary: Vec<PathBuf>,
    /// Every answered request must leave a line containing TEXT in the
    /// supervisor's output (a server that logs each request, under
    /// --log-capture): fewer such lines than answered requests fail the
    /// drill, as log lines lost.
    #[arg(long, value_name = "TEXT")]
    pub log_line: Option<String>,
    /// Wait this long between restarts and upgrades [default: 600ms, which
    /// keeps each one's window of requests apart from the next one's].
    #[arg(long, value_name = "DURATION", value_parser = Checked(duration))]
    pub restart_every: Option<Duration>,
    /// Concurrent client connections (1 to 10000).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=MAX_CONNECTIONS).map(|n| n as usize))]
    pub connections: usize,
    /// Reuse connections (HTTP keep-alive) instead of one connection per request.
    #[arg(long)]
    pub keepalive: bool,
    /// Load for this long [default: until the restarts and upgrades are done].
    #[arg(long, value_name = "DURATION", value_parser = Checked(positive))]
    pub duration: Option<Duration>,
    /// Pace the load at this many requests per second in all, 1 to 1000000
    /// [default: as fast as answered].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=MAX_RATE))]
    pub rate: Option<u64>,
    /// Stop the load after this many requests (1 to 1000000000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=MAX_REQUESTS))]
    pub requests: Option<u64>,
    /// HTTP path to GET.
    #[arg(long, value_name = "PATH", default_value = "/")]
    pub get: String,
    /// HTTP status every answer must have (100 to 999).
    #[arg(long, value_name = "CODE", default_value_t = 200, value_parser = clap::value_parser!(u16).range(100..=999))]
    pub expect_status: u16,
    /// Raw TCP mode: send this (instead of HTTP) on each connection.
    #[arg(long, value_name = "TEXT")]
    pub raw_send: Option<String>,
    /// Raw TCP mode: the answer must start with this.
    #[arg(long, value_name = "TEXT", requires = "raw_send")]
    pub raw_expect: Option<String>,
    /// A request taking longer counts as a timeout (more than 0).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = Checked(positive))]
    pub request_timeout: Duration,
    /// The report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write DIR/report.html (the run drawn: requests per second, latency,
    /// the restarts, accept gaps and failed requests; self-contained) and
    /// DIR/report.json (the report with the series it is drawn from).
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Also write the report as JUnit XML.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Failed requests tolerated.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_failures: u64,
    /// Fail when the p99 latency exceeds this.
    #[arg(long, value_name = "DURATION", value_parser = Checked(duration))]
    pub max_p99: Option<Duration>,
    /// Keep-alive requests found closed and retried tolerated: N per
    /// connection and restart (what a server that closes idle connections
    /// when it stops costs: 1), or with `%` a share of all requests.
    #[arg(long, value_name = "N|PERCENT%", default_value = "1", value_parser = retry_limit)]
    pub max_retried: RetryLimit,
    /// A restart or upgrade not done after this long has failed [default: 120s].
    #[arg(long, value_name = "DURATION", value_parser = Checked(positive))]
    restart_timeout: Option<Duration>,
    /// The first generation not serving after this long fails the drill
    /// [default: --restart-timeout if given, else 60s].
    #[arg(long, value_name = "DURATION", value_parser = Checked(positive))]
    startup_timeout: Option<Duration>,
    /// Keep every request's detail up to this many (then only counts).
    #[arg(long, value_name = "N", default_value_t = MAX_SAMPLES, hide = true,
          value_parser = clap::value_parser!(u64).range(1..=MAX_SAMPLES))]
    pub max_samples: u64,
    /// After the load, measure the supervisor's CPU time and wake-ups over this long.
    #[arg(long, value_name = "DURATION", value_parser = Checked(duration))]
    pub idle: Option<Duration>,
    /// Drill this start_server-compatible program instead of handover:
    /// restarts by SIGHUP, timed from its --status-file.
    #[arg(long, value_name = "PROGRAM")]
    pub supervisor: Option<PathBuf>,
    /// Use DIR for the drill's files and keep it (created if missing):
    /// output.log holds the supervisor's and workers' output [default: a
    /// temporary directory, removed at the end].
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
}

/// `--restarts` and `--upgrades` at most.
pub const MAX_STEPS: u64 = 100_000;
/// `--connections` at most: a thread each.
pub const MAX_CONNECTIONS: u64 = 10_000;
/// `--rate` at most, requests per second.
pub const MAX_RATE: u64 = 1_000_000;
/// `--requests` at most.
pub const MAX_REQUESTS: u64 = 1_000_000_000;

/// `--restart-timeout`'s default.
const DEFAULT_RESTART_TIMEOUT: Duration = Duration::from_secs(120);
/// `--startup-timeout`'s default without `--restart-timeout`.
const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// `1`: per connection and restart; `0.5%`: a share from 0 to 100 percent.
fn retry_limit(text: &str) -> Result<RetryLimit, String> {
    let bad = || {
        format!(
            "expected retries per connection and restart (such as 1) or a percentage from 0 to 100 (such as 0.5%), got {text:?}"
        )
    };
    let (number, percent) = match text.trim().strip_suffix('%') {
        Some(number) => (number, true),
        None => (text.trim(), false),
    };
    let value = number.trim().parse::<f64>().map_err(|_| bad())?;
    match (percent, value) {
        (true, share) if (0.0..=100.0).contains(&share) => Ok(RetryLimit::Percent(share)),
        (false, n) if n.is_finite() && n >= 0.0 => Ok(RetryLimit::PerConnectionRestart(n)),
        _ => Err(bad()),
    }
}

/// The drill's own long options (help included), with whether each takes a
/// value, as clap declares them.
static OWN: LazyLock<Vec<(String, bool)>> = LazyLock::new(|| crate::cli::long_options(Drill::command()));

/// Split `drill`'s arguments (after the word `drill`) into its own and the supervisor's.
pub fn split(args: Vec<OsString>) -> (Vec<OsString>, Vec<OsString>) {
    let (mut own, mut theirs) = (vec![OsString::from("handover drill")], Vec::new());
    let mut iter = args.into_iter();
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy().into_owned();
        if text == "--" {
            theirs.push(arg);
            theirs.extend(iter.by_ref());
            break;
        }
        let name = text.strip_prefix("--").map(|n| n.split('=').next().unwrap_or(n));
        let mine = name.and_then(|n| OWN.iter().find(|(o, _)| o == n));
        let takes_value = match (mine, name) {
            (Some(&(_, value)), _) => value,
            (None, Some(n)) => crate::cli::takes_value(n),
            (None, None) => false,
        };
        let value = (takes_value && !text.contains('=')).then(|| iter.next()).flatten();
        let out = if mine.is_some() { &mut own } else { &mut theirs };
        out.push(arg);
        out.extend(value);
    }
    (own, theirs)
}

/// A value checked by a function of the option's name and the value, whose
/// refusal is the whole line (not wrapped in clap's "invalid value").
#[derive(Clone)]
struct Checked<T>(fn(&str, &OsStr) -> Result<T, String>);

impl<T: Clone + Send + Sync + 'static> TypedValueParser for Checked<T> {
    type Value = T;

    fn parse_ref(&self, _: &clap::Command, arg: Option<&clap::Arg>, value: &OsStr) -> Result<T, clap::Error> {
        let option = arg.and_then(clap::Arg::get_long).unwrap_or_default();
        (self.0)(option, value)
            .map_err(|text| clap::Error::raw(ErrorKind::ValueValidation, format!("{text}\n")))
    }
}

fn duration(option: &str, value: &OsStr) -> Result<Duration, String> {
    // Refused as clap refuses a String option that is not UTF-8.
    let text = value.to_str().ok_or(ErrorKind::InvalidUtf8.as_str().unwrap_or_default())?;
    parse_duration(option, text).map_err(|e| e.message)
}

/// A bound of nothing would fail every request or restart, or load nothing.
fn positive(option: &str, value: &OsStr) -> Result<Duration, String> {
    match duration(option, value)? {
        Duration::ZERO => Err(format!("--{option} must be more than 0 (see handover drill --help)")),
        other => Ok(other),
    }
}

impl Drill {
    pub fn restart_timeout(&self) -> Duration {
        self.restart_timeout.unwrap_or(DEFAULT_RESTART_TIMEOUT)
    }

    /// `--startup-timeout`, else `--restart-timeout` if given, else 60 s.
    pub fn startup_timeout(&self) -> Duration {
        self.startup_timeout.or(self.restart_timeout).unwrap_or(DEFAULT_STARTUP_TIMEOUT)
    }
}

/// Parse the drill's own options.
pub fn parse(own: Vec<OsString>) -> Result<Drill, clap::Error> {
    let mut drill = Drill::try_parse_from(own)?;
    let refuse = |kind, text: String| clap::Error::raw(kind, format!("{text}\n"));
    if let (true, Some(program)) = (drill.upgrades > 0 || !drill.upgrade_binary.is_empty(), &drill.supervisor)
    {
        let option = if drill.upgrades > 0 { "--upgrades" } else { "--upgrade-binary" };
        return Err(refuse(
            ErrorKind::ArgumentConflict,
            format!(
                "{option} cannot be used with --supervisor {}: only handover, through its control socket, \
             can be upgraded in place",
                program.display()
            ),
        ));
    }
    if drill.upgrades == 0 && !drill.upgrade_binary.is_empty() {
        let text = "--upgrade-binary needs --upgrades N: there is nothing to upgrade";
        return Err(refuse(ErrorKind::ArgumentConflict, text.into()));
    }
    for path in &mut drill.upgrade_binary {
        *path = std::path::absolute(&*path).map_err(|e| {
            let text = format!("cannot make --upgrade-binary {} absolute: {e}", path.display());
            refuse(ErrorKind::ValueValidation, text)
        })?;
    }
    Ok(drill)
}

/// The drill's options as a clap Command, for the man page and completions.
#[cfg(test)]
pub fn command() -> clap::Command {
    Drill::command()
}

#[cfg(test)]
mod tests;

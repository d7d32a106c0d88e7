//! Command-line definitions: handover's own and start_server's.
//!
//! Under the name `start_server` only start_server 0.35's options exist, so
//! its unique-prefix abbreviations (`--ver`, `--re`) mean exactly what they
//! meant there. Under any other name handover adds its own options and the
//! `restart`, `stop`, `status`, `upgrade` and `reopen` subcommands. Both accept `--opt=v`,
//! `--opt v`, `-opt` (Getopt::Long's single dash) and unique prefixes.
use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod argv;
pub mod commands;
pub mod drill;

pub use crate::config::options::{HandoverOpts, StartServerOpts};
pub use argv::{long_options, normalize_args, takes_value};

/// The worker command: everything after `--` or after the first word that
/// is not an option.
#[derive(Args, Debug, Default, Clone)]
pub struct Command {
    /// The worker program and its arguments, run without a shell.
    #[arg(value_name = "COMMAND", trailing_var_arg = true)]
    pub command: Vec<OsString>,
}

#[derive(Parser, Debug)]
#[command(
    name = "start_server",
    version = "0.35",
    about = "start_server compatible mode of handover",
    override_usage = "start_server [options] -- server-prog server-arg1 server-arg2 ...",
    infer_long_args = true
)]
pub struct StartServerCli {
    #[command(flatten)]
    pub opts: StartServerOpts,
    #[command(flatten)]
    pub command: Command,
}

#[derive(Parser, Debug)]
#[command(
    name = "handover",
    version,
    about = "Zero-downtime restarts for network servers: binds the sockets once, \
             replaces the worker on SIGHUP without closing them.",
    override_usage = "handover [OPTIONS] -- COMMAND [ARGS...]\n       handover restart|stop|status|upgrade|reopen [OPTIONS]\n       handover drill [OPTIONS] -- COMMAND [ARGS...]   (see handover drill --help)",
    infer_long_args = true,
    args_conflicts_with_subcommands = true
)]
pub struct HandoverCli {
    #[command(flatten)]
    pub opts: StartServerOpts,
    #[command(flatten)]
    pub more: HandoverOpts,
    #[command(subcommand)]
    pub client: Option<Client>,
    #[command(flatten)]
    pub command: Command,
}

/// Whether argv[0] is `start_server`: start_server's behaviour, words and options.
pub fn invoked_as_start_server(args: &[OsString]) -> bool {
    let name = args.first().and_then(|arg0| std::path::Path::new(arg0).file_name());
    name.is_some_and(|name| name == "start_server")
}

/// Where a client finds the supervisor.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// The supervisor's --control socket (preferred: exact outcomes).
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// The supervisor's --pid-file.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// The supervisor's --status-file.
    #[arg(long, value_name = "FILE")]
    pub status_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Client {
    /// Ask a running supervisor for a hot restart.
    Restart {
        #[command(flatten)]
        target: Target,
        /// Wait until the new generation is the only one left.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this long.
        #[arg(long, value_name = "DURATION", default_value = "120s")]
        timeout: String,
    },
    /// Stop a running supervisor gracefully; returns once it has exited.
    Stop {
        #[command(flatten)]
        target: Target,
        /// Give up waiting after this long [default: wait for ever, as start_server].
        #[arg(long, value_name = "DURATION")]
        timeout: Option<String>,
    },
    /// Replace the running supervisor's program in place (same pid, same
    /// workers, same sockets) with a new handover binary.
    Upgrade {
        /// The supervisor's --control socket.
        #[arg(long, value_name = "PATH", required = true)]
        control: PathBuf,
        /// The new binary [default: the path the running supervisor was
        /// executed from, i.e. the installed one after a package upgrade].
        #[arg(long, value_name = "PATH")]
        binary: Option<PathBuf>,
        /// Wait until the new program serves, and say how long it took.
        #[arg(long)]
        wait: bool,
        /// Give up waiting for the answer after this long.
        #[arg(long, value_name = "DURATION", default_value = "60s")]
        timeout: String,
    },
    /// Do what SIGUSR1 does (--on-usr1): reopen the supervisor's --log-file
    /// (logrotate's postrotate), forward USR1 to the workers, or both.
    Reopen {
        /// The supervisor's --control socket.
        #[arg(long, value_name = "PATH", required = true)]
        control: PathBuf,
    },
    /// Print the supervisor's event records, one JSON object per line: the
    /// last ones it keeps, then with --follow every new one as it happens.
    Events {
        /// The supervisor's --control socket.
        #[arg(long, value_name = "PATH", required = true)]
        control: PathBuf,
        /// Keep printing new records until the supervisor exits (across
        /// `handover upgrade`).
        #[arg(long)]
        follow: bool,
    },
    /// Print the supervisor's metrics in the Prometheus text format.
    Metrics {
        /// The supervisor's --control socket.
        #[arg(long, value_name = "PATH", required = true)]
        control: PathBuf,
    },
    /// Show the supervisor's generations.
    Status {
        #[command(flatten)]
        target: Target,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// A health probe: print nothing, exit 1 with the reason unless a
        /// generation is serving (and the supervisor is not stopping).
        #[arg(long)]
        serving: bool,
    },
}

#[cfg(test)]
mod packaging_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        let args = args.iter().map(OsString::from).collect();
        normalize_args(args).into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn single_dash_long_options_are_rewritten_before_the_command_only() {
        assert_eq!(norm(&["x", "-version"]), ["x", "--version"]);
        assert_eq!(
            norm(&["x", "-port", "-8", "-interval=2", "prog", "-opt"]),
            ["x", "--port", "-8", "--interval=2", "prog", "-opt"]
        );
        assert_eq!(norm(&["x", "--", "-prog"]), ["x", "--", "-prog"]);
        assert_eq!(norm(&["x", "-h"]), ["x", "-h"]);
    }

    #[test]
    fn definitions_are_consistent() {
        use clap::CommandFactory;
        HandoverCli::command().debug_assert();
        StartServerCli::command().debug_assert();
    }

    #[test]
    fn prefixes_and_repeats_parse_as_start_server() {
        let cli = StartServerCli::try_parse_from([
            "start_server",
            "--port=8080",
            "--port",
            "127.0.0.1:9090",
            "--int=3",
            "--",
            "prog",
            "--flag",
        ])
        .unwrap();
        assert_eq!(cli.opts.port, ["8080", "127.0.0.1:9090"]);
        assert_eq!(cli.opts.interval.as_deref(), Some("3"));
        assert_eq!(cli.command.command, ["prog", "--flag"]);
        let ambiguous = StartServerCli::try_parse_from(["start_server", "--p=1"]);
        assert!(ambiguous.is_err(), "{ambiguous:?}");
    }

    #[test]
    fn worker_command_starts_at_the_first_word() {
        let cli = HandoverCli::try_parse_from(["handover", "--port", "80", "prog", "--port", "9"]).unwrap();
        assert_eq!(cli.opts.port, ["80"]);
        assert_eq!(cli.command.command, ["prog", "--port", "9"]);
        let cli = HandoverCli::try_parse_from(["handover", "status", "--json"]).unwrap();
        assert!(matches!(cli.client, Some(Client::Status { json: true, .. })));
    }
}

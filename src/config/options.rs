//! The options as clap parses them, before validation: start_server's
//! and handover's own. `Config::new` turns them into a `Config`; `cli`
//! builds its command lines from them.
use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// start_server 0.35's options, with its meanings.
#[derive(Args, Debug, Default, Clone)]
pub struct StartServerOpts {
    /// TCP port to listen on: PORT, HOST:PORT or [IPV6]:PORT; `u` before
    /// the port for UDP (u53); `=FD` to place the socket at fd FD. Repeatable.
    #[arg(long, value_name = "SPEC")]
    pub port: Vec<String>,
    /// Unix socket path to listen on. Repeatable.
    #[arg(long, value_name = "PATH")]
    pub path: Vec<PathBuf>,
    /// Working directory of the worker (the supervisor's own does not change).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Probation time after a spawn, and the minimum interval between spawns [default: 1].
    #[arg(long, value_name = "DURATION", allow_negative_numbers = true)]
    pub interval: Option<String>,
    /// Signal sent to the old generation once the new one is ready [default: TERM].
    #[arg(long, value_name = "SIGNAL")]
    pub signal_on_hup: Option<String>,
    /// Signal sent to every worker when the supervisor receives SIGTERM [default: TERM].
    #[arg(long, value_name = "SIGNAL")]
    pub signal_on_term: Option<String>,
    /// Write the supervisor's pid here (locked while it runs).
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Write GENERATION:PID lines of the live generations here.
    #[arg(long, value_name = "FILE")]
    pub status_file: Option<PathBuf>,
    /// Directory of NAME files holding variables for the workers, re-read before every spawn.
    #[arg(long, value_name = "DIR")]
    pub envdir: Option<PathBuf>,
    /// Append stdout and stderr to FILE, or pipe them to "| COMMAND".
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<String>,
    /// Detach into the background (needs --log-file).
    #[arg(long)]
    pub daemonize: bool,
    /// Restart the worker every --auto-restart-interval.
    #[arg(long)]
    pub enable_auto_restart: bool,
    /// Interval of --enable-auto-restart [default: 360].
    #[arg(long, value_name = "DURATION", allow_negative_numbers = true)]
    pub auto_restart_interval: Option<String>,
    /// Wait this long after a new generation is ready before signalling the old one
    /// [default: 0, or 5 with --enable-auto-restart].
    #[arg(long, value_name = "DURATION", allow_negative_numbers = true)]
    pub kill_old_delay: Option<String>,
    /// listen(2) backlog; 0 means the default [default: 4096].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub backlog: Option<i32>,
    /// Client: ask the supervisor in --pid-file to restart and wait until it has.
    #[arg(long)]
    pub restart: bool,
    /// Client: stop the supervisor in --pid-file and wait until it has exited.
    #[arg(long)]
    pub stop: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum ReadyArg {
    /// READY=1, einhorn's ack or seen accepting, whichever comes first
    /// (alive after --interval where workers cannot be seen).
    #[default]
    Auto,
    /// Alive after --interval (start_server).
    Alive,
    /// Wait for READY=1 on NOTIFY_SOCKET.
    Notify,
    /// Seen accepting on an inherited listener (alive after --interval
    /// where workers cannot be seen).
    Accepting,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum SignalTarget {
    /// The worker process only (start_server).
    #[default]
    Pid,
    /// The worker's whole process group.
    Group,
}

/// `--cgroup`: how the workers are contained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum CgroupMode {
    /// Each worker in a cgroup of its own where cgroup v2 is writable, else in a session of its own.
    #[default]
    Auto,
    /// Never cgroups: each worker leads a session of its own.
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// What SIGUSR1 (and `handover reopen`) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnUsr1 {
    /// Reopen --log-file FILE (after logrotate moved it); the workers are left alone.
    Reopen,
    /// Forward USR1 to the serving generation (servers that reopen their own logs on it).
    Forward,
    /// Reopen --log-file FILE, then forward USR1.
    Both,
}

/// handover's own options, beyond start_server's.
#[derive(Args, Debug, Clone)]
pub struct HandoverOpts {
    /// When a new worker counts as ready.
    #[arg(long, value_enum, default_value_t)]
    pub ready: ReadyArg,
    /// Stop a new worker not ready by then where it waits for evidence (READY=1, seen accepting), not time [default: 60s].
    #[arg(long, value_name = "DURATION", allow_negative_numbers = true)]
    pub ready_timeout: Option<String>,
    /// SIGKILL an old generation's process group this long after it was told to stop [default: never].
    #[arg(long, value_name = "DURATION", allow_negative_numbers = true)]
    pub drain_timeout: Option<String>,
    /// At shutdown, SIGKILL the workers' process groups after this long [default: never].
    #[arg(long, value_name = "DURATION", allow_negative_numbers = true)]
    pub stop_timeout: Option<String>,
    /// Named, typed listener: [NAME=]tcp://HOST:PORT, udp://HOST:PORT or
    /// unix:PATH, with options ?backlog=N (and for unix mode=0660&owner=U&group=G). Repeatable.
    #[arg(long, value_name = "SPEC")]
    pub listen: Vec<String>,
    /// Workers per generation, sharing the sockets; a generation is ready when all are.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub workers: usize,
    /// A worker exiting with one of these codes (128+N when killed by signal N) stops
    /// handover with that code instead of being respawned (e.g. 78, EX_CONFIG).
    #[arg(long, value_name = "CODES", value_delimiter = ',', allow_negative_numbers = true)]
    pub stop_on_exit: Vec<i32>,
    /// Exit 1 when the first generation fails to start this many times in a row [default: retry for ever].
    #[arg(long, value_name = "N")]
    pub max_start_attempts: Option<u32>,
    /// Where --signal-on-hup and --signal-on-term go: the worker, or its whole process group.
    #[arg(long, value_enum, default_value_t)]
    pub signal_target: SignalTarget,
    /// How workers are contained: `auto`, a cgroup v2 of their own where handover may create
    /// one (root, or a systemd unit with Delegate=yes), else a session of their own; `off`:
    /// always a session.
    #[arg(long, value_enum, value_name = "auto|off", default_value_t)]
    pub cgroup: CgroupMode,
    /// Read the workers' stdout and stderr through pipes and write each line to the
    /// log with its generation, pid and stream.
    #[arg(long)]
    pub log_capture: bool,
    /// `text`, or `json`: the supervisor's own lines as JSON objects (level, event,
    /// message, fields); with --log-capture the workers' lines too.
    #[arg(long, value_enum, default_value_t)]
    pub log_format: LogFormat,
    /// What SIGUSR1 and `handover reopen` do [default: reopen with --log-file FILE, else forward].
    #[arg(long, value_enum, value_name = "WHAT")]
    pub on_usr1: Option<OnUsr1>,
    /// Restart when this file or directory changes (development; repeatable).
    /// Editors' temporary files are ignored; changes within 300ms count once.
    #[arg(long, value_name = "PATH")]
    pub watch: Vec<PathBuf>,
    /// Run the workers as this user (name or uid; its groups too). handover keeps
    /// running as root and keeps the sockets it bound.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Run the workers with this group (name or gid) [default: the --user's].
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Unix socket for `handover restart|stop|status --control PATH` (mode 0600).
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Serve the metrics (`handover metrics`) over HTTP at `GET /metrics` on this
    /// address, e.g. 127.0.0.1:9100 [default: off].
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// The fd protocols the listeners are announced in: a comma-separated
    /// list of server-starter, systemd, einhorn [default: all three].
    #[arg(long, value_name = "LIST")]
    pub announce: Option<String>,
    /// Leave Nagle's algorithm on for TCP listeners (by default they get
    /// TCP_NODELAY, which accepted connections inherit; `?nodelay=` on a
    /// --listen decides for that listener).
    #[arg(long)]
    pub no_tcp_nodelay: bool,
}

impl Default for HandoverOpts {
    /// What no option given means, as clap fills it in.
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Bare {
            #[command(flatten)]
            opts: HandoverOpts,
        }
        <Bare as clap::Parser>::parse_from(["handover"]).opts
    }
}

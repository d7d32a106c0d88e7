# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_handover_global_optspecs
    string join \n port= path= dir= interval= signal-on-hup= signal-on-term= pid-file= status-file= envdir= log-file= daemonize enable-auto-restart auto-restart-interval= kill-old-delay= backlog= restart stop ready= ready-timeout= drain-timeout= stop-timeout= listen= workers= stop-on-exit= max-start-attempts= signal-target= cgroup= log-capture log-format= on-usr1= watch= user= group= control= metrics-listen= announce= no-tcp-nodelay h/help V/version
end

function __fish_handover_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_handover_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_handover_using_subcommand
    set -l cmd (__fish_handover_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c handover -n "__fish_handover_needs_command" -l port -d 'TCP port to listen on: PORT, HOST:PORT or [IPV6]:PORT; `u` before the port for UDP (u53); `=FD` to place the socket at fd FD. Repeatable' -r
complete -c handover -n "__fish_handover_needs_command" -l path -d 'Unix socket path to listen on. Repeatable' -r -F
complete -c handover -n "__fish_handover_needs_command" -l dir -d 'Working directory of the worker (the supervisor\'s own does not change)' -r -F
complete -c handover -n "__fish_handover_needs_command" -l interval -d 'Probation time after a spawn, and the minimum interval between spawns [default: 1]' -r
complete -c handover -n "__fish_handover_needs_command" -l signal-on-hup -d 'Signal sent to the old generation once the new one is ready [default: TERM]' -r
complete -c handover -n "__fish_handover_needs_command" -l signal-on-term -d 'Signal sent to every worker when the supervisor receives SIGTERM [default: TERM]' -r
complete -c handover -n "__fish_handover_needs_command" -l pid-file -d 'Write the supervisor\'s pid here (locked while it runs)' -r -F
complete -c handover -n "__fish_handover_needs_command" -l status-file -d 'Write GENERATION:PID lines of the live generations here' -r -F
complete -c handover -n "__fish_handover_needs_command" -l envdir -d 'Directory of NAME files holding variables for the workers, re-read before every spawn' -r -F
complete -c handover -n "__fish_handover_needs_command" -l log-file -d 'Append stdout and stderr to FILE, or pipe them to "| COMMAND"' -r
complete -c handover -n "__fish_handover_needs_command" -l auto-restart-interval -d 'Interval of --enable-auto-restart [default: 360]' -r
complete -c handover -n "__fish_handover_needs_command" -l kill-old-delay -d 'Wait this long after a new generation is ready before signalling the old one [default: 0, or 5 with --enable-auto-restart]' -r
complete -c handover -n "__fish_handover_needs_command" -l backlog -d 'listen(2) backlog; 0 means the default [default: 4096]' -r
complete -c handover -n "__fish_handover_needs_command" -l ready -d 'When a new worker counts as ready' -r -f -a "auto\t'READY=1, einhorn\'s ack or seen accepting, whichever comes first (alive after --interval where workers cannot be seen)'
alive\t'Alive after --interval (start_server)'
notify\t'Wait for READY=1 on NOTIFY_SOCKET'
accepting\t'Seen accepting on an inherited listener (alive after --interval where workers cannot be seen)'"
complete -c handover -n "__fish_handover_needs_command" -l ready-timeout -d 'Stop a new worker not ready by then where it waits for evidence (READY=1, seen accepting), not time [default: 60s]' -r
complete -c handover -n "__fish_handover_needs_command" -l drain-timeout -d 'SIGKILL an old generation\'s process group this long after it was told to stop [default: never]' -r
complete -c handover -n "__fish_handover_needs_command" -l stop-timeout -d 'At shutdown, SIGKILL the workers\' process groups after this long [default: never]' -r
complete -c handover -n "__fish_handover_needs_command" -l listen -d 'Named, typed listener: [NAME=]tcp://HOST:PORT, udp://HOST:PORT or unix:PATH, with options ?backlog=N (and for unix mode=0660&owner=U&group=G). Repeatable' -r
complete -c handover -n "__fish_handover_needs_command" -l workers -d 'Workers per generation, sharing the sockets; a generation is ready when all are' -r
complete -c handover -n "__fish_handover_needs_command" -l stop-on-exit -d 'A worker exiting with one of these codes (128+N when killed by signal N) stops handover with that code instead of being respawned (e.g. 78, EX_CONFIG)' -r
complete -c handover -n "__fish_handover_needs_command" -l max-start-attempts -d 'Exit 1 when the first generation fails to start this many times in a row [default: retry for ever]' -r
complete -c handover -n "__fish_handover_needs_command" -l signal-target -d 'Where --signal-on-hup and --signal-on-term go: the worker, or its whole process group' -r -f -a "pid\t'The worker process only (start_server)'
group\t'The worker\'s whole process group'"
complete -c handover -n "__fish_handover_needs_command" -l cgroup -d 'How workers are contained: `auto`, a cgroup v2 of their own where handover may create one (root, or a systemd unit with Delegate=yes), else a session of their own; `off`: always a session' -r -f -a "auto\t'Each worker in a cgroup of its own where cgroup v2 is writable, else in a session of its own'
off\t'Never cgroups: each worker leads a session of its own'"
complete -c handover -n "__fish_handover_needs_command" -l log-format -d '`text`, or `json`: the supervisor\'s own lines as JSON objects (level, event, message, fields); with --log-capture the workers\' lines too' -r -f -a "text\t''
json\t''"
complete -c handover -n "__fish_handover_needs_command" -l on-usr1 -d 'What SIGUSR1 and `handover reopen` do [default: reopen with --log-file FILE, else forward]' -r -f -a "reopen\t'Reopen --log-file FILE (after logrotate moved it); the workers are left alone'
forward\t'Forward USR1 to the serving generation (servers that reopen their own logs on it)'
both\t'Reopen --log-file FILE, then forward USR1'"
complete -c handover -n "__fish_handover_needs_command" -l watch -d 'Restart when this file or directory changes (development; repeatable). Editors\' temporary files are ignored; changes within 300ms count once' -r -F
complete -c handover -n "__fish_handover_needs_command" -l user -d 'Run the workers as this user (name or uid; its groups too). handover keeps running as root and keeps the sockets it bound' -r
complete -c handover -n "__fish_handover_needs_command" -l group -d 'Run the workers with this group (name or gid) [default: the --user\'s]' -r
complete -c handover -n "__fish_handover_needs_command" -l control -d 'Unix socket for `handover restart|stop|status --control PATH` (mode 0600)' -r -F
complete -c handover -n "__fish_handover_needs_command" -l metrics-listen -d 'Serve the metrics (`handover metrics`) over HTTP at `GET /metrics` on this address, e.g. 127.0.0.1:9100 [default: off]' -r
complete -c handover -n "__fish_handover_needs_command" -l announce -d 'The fd protocols the listeners are announced in: a comma-separated list of server-starter, systemd, einhorn [default: all three]' -r
complete -c handover -n "__fish_handover_needs_command" -l daemonize -d 'Detach into the background (needs --log-file)'
complete -c handover -n "__fish_handover_needs_command" -l enable-auto-restart -d 'Restart the worker every --auto-restart-interval'
complete -c handover -n "__fish_handover_needs_command" -l restart -d 'Client: ask the supervisor in --pid-file to restart and wait until it has'
complete -c handover -n "__fish_handover_needs_command" -l stop -d 'Client: stop the supervisor in --pid-file and wait until it has exited'
complete -c handover -n "__fish_handover_needs_command" -l log-capture -d 'Read the workers\' stdout and stderr through pipes and write each line to the log with its generation, pid and stream'
complete -c handover -n "__fish_handover_needs_command" -l no-tcp-nodelay -d 'Leave Nagle\'s algorithm on for TCP listeners (by default they get TCP_NODELAY, which accepted connections inherit; `?nodelay=` on a --listen decides for that listener)'
complete -c handover -n "__fish_handover_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c handover -n "__fish_handover_needs_command" -s V -l version -d 'Print version'
complete -c handover -n "__fish_handover_needs_command" -a "restart" -d 'Ask a running supervisor for a hot restart'
complete -c handover -n "__fish_handover_needs_command" -a "stop" -d 'Stop a running supervisor gracefully; returns once it has exited'
complete -c handover -n "__fish_handover_needs_command" -a "upgrade" -d 'Replace the running supervisor\'s program in place (same pid, same workers, same sockets) with a new handover binary'
complete -c handover -n "__fish_handover_needs_command" -a "reopen" -d 'Do what SIGUSR1 does (--on-usr1): reopen the supervisor\'s --log-file (logrotate\'s postrotate), forward USR1 to the workers, or both'
complete -c handover -n "__fish_handover_needs_command" -a "events" -d 'Print the supervisor\'s event records, one JSON object per line: the last ones it keeps, then with --follow every new one as it happens'
complete -c handover -n "__fish_handover_needs_command" -a "metrics" -d 'Print the supervisor\'s metrics in the Prometheus text format'
complete -c handover -n "__fish_handover_needs_command" -a "status" -d 'Show the supervisor\'s generations'
complete -c handover -n "__fish_handover_needs_command" -a "drill" -d 'Run a server under handover (or another supervisor), drive load at its listeners through hot restarts, and report whether any client noticed'
complete -c handover -n "__fish_handover_using_subcommand restart" -l control -d 'The supervisor\'s --control socket (preferred: exact outcomes)' -r -F
complete -c handover -n "__fish_handover_using_subcommand restart" -l pid-file -d 'The supervisor\'s --pid-file' -r -F
complete -c handover -n "__fish_handover_using_subcommand restart" -l status-file -d 'The supervisor\'s --status-file' -r -F
complete -c handover -n "__fish_handover_using_subcommand restart" -l timeout -d 'Give up waiting after this long' -r
complete -c handover -n "__fish_handover_using_subcommand restart" -l wait -d 'Wait until the new generation is the only one left'
complete -c handover -n "__fish_handover_using_subcommand restart" -s h -l help -d 'Print help'
complete -c handover -n "__fish_handover_using_subcommand stop" -l control -d 'The supervisor\'s --control socket (preferred: exact outcomes)' -r -F
complete -c handover -n "__fish_handover_using_subcommand stop" -l pid-file -d 'The supervisor\'s --pid-file' -r -F
complete -c handover -n "__fish_handover_using_subcommand stop" -l status-file -d 'The supervisor\'s --status-file' -r -F
complete -c handover -n "__fish_handover_using_subcommand stop" -l timeout -d 'Give up waiting after this long [default: wait for ever, as start_server]' -r
complete -c handover -n "__fish_handover_using_subcommand stop" -s h -l help -d 'Print help'
complete -c handover -n "__fish_handover_using_subcommand upgrade" -l control -d 'The supervisor\'s --control socket' -r -F
complete -c handover -n "__fish_handover_using_subcommand upgrade" -l binary -d 'The new binary [default: the path the running supervisor was executed from, i.e. the installed one after a package upgrade]' -r -F
complete -c handover -n "__fish_handover_using_subcommand upgrade" -l timeout -d 'Give up waiting for the answer after this long' -r
complete -c handover -n "__fish_handover_using_subcommand upgrade" -l wait -d 'Wait until the new program serves, and say how long it took'
complete -c handover -n "__fish_handover_using_subcommand upgrade" -s h -l help -d 'Print help'
complete -c handover -n "__fish_handover_using_subcommand reopen" -l control -d 'The supervisor\'s --control socket' -r -F
complete -c handover -n "__fish_handover_using_subcommand reopen" -s h -l help -d 'Print help'
complete -c handover -n "__fish_handover_using_subcommand events" -l control -d 'The supervisor\'s --control socket' -r -F
complete -c handover -n "__fish_handover_using_subcommand events" -l follow -d 'Keep printing new records until the supervisor exits (across `handover upgrade`)'
complete -c handover -n "__fish_handover_using_subcommand events" -s h -l help -d 'Print help'
complete -c handover -n "__fish_handover_using_subcommand metrics" -l control -d 'The supervisor\'s --control socket' -r -F
complete -c handover -n "__fish_handover_using_subcommand metrics" -s h -l help -d 'Print help'
complete -c handover -n "__fish_handover_using_subcommand status" -l control -d 'The supervisor\'s --control socket (preferred: exact outcomes)' -r -F
complete -c handover -n "__fish_handover_using_subcommand status" -l pid-file -d 'The supervisor\'s --pid-file' -r -F
complete -c handover -n "__fish_handover_using_subcommand status" -l status-file -d 'The supervisor\'s --status-file' -r -F
complete -c handover -n "__fish_handover_using_subcommand status" -l json -d 'One JSON object instead of text'
complete -c handover -n "__fish_handover_using_subcommand status" -l serving -d 'A health probe: print nothing, exit 1 with the reason unless a generation is serving (and the supervisor is not stopping)'
complete -c handover -n "__fish_handover_using_subcommand status" -s h -l help -d 'Print help'
complete -c handover -n "__fish_handover_using_subcommand drill" -l restarts -d 'Hot restarts to perform (at most 100000)' -r
complete -c handover -n "__fish_handover_using_subcommand drill" -l upgrades -d 'Upgrades of handover in place to perform, in turns with the restarts; each must keep the pids and the log lines (at most 100000)' -r
complete -c handover -n "__fish_handover_using_subcommand drill" -l upgrade-binary -d 'Upgrade to this handover binary; given more than once, to each in turn [default: the one the supervisor was started from]' -r -F
complete -c handover -n "__fish_handover_using_subcommand drill" -l log-line -d 'Every answered request must leave a line containing TEXT in the supervisor\'s output (a server that logs each request, under --log-capture): fewer such lines than answered requests fail the drill, as log lines lost' -r
complete -c handover -n "__fish_handover_using_subcommand drill" -l restart-every -d 'Wait this long between restarts and upgrades [default: 600ms, which keeps each one\'s window of requests apart from the next one\'s]' -r
complete -c handover -n "__fish_handover_using_subcommand drill" -l connections -d 'Concurrent client connections (1 to 10000)' -r
complete -c handover -n "__fish_handover_using_subcommand drill" -l duration -d 'Load for this long [default: until the restarts and upgrades are done]' -r
complete -c handover -n "__fish_handover_using_subcommand drill" -l rate -d 'Pace the load at this many requests per second in all, 1 to 1000000 [default: as fast as answered]' -r
complete -c handover -n "__fish_handover_using_subcommand drill" -l requests -d 'Stop the load after this many requests (1 to 1000000000)' -r
complete -c handover -n "__fish_handover_using_subcommand drill" -l get -d 'HTTP path to GET' -r
complete -c handover -n "__fish_handover_using_subcommand drill" -l expect-status -d 'HTTP status every answer must have (100 to 999)' -r
complete -c handover -n "__fish_handover_using_subcommand drill" -l raw-send -d 'Raw TCP mode: send this (instead of HTTP) on each connection' -r
complete -c handover -n "__fish_handover_using_subcommand drill" -l raw-expect -d 'Raw TCP mode: the answer must start with this' -r
complete -c handover -n "__fish_handover_using_subcommand drill" -l request-timeout -d 'A request taking longer counts as a timeout (more than 0)' -r
complete -c handover -n "__fish_handover_using_subcommand drill" -l report -d 'Write DIR/report.html (the run drawn: requests per second, latency, the restarts, accept gaps and failed requests; self-contained) and DIR/report.json (the report with the series it is drawn from)' -r -F
complete -c handover -n "__fish_handover_using_subcommand drill" -l junit -d 'Also write the report as JUnit XML' -r -F
complete -c handover -n "__fish_handover_using_subcommand drill" -l max-failures -d 'Failed requests tolerated' -r
complete -c handover -n "__fish_handover_using_subcommand drill" -l max-p99 -d 'Fail when the p99 latency exceeds this' -r
complete -c handover -n "__fish_handover_using_subcommand drill" -l max-retried -d 'Keep-alive requests found closed and retried tolerated: N per connection and restart (what a server that closes idle connections when it stops costs: 1), or with `%` a share of all requests' -r
complete -c handover -n "__fish_handover_using_subcommand drill" -l restart-timeout -d 'A restart or upgrade not done after this long has failed [default: 120s]' -r
complete -c handover -n "__fish_handover_using_subcommand drill" -l startup-timeout -d 'The first generation not serving after this long fails the drill [default: --restart-timeout if given, else 60s]' -r
complete -c handover -n "__fish_handover_using_subcommand drill" -l max-samples -d 'Keep every request\'s detail up to this many (then only counts)' -r
complete -c handover -n "__fish_handover_using_subcommand drill" -l idle -d 'After the load, measure the supervisor\'s CPU time and wake-ups over this long' -r
complete -c handover -n "__fish_handover_using_subcommand drill" -l supervisor -d 'Drill this start_server-compatible program instead of handover: restarts by SIGHUP, timed from its --status-file' -r -F
complete -c handover -n "__fish_handover_using_subcommand drill" -l keep -d 'Use DIR for the drill\'s files and keep it (created if missing): output.log holds the supervisor\'s and workers\' output [default: a temporary directory, removed at the end]' -r -F
complete -c handover -n "__fish_handover_using_subcommand drill" -l keepalive -d 'Reuse connections (HTTP keep-alive) instead of one connection per request'
complete -c handover -n "__fish_handover_using_subcommand drill" -l json -d 'The report as one JSON object'
complete -c handover -n "__fish_handover_using_subcommand drill" -s h -l help -d 'Print help'

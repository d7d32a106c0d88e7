#!/usr/bin/env python3
"""Hot-restart benchmark: handover (and start_server, if installed) under load.

For each scenario this starts a supervisor on a loopback port with the demo
worker `hello`, runs bounded HTTP load against it (K client threads, one new
TCP connection per request, `Connection: close`), asks for N restarts one
after the other (SIGHUP, or for the `--control` rows a restart request on
the control socket), and measures:

- every request: start, latency, outcome (ok / refused / reset / timeout /
  bad_status / short_read / other) and the generation that answered;
- every restart: HUP -> new generation ready (handover: its `is ready` log
  line; start_server: `new worker is now running`; or the status file
  listing the new generation, whichever is seen first), HUP -> first
  successful response from the new generation, HUP -> old generation gone
  (status file lists only the new one, polled every 2 ms, or the
  supervisor's `old worker P died` line for every old worker, whichever is
  seen first), READY -> old gone, and the accept gap (longest stretch
  without a completed request around the restart, plus the worst latency of
  requests started in it);
- the latency criterion: the worst latency of the requests in flight during
  a restart (and during its switch) against 2x the p99 of the requests in
  flight during no restart ("steady state"), with the same test applied to
  steady-state windows of the same length as a control;
- for the control-socket rows: request -> reply, READY -> reply (READY = the
  `generation N (pids ...) is ready (READY=1 after ...)` line, written when
  the LAST worker's READY=1 is processed), old gone -> reply, and the
  reply's own `spawn_to_ready_ms` / `signal_to_old_gone_ms`. The reply comes
  only after the old generation has exited, so READY -> reply is READY ->
  old gone (the old workers' shutdown) plus the reply's way to the client;
- the supervisor at rest: peak RSS (VmHWM), CPU time and context switches
  (wake-ups) over an idle period after the load has stopped.

Scenarios (rows, `--scenarios`):
  ho-auto         handover --ready auto + hello, SIGHUP
  ho-notify-slow  handover --ready notify + hello --startup-delay 1500, SIGHUP
  ho-w4           handover --ready notify --workers 4 + hello, control socket
  ho-w4-slow      handover --ready notify --workers 4 + hello --startup-delay
                  1500, control socket
  ss, ss-slow     start_server + hello / + the slow starter, SIGHUP (only
                  when /usr/bin/start_server exists; Debian: apt-get install
                  -y libserver-starter-perl)
The control rows ask for each restart either by speaking the protocol on
the unix socket (`{"command":"restart"}\\n` out, one JSON line back) or by
running `handover restart --wait --control P`; `--control-client both`
(the default) alternates, and the control table has a line for each.
Defaults: 50 restarts, 20 for the slow-starter rows (each of their restarts
takes > 1.5 s), 8 clients at full speed (`--rate` paces them), 100 ms
settle, 5 s idle; about 3.5 min in all on 2 cores, cut at `--time-limit`
(290 s).

A restart counts as done when the status file shows exactly one generation,
newer than before, AND a request has been answered by it (with a slow
starter start_server declares a worker running before it accepts; the next
HUP waits until it really serves), AND (control rows) the reply is in.
Then `--settle-ms` later comes the next one.

Timestamps are time.monotonic() (CLOCK_MONOTONIC, one clock for every
process). The supervisor's stderr lines are stamped on arrival by a helper
process, and the control requests are made and stamped by another; both are
single-threaded and run at nice -10 (when allowed), so their wake-ups do not
wait for this process's GIL (the load threads keep it busy) nor, as much,
for the saturated CPUs. The load threads stamp requests, the main thread
polls the status file (GIL switch interval 1 ms). On a saturated 2-core
machine every observation can still lag by milliseconds, now and then by
tens: the reply's own numbers (the supervisor's clock) are the check.

start_server cannot be told to bind port 0, so for it a free port is found
by binding port 0 here and closing it just before start_server starts (a
tiny race another process could win; handover binds port 0 itself and its
real port is read from its `listening on tcp` line).

Output: markdown tables on stdout (and every number with `--json FILE`,
every request and restart with `--records DIR`); progress and anomalies on
stderr. Exit status 1 when any request failed, a restart failed or timed out, or a
scenario could not run.
The PASS/FAIL flags in the tables are information, not the exit status.

Standard library only (Python 3.11). Everything is bounded: request count,
per-scenario and total wall clock, per-request timeout, per-restart
timeout. On any error the supervisor, every worker it logged and the
helpers are killed by pid / process group, never by name.
"""

import argparse
import bisect
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
START_SERVER = "/usr/bin/start_server"

RE_LISTEN = re.compile(r"listening on tcp (\S+):(\d+) as fd")
RE_WORKER = re.compile(r"starting new worker (\d+)")
RE_READY = re.compile(r"generation (\d+) \(pids? ([\d,]+)\) is ready \((\S+) after ([^)]*)\)")
# `handover restart --wait --control P` prints this once the restart is done.
RE_CLI_DONE = re.compile(
    r"generation (\d+) is serving \(pids ([\d,]*)\): ready ([\d.]+) ms after spawn"
    r"(?:, old generation gone ([\d.]+) ms after it was told to stop)?"
)
RE_FAILED = re.compile(r"failed to start|died unexpectedly")
RE_NOW_RUNNING = re.compile(r"new worker is now running")
RE_OLD_DIED = re.compile(r"old worker (\d+) died")
RE_BODY = re.compile(rb"hello from pid (\d+) generation (\d+)")
# Supervisor lines that are expected during these runs; anything else is
# reported as a log anomaly.
EXPECTED_LINES = [
    re.compile(p)
    for p in (
        r"^(handover|start_server) \(pid:\d+\) starting now\.\.\.$",
        r"listening on tcp ",
        r"starting new worker \d+$",
        r"received HUP, spawning a new worker$",
        r"is ready \((READY=1|alive) after ",
        r"new worker is now running, sending TERM to old workers:",
        r"killing old workers$",
        r"old worker \d+ died, status:0$",
        r"received TERM, sending TERM to all workers:",
        r"worker \d+ died, status:0$",
        r"^(handover\[\d+\]: )?exiting$",
    )
]

def now():
    return time.monotonic()


# ---------------------------------------------------------------- the load


class Load:
    """K threads of closed-loop HTTP/1.0 requests, one connection each."""

    def __init__(self, port, clients, max_requests, deadline, timeout, rate):
        self.addr = ("127.0.0.1", port)
        self.request = (
            b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        self.clients = clients
        self.max_requests = max_requests
        self.deadline = deadline
        self.timeout = timeout
        # Seconds between two requests of one thread (0: as fast as it can).
        self.pace = clients / rate if rate > 0 else 0.0
        self.stop = threading.Event()
        self.issued = 0
        self.lock = threading.Lock()
        # One list per thread: (t_start, t_end, kind, generation) tuples.
        self.records = [[] for _ in range(clients)]
        # generation -> monotonic time of its first successful response.
        self.first_ok = {}
        self.errors = {}  # "kind: detail" -> count, for the report
        self.threads = []

    def start(self):
        for i in range(self.clients):
            t = threading.Thread(target=self._run, args=(i,), daemon=True)
            t.start()
            self.threads.append(t)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(self.timeout + 5)

    def _take_ticket(self):
        with self.lock:
            if self.issued >= self.max_requests:
                return False
            self.issued += 1
            return True

    def _run(self, index):
        out = self.records[index]
        next_at = now()
        while not self.stop.is_set() and now() < self.deadline:
            if not self._take_ticket():
                break
            if self.pace:
                delay = next_at - now()
                if delay > 0:
                    time.sleep(delay)
                next_at = max(next_at + self.pace, now() - self.pace)
            t0 = now()
            kind, gen, detail = self._one()
            t1 = now()
            out.append((t0, t1, kind, gen))
            if kind == "ok":
                self.first_ok.setdefault(gen, t1)
            else:
                key = f"{kind}: {detail}"
                with self.lock:
                    self.errors[key] = self.errors.get(key, 0) + 1

    def _one(self):
        """One request: (kind, generation or None, detail)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        data = b""
        try:
            sock.connect(self.addr)
            sock.sendall(self.request)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
            data = b"".join(chunks)
        except ConnectionRefusedError as e:
            return "refused", None, e.strerror
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as e:
            return "reset", None, f"{e.strerror} after {len(data)} bytes"
        except (TimeoutError, socket.timeout):
            return "timeout", None, f"no answer within {self.timeout}s"
        except OSError as e:
            return "other", None, f"{e.__class__.__name__}: {e}"
        finally:
            sock.close()
        head, sep, body = data.partition(b"\r\n\r\n")
        if not sep:
            return "short_read", None, f"{len(data)} bytes, no complete head"
        status_line = head.split(b"\r\n", 1)[0]
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            return "bad_status", None, status_line.decode("latin-1")[:60]
        if parts[1] != b"200":
            return "bad_status", None, status_line.decode("latin-1")[:60]
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip() or b"-1")
        if length is not None and len(body) != length:
            return "short_read", None, f"body {len(body)} of {length} bytes"
        m = RE_BODY.search(body)
        if not m:
            return "bad_status", None, f"unexpected body {body[:40]!r}"
        return "ok", int(m.group(2)), ""

    def all_records(self):
        recs = [r for lst in self.records for r in lst]
        recs.sort(key=lambda r: r[0])
        return recs


# ------------------------------------------------------------ the supervisor


class Supervisor:
    """A supervisor process with its stderr read line by line, time-stamped."""

    def __init__(self, name, argv, workdir):
        self.name = name
        self.argv = argv
        self.workdir = workdir
        self.status_path = os.path.join(workdir, "status")
        self.control_path = os.path.join(workdir, "control")
        self.lines = []  # (t, text)
        self.cond = threading.Condition()
        self.worker_pids = set()
        self.proc = None
        self.stamper = None
        self.control_helper = None
        self.log_path = os.path.join(workdir, "supervisor.log")

    def start(self):
        # The supervisor's stderr goes to a helper process that does nothing
        # but stamp each line on arrival (single-threaded: no wait for this
        # process's GIL, which the load threads keep busy); it passes
        # "T TEXT" lines on to the reader thread here.
        r, w = os.pipe()
        try:
            self.stamper = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--helper", "stamp"],
                stdin=r, stdout=subprocess.PIPE, stderr=None,
            )
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=w,
                cwd=self.workdir,
                start_new_session=True,  # its own process group, killable as one
            )
        finally:
            os.close(r)
            os.close(w)
        threading.Thread(target=self._read, daemon=True).start()

    def close_stamper(self):
        """The stamper ends when every writer (supervisor, workers) is gone;
        if one is still around, end the stamper itself (our child, by pid)."""
        if self.stamper is None:
            return
        try:
            self.stamper.wait(3)
        except subprocess.TimeoutExpired:
            self.stamper.kill()
            self.stamper.wait(5)

    def _read(self):
        with open(self.log_path, "w") as log:
            for raw in self.stamper.stdout:
                stamp, _, rest = raw.partition(b" ")
                t = float(stamp)
                text = rest.decode("utf-8", "replace").rstrip("\n")
                log.write(f"{t:.6f} {text}\n")
                log.flush()
                m = RE_WORKER.search(text)
                with self.cond:
                    if m:
                        self.worker_pids.add(int(m.group(1)))
                    self.lines.append((t, text))
                    self.cond.notify_all()

    def wait_line(self, regex, timeout, start=0):
        """The first (index, t, match) at or after line `start` matching."""
        end = now() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.lines):
                    m = regex.search(self.lines[i][1])
                    if m:
                        return i, self.lines[i][0], m
                    i += 1
                left = end - now()
                if left <= 0 or self.proc.poll() is not None:
                    tail = "\n".join(t for _, t in self.lines[-10:])
                    raise RuntimeError(
                        f"{self.name}: no line matching /{regex.pattern}/ "
                        f"within {timeout}s (exit {self.proc.poll()}); last lines:\n{tail}"
                    )
                self.cond.wait(min(left, 0.05))

    def find_lines(self, regex, after=0.0):
        with self.cond:
            return [(t, regex.search(x)) for t, x in self.lines if t >= after and regex.search(x)]

    def status(self):
        """[(generation, pid)] from the status file; [] if absent or empty."""
        try:
            with open(self.status_path) as f:
                text = f.read()
        except FileNotFoundError:
            return []
        gens = []
        for line in text.splitlines():
            g, _, p = line.partition(":")
            if g.strip().isdigit() and p.strip().isdigit():
                gens.append((int(g), int(p)))
        gens.sort()
        return gens

    def generations(self):
        """The distinct generations in the status file (one line per worker)."""
        return sorted({g for g, _ in self.status()})

    def stop(self, timeout=15):
        """SIGTERM and wait; returns the exit code (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill_all()
                return None
        return self.proc.returncode

    def kill_all(self, grace=3.0):
        """Stop everything this scenario started, on an error or interrupt:
        SIGTERM the supervisor and give it `grace` seconds to stop its
        workers, then SIGKILL the supervisor, its process group and every
        worker it logged that is still alive. Workers are identified by pid
        AND start time, taken while the supervisor was still their parent,
        so a reused pid is never hit. Never by name."""
        if self.proc is None:
            return
        with self.cond:
            pids = sorted(self.worker_pids)
        ours = {}
        for p in pids:
            ppid, started = proc_identity(p)
            if ppid == self.proc.pid:
                ours[p] = started
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        targets = [p for p, started in ours.items() if proc_identity(p)[1] == started]
        if self.proc.poll() is None:
            targets.insert(0, self.proc.pid)
        for target in targets:
            for kill in (os.killpg, os.kill):
                try:
                    kill(target, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass


def proc_identity(pid):
    """(parent pid, start time in ticks) of a live process, or (None, None)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            return None, None
        return int(fields[1]), int(fields[19])
    except (OSError, ValueError, IndexError):
        return None, None


def proc_usage(pid):
    """(cpu seconds, context switches, VmHWM kB, VmRSS kB) summed over threads."""
    cpu_ns = 0
    switches = 0
    have_schedstat = True
    tasks = os.listdir(f"/proc/{pid}/task")
    for tid in tasks:
        base = f"/proc/{pid}/task/{tid}"
        try:
            with open(f"{base}/schedstat") as f:
                cpu_ns += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            have_schedstat = False
        with open(f"{base}/status") as f:
            for line in f:
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    switches += int(line.split()[1])
    if not have_schedstat:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime
        cpu_ns = ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    hwm = rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return cpu_ns / 1e9, switches, hwm, rss, len(tasks)


class ControlHelper:
    """A helper process that makes the control-socket restarts and stamps
    them itself (single-threaded: its wake-up on the reply does not wait for
    this process's GIL). One JSON line in (`{"how": "socket"|"cli"}`), one
    JSON line out with t_sent, t_reply, t_return and the reply; see
    helper_control(). time.monotonic() is CLOCK_MONOTONIC, the same clock in
    every process, so its stamps compare with ours."""

    def __init__(self, path, handover, timeout):
        self.timeout = timeout
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--helper", "control",
             path, handover, f"{timeout:g}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
            start_new_session=True,  # with the CLI it runs: killable as one group
        )

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(self.timeout + 5)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()

    def kill(self):
        """Our helper and the CLI it may be running: its own process group."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait(5)


class ControlCall:
    """One restart through the control socket, made by the ControlHelper,
    waited for in a thread so the main thread keeps polling the status file.

    how="socket": the helper speaks the protocol itself: connect, send
    `{"command":"restart"}\\n`, read one line back (the reply comes once the
    restart is done: the new generation ready AND the old one gone).
    how="cli": the helper runs `handover restart --wait --control P` and
    stamps its output line (t_reply) and its exit (t_return)."""

    def __init__(self, how, helper):
        self.how = how
        self.helper = helper
        self.done = threading.Event()
        self.t_sent = self.t_reply = self.t_return = None
        self.reply = None  # the reply as a dict (the CLI's text parsed into one)
        self.error = None

    def start(self):
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            proc = self.helper.proc
            proc.stdin.write(json.dumps({"how": self.how}).encode() + b"\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the control helper exited ({proc.poll()})")
            out = json.loads(line)
            self.t_sent, self.t_reply, self.t_return = out["t_sent"], out["t_reply"], out["t_return"]
            self.reply, self.error = out.get("reply"), out.get("error")
            if self.error is None and not (self.reply or {}).get("ok"):
                self.error = f"restart failed: {self.reply}"
        except Exception as e:
            self.error = f"{self.how}: {e.__class__.__name__}: {e}"
        finally:
            self.done.set()

    def abort(self):
        self.helper.kill()


def helper_control(path, handover, timeout):
    """The ControlHelper's side: one restart per request line."""
    timeout = float(timeout)
    for line in sys.stdin:
        how = json.loads(line)["how"]
        out = {"how": how, "t_sent": None, "t_reply": None, "t_return": None,
               "reply": None, "error": None}
        try:
            if how == "socket":
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(timeout)
                    s.connect(path)
                    out["t_sent"] = now()
                    s.sendall(b'{"command":"restart"}\n')
                    buf = b""
                    while b"\n" not in buf:
                        chunk = s.recv(65536)
                        if not chunk:
                            raise RuntimeError(f"connection closed after {buf!r}")
                        buf += chunk
                    out["t_reply"] = out["t_return"] = now()
                out["reply"] = json.loads(buf.split(b"\n", 1)[0])
            else:
                argv = [handover, "restart", "--wait", "--control", path, "--timeout", f"{timeout:g}s"]
                out["t_sent"] = now()
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, preexec_fn=normal_priority)
                text = proc.stdout.readline()
                out["t_reply"] = now()
                code = proc.wait(timeout + 5)
                out["t_return"] = now()
                err = proc.stderr.read().decode("utf-8", "replace").strip()
                text = text.decode("utf-8", "replace").strip()
                m = RE_CLI_DONE.search(text)
                if code != 0 or not m:
                    out["error"] = f"cli: exit {code}, stdout {text!r}, stderr {err!r}"
                else:
                    out["reply"] = {
                        "ok": True,
                        "generation": int(m.group(1)),
                        "pids": [int(p) for p in m.group(2).split(",") if p],
                        "spawn_to_ready_ms": float(m.group(3)),
                        "signal_to_old_gone_ms": float(m.group(4)) if m.group(4) else None,
                    }
        except Exception as e:
            out["error"] = f"{how}: {e.__class__.__name__}: {e}"
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


OBSERVER_NICE = -10


def observer_priority():
    """The helpers only observe: let them run as soon as they are woken, so
    their stamps lag the events less on a saturated machine (needs root;
    without it they run at normal priority, and the stamps lag more)."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, OBSERVER_NICE)
    except OSError:
        pass


def normal_priority():
    """What the helper runs under test (`handover restart`) gets nice 0."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    except OSError:
        pass


def helper_stamp():
    """The stamper's side: each stdin line out as "T LINE" (T = arrival)."""
    out = sys.stdout.buffer
    for raw in sys.stdin.buffer:
        out.write(f"{now():.6f} ".encode() + raw)
        out.flush()


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --------------------------------------------------------------- a scenario


def run_scenario(sc, args, deadline):
    """Run one scenario; returns its result dict."""
    workdir = tempfile.mkdtemp(prefix=f"bench-{sc['id']}-")
    hello = [args.hello, "--quiet"]
    if sc["delay_ms"]:
        hello += ["--startup-delay", str(sc["delay_ms"])]
    files = [
        "--status-file", os.path.join(workdir, "status"),
        "--pid-file", os.path.join(workdir, "pid"),
    ]
    if sc["kind"] == "handover":
        port = None
        argv = [args.handover, "--port", "127.0.0.1:0", "--ready", sc["ready"]]
        if sc.get("workers", 1) != 1:
            argv += ["--workers", str(sc["workers"])]
        if sc.get("via") == "control":
            argv += ["--control", os.path.join(workdir, "control")]
        argv += files + ["--"] + hello
    else:
        port = free_port()  # small race, see the module doc
        argv = [args.start_server, "--port", f"127.0.0.1:{port}"] + files + ["--"] + hello
    sup = Supervisor(sc["name"], argv, workdir)
    result = {
        "scenario": sc["name"],
        "command": shlex.join(argv),
        "workdir": workdir,
        "restarts_planned": sc["restarts"],
        "via": sc.get("via", "hup"),
        "workers": sc.get("workers", 1),
        "anomalies": [],
    }
    load = None
    t_begin = now()
    try:
        sup.start()
        if port is None:
            _, _, m = sup.wait_line(RE_LISTEN, 10)
            port = int(m.group(2))
        result["port"] = port
        # Generation 1 serving: status file lists it.
        def first_up():
            failed = sup.find_lines(RE_FAILED)
            if failed:
                raise RuntimeError(f"{sup.name}: the first worker failed: {failed[0][1].string}")
            return len(sup.generations()) == 1

        wait_for(first_up, 30, "generation 1 in the status file", sup)
        gen = sup.status()[0][0]
        if sc.get("via") == "control":
            sup.control_helper = ControlHelper(sup.control_path, args.handover, args.restart_timeout)

        budget = min(deadline, t_begin + args.scenario_limit) - args.idle_secs - 3
        load = Load(port, args.clients, args.max_requests, budget, args.request_timeout, args.rate)
        load.start()
        wait_for(lambda: gen in load.first_ok, 10, f"a response from generation {gen}", sup)
        time.sleep(args.warmup)

        restarts = []
        for i in range(sc["restarts"]):
            if now() > budget - 0.5 or load.stop.is_set():
                result["anomalies"].append(
                    f"time limit: only {i} of {sc['restarts']} restarts done"
                )
                break
            if all(not t.is_alive() for t in load.threads):
                result["anomalies"].append(
                    f"load ended (request limit?) after {i} restarts; stopping restarts"
                )
                break
            r = one_restart(sup, load, gen, sc, args, i)
            restarts.append(r)
            if r.get("error"):
                result["anomalies"].append(f"restart {i + 1}: {r['error']}")
                result["restart_error"] = r["error"]
                break
            gen = r["gen"]
            time.sleep(args.settle_ms / 1000)
        t_restarts_end = now()
        load.finish()
        records = load.all_records()

        # Idle: nothing but the supervisor and one idle worker.
        wait_for(lambda: len(sup.generations()) == 1, 30, "a single generation before idling", sup)
        time.sleep(0.5)
        pid = sup.proc.pid
        cpu0, sw0, _, _, _ = proc_usage(pid)
        time.sleep(args.idle_secs)
        cpu1, sw1, hwm, rss, threads = proc_usage(pid)

        result.update(summarise(records, restarts, load, args))
        if args.records:
            dump_records(args.records, sc["id"], records, restarts)
        result.update(
            {
                "duration_s": round(t_restarts_end - t_begin, 1),
                "idle_secs": args.idle_secs,
                "idle_cpu_ms": round((cpu1 - cpu0) * 1000, 2),
                "idle_wakeups": sw1 - sw0,
                "peak_rss_kib": hwm,
                "rss_kib": rss,
                "threads": threads,
            }
        )
        code = sup.stop()
        result["exit_code"] = code
        if code != 0:
            result["anomalies"].append(f"supervisor exit code {code} after SIGTERM")
    except BaseException as e:
        if load is not None:
            load.stop.set()
        if sup.control_helper is not None:
            sup.control_helper.kill()
        sup.kill_all()
        if isinstance(e, Exception):
            raise RuntimeError(f"{e} (supervisor log: {sup.log_path})") from e
        raise
    finally:
        if sup.proc is not None and sup.proc.poll() is None:
            sup.kill_all()
        if sup.control_helper is not None:
            sup.control_helper.close()
        sup.close_stamper()
    odd = [x for _, x in sup.lines if not any(p.search(x) for p in EXPECTED_LINES)]
    if odd:
        result["anomalies"].append(f"{len(odd)} unexpected log lines, e.g. {odd[:3]}")
    result["log_unexpected"] = odd[:50]
    return result


def dump_records(folder, name, records, restarts):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{name}.requests.tsv"), "w") as f:
        f.write("t_start\tt_end\tkind\tgeneration\n")
        for t0, t1, kind, gen in records:
            f.write(f"{t0:.6f}\t{t1:.6f}\t{kind}\t{gen if gen is not None else ''}\n")
    keys = ["gen", "client", "t_hup", "t_sent", "t_spawn", "t_spawn_last", "t_ready", "t_ready_log",
            "t_status_new", "t_new_serving", "t_old_gone", "t_old_died_log", "t_status_old_gone",
            "t_reply", "t_return"]
    with open(os.path.join(folder, f"{name}.restarts.tsv"), "w") as f:
        f.write("\t".join(keys) + "\n")
        for r in restarts:
            f.write("\t".join(f"{r[k]:.6f}" if isinstance(r.get(k), float) else str(r.get(k, ""))
                               for k in keys) + "\n")


def wait_for(pred, timeout, what, sup):
    end = now() + timeout
    while now() < end:
        v = pred()
        if v:
            return v
        if sup.proc.poll() is not None:
            raise RuntimeError(f"{sup.name} exited ({sup.proc.returncode}) waiting for {what}")
        time.sleep(0.002)
    raise RuntimeError(f"{sup.name}: timed out after {timeout}s waiting for {what}")


def one_restart(sup, load, prev_gen, sc, args, index):
    """Ask for one restart (SIGHUP, or a control request) and follow it to
    the end; returns the timings."""
    r = {"prev_gen": prev_gen}
    old_pids = {p for g, p in sup.status() if g <= prev_gen}
    call = None
    try:
        if sc.get("via") == "control":
            how = args.control_client
            if how == "both":  # alternate: odd restarts socket, even ones the CLI
                how = "socket" if index % 2 == 0 else "cli"
            call = ControlCall(how, sup.control_helper)
            r["client"] = how
            t_hup = now()
            call.start()
        else:
            t_hup = now()
            os.kill(sup.proc.pid, signal.SIGHUP)
        r["t_hup"] = t_hup
        r = follow_restart(sup, load, prev_gen, args, r, old_pids, call)
        if call is not None and call.t_sent is not None:
            # The helper's own stamp of the request: the better "HUP".
            r["t_request_queued"] = t_hup
            r["t_hup"] = call.t_sent
        return r
    finally:
        if call is not None and not call.done.is_set():
            call.abort()


def follow_restart(sup, load, prev_gen, args, r, old_pids, call):
    t_hup = r["t_hup"]
    t_status_new = t_old_gone = None
    new_gen = None
    end = t_hup + args.restart_timeout
    while True:
        t = now()
        gens = sup.status()
        newer = [g for g, _ in gens if g > prev_gen]
        if newer and t_status_new is None:
            t_status_new = t
            new_gen = max(newer)
        if newer and len({g for g, _ in gens}) == 1:
            if t_old_gone is None:
                t_old_gone = t
                new_gen = gens[0][0]
            if new_gen in load.first_ok and (call is None or call.done.is_set()):
                break
        if call is not None and call.done.is_set() and call.error:
            r["error"] = f"control request: {call.error}"
            return r
        if t > load.deadline or not any(th.is_alive() for th in load.threads):
            r["error"] = "the load ended (time or request limit) before this restart completed"
            return r
        if t > end:
            r["error"] = (
                f"not complete {args.restart_timeout}s after the request (status {gens}, "
                f"served by new: {new_gen in load.first_ok if new_gen else False}, "
                f"control reply: {call.done.is_set() if call else '-'})"
            )
            return r
        if sup.proc.poll() is not None:
            r["error"] = f"supervisor exited with {sup.proc.returncode}"
            return r
        time.sleep(0.002)
    # Each event is seen through two channels: the status file (polled by
    # this thread) and the supervisor's log line (stamped by the reader
    # thread); both supervisors emit the two together. A busy machine can
    # only delay an observation, so the earliest one is the best estimate.
    r["gen"] = new_gen
    r["t_status_new"] = t_status_new
    r["t_status_old_gone"] = t_old_gone
    r["t_new_serving"] = load.first_ok[new_gen]
    ready_log = [t for t, m in sup.find_lines(RE_READY, t_hup) if int(m.group(1)) == new_gen]
    running_log = sup.find_lines(RE_NOW_RUNNING, t_hup)
    r["t_ready_log"] = ready_log[0] if ready_log else (running_log[0][0] if running_log else None)
    r["t_ready"] = min(t for t in (t_status_new, r["t_ready_log"]) if t is not None)
    died = [t for t, m in sup.find_lines(RE_OLD_DIED, t_hup) if int(m.group(1)) in old_pids]
    r["t_old_died_log"] = max(died) if died and len(died) == len(old_pids) else None
    r["t_old_gone"] = min(t for t in (t_old_gone, r["t_old_died_log"]) if t is not None)
    spawned = sup.find_lines(RE_WORKER, t_hup)
    r["t_spawn"] = spawned[0][0] if spawned else None
    r["t_spawn_last"] = spawned[-1][0] if spawned else None
    if call is not None:
        r["t_sent"] = call.t_sent
        r["t_reply"] = call.t_reply
        r["t_return"] = call.t_return
        r["reply"] = call.reply
        if call.reply.get("generation") != new_gen:
            r["error"] = f"the control reply names generation {call.reply.get('generation')}, not {new_gen}"
    return r


# ----------------------------------------------------------------- numbers


def pct(sorted_values, p):
    if not sorted_values:
        return None
    # Nearest rank.
    k = max(math.ceil(p / 100 * len(sorted_values)) - 1, 0)
    return sorted_values[k]


def ms(x):
    return None if x is None else round(x * 1000, 2)


def summarise(records, restarts, load, args):
    kinds = {}
    lat = []
    for t0, t1, kind, _ in records:
        if kind == "ok":
            lat.append(t1 - t0)
        else:
            kinds[kind] = kinds.get(kind, 0) + 1
    lat.sort()
    done = [r for r in restarts if "gen" in r]

    # Completion times of successful requests, to find gaps.
    ends = sorted(t1 for _, t1, kind, _ in records if kind == "ok")
    starts = [r[0] for r in records]  # records are sorted by start

    def gap_in(w0, w1):
        """Longest time without a completion in [w0, w1], counting from the
        last completion before w0."""
        lo = max(bisect.bisect_left(ends, w0) - 1, 0)
        seg = ends[lo:bisect.bisect_right(ends, w1)]
        return max((b - a for a, b in zip(seg, seg[1:])), default=None)

    def worst_started_in(w0, w1):
        s_lo, s_hi = bisect.bisect_left(starts, w0), bisect.bisect_right(starts, w1)
        return max((records[i][1] - records[i][0] for i in range(s_lo, s_hi)), default=None)

    # Successful requests by start, for the latency of those overlapping a window.
    ok_recs = [(t0, t1) for t0, t1, kind, _ in records if kind == "ok"]
    ok_starts = [t0 for t0, _ in ok_recs]
    longest = max((t1 - t0 for t0, t1 in ok_recs), default=0.0)

    def worst_overlapping(w0, w1):
        """Worst latency of the successful requests in flight at any time
        in [w0, w1] (started before w1, ended after w0)."""
        lo = bisect.bisect_left(ok_starts, w0 - longest)
        hi = bisect.bisect_right(ok_starts, w1)
        return max((t1 - t0 for t0, t1 in ok_recs[lo:hi] if t1 >= w0), default=None)

    switch_windows = []
    restart_windows = []
    per = []
    margin = 0.05
    for r in done:
        # The switch: from the new generation being declared ready (the old
        # one is told to stop then) until the old one is gone and the new one
        # serves. A gap, if any, is here (start_server with a slow starter:
        # the old one leaves before the new one accepts).
        s0 = max(r["t_hup"], min(r["t_ready"], r["t_old_gone"]) - margin)
        s1 = max(r["t_old_gone"], r["t_new_serving"]) + margin
        switch_windows.append((s0, s1))
        h1 = s1
        # The whole restart, for the latency criterion: from the request
        # (HUP or control) until the old generation is gone, the new one
        # serves and the control reply (if any) is in, plus the margin.
        r1 = max(s1, (r.get("t_return") or 0) + margin)
        restart_windows.append((r["t_hup"], r1))
        per.append(
            {
                "gen": r["gen"],
                "hup_to_spawn_ms": ms(r["t_spawn"] - r["t_hup"]) if r.get("t_spawn") else None,
                "hup_to_ready_ms": ms(r["t_ready"] - r["t_hup"]),
                "hup_to_new_serving_ms": ms(r["t_new_serving"] - r["t_hup"]),
                "hup_to_old_gone_ms": ms(r["t_old_gone"] - r["t_hup"]),
                "ready_to_old_gone_ms": ms(r["t_old_gone"] - r["t_ready"]),
                "ready_to_old_gone_status_file_ms": ms(r["t_status_old_gone"] - r["t_status_new"]),
                "ready_to_old_gone_log_ms": (
                    ms(r["t_old_died_log"] - r["t_ready_log"])
                    if r.get("t_old_died_log") and r.get("t_ready_log") else None
                ),
                "switch_gap_ms": ms(gap_in(s0, s1)),
                "switch_worst_latency_ms": ms(worst_started_in(s0, s1)),
                "restart_gap_ms": ms(gap_in(r["t_hup"], h1)),
                "restart_worst_latency_ms": ms(worst_started_in(r["t_hup"], h1)),
                "restart_window_max_latency_ms": ms(worst_overlapping(r["t_hup"], r1)),
                "switch_window_max_latency_ms": ms(worst_overlapping(s0, s1)),
            }
        )
        if r.get("reply") is not None:
            reply = r["reply"]
            ready_log = r.get("t_ready_log")
            per[-1].update(
                {
                    "client": r["client"],
                    # "Returning": the reply line read (socket) or the CLI
                    # process reaped (cli; t_reply is its output line).
                    "request_to_reply_ms": ms(r["t_return"] - r["t_hup"]),
                    "ready_to_reply_ms": ms(r["t_return"] - r["t_ready"]),
                    "ready_log_to_reply_ms": ms(r["t_return"] - ready_log) if ready_log else None,
                    "ready_to_reply_line_ms": ms(r["t_reply"] - r["t_ready"]),
                    "old_gone_to_reply_ms": ms(r["t_return"] - r["t_old_gone"]),
                    "reply_spawn_to_ready_ms": reply.get("spawn_to_ready_ms"),
                    "reply_signal_to_old_gone_ms": reply.get("signal_to_old_gone_ms"),
                    "spawn_to_ready_log_ms": (
                        ms(ready_log - r["t_spawn"]) if ready_log and r.get("t_spawn") else None
                    ),
                }
            )
    # Baseline: the longest completion gap that touches no switch window
    # (the noise of this machine and client: scheduling, the GIL).
    base_gap = 0.0
    wi = 0
    switch_windows.sort()
    for a, b in zip(ends, ends[1:]):
        while wi < len(switch_windows) and switch_windows[wi][1] < a:
            wi += 1
        if wi < len(switch_windows) and switch_windows[wi][0] <= b:
            continue
        base_gap = max(base_gap, b - a)

    # The latency criterion: the worst latency of the requests in flight
    # during a restart (or during its switch) against the p99 of those in
    # flight during no restart at all ("steady state").
    windows = sorted(restart_windows)
    w0s = [a for a, _ in windows]
    w1max = []
    for _, b in windows:
        w1max.append(max(b, w1max[-1]) if w1max else b)

    def in_restart(t0, t1):
        i = bisect.bisect_right(w0s, t1) - 1
        return i >= 0 and w1max[i] >= t0

    # Steady state starts with the first answer: requests sent before it
    # waited for generation 1 to accept (start_server lists a slow starter
    # in its status file before it serves), a start-up cost, not a steady one.
    t_first = min(t1 for _, t1 in ok_recs) if ok_recs else 0.0
    steady = sorted(t1 - t0 for t0, t1 in ok_recs if t0 >= t_first and not in_restart(t0, t1))
    during = sorted(t1 - t0 for t0, t1 in ok_recs if in_restart(t0, t1))
    steady_p99 = pct(steady, 99)
    limit = 2 * steady_p99 if steady_p99 is not None else None
    restart_max = max((p["restart_window_max_latency_ms"] or 0 for p in per), default=None)
    switch_max = max((p["switch_window_max_latency_ms"] or 0 for p in per), default=None)

    def verdict(worst):
        if worst is None or limit is None:
            return None
        return "PASS" if worst <= ms(limit) else "FAIL"

    # The same test on steady state: cut the time outside restart windows
    # into windows as long as the median switch window; how often does the
    # worst request in one of those exceed the limit too? (Compare with the
    # switch windows: the restart windows of a slow starter are longer than
    # any stretch of steady state.)
    steady_windows = steady_over = 0
    lengths = sorted(b - a for a, b in switch_windows)
    if lengths and ok_recs and limit is not None:
        length = statistics.median(lengths)
        t, t_end = t_first, max(t1 for _, t1 in ok_recs)
        while t + length <= t_end:
            if not in_restart(t, t + length):
                worst = worst_overlapping(t, t + length)
                if worst is not None:
                    steady_windows += 1
                    steady_over += worst > limit
                t += length
            else:
                # Jump past the restart window that is in the way.
                i = bisect.bisect_right(w0s, t + length) - 1
                t = max(t + length, w1max[i]) if i >= 0 else t + length
    latency_criterion = {
        "steady_requests": len(steady),
        "steady_p50": ms(pct(steady, 50)),
        "steady_p99": ms(steady_p99),
        "steady_max": ms(steady[-1] if steady else None),
        "restart_requests": len(during),
        "restart_p99": ms(pct(during, 99)),
        "restart_max": restart_max,
        "switch_max": switch_max,
        "limit_2x_steady_p99": ms(limit),
        "restart_verdict": verdict(restart_max),
        "switch_verdict": verdict(switch_max),
        "restarts_over_limit": sum(
            1 for p in per if limit is not None and (p["restart_window_max_latency_ms"] or 0) > ms(limit)
        ),
        "switches_over_limit": sum(
            1 for p in per if limit is not None and (p["switch_window_max_latency_ms"] or 0) > ms(limit)
        ),
        "steady_windows": steady_windows,
        "steady_windows_over_limit": steady_over,
    }

    def col(name, rows=None):
        return sorted(p[name] for p in (per if rows is None else rows) if p.get(name) is not None)

    # The control-socket restarts, by client (socket: this process speaks
    # the protocol; cli: `handover restart --wait --control P`).
    control = {}
    for client in ("socket", "cli"):
        rows = [p for p in per if p.get("client") == client]
        if not rows:
            continue
        entry = {"restarts": len(rows)}
        for name in ("request_to_reply_ms", "ready_to_reply_ms", "ready_log_to_reply_ms",
                     "ready_to_reply_line_ms", "old_gone_to_reply_ms", "reply_spawn_to_ready_ms",
                     "reply_signal_to_old_gone_ms", "spawn_to_ready_log_ms", "ready_to_old_gone_ms"):
            v = col(name, rows)
            entry[name] = {
                "median": round(statistics.median(v), 1) if v else None,
                "max": round(max(v), 1) if v else None,
            }
        worst = entry["ready_to_reply_ms"]["max"]
        entry["within_20ms"] = None if worst is None else sum(
            1 for p in rows if p["ready_to_reply_ms"] <= 20.0)
        entry["verdict_20ms"] = None if worst is None else ("PASS" if worst <= 20.0 else "FAIL")
        control[client] = entry

    def med(name):
        v = col(name)
        return round(statistics.median(v), 1) if v else None

    def mx(name):
        v = col(name)
        return round(max(v), 1) if v else None

    span = (records[-1][1] - records[0][0]) if records else 0
    return {
        "restarts_done": len(done),
        "requests": len(records),
        "ok": len(lat),
        "failed": kinds,
        "failed_details": load.errors,
        "req_per_s": round(len(records) / span) if span else None,
        "latency_ms": {
            "p50": ms(pct(lat, 50)),
            "p99": ms(pct(lat, 99)),
            "max": ms(lat[-1] if lat else None),
        },
        "hup_to_ready_ms": {"median": med("hup_to_ready_ms"), "max": mx("hup_to_ready_ms")},
        "hup_to_new_serving_ms": {
            "median": med("hup_to_new_serving_ms"),
            "max": mx("hup_to_new_serving_ms"),
        },
        "hup_to_old_gone_ms": {"median": med("hup_to_old_gone_ms"), "max": mx("hup_to_old_gone_ms")},
        "ready_to_old_gone_ms": {
            "median": med("ready_to_old_gone_ms"),
            "max": mx("ready_to_old_gone_ms"),
        },
        "ready_to_old_gone_status_file_ms": {
            "median": med("ready_to_old_gone_status_file_ms"),
            "max": mx("ready_to_old_gone_status_file_ms"),
        },
        "ready_to_old_gone_log_ms": {
            "median": med("ready_to_old_gone_log_ms"),
            "max": mx("ready_to_old_gone_log_ms"),
        },
        "accept_gap_ms": {
            "switch_max": mx("switch_gap_ms"),
            "switch_median": med("switch_gap_ms"),
            "switch_worst_latency": mx("switch_worst_latency_ms"),
            "restart_max": mx("restart_gap_ms"),
            "restart_worst_latency": mx("restart_worst_latency_ms"),
            "baseline_max": ms(base_gap),
        },
        "latency_criterion": latency_criterion,
        "control": control,
        "per_restart": per,
    }


# ------------------------------------------------------------------ report


def fmt(x, digits=1):
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def table(results):
    head = [
        "scenario",
        "restarts (via)",
        "requests",
        "failed (by kind)",
        "latency p50 / p99 / max ms",
        "HUP→new serving median / max ms",
        "HUP→old gone median ms",
        "READY→old gone median / max ms",
        "max accept gap ms (baseline)",
        "steady-state p99 / max ms",
        "max latency in restart / switch windows ms (≤ 2× steady p99?)",
        "peak RSS MiB",
        "idle CPU ms / 5 s",
        "idle wake-ups",
    ]
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["scenario"], "error: " + r["error"]] + [""] * (len(head) - 2))
            continue
        failed = sum(r["failed"].values())
        failed_txt = "0" if not failed else ", ".join(f"{k} {v}" for k, v in sorted(r["failed"].items()))
        lat = r["latency_ms"]
        gap = r["accept_gap_ms"]
        idle_scale = 5.0 / r["idle_secs"]
        restarts = f"{r['restarts_done']}"
        if r["restarts_done"] != r["restarts_planned"]:
            restarts += f" of {r['restarts_planned']}"
        restarts += " (control socket)" if r.get("via") == "control" else " (HUP)"
        lc = r["latency_criterion"]
        rows.append(
            [
                r["scenario"],
                restarts,
                str(r["requests"]),
                failed_txt,
                f"{fmt(lat['p50'])} / {fmt(lat['p99'])} / {fmt(lat['max'])}",
                f"{fmt(r['hup_to_new_serving_ms']['median'])} / {fmt(r['hup_to_new_serving_ms']['max'])}",
                fmt(r["hup_to_old_gone_ms"]["median"]),
                f"{fmt(r['ready_to_old_gone_ms']['median'])} / {fmt(r['ready_to_old_gone_ms']['max'])}",
                f"{fmt(gap['switch_max'])} ({fmt(gap['baseline_max'])})",
                f"{fmt(lc['steady_p99'])} / {fmt(lc['steady_max'])}",
                f"{fmt(lc['restart_max'])} {lc['restart_verdict'] or ''} / "
                f"{fmt(lc['switch_max'])} {lc['switch_verdict'] or ''} "
                f"(limit {fmt(lc['limit_2x_steady_p99'])}; over it: {lc['restarts_over_limit']} / "
                f"{lc['switches_over_limit']} of {r['restarts_done']}; "
                f"steady windows as long as a switch: "
                f"{lc['steady_windows_over_limit']} of {lc['steady_windows']})",
                f"{r['peak_rss_kib'] / 1024:.2f}",
                fmt(round(r["idle_cpu_ms"] * idle_scale, 2), 2),
                str(round(r["idle_wakeups"] * idle_scale)),
            ]
        )
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def control_table(results):
    """The control-socket rows: when does `restart --wait` return?"""
    head = [
        "scenario",
        "client",
        "restarts",
        "request→reply median / max ms",
        "READY→reply median / max ms (≤ 20 ms?)",
        "old gone→reply median / max ms",
        "READY→old gone median / max ms",
        "reply spawn_to_ready_ms median / max",
        "reply signal_to_old_gone_ms median / max",
    ]
    rows = []
    for r in results:
        for client, c in sorted(r.get("control", {}).items(), reverse=True):
            def mm(name):
                return f"{fmt(c[name]['median'])} / {fmt(c[name]['max'])}"
            label = "Python, unix socket" if client == "socket" else "`handover restart --wait`"
            rows.append(
                [
                    r["scenario"],
                    label,
                    str(c["restarts"]),
                    mm("request_to_reply_ms"),
                    f"{mm('ready_to_reply_ms')} {c['verdict_20ms']} "
                    f"({c['within_20ms']} of {c['restarts']} within)",
                    mm("old_gone_to_reply_ms"),
                    mm("ready_to_old_gone_ms"),
                    mm("reply_spawn_to_ready_ms"),
                    mm("reply_signal_to_old_gone_ms"),
                ]
            )
    if not rows:
        return ""
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# -------------------------------------------------------------------- main


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Hot-restart benchmark of handover (and start_server, if installed).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--handover", default=os.path.join(DEFAULT_TARGET, "release", "handover"))
    p.add_argument("--hello", default=os.path.join(DEFAULT_TARGET, "release", "examples", "hello"))
    p.add_argument("--start-server", default=START_SERVER, help="start_server to compare with")
    p.add_argument("--no-start-server", action="store_true", help="skip the start_server rows")
    p.add_argument("--scenarios", default="all",
                   help="comma-separated ids: ho-auto, ho-notify-slow, ho-w4, ho-w4-slow, ss, ss-slow")
    p.add_argument("--workers", type=int, default=4,
                   help="--workers N of the ho-w4 and ho-w4-slow rows")
    p.add_argument("--control-client", choices=("both", "socket", "cli"), default="both",
                   help="how the ho-w4 rows ask for a restart over the control socket: socket "
                        "(this script speaks the protocol), cli (`handover restart --wait "
                        "--control P`), or both (alternately, each restart one of them)")
    p.add_argument("--restarts", type=int, default=50, help="restarts per scenario")
    p.add_argument("--slow-restarts", type=int, default=20,
                   help="restarts for the slow-starter rows (each restart takes > 1.5 s)")
    p.add_argument("--startup-delay", type=int, default=1500, help="ms, the slow starter's delay")
    p.add_argument("--clients", type=int, default=8, help="client threads")
    p.add_argument("--rate", type=float, default=0,
                   help="total requests per second (0: each client as fast as it can)")
    p.add_argument("--max-requests", type=int, default=1_500_000, help="per scenario")
    p.add_argument("--request-timeout", type=float, default=5.0, help="seconds per request")
    p.add_argument("--settle-ms", type=int, default=100, help="pause after each completed restart")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of load before the first HUP")
    p.add_argument("--restart-timeout", type=float, default=30.0, help="seconds for one restart")
    p.add_argument("--idle-secs", type=float, default=5.0, help="idle measurement period")
    p.add_argument("--scenario-limit", type=float, default=120.0, help="wall-clock seconds per scenario")
    p.add_argument("--time-limit", type=float, default=290.0, help="wall-clock seconds for the whole run")
    p.add_argument("--json", metavar="FILE", help="write every number here as well")
    p.add_argument("--keep-logs", action="store_true",
                   help="keep each scenario's temp dir (supervisor log with arrival times) "
                        "even when nothing went wrong")
    p.add_argument("--records", metavar="DIR",
                   help="also write every request (t_start t_end kind generation) and the "
                        "restart times of each scenario as TSV files here")
    args = p.parse_args(argv)
    # The supervisor runs in a temp dir: relative paths would miss.
    for name in ("handover", "hello", "start_server"):
        path = getattr(args, name)
        if os.sep in path:
            setattr(args, name, os.path.abspath(path))
    return args


def scenarios(args):
    slow = args.startup_delay
    all_ = [
        dict(id="ho-auto", name="handover --ready auto", kind="handover", ready="auto",
             delay_ms=0, restarts=args.restarts),
        dict(id="ho-notify-slow", name=f"handover --ready notify, hello --startup-delay {slow}",
             kind="handover", ready="notify", delay_ms=slow, restarts=args.slow_restarts),
        dict(id="ho-w4", name=f"handover --ready notify --workers {args.workers}",
             kind="handover", ready="notify", delay_ms=0, restarts=args.restarts,
             workers=args.workers, via="control"),
        dict(id="ho-w4-slow",
             name=f"handover --ready notify --workers {args.workers}, hello --startup-delay {slow}",
             kind="handover", ready="notify", delay_ms=slow, restarts=args.slow_restarts,
             workers=args.workers, via="control"),
        dict(id="ss", name="start_server", kind="start_server", delay_ms=0, restarts=args.restarts),
        dict(id="ss-slow", name=f"start_server, hello --startup-delay {slow}", kind="start_server",
             delay_ms=slow, restarts=args.slow_restarts),
    ]
    wanted = None if args.scenarios == "all" else set(args.scenarios.split(","))
    chosen = [s for s in all_ if wanted is None or s["id"] in wanted]
    have_ss = os.access(args.start_server, os.X_OK) and not args.no_start_server
    if not have_ss and any(s["kind"] == "start_server" for s in chosen):
        why = "--no-start-server" if args.no_start_server else f"{args.start_server} not found"
        print(f"restart.py: skipping the start_server rows ({why}); "
              "to compare, install it: apt-get install -y libserver-starter-perl", file=sys.stderr)
        chosen = [s for s in chosen if s["kind"] != "start_server"]
    return chosen


def main(argv):
    args = parse_args(argv)
    sys.setswitchinterval(0.001)
    # SIGTERM unwinds like Ctrl-C, so the supervisor and its workers are killed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for path in (args.handover, args.hello):
        if not os.access(path, os.X_OK):
            sys.exit(f"restart.py: {path} is not executable; build with "
                     "`cargo build --release --examples --bins` (bench/run.sh does)")
    t0 = now()
    load_before = os.getloadavg()[0]
    deadline = t0 + args.time_limit
    results = []
    for sc in scenarios(args):
        left = deadline - now()
        if left < args.idle_secs + 10:
            results.append({"scenario": sc["name"], "error": "skipped: --time-limit reached"})
            continue
        print(f"restart.py: {sc['name']}: {sc['restarts']} restarts ...", file=sys.stderr, flush=True)
        try:
            r = run_scenario(sc, args, deadline)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # one broken scenario must not hide the others
            r = {"scenario": sc["name"], "error": f"{e.__class__.__name__}: {e}"}
        results.append(r)
        if "error" not in r and not (args.keep_logs or r["anomalies"] or sum(r["failed"].values())):
            shutil.rmtree(r["workdir"], ignore_errors=True)
            r["workdir"] = None
        if "error" not in r:
            print(f"restart.py:   {r['requests']} requests ({r['req_per_s']}/s), "
                  f"failed {r['failed'] or 0}, {r['restarts_done']} restarts in {r['duration_s']} s"
                  + (f"; log: {os.path.join(r['workdir'], 'supervisor.log')}" if r["workdir"] else ""), file=sys.stderr, flush=True)
            for a in r["anomalies"]:
                print(f"restart.py:   anomaly: {a}", file=sys.stderr)
            for k, v in sorted(r["failed_details"].items()):
                print(f"restart.py:   failed {v}x {k}", file=sys.stderr)
        else:
            print(f"restart.py:   {r['error']}", file=sys.stderr)

    cmd = shlex.join([os.path.relpath(sys.argv[0]) if sys.argv[0] else "restart.py"] + argv)
    print(f"Command: `{cmd}`  ")
    print(f"Machine: {os.cpu_count()} CPUs, {os.uname().sysname} {os.uname().release}; "
          f"{args.clients} client threads, new connection per request, "
          f"rate {'unlimited' if not args.rate else args.rate}; settle {args.settle_ms} ms; "
          f"total {now() - t0:.0f} s; 1-min load average before the run {load_before:.2f} "
          "(the run itself saturates a 2-core machine; other work adds noise)")
    print()
    print(table(results))
    print()
    print(
        "Columns: HUP = the restart request: the SIGHUP, or for the control-socket rows the "
        "moment before the request is sent (socket) or the CLI is spawned (cli). "
        "HUP→new serving = first successful response from the new generation "
        "(start_server's new worker accepts alongside the old one during its probation, "
        "so for it this is not the switch; HUP→old gone is). "
        "HUP→old gone = the status file lists only the new generation (polled every 2 ms) "
        "or the supervisor logged `old worker P died`, whichever was seen first. "
        "READY→old gone = from the new generation declared ready (handover: `is ready` line, "
        "after READY=1 or --interval; start_server: end of its 1 s probation; or the status "
        "file listing it, whichever was seen first) to old gone. "
        "Accept gap = longest time without a completed request in the switch window "
        "(max(HUP, READY − 50 ms) … max(old gone, new serving) + 50 ms); in brackets the longest such "
        "gap anywhere else in the run, the noise floor of this client and machine. "
        "Idle = the supervisor process alone (all its threads), over the idle period after "
        "the load stopped, scaled to 5 s; wake-ups = voluntary + involuntary context switches. "
        "Peak RSS = VmHWM of the supervisor (for start_server, the perl process). "
        "Latency criterion: steady state = successful requests in flight during no restart "
        "window, from the first answer on; restart window = HUP … max(old gone, new serving, control reply) + 50 ms, "
        "switch window as for the accept gap; a request counts for a window when it was in "
        "flight at any moment of it. PASS when the worst such latency is ≤ 2× the steady-state "
        "p99 (a max against a p99: the steady-state max, shown, is the noise floor); "
        "\"over it\" counts the restarts / switches whose worst request exceeded that limit; "
        "\"steady windows\" applies the same test to the steady state (from the first answer "
        "on, outside restart windows) cut into windows as long as the median switch window: "
        "how often noise alone fails it, to compare with the switches."
    )
    ct = control_table(results)
    if ct:
        print()
        print("Control-socket restarts (the rows driven through `--control`; "
              f"client: {args.control_client}):")
        print()
        print(ct)
        print()
        print(
            "READY = the supervisor's `generation N (pids ...) is ready (READY=1 after ...)` "
            "line (emitted when the last worker's READY=1 is processed) or the status file "
            "listing the new generation, whichever was seen first. reply = the reply line read "
            "from the socket, or the `handover restart --wait` process reaped. old gone = as "
            "above. The reply is sent only once the OLD generation has exited, so READY→reply "
            "= READY→old gone (the old workers' own shutdown time, signal_to_old_gone_ms) + "
            "old gone→reply (the supervisor and client overhead). reply spawn_to_ready_ms / "
            "signal_to_old_gone_ms = the supervisor's own numbers in the reply."
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": cmd, "args": vars(args), "loadavg_before": load_before,
                       "results": results}, f, indent=2)
    failed = any("error" in r or r.get("restart_error") or sum(r["failed"].values()) for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--helper"]:  # the helper processes, see Supervisor and ControlHelper
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process ends them
        observer_priority()
        if sys.argv[2] == "stamp":
            helper_stamp()
        else:
            helper_control(*sys.argv[3:6])
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))

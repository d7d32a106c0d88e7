//! The drill's load generator: closed-loop requests against the listeners,
//! one std thread per connection, each thread writing its own samples.
//!
//! Invariants and limits:
//! - Bounded: at most `requests` (a shared ticket counter, exact), until
//!   `duration`; `stop` ends it early. A thread blocked in a read leaves
//!   within `timeout`. The sample cap (`max_samples`, [`MAX_SAMPLES`] by
//!   default) bounds the detail kept, never the load: past it a request
//!   that succeeded first time is only counted ([`Unsampled`], with its
//!   completion time to the millisecond per connection, for the accept
//!   gap), while failed and retried ones are still kept up to as many
//!   again.
//! - `timeout` bounds the connect and every single read or write, and a
//!   request whose reads add up to more than `timeout` ends as `Timeout`
//!   at its next read: a request takes less than twice `timeout` (four
//!   times with a keep-alive retry).
//! - HTTP/1.1 by hand: a GET with `Host:` and `Connection: close` or
//!   `keep-alive`. A body is framed by Content-Length, chunked encoding
//!   (decoded and discarded, trailers skipped) or the end of the stream
//!   (then the connection is not reused). 1xx, 204 and 304 have no body.
//!   A response that asks to close (`Connection: close`, HTTP/1.0 without
//!   keep-alive) closes the connection; the next request opens a new one.
//! - Classification, by how much of the response had arrived: ECONNREFUSED
//!   is `Refused`; ECONNRESET, EPIPE, ECONNABORTED or end of stream with
//!   not one byte of the response is `Reset`; the same after one byte or
//!   more, but before the response was complete, is `ShortRead`; a timeout
//!   (connect, read, write, overall) is `Timeout`; a complete response
//!   whose status differs is `BadStatus`; any other error is `Other` with
//!   its text (a missing unix socket file among them).
//! - Keep-alive retry: a reused connection that the server closed between
//!   requests (write fails, or it ends or is reset before the first byte
//!   of the response) is what every client meets when an old generation
//!   exits; like real clients the idempotent GET is retried once on a
//!   fresh connection, and the sample records `retried`.
//! - Raw mode: a fresh connection per request; send `send`, then read
//!   until the reply has `expect.len()` bytes and starts with `expect`
//!   (else `BadStatus(0)`). With `expect` empty any reply or a clean close
//!   is Ok; with `send` empty too, a successful connect is Ok.
//! - After a failure a thread pauses [`FAILURE_PAUSE`], so an outage is a
//!   countable number of failures, not millions of refused connects.
//! - Fast: one send and usually one recv per keep-alive request, buffers
//!   reused, TCP_NODELAY, two clock reads and two relaxed atomic adds per
//!   request, no locks, no allocation (beyond the samples' Vec growing and
//!   an `Other` error's text). Sends use MSG_NOSIGNAL: EPIPE, never SIGPIPE.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

mod conn;
use conn::Client;

/// No run stores more samples than this, whatever its bounds: at about 80
/// bytes a sample, 160 MB; at the drill's 20k to 130k requests a second,
/// 15 s to 100 s of load.
pub const MAX_SAMPLES: u64 = 2_000_000;
/// A thread's pause after a failed request.
pub const FAILURE_PAUSE: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Http {
        path: String,
        expect_status: u16,
        keepalive: bool,
    },
    /// `expect`: a prefix the reply must start with; empty means any reply
    /// or a clean close.
    Raw {
        send: Vec<u8>,
        expect: Vec<u8>,
    },
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub targets: Vec<Target>,
    pub mode: Mode,
    pub connections: usize,
    pub requests: Option<u64>,
    pub duration: Option<Duration>,
    pub timeout: Duration,
    /// Requests per second over all connections; `None`: as fast as they
    /// are answered.
    pub rate: Option<u64>,
    /// Samples kept in full at most (failed and retried ones: twice as many).
    pub max_samples: u64,
}

/// What the load counted past its sample cap without keeping the detail.
#[derive(Debug, Clone, Default)]
pub struct Unsampled {
    /// Requests not kept as samples.
    pub requests: u64,
    /// Of which succeeded (the rest failed, past even the failures' cap).
    pub ok: u64,
    pub retried: u64,
    /// Successful completions, at most one per connection and millisecond.
    pub beats: Vec<Instant>,
}

impl Unsampled {
    /// Counts one request not kept, ended at `ended`.
    fn count(&mut self, ok: bool, retried: bool, ended: Instant) {
        self.requests += 1;
        self.ok += u64::from(ok);
        self.retried += u64::from(retried);
        let beat = self.beats.last().is_none_or(|&last| ended >= last + Duration::from_millis(1));
        if ok && beat {
            self.beats.push(ended);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Refused,
    Reset,
    Timeout,
    /// The status of a complete response; 0 in raw mode: the reply did not
    /// start with `expect`.
    BadStatus(u16),
    ShortRead,
    /// An io error's text.
    Other(String),
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub started: Instant,
    pub latency: Duration,
    pub outcome: Outcome,
    /// Index into `Plan::targets` (connections go round-robin over them).
    #[allow(dead_code)]
    pub target: usize,
    /// The keep-alive connection was found closed and the request was
    /// sent again on a fresh one (the outcome is the second attempt's).
    pub retried: bool,
}

#[cfg(test)]
impl Sample {
    pub fn ended(&self) -> Instant {
        self.started + self.latency
    }
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    tickets: AtomicU64,
    limit: u64,
    /// Samples kept so far, and failed or retried ones kept past the cap.
    kept: AtomicU64,
    kept_extra: AtomicU64,
    max_samples: u64,
    deadline: Option<Instant>,
    done: AtomicU64,
    failures: AtomicU64,
    retried: AtomicU64,
    running: AtomicUsize,
}

/// A running load.
pub struct Load {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<(Vec<Sample>, Unsampled)>>,
}

impl Load {
    /// Starts `connections` threads (at least one), thread i on target
    /// i mod the number of targets. A plan without targets does nothing.
    /// Fails only when a thread cannot be started (those started are
    /// stopped first).
    pub fn start(plan: Plan) -> io::Result<Load> {
        let connections = if plan.targets.is_empty() { 0 } else { plan.connections.max(1) };
        let shared = Arc::new(Shared {
            limit: plan.requests.unwrap_or(u64::MAX),
            max_samples: plan.max_samples,
            deadline: plan.duration.map(|d| Instant::now() + d),
            running: AtomicUsize::new(connections),
            ..Shared::default()
        });
        let plan = Arc::new(Plan { connections, ..plan });
        let origin = Instant::now();
        let mut load = Load { shared, threads: Vec::with_capacity(connections) };
        for i in 0..connections {
            let (shared, plan) = (Arc::clone(&load.shared), Arc::clone(&plan));
            let spawned = thread::Builder::new()
                .name(format!("drill-{i}"))
                .stack_size(256 * 1024)
                .spawn(move || run(&shared, &plan, i, origin));
            match spawned {
                Ok(t) => load.threads.push(t),
                Err(e) => {
                    load.stop_all();
                    return Err(e);
                }
            }
        }
        Ok(load)
    }

    /// Its live counters, for a progress display on another thread.
    pub fn counters(&self) -> Counters {
        Counters(Arc::clone(&self.shared))
    }

    /// Every thread has reached the request or duration bound.
    pub fn finished(&self) -> bool {
        self.shared.running.load(Relaxed) == 0
    }

    /// Stops the threads (each ends its request in flight), joins them and
    /// returns every sample kept, in no particular order, and what was
    /// counted past the cap.
    pub fn stop_all(self) -> (Vec<Sample>, Unsampled) {
        self.shared.stop.store(true, Relaxed);
        let (mut all, mut unsampled) = (Vec::new(), Unsampled::default());
        for t in self.threads {
            if let Ok((mut samples, more)) = t.join() {
                all.append(&mut samples);
                unsampled.requests += more.requests;
                unsampled.ok += more.ok;
                unsampled.retried += more.retried;
                unsampled.beats.extend(more.beats);
            }
        }
        all.sort_unstable_by_key(|s| s.started);
        unsampled.beats.sort_unstable();
        (all, unsampled)
    }

    /// [`stop_all`](Load::stop_all)'s samples.
    #[cfg(test)]
    pub fn stop(self) -> Vec<Sample> {
        self.stop_all().0
    }
}

/// A load's counters, readable from any thread while it runs and after:
/// a cheap clone of the handle its threads count through; each read is a
/// relaxed load.
#[derive(Clone)]
pub struct Counters(Arc<Shared>);

impl Counters {
    /// Requests completed so far.
    pub fn done(&self) -> u64 {
        self.0.done.load(Relaxed)
    }

    pub fn failures(&self) -> u64 {
        self.0.failures.load(Relaxed)
    }

    /// Keep-alive requests retried on a fresh connection so far.
    pub fn retried(&self) -> u64 {
        self.0.retried.load(Relaxed)
    }
}

#[cfg(test)]
impl Counters {
    /// Counts a request as the load's threads do.
    pub fn count(&self, failed: bool, retried: bool) {
        self.0.done.fetch_add(1, Relaxed);
        self.0.failures.fetch_add(u64::from(failed), Relaxed);
        self.0.retried.fetch_add(u64::from(retried), Relaxed);
    }

    /// How many handles to the counters exist (the load's own included).
    pub fn handles(&self) -> usize {
        Arc::strong_count(&self.0)
    }
}

/// Connection `index`'s requests. Paced (`plan.rate`), each connection
/// sends every `connections / rate` seconds, the connections evenly
/// staggered, and a request's latency counts from when it was due: a stall
/// shows in every request that waited for it, not only in the one that met
/// it (no coordinated omission).
fn run(shared: &Shared, plan: &Plan, index: usize, origin: Instant) -> (Vec<Sample>, Unsampled) {
    let target = index % plan.targets.len();
    let mut client = Client::new(&plan.targets[target], &plan.mode, plan.timeout);
    let mut samples = Vec::with_capacity(1024);
    let mut unsampled = Unsampled::default();
    let interval =
        plan.rate.map(|rate| Duration::from_secs_f64(plan.connections as f64 / rate.max(1) as f64));
    let mut due = interval.map(|every| origin + every.mul_f64(index as f64 / plan.connections as f64));
    loop {
        if let Some(at) = due
            && !wait_until(shared, at)
        {
            break;
        }
        let now = Instant::now();
        if shared.stop.load(Relaxed)
            || shared.deadline.is_some_and(|d| now >= d)
            || shared.tickets.fetch_add(1, Relaxed) >= shared.limit
        {
            break;
        }
        let (outcome, retried) = client.request(now);
        // Paced, `due` is never later than `now`.
        let started = due.unwrap_or(now);
        due = due.zip(interval).map(|(at, every)| at + every);
        let latency = started.elapsed();
        let failed = outcome != Outcome::Ok;
        let keep = shared.kept.fetch_add(1, Relaxed) < shared.max_samples
            || ((failed || retried) && shared.kept_extra.fetch_add(1, Relaxed) < shared.max_samples);
        if keep {
            samples.push(Sample { started, latency, outcome, target, retried });
        } else {
            unsampled.count(!failed, retried, started + latency);
        }
        shared.done.fetch_add(1, Relaxed);
        if retried {
            shared.retried.fetch_add(1, Relaxed);
        }
        if failed {
            shared.failures.fetch_add(1, Relaxed);
            thread::sleep(FAILURE_PAUSE);
        }
    }
    shared.running.fetch_sub(1, Relaxed);
    (samples, unsampled)
}

/// Sleeps until `at`, in slices short enough to notice a stop; false when
/// the load is stopped or past its deadline first.
fn wait_until(shared: &Shared, at: Instant) -> bool {
    loop {
        let now = Instant::now();
        if shared.stop.load(Relaxed) || shared.deadline.is_some_and(|d| now >= d) {
            return false;
        }
        if now >= at {
            return true;
        }
        thread::sleep((at - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests;

//! The looks themselves, on a thread of their own. Reading a worker's
//! memory (the poll or select set it waits on, `process_vm_readv`) lasts
//! as long as the worker likes when the set lies on a page it serves
//! itself (userfaultfd, a file on a FUSE mount), and the supervisor's loop
//! must never wait on a worker. The loop hands over a job, goes on, and is
//! woken by a byte on a pipe once the reports are in; a job that does not
//! come back is the observer's to give up on.
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};

use crate::sys::observe::{self, Report};

/// The processes to look at for each worker of generation `generation`.
pub struct Job {
    pub generation: u64,
    pub looks: Vec<(i32, Vec<i32>)>,
    pub listeners: Vec<observe::Listener>,
}

/// A job's reports, worker by worker, and the time it took.
pub struct Done {
    pub generation: u64,
    pub reports: Vec<(i32, Report)>,
    pub took: Duration,
}

pub struct Looker {
    jobs: Sender<Job>,
    done: Receiver<Done>,
    /// Readable when a job is done.
    wake: OwnedFd,
    /// When the job in hand was handed over (None: none in hand).
    pub asked_at: Option<Instant>,
}

impl Looker {
    pub fn start() -> io::Result<Looker> {
        let (wake, woken) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (outbox, done) = mpsc::channel();
        std::thread::Builder::new().name("observe".into()).stack_size(256 << 10).spawn(move || {
            // Signals are the loop's: none is taken on this thread.
            let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), None);
            while let Ok(job) = inbox.recv() {
                let start = Instant::now();
                let listeners = job.listeners;
                let reports = job
                    .looks
                    .into_iter()
                    .map(|(pid, members)| (pid, observe::look(&members, &listeners)))
                    .collect();
                let done = Done { generation: job.generation, reports, took: start.elapsed() };
                if outbox.send(done).is_err() {
                    return;
                }
                // Full or not, the pipe is readable: the loop drains it.
                let _ = nix::unistd::write(&woken, &[1]);
            }
        })?;
        Ok(Looker { jobs, done, wake, asked_at: None })
    }

    /// Hand `job` over (at `now`); false if the thread is gone.
    pub fn ask(&mut self, job: Job, now: Instant) -> bool {
        let sent = self.jobs.send(job).is_ok();
        if sent {
            self.asked_at = Some(now);
        }
        sent
    }

    /// The job in hand, once done.
    pub fn take(&mut self) -> Option<Done> {
        let mut byte = [0u8; 64];
        while nix::unistd::read(&self.wake, &mut byte).is_ok_and(|n| n > 0) {}
        let done = self.done.try_recv().ok()?;
        self.asked_at = None;
        Some(done)
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }
}

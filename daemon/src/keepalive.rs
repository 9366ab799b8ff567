//! The daemon's keepalive clock: one small thread that times the PINGs of every session
//! that asked for keepalive (the rules are in [`crate::session`]'s module doc).
//!
//! Why a thread and not a tokio timer per session: a pending tokio timer makes every
//! sleep of the runtime an `epoll_wait` with a timeout, which the kernel arms and
//! cancels as a high-resolution timer each time. vireod sleeps and wakes once per call
//! of a client that waits for each reply (libvirt-python, virsh), and virsh and
//! libvirt-python always ask for keepalive, so that cost was paid on nearly every
//! call (measured with benches/cpu-python.py: 7–12 % of vireod's CPU per lookup or
//! define/start/destroy/undefine cycle). Here the runtime has no timer at all while it
//! waits for clients; the clock thread wakes only when a session's interval is up, and
//! it sends the PING (or gives up on the client) through the session's thread-safe
//! queue and cancellation token.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use tracing::{debug, warn};
use vireo_wire::packet;

use crate::session::Session;

/// A watched session and when to look at it next.
struct Due {
    at: Instant,
    /// Tie-breaker, so that entries are totally ordered without comparing sessions.
    seq: u64,
    session: Weak<Session>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The sessions being watched, soonest first, and the condition the thread sleeps on.
struct Clock {
    watched: Mutex<(BinaryHeap<Reverse<Due>>, u64)>,
    changed: Condvar,
}

fn clock() -> &'static Clock {
    static CLOCK: OnceLock<&'static Clock> = OnceLock::new();
    CLOCK.get_or_init(|| {
        let clock: &'static Clock = Box::leak(Box::new(Clock {
            watched: Mutex::new((BinaryHeap::new(), 0)),
            changed: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("vireod-keepalive".into())
            .spawn(move || run(clock))
            .expect("cannot start the keepalive thread");
        clock
    })
}

/// Starts timing `session`'s keepalive (the client asked for it). The session leaves
/// the clock by itself when it ends.
pub fn watch(session: &Arc<Session>) {
    let c = clock();
    let mut w = c.watched.lock().unwrap_or_else(|e| e.into_inner());
    w.1 += 1;
    let seq = w.1;
    // Looked at right away: the clock computes the real due time.
    w.0.push(Reverse(Due {
        at: Instant::now(),
        seq,
        session: Arc::downgrade(session),
    }));
    drop(w);
    c.changed.notify_one();
}

fn run(clock: &Clock) {
    let mut w = clock.watched.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let now = Instant::now();
        // Every session whose time has come: tick it and put it back with its next
        // time (a client that sent something since has moved its own time on).
        while let Some(Reverse(first)) = w.0.peek()
            && first.at <= now
        {
            let Some(Reverse(due)) = w.0.pop() else { break };
            let Some(s) = due.session.upgrade() else {
                continue;
            };
            if let Some(at) = tick(&s, now) {
                w.0.push(Reverse(Due { at, ..due }));
            }
        }
        let next = w.0.peek().map(|Reverse(d)| d.at);
        w = match next {
            Some(at) => {
                let wait = at.saturating_duration_since(Instant::now());
                clock
                    .changed
                    .wait_timeout(w, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => clock.changed.wait(w).unwrap_or_else(|e| e.into_inner()),
        };
    }
}

/// One look at a session: sends a PING or gives up on the client when its interval is
/// up. Returns when to look again, or `None` when the session needs no more watching.
fn tick(s: &Session, now: Instant) -> Option<Instant> {
    if s.is_over() {
        return None;
    }
    let interval = Duration::from_secs(s.limits().keepalive_interval.max(1) as u64);
    let mut k = s.keepalive_state();
    let due = k.interval_start + interval;
    if now < due {
        return Some(due);
    }
    if k.count_to_death == 0 {
        warn!(
            session = s.id,
            "connection closed due to keepalive timeout: no answer to {} keepalive messages",
            s.limits().keepalive_count
        );
        drop(k);
        s.give_up();
        return None;
    }
    k.count_to_death -= 1;
    k.interval_start = now;
    drop(k);
    debug!(session = s.id, "sending keepalive request");
    s.send(packet::keepalive_ping());
    Some(now + interval)
}

//! The hub: sequence counter, replay ring and subscriber list behind one short lock.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use thiserror::Error;
use vireo_messages::Event;

use crate::filter::Filter;
use crate::subscription::{BlockingSubscription, Front, Subscription};

/// An event with its host-wide sequence number.
///
/// Cloning is cheap (a `u64` and an `Arc`): every subscriber and the replay ring share
/// the same [`Event`] allocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamped {
    /// The sequence number: 1 for the first event a hub publishes, then +1 per event.
    pub seq: u64,
    /// The event itself, shared.
    pub event: Arc<Event>,
}

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// The next event that matches the subscriber's filter. Within one subscription,
    /// `seq` strictly increases from one `Event` delivery to the next.
    Event(Stamped),
    /// The subscriber's queue was full and exactly `missed` matching events were dropped
    /// for it. They all fall between the previous `Event` delivery and the next one,
    /// which follows immediately (or the stream ends, if the hub is gone).
    Lagged {
        /// How many matching events were dropped; never 0.
        missed: u64,
    },
    /// A resumed subscription asked for events the replay ring no longer holds: events
    /// with `requested <= seq < oldest_available` are lost (whether or not they would
    /// have matched the filter). Only ever the first delivery of a subscription; the
    /// stream continues with the matching events from `oldest_available` on.
    Gap {
        /// The first sequence number the subscriber asked for (`resume_after + 1`).
        requested: u64,
        /// The first sequence number it can still get.
        oldest_available: u64,
    },
}

impl Delivery {
    /// The stamped event, if this is an event delivery.
    pub fn event(&self) -> Option<&Stamped> {
        match self {
            Delivery::Event(stamped) => Some(stamped),
            _ => None,
        }
    }
}

/// Sizes of a hub's buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubConfig {
    /// How many of the most recent events the hub keeps for resuming subscribers
    /// (0 disables resuming: every resume that misses anything reports a gap).
    pub ring_capacity: usize,
    /// The queue capacity of subscriptions that do not choose their own.
    pub queue_capacity: usize,
}

impl Default for HubConfig {
    fn default() -> HubConfig {
        HubConfig {
            ring_capacity: 4096,
            queue_capacity: 1024,
        }
    }
}

/// A snapshot of a hub's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HubStats {
    /// Live subscriptions.
    pub subscribers: usize,
    /// Events published so far (equal to the last sequence number).
    pub published: u64,
    /// Event copies enqueued to subscribers (one event to three subscribers counts 3).
    pub delivered: u64,
    /// Event copies dropped because a subscriber's queue was full.
    pub dropped: u64,
    /// Events currently held by the replay ring.
    pub ring_len: usize,
}

/// How to subscribe: filter, queue capacity and where to start.
#[derive(Debug, Clone, Default)]
pub struct SubscribeOptions {
    /// Which events to receive.
    pub filter: Filter,
    /// Queue capacity; `None` takes the hub's default. 0 is treated as 1.
    pub capacity: Option<usize>,
    /// Start after this sequence number (replaying from the ring) instead of with the
    /// next event published.
    pub resume_after: Option<u64>,
}

impl SubscribeOptions {
    /// Options with `filter`, the default capacity, starting with the next event.
    pub fn new(filter: Filter) -> SubscribeOptions {
        SubscribeOptions {
            filter,
            ..SubscribeOptions::default()
        }
    }

    /// Use a queue of `capacity` events (0 is treated as 1).
    pub fn capacity(mut self, capacity: usize) -> SubscribeOptions {
        self.capacity = Some(capacity);
        self
    }

    /// Receive the matching events with sequence numbers above `last_seen` that the
    /// ring still holds, then live events, with no gap and no duplicate between them.
    /// `resume_after(hub.last_seq())` is the same as not resuming; `resume_after(0)`
    /// asks for everything since the hub started.
    pub fn resume_after(mut self, last_seen: u64) -> SubscribeOptions {
        self.resume_after = Some(last_seen);
        self
    }
}

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SubscribeError {
    /// The resume point is in the future: it cannot come from this hub (typically a
    /// sequence number saved before the daemon restarted).
    #[error(
        "cannot resume after sequence number {requested}: this hub has only published up to {last_seq}"
    )]
    ResumeAhead {
        /// The requested resume point.
        requested: u64,
        /// The hub's last sequence number.
        last_seq: u64,
    },
}

/// One item in a subscriber's queue: an event, and how many matching events were
/// dropped for this subscriber just before it.
#[derive(Debug)]
pub(crate) struct Item {
    pub(crate) missed_before: u64,
    pub(crate) event: Stamped,
}

/// The sending half of a subscriber's queue.
enum Sink {
    Async(tokio::sync::mpsc::Sender<Item>),
    Blocking(crossbeam_channel::Sender<Item>),
}

enum Sent {
    Ok,
    Full,
    Closed,
}

impl Sink {
    fn try_send(&self, item: Item) -> Sent {
        use crossbeam_channel::TrySendError as Cb;
        use tokio::sync::mpsc::error::TrySendError as Tk;
        match self {
            Sink::Async(tx) => match tx.try_send(item) {
                Ok(()) => Sent::Ok,
                Err(Tk::Full(_)) => Sent::Full,
                Err(Tk::Closed(_)) => Sent::Closed,
            },
            Sink::Blocking(tx) => match tx.try_send(item) {
                Ok(()) => Sent::Ok,
                Err(Cb::Full(_)) => Sent::Full,
                Err(Cb::Disconnected(_)) => Sent::Closed,
            },
        }
    }
}

/// A subscriber as the publisher sees it.
struct Entry {
    id: u64,
    filter: Filter,
    sink: Sink,
    /// Matching events dropped since the last one that was enqueued. Written only by
    /// the publisher (under the lock); the subscriber reads it once, after its queue
    /// has disconnected, to report a trailing lag.
    missed: Arc<AtomicU64>,
}

struct State {
    last_seq: u64,
    ring: VecDeque<Stamped>,
    subs: Vec<Entry>,
    next_id: u64,
    delivered: u64,
    dropped: u64,
}

pub(crate) struct Inner {
    state: Mutex<State>,
    /// Mirror of `State::last_seq` for lock-free reads.
    last_seq: AtomicU64,
    config: HubConfig,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held, but if something ever did, the state
        // is still consistent between statements: keep going rather than cascade.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes a subscription (called when it is dropped).
    pub(crate) fn unsubscribe(&self, id: u64) {
        let mut state = self.lock();
        if let Some(pos) = state.subs.iter().position(|e| e.id == id) {
            state.subs.swap_remove(pos);
        }
    }
}

/// The host's event hub. Cheap to clone; all clones publish to the same subscribers.
///
/// See the [crate documentation](crate) for the delivery guarantees.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl Default for Hub {
    fn default() -> Hub {
        Hub::new()
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("config", &self.inner.config)
            .field("last_seq", &self.last_seq())
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub with the default sizes (ring of 4096 events, queues of 1024).
    pub fn new() -> Hub {
        Hub::with_config(HubConfig::default())
    }

    /// A hub with the given sizes. A default queue capacity of 0 is treated as 1.
    pub fn with_config(config: HubConfig) -> Hub {
        let config = HubConfig {
            queue_capacity: config.queue_capacity.max(1),
            ..config
        };
        Hub {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    last_seq: 0,
                    ring: VecDeque::with_capacity(config.ring_capacity),
                    subs: Vec::new(),
                    next_id: 0,
                    delivered: 0,
                    dropped: 0,
                }),
                last_seq: AtomicU64::new(0),
                config,
            }),
        }
    }

    /// The sizes this hub was built with.
    pub fn config(&self) -> HubConfig {
        self.inner.config
    }

    /// Publishes an event and returns its sequence number.
    ///
    /// Never blocks on subscribers and never awaits: the event is offered to each
    /// matching subscriber's queue with a non-blocking send; a full queue drops it for
    /// that subscriber (counted, reported later as [`Delivery::Lagged`]). Costs one
    /// short lock and O(subscribers) work.
    pub fn publish(&self, event: impl Into<Arc<Event>>) -> u64 {
        let event = event.into();
        let mut guard = self.inner.lock();
        let state = &mut *guard;
        state.last_seq += 1;
        let stamped = Stamped {
            seq: state.last_seq,
            event,
        };
        let ring_capacity = self.inner.config.ring_capacity;
        if ring_capacity > 0 {
            if state.ring.len() == ring_capacity {
                state.ring.pop_front();
            }
            state.ring.push_back(stamped.clone());
        }
        let (mut delivered, mut dropped) = (0, 0);
        state.subs.retain(|entry| {
            if !entry.filter.matches(&stamped.event) {
                return true;
            }
            let missed_before = entry.missed.load(Ordering::Relaxed);
            let item = Item {
                missed_before,
                event: stamped.clone(),
            };
            match entry.sink.try_send(item) {
                Sent::Ok => {
                    if missed_before > 0 {
                        entry.missed.store(0, Ordering::Relaxed);
                    }
                    delivered += 1;
                    true
                }
                Sent::Full => {
                    entry.missed.store(missed_before + 1, Ordering::Relaxed);
                    dropped += 1;
                    true
                }
                // Unreachable through the public API (dropping a subscription
                // unregisters it before its receiver goes); kept as a safety net.
                Sent::Closed => false,
            }
        });
        state.delivered += delivered;
        state.dropped += dropped;
        self.inner.last_seq.store(stamped.seq, Ordering::Release);
        stamped.seq
    }

    /// The sequence number of the last event published (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.inner.last_seq.load(Ordering::Acquire)
    }

    /// A snapshot of the hub's counters.
    pub fn stats(&self) -> HubStats {
        let state = self.inner.lock();
        HubStats {
            subscribers: state.subs.len(),
            published: state.last_seq,
            delivered: state.delivered,
            dropped: state.dropped,
            ring_len: state.ring.len(),
        }
    }

    /// Subscribes for async use, starting with the next event published, with the
    /// default queue capacity.
    pub fn subscribe(&self, filter: Filter) -> Subscription {
        self.subscribe_with(SubscribeOptions::new(filter))
            .expect("a subscription that does not resume cannot fail")
    }

    /// Subscribes for async use with the given options.
    pub fn subscribe_with(&self, opts: SubscribeOptions) -> Result<Subscription, SubscribeError> {
        let capacity = self.capacity(&opts);
        let (tx, rx) = tokio::sync::mpsc::channel(capacity);
        let front = self.register(opts, Sink::Async(tx))?;
        Ok(Subscription::new(front, rx))
    }

    /// Subscribes for blocking use (plain threads), starting with the next event
    /// published, with the default queue capacity.
    pub fn subscribe_blocking(&self, filter: Filter) -> BlockingSubscription {
        self.subscribe_blocking_with(SubscribeOptions::new(filter))
            .expect("a subscription that does not resume cannot fail")
    }

    /// Subscribes for blocking use with the given options.
    pub fn subscribe_blocking_with(
        &self,
        opts: SubscribeOptions,
    ) -> Result<BlockingSubscription, SubscribeError> {
        let capacity = self.capacity(&opts);
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let front = self.register(opts, Sink::Blocking(tx))?;
        Ok(BlockingSubscription::new(front, rx))
    }

    fn capacity(&self, opts: &SubscribeOptions) -> usize {
        opts.capacity
            .unwrap_or(self.inner.config.queue_capacity)
            .max(1)
    }

    /// Adds a subscriber. Replay and registration happen under the same lock as
    /// publishing, so the replayed events end exactly where live events begin.
    fn register(&self, opts: SubscribeOptions, sink: Sink) -> Result<Front, SubscribeError> {
        let SubscribeOptions {
            filter,
            resume_after,
            ..
        } = opts;
        let mut state = self.inner.lock();
        let last_seq = state.last_seq;
        let mut backlog = VecDeque::new();
        if let Some(after) = resume_after {
            if after > last_seq {
                return Err(SubscribeError::ResumeAhead {
                    requested: after,
                    last_seq,
                });
            }
            let requested = after + 1;
            let oldest_available = state.ring.front().map_or(last_seq + 1, |s| s.seq);
            if requested < oldest_available {
                backlog.push_back(Delivery::Gap {
                    requested,
                    oldest_available,
                });
            }
            // The ring is in seq order and contiguous: skip what the subscriber has.
            let skip = requested.saturating_sub(oldest_available) as usize;
            backlog.extend(
                state
                    .ring
                    .iter()
                    .skip(skip)
                    .filter(|s| filter.matches(&s.event))
                    .cloned()
                    .map(Delivery::Event),
            );
        }
        let id = state.next_id;
        state.next_id += 1;
        let missed = Arc::new(AtomicU64::new(0));
        state.subs.push(Entry {
            id,
            filter,
            sink,
            missed: missed.clone(),
        });
        drop(state);
        Ok(Front::new(
            id,
            Arc::downgrade(&self.inner),
            backlog,
            resume_after.unwrap_or(last_seq),
            missed,
        ))
    }
}

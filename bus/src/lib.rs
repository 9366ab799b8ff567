//! The event hub: one ordered, numbered stream of lifecycle events per host, fanned out
//! to filtered subscribers that can fall behind without holding anyone up.
//!
//! Driver actors [`publish`](Hub::publish) every domain, network, pool, node device and
//! secret event. The hub stamps each with a host-wide sequence number
//! ([`Stamped`]: 1, 2, 3, … with no holes), remembers the most recent ones in a bounded
//! ring, and offers each to every subscriber whose [`Filter`] matches. Subscribers are
//! client connections (the RPC layer turns deliveries into libvirt event messages),
//! actors and embedding apps; they read through an async [`Subscription`] (a
//! [`Stream`](futures::Stream)) or a [`BlockingSubscription`] for plain threads.
//!
//! # Delivery guarantees
//!
//! * **Order.** Within one subscription, [`Delivery::Event`]s come in strictly
//!   increasing sequence order, and sequence order is publish order: numbers are assigned
//!   and events enqueued under one lock, so two publishers racing are serialized the
//!   same way for every subscriber.
//! * **The publisher never waits.** [`Hub::publish`] is synchronous, never awaits and
//!   never blocks on a subscriber: it takes the hub's lock briefly, does O(subscribers)
//!   non-blocking sends and returns the sequence number. A subscriber whose bounded
//!   queue is full (slow, stuck, or just not reading) loses that event; nobody else is
//!   affected.
//! * **Losses are counted exactly.** Each matching event published while a
//!   subscription exists is either delivered to it or counted in exactly one
//!   [`Delivery::Lagged`]`{ missed }`, which comes right before the next event that
//!   does get through (or last, if the hub goes away first). Hence
//!   `events received + sum of missed == matching events published`, and a lag marker
//!   tells the subscriber exactly where the hole is: between the event before it and
//!   the event after it.
//! * **Resume without gap or duplicate.** A subscription made with
//!   [`SubscribeOptions::resume_after`]`(n)` first receives the matching events with
//!   `seq > n` still held by the ring, then live events; replay and registration happen
//!   under the publish lock, so the two join exactly. If the ring has already dropped
//!   some of `n + 1 ..`, the first delivery is [`Delivery::Gap`]`{ requested,
//!   oldest_available }` and the stream continues from the oldest event held. Resuming
//!   after a number the hub has not reached yet is refused
//!   ([`SubscribeError::ResumeAhead`]). Sequence numbers live in memory: they restart at
//!   1 with the daemon, so a resume point is only meaningful against the same hub.
//! * **Shared, not copied.** An event is allocated once ([`Arc`](std::sync::Arc)); the
//!   ring and every queue hold pointers to it.
//! * **Lifetimes.** Dropping a subscription removes it from the hub at once. When every
//!   [`Hub`] clone is gone, subscriptions hand out what they still hold (and a final
//!   `Lagged` if they had lost events since their last one) and then end.
//!
//! # Why this design
//!
//! A libvirt event client that stops reading must not stall the daemon, and one that
//! reads slowly must not grow memory without bound; so queues are bounded and overflow
//! is dropped per subscriber. Dropping silently would make client-side caches wrong
//! without anyone knowing, so every loss is reported, with an exact count and position,
//! and can be repaired from the ring (resubscribe with
//! [`resume_after`](SubscribeOptions::resume_after)`(sub.resume_point())`).
//! One std `Mutex` around the counter, ring and subscriber list is the simplest thing
//! that makes "sequence order is delivery order for everyone" and "replay then live,
//! atomically" true; it is held only for non-blocking work, so contention stays short.
//!
//! ```
//! use vireo_bus::{Delivery, Filter, Hub};
//! use vireo_messages::{DomainEventKind, Event, EventKind, ObjectKind, ObjectRef, Uuid};
//!
//! let hub = Hub::new();
//! let mut sub = hub.subscribe_blocking(Filter::all().kind(ObjectKind::Domain));
//! let seq = hub.publish(Event {
//!     origin: 0,
//!     object: ObjectRef::domain("vm1", Uuid::nil(), None),
//!     kind: EventKind::lifecycle(DomainEventKind::Started, 0),
//! });
//! match sub.recv() {
//!     Some(Delivery::Event(stamped)) => assert_eq!(stamped.seq, seq),
//!     other => panic!("unexpected {other:?}"),
//! }
//! ```

mod filter;
mod hub;
mod subscription;
#[cfg(test)]
mod tests;

pub use filter::Filter;
pub use hub::{Delivery, Hub, HubConfig, HubStats, Stamped, SubscribeError, SubscribeOptions};
pub use subscription::{BlockingSubscription, RecvTimeoutError, Subscription, TryRecvError};

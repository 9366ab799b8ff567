//! The receiving ends: [`Subscription`] (async) and [`BlockingSubscription`] (threads).
//!
//! Both read from a [`Front`] first (the gap marker and replayed events computed at
//! subscribe time, and an event held back while its lag marker is handed out), then from
//! their bounded queue. Dropping either one removes it from the hub at once.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures::Stream;
use thiserror::Error;

use crate::hub::{Delivery, Inner, Item};

/// Why [`Subscription::try_recv`] or [`BlockingSubscription::try_recv`] returned
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TryRecvError {
    /// Nothing is waiting right now.
    #[error("no event is waiting")]
    Empty,
    /// The hub is gone and everything it sent has been received.
    #[error("the event hub is gone")]
    Closed,
}

/// Why [`BlockingSubscription::recv_timeout`] returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RecvTimeoutError {
    /// Nothing arrived in time.
    #[error("no event arrived in time")]
    Timeout,
    /// The hub is gone and everything it sent has been received.
    #[error("the event hub is gone")]
    Closed,
}

/// The part shared by both kinds of subscription.
pub(crate) struct Front {
    id: u64,
    hub: Weak<Inner>,
    /// Deliveries to hand out before reading the queue again.
    pending: VecDeque<Delivery>,
    /// Sequence number up to which this subscriber is caught up (see `resume_point`).
    caught_up: u64,
    /// Shared with the publisher's entry; read here only once the queue disconnected.
    missed: Arc<AtomicU64>,
}

impl Front {
    pub(crate) fn new(
        id: u64,
        hub: Weak<Inner>,
        pending: VecDeque<Delivery>,
        caught_up: u64,
        missed: Arc<AtomicU64>,
    ) -> Front {
        Front {
            id,
            hub,
            pending,
            caught_up,
            missed,
        }
    }

    fn pop_pending(&mut self) -> Option<Delivery> {
        let delivery = self.pending.pop_front()?;
        Some(self.note(delivery))
    }

    /// Turns a queue item into a delivery: the lag marker first if events were dropped
    /// before it, holding the event back for the next call.
    fn accept(&mut self, item: Item) -> Delivery {
        if item.missed_before > 0 {
            self.pending.push_back(Delivery::Event(item.event));
            Delivery::Lagged {
                missed: item.missed_before,
            }
        } else {
            self.note(Delivery::Event(item.event))
        }
    }

    /// The queue has disconnected (the hub is gone): report events dropped after the
    /// last one enqueued, once.
    fn closed(&mut self) -> Option<Delivery> {
        // The publisher's last write to `missed` happens-before the queue's disconnect,
        // which we have observed.
        match self.missed.swap(0, Ordering::Acquire) {
            0 => None,
            missed => Some(Delivery::Lagged { missed }),
        }
    }

    fn note(&mut self, delivery: Delivery) -> Delivery {
        match &delivery {
            Delivery::Event(stamped) => self.caught_up = stamped.seq,
            Delivery::Gap {
                oldest_available, ..
            } => self.caught_up = oldest_available - 1,
            Delivery::Lagged { .. } => {}
        }
        delivery
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.unsubscribe(self.id);
        }
    }
}

/// An async subscription: a [`Stream`] of [`Delivery`], or call [`recv`](Self::recv).
///
/// The stream ends (`None`) when every [`Hub`](crate::Hub) clone has been dropped and
/// everything sent has been received. Dropping the subscription unsubscribes.
pub struct Subscription {
    front: Front,
    rx: tokio::sync::mpsc::Receiver<Item>,
}

impl Subscription {
    pub(crate) fn new(front: Front, rx: tokio::sync::mpsc::Receiver<Item>) -> Subscription {
        Subscription { front, rx }
    }

    /// Waits for the next delivery; `None` once the hub is gone and drained.
    ///
    /// Cancel-safe: if the future is dropped before it completes, nothing is lost.
    pub async fn recv(&mut self) -> Option<Delivery> {
        std::future::poll_fn(|cx| self.poll_delivery(cx)).await
    }

    /// The next delivery if one is waiting.
    pub fn try_recv(&mut self) -> Result<Delivery, TryRecvError> {
        use tokio::sync::mpsc::error::TryRecvError as Tk;
        if let Some(delivery) = self.front.pop_pending() {
            return Ok(delivery);
        }
        match self.rx.try_recv() {
            Ok(item) => Ok(self.front.accept(item)),
            Err(Tk::Empty) => Err(TryRecvError::Empty),
            Err(Tk::Disconnected) => self.front.closed().ok_or(TryRecvError::Closed),
        }
    }

    /// The sequence number this subscriber is caught up to: the last event delivered,
    /// or where it started. Passing it to
    /// [`SubscribeOptions::resume_after`](crate::SubscribeOptions::resume_after) on a
    /// new subscription continues where this one stands; after a
    /// [`Delivery::Lagged`], that recovers the dropped events if the ring still has
    /// them.
    pub fn resume_point(&self) -> u64 {
        self.front.caught_up
    }

    fn poll_delivery(&mut self, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        if let Some(delivery) = self.front.pop_pending() {
            return Poll::Ready(Some(delivery));
        }
        match ready!(self.rx.poll_recv(cx)) {
            Some(item) => Poll::Ready(Some(self.front.accept(item))),
            None => Poll::Ready(self.front.closed()),
        }
    }
}

impl Stream for Subscription {
    type Item = Delivery;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        self.get_mut().poll_delivery(cx)
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.front.id)
            .field("resume_point", &self.front.caught_up)
            .finish_non_exhaustive()
    }
}

/// A subscription for plain threads, built on a crossbeam channel.
///
/// Iterating blocks for each delivery and ends when the hub is gone and drained.
/// Dropping the subscription unsubscribes.
pub struct BlockingSubscription {
    front: Front,
    rx: crossbeam_channel::Receiver<Item>,
}

impl BlockingSubscription {
    pub(crate) fn new(front: Front, rx: crossbeam_channel::Receiver<Item>) -> BlockingSubscription {
        BlockingSubscription { front, rx }
    }

    /// Blocks for the next delivery; `None` once the hub is gone and drained.
    pub fn recv(&mut self) -> Option<Delivery> {
        if let Some(delivery) = self.front.pop_pending() {
            return Some(delivery);
        }
        match self.rx.recv() {
            Ok(item) => Some(self.front.accept(item)),
            Err(crossbeam_channel::RecvError) => self.front.closed(),
        }
    }

    /// Blocks for the next delivery for at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Delivery, RecvTimeoutError> {
        use crossbeam_channel::RecvTimeoutError as Cb;
        if let Some(delivery) = self.front.pop_pending() {
            return Ok(delivery);
        }
        match self.rx.recv_timeout(timeout) {
            Ok(item) => Ok(self.front.accept(item)),
            Err(Cb::Timeout) => Err(RecvTimeoutError::Timeout),
            Err(Cb::Disconnected) => self.front.closed().ok_or(RecvTimeoutError::Closed),
        }
    }

    /// The next delivery if one is waiting.
    pub fn try_recv(&mut self) -> Result<Delivery, TryRecvError> {
        use crossbeam_channel::TryRecvError as Cb;
        if let Some(delivery) = self.front.pop_pending() {
            return Ok(delivery);
        }
        match self.rx.try_recv() {
            Ok(item) => Ok(self.front.accept(item)),
            Err(Cb::Empty) => Err(TryRecvError::Empty),
            Err(Cb::Disconnected) => self.front.closed().ok_or(TryRecvError::Closed),
        }
    }

    /// An iterator over the deliveries waiting now, without blocking.
    pub fn try_iter(&mut self) -> impl Iterator<Item = Delivery> + '_ {
        std::iter::from_fn(|| self.try_recv().ok())
    }

    /// See [`Subscription::resume_point`].
    pub fn resume_point(&self) -> u64 {
        self.front.caught_up
    }
}

impl Iterator for BlockingSubscription {
    type Item = Delivery;

    fn next(&mut self) -> Option<Delivery> {
        self.recv()
    }
}

impl std::fmt::Debug for BlockingSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingSubscription")
            .field("id", &self.front.id)
            .field("resume_point", &self.front.caught_up)
            .finish_non_exhaustive()
    }
}

//! Helpers shared by the actors' integration tests.

use std::time::Duration;

use vireo_actors::{Delivery, Subscription};
use vireo_messages::DomainEventKind;

/// Waits (up to 5 s) for the next lifecycle event on `sub`: (name, event, detail).
pub async fn next_lifecycle(sub: &mut Subscription) -> (String, DomainEventKind, i32) {
    loop {
        let d = tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .expect("an event within 5 s")
            .expect("hub alive");
        if let Delivery::Event(s) = d
            && let Some(l) = s.event.kind.as_lifecycle()
        {
            return (s.event.object.name.clone(), l.event, l.detail);
        }
    }
}

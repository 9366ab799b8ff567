//! Behaviour tests of the hub: ordering, filtering, lag, resume, both receivers and a
//! bounded concurrency stress test.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use futures::StreamExt;
use vireo_messages::{
    DomainEvent, DomainEventKind, Event, EventKind, NetworkEventKind, ObjectKind, ObjectRef, Uuid,
};

use crate::{
    BlockingSubscription, Delivery, Filter, Hub, HubConfig, RecvTimeoutError, SubscribeError,
    SubscribeOptions, TryRecvError,
};

fn uuid(n: u8) -> Uuid {
    Uuid::from_bytes([n; 16])
}

fn domain(origin: u32, n: u8, kind: EventKind) -> Event {
    Event {
        origin,
        object: ObjectRef::domain(format!("vm{n}"), uuid(n), None),
        kind,
    }
}

fn started(origin: u32, n: u8) -> Event {
    domain(origin, n, EventKind::lifecycle(DomainEventKind::Started, 0))
}

fn network(origin: u32, n: u8) -> Event {
    Event {
        origin,
        object: ObjectRef::named(ObjectKind::Network, format!("net{n}"), Some(uuid(n))),
        kind: EventKind::NetworkLifecycle(NetworkEventKind::Started),
    }
}

fn seq(d: &Delivery) -> u64 {
    match d {
        Delivery::Event(s) => s.seq,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Everything waiting now, as a compact description.
fn drain(sub: &mut BlockingSubscription) -> Vec<Delivery> {
    sub.try_iter().collect()
}

fn seqs(deliveries: &[Delivery]) -> Vec<u64> {
    deliveries.iter().map(seq).collect()
}

#[test]
fn sequence_numbers_increase_and_every_subscriber_sees_them_in_order() {
    let hub = Hub::new();
    let mut a = hub.subscribe_blocking(Filter::all());
    let mut b = hub.subscribe_blocking(Filter::all());
    assert_eq!(hub.last_seq(), 0);
    let mut assigned = Vec::new();
    for i in 0..100u8 {
        assigned.push(hub.publish(started(0, i)));
    }
    assert_eq!(assigned, (1..=100).collect::<Vec<_>>());
    assert_eq!(hub.last_seq(), 100);
    let got_a = drain(&mut a);
    let got_b = drain(&mut b);
    assert_eq!(seqs(&got_a), assigned);
    assert_eq!(seqs(&got_b), assigned);
    // Same content, and the very same allocation: shared, not copied.
    for (x, y) in got_a.iter().zip(&got_b) {
        let (x, y) = (x.event().unwrap(), y.event().unwrap());
        assert!(Arc::ptr_eq(&x.event, &y.event));
    }
    assert_eq!(got_a[7].event().unwrap().event.object.name, "vm7");
    let stats = hub.stats();
    assert_eq!(
        (
            stats.subscribers,
            stats.published,
            stats.delivered,
            stats.dropped
        ),
        (2, 100, 200, 0)
    );
}

#[test]
fn a_new_subscription_starts_with_the_next_event() {
    let hub = Hub::new();
    hub.publish(started(0, 1));
    let mut sub = hub.subscribe_blocking(Filter::all());
    assert_eq!(sub.resume_point(), 1);
    assert_eq!(sub.try_recv(), Err(TryRecvError::Empty));
    hub.publish(started(0, 2));
    assert_eq!(seqs(&drain(&mut sub)), vec![2]);
    assert_eq!(sub.resume_point(), 2);
}

#[test]
fn filters_select_the_right_events() {
    let hub = Hub::new();
    let mut by_kind = hub.subscribe_blocking(Filter::all().kind(ObjectKind::Network));
    let mut by_uuid = hub.subscribe_blocking(Filter::all().uuid(uuid(2)));
    let mut by_origin = hub.subscribe_blocking(Filter::all().origin(7));
    let mut by_id = hub.subscribe_blocking(Filter::all().event_id(ObjectKind::Domain, 1));
    let mut by_name = hub.subscribe_blocking(Filter::all().name("net3"));
    let mut combined = hub.subscribe_blocking(Filter::all().kind(ObjectKind::Domain).origin(7));

    let s1 = hub.publish(started(0, 1));
    let s2 = hub.publish(network(0, 2));
    let s3 = hub.publish(started(7, 2));
    let s4 = hub.publish(domain(0, 1, EventKind::Domain(DomainEvent::Reboot)));
    let s5 = hub.publish(network(7, 3));
    let s6 = hub.publish(domain(7, 5, EventKind::Domain(DomainEvent::Reboot)));
    let _ = s1;

    assert_eq!(seqs(&drain(&mut by_kind)), vec![s2, s5]);
    assert_eq!(seqs(&drain(&mut by_uuid)), vec![s2, s3]);
    assert_eq!(seqs(&drain(&mut by_origin)), vec![s3, s5, s6]);
    assert_eq!(seqs(&drain(&mut by_id)), vec![s4, s6]);
    assert_eq!(seqs(&drain(&mut by_name)), vec![s5]);
    assert_eq!(seqs(&drain(&mut combined)), vec![s3, s6]);
    // Non-matching events are neither delivered nor counted as dropped.
    assert_eq!(hub.stats().dropped, 0);
}

#[test]
fn a_slow_subscriber_does_not_stall_a_fast_one_and_learns_exactly_what_it_missed() {
    let hub = Hub::new();
    let mut fast = hub
        .subscribe_blocking_with(SubscribeOptions::new(Filter::all()).capacity(1000))
        .unwrap();
    let mut slow = hub
        .subscribe_blocking_with(SubscribeOptions::new(Filter::all()).capacity(4))
        .unwrap();

    for i in 0..100 {
        hub.publish(started(0, i));
    }
    assert_eq!(seqs(&drain(&mut fast)), (1..=100).collect::<Vec<_>>());
    // The slow one holds exactly its capacity; the other 96 were dropped for it.
    assert_eq!(seqs(&drain(&mut slow)), vec![1, 2, 3, 4]);
    assert_eq!(hub.stats().dropped, 96);
    // The lag is reported before the next event that gets through.
    assert_eq!(slow.resume_point(), 4);
    for i in 100..110 {
        hub.publish(started(0, i));
    }
    let got = drain(&mut slow);
    assert_eq!(got[0], Delivery::Lagged { missed: 96 });
    assert_eq!(seqs(&got[1..]), vec![101, 102, 103, 104]);
    // 105..=110 did not fit: reported with the next one.
    hub.publish(started(0, 0));
    assert_eq!(
        drain(&mut slow)
            .iter()
            .map(|d| match d {
                Delivery::Lagged { missed } => format!("lag {missed}"),
                d => format!("{}", seq(d)),
            })
            .collect::<Vec<_>>(),
        vec!["lag 6", "111"]
    );
    assert_eq!(seqs(&drain(&mut fast)), (101..=111).collect::<Vec<_>>());
    assert_eq!(hub.stats().dropped, 102);
}

#[test]
fn a_stuck_blocking_subscriber_never_blocks_publish() {
    let hub = Hub::new();
    let _stuck = hub
        .subscribe_blocking_with(SubscribeOptions::new(Filter::all()).capacity(1))
        .unwrap();
    let _stuck_async = hub
        .subscribe_with(SubscribeOptions::new(Filter::all()).capacity(1))
        .unwrap();
    let publisher = {
        let hub = hub.clone();
        thread::spawn(move || {
            for i in 0..10_000u32 {
                hub.publish(started(0, i as u8));
            }
        })
    };
    publisher.join().unwrap();
    assert_eq!(hub.stats().dropped, 2 * 9_999);
}

#[test]
fn a_dropped_subscriber_is_removed_and_publishing_goes_on() {
    let hub = Hub::new();
    let gone = hub.subscribe_blocking(Filter::all());
    let gone_async = hub.subscribe(Filter::all());
    let mut kept = hub.subscribe_blocking(Filter::all());
    hub.publish(started(0, 1));
    assert_eq!(hub.stats().subscribers, 3);
    drop(gone);
    drop(gone_async);
    assert_eq!(hub.stats().subscribers, 1);
    hub.publish(started(0, 2));
    assert_eq!(seqs(&drain(&mut kept)), vec![1, 2]);
    assert_eq!(hub.stats().delivered, 3 + 1);
}

#[test]
fn when_the_hub_goes_away_subscriptions_drain_report_trailing_loss_and_end() {
    let hub = Hub::new();
    let mut sub = hub
        .subscribe_blocking_with(SubscribeOptions::new(Filter::all()).capacity(2))
        .unwrap();
    for i in 0..5 {
        hub.publish(started(0, i));
    }
    drop(hub);
    assert_eq!(seq(&sub.recv().unwrap()), 1);
    assert_eq!(seq(&sub.recv().unwrap()), 2);
    assert_eq!(sub.recv(), Some(Delivery::Lagged { missed: 3 }));
    assert_eq!(sub.recv(), None);
    assert_eq!(sub.try_recv(), Err(TryRecvError::Closed));
}

#[test]
fn resume_replays_what_the_ring_holds_then_goes_live() {
    let hub = Hub::new();
    for i in 0..30 {
        hub.publish(if i % 3 == 0 {
            network(0, i)
        } else {
            started(0, i)
        });
    }
    let mut all = hub
        .subscribe_blocking_with(SubscribeOptions::new(Filter::all()).resume_after(25))
        .unwrap();
    let mut nets = hub
        .subscribe_blocking_with(
            SubscribeOptions::new(Filter::all().kind(ObjectKind::Network)).resume_after(0),
        )
        .unwrap();
    let mut current = hub
        .subscribe_blocking_with(SubscribeOptions::new(Filter::all()).resume_after(30))
        .unwrap();
    hub.publish(network(0, 99));
    assert_eq!(seqs(&drain(&mut all)), vec![26, 27, 28, 29, 30, 31]);
    assert_eq!(
        seqs(&drain(&mut nets)),
        vec![1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31]
    );
    assert_eq!(seqs(&drain(&mut current)), vec![31]);
    assert_eq!(
        hub.subscribe_blocking_with(SubscribeOptions::new(Filter::all()).resume_after(32))
            .unwrap_err(),
        SubscribeError::ResumeAhead {
            requested: 32,
            last_seq: 31
        }
    );
}

#[test]
fn replay_is_not_limited_by_the_queue_capacity() {
    let hub = Hub::new();
    for i in 0..50 {
        hub.publish(started(0, i));
    }
    let mut sub = hub
        .subscribe_blocking_with(
            SubscribeOptions::new(Filter::all())
                .capacity(2)
                .resume_after(10),
        )
        .unwrap();
    assert_eq!(seqs(&drain(&mut sub)), (11..=50).collect::<Vec<_>>());
}

#[test]
fn resume_from_a_seq_the_ring_no_longer_holds_reports_a_gap() {
    let hub = Hub::with_config(HubConfig {
        ring_capacity: 10,
        queue_capacity: 64,
    });
    for i in 0..30 {
        hub.publish(started(0, i));
    }
    assert_eq!(hub.stats().ring_len, 10);
    let mut sub = hub
        .subscribe_blocking_with(SubscribeOptions::new(Filter::all()).resume_after(5))
        .unwrap();
    assert_eq!(
        sub.try_recv(),
        Ok(Delivery::Gap {
            requested: 6,
            oldest_available: 21
        })
    );
    assert_eq!(sub.resume_point(), 20);
    hub.publish(started(0, 0));
    assert_eq!(seqs(&drain(&mut sub)), (21..=31).collect::<Vec<_>>());

    // Exactly at the ring's edge: no gap.
    let mut edge = hub
        .subscribe_blocking_with(SubscribeOptions::new(Filter::all()).resume_after(21))
        .unwrap();
    assert_eq!(seqs(&drain(&mut edge)), (22..=31).collect::<Vec<_>>());
    let mut over = hub
        .subscribe_blocking_with(SubscribeOptions::new(Filter::all()).resume_after(20))
        .unwrap();
    assert_eq!(
        over.try_recv(),
        Ok(Delivery::Gap {
            requested: 21,
            oldest_available: 22
        })
    );

    // Without a ring, any missed event is a gap.
    let hub = Hub::with_config(HubConfig {
        ring_capacity: 0,
        queue_capacity: 64,
    });
    hub.publish(started(0, 0));
    hub.publish(started(0, 0));
    let mut sub = hub
        .subscribe_blocking_with(SubscribeOptions::new(Filter::all()).resume_after(1))
        .unwrap();
    hub.publish(started(0, 0));
    let got = drain(&mut sub);
    assert_eq!(
        got[0],
        Delivery::Gap {
            requested: 2,
            oldest_available: 3
        }
    );
    assert_eq!(seqs(&got[1..]), vec![3]);
}

#[test]
fn resume_under_a_concurrent_publisher_has_no_gap_and_no_duplicate() {
    const PER_PUBLISHER: u32 = 10_000;
    const TOTAL: u64 = 2 * PER_PUBLISHER as u64;
    const ROUNDS: u64 = 48;
    let hub = Hub::with_config(HubConfig {
        ring_capacity: 1 << 16,
        // Room for everything, so that no lag can hide a replay mistake.
        queue_capacity: TOTAL as usize + 1,
    });
    // Two publishers with distinct origins; each records the seqs it was given.
    let publishers: Vec<_> = (1..=2u32)
        .map(|origin| {
            let hub = hub.clone();
            thread::spawn(move || {
                (0..PER_PUBLISHER)
                    .map(|i| hub.publish(started(origin, i as u8)))
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    // Resume repeatedly while they run, at varying distances back, some filtered.
    let mut resumed = Vec::new();
    for round in 0..ROUNDS {
        thread::yield_now();
        let after = hub.last_seq().saturating_sub(round * 37 % 500);
        let filter = match round % 3 {
            0 => Filter::all(),
            n => Filter::all().origin(n as u32),
        };
        let sub = hub
            .subscribe_blocking_with(SubscribeOptions::new(filter.clone()).resume_after(after))
            .unwrap();
        resumed.push((after, filter, sub));
    }
    let by_origin: Vec<Vec<u64>> = publishers.into_iter().map(|p| p.join().unwrap()).collect();
    assert_eq!(hub.last_seq(), TOTAL);
    let mut origin_of = vec![0u32; TOTAL as usize + 1];
    for (i, seqs) in by_origin.iter().enumerate() {
        for &s in seqs {
            origin_of[s as usize] = i as u32 + 1;
        }
    }
    drop(hub);
    for (after, filter, sub) in resumed {
        let got: Vec<u64> = sub.map(|d| seq(&d)).collect();
        let expected: Vec<u64> = (after + 1..=TOTAL)
            .filter(|&s| filter.origin.is_none_or(|o| o == origin_of[s as usize]))
            .collect();
        if got != expected {
            let at = got
                .iter()
                .zip(&expected)
                .take_while(|(a, b)| a == b)
                .count();
            panic!(
                "resumed after {after} with origin {:?}: got {} events, expected {}; \
                 first difference at index {at}: got {:?}, expected {:?}",
                filter.origin,
                got.len(),
                expected.len(),
                got.get(at..at + 3),
                expected.get(at..at + 3),
            );
        }
    }
}

#[test]
fn blocking_receiver_works_from_a_plain_thread() {
    let hub = Hub::new();
    let mut sub = hub.subscribe_blocking(Filter::all());
    assert_eq!(
        sub.recv_timeout(Duration::from_millis(10)),
        Err(RecvTimeoutError::Timeout)
    );
    let reader = thread::spawn(move || {
        let first = sub.recv_timeout(Duration::from_secs(10)).unwrap();
        let mut got = vec![seq(&first)];
        got.extend(sub.by_ref().map(|d| seq(&d)));
        (got, sub.recv_timeout(Duration::from_millis(1)))
    });
    for i in 0..10 {
        hub.publish(started(0, i));
    }
    drop(hub);
    let (got, after_end) = reader.join().unwrap();
    assert_eq!(got, (1..=10).collect::<Vec<_>>());
    assert_eq!(after_end, Err(RecvTimeoutError::Closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_stream_and_recv_work() {
    let hub = Hub::new();
    let mut stream = hub.subscribe(Filter::all().kind(ObjectKind::Domain));
    let mut lagging = hub
        .subscribe_with(SubscribeOptions::new(Filter::all()).capacity(2))
        .unwrap();
    let publisher = {
        let hub = hub.clone();
        thread::spawn(move || {
            for i in 0..200u8 {
                hub.publish(if i % 2 == 0 {
                    started(0, i)
                } else {
                    network(0, i)
                });
                if i % 50 == 0 {
                    thread::sleep(Duration::from_millis(1));
                }
            }
        })
    };
    let first = stream.recv().await.unwrap();
    assert_eq!(seq(&first), 1);
    let rest: Vec<u64> = stream.by_ref().take(99).map(|d| seq(&d)).collect().await;
    assert_eq!(rest, (3..=199).step_by(2).collect::<Vec<_>>());
    publisher.join().unwrap();
    assert_eq!(stream.try_recv(), Err(TryRecvError::Empty));

    // The lagging one holds 2, lost 198, and learns it with the next event.
    assert_eq!(seq(&lagging.next().await.unwrap()), 1);
    assert_eq!(seq(&lagging.next().await.unwrap()), 2);
    let waiter = tokio::spawn(async move {
        let lag = lagging.next().await;
        let next = lagging.next().await;
        (lag, next, lagging)
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    hub.publish(started(0, 0));
    let (lag, next, mut lagging) = waiter.await.unwrap();
    assert_eq!(lag, Some(Delivery::Lagged { missed: 198 }));
    assert_eq!(seq(&next.unwrap()), 201);

    // Streams end once the hub is gone.
    drop(hub);
    assert_eq!(seq(&stream.next().await.unwrap()), 201);
    assert_eq!(stream.next().await, None);
    assert_eq!(lagging.recv().await, None);
}

/// 4 publisher threads × 10k events, 8 subscribers (blocking and async, fast and slow,
/// filtered and not) reading concurrently. Every subscriber must see strictly
/// increasing seqs, only matching events, and account for every matching event exactly
/// once (received or counted in a lag marker).
#[test]
fn stress_concurrent_publishers_and_subscribers() {
    const PUBLISHERS: u32 = 4;
    const PER_PUBLISHER: u32 = 10_000;

    #[derive(Default, Debug)]
    struct Tally {
        seqs: Vec<u64>,
        origins: Vec<u32>,
        missed: u64,
        lag_markers: u64,
    }

    fn record(tally: &mut Tally, d: Delivery) {
        match d {
            Delivery::Event(s) => {
                tally.seqs.push(s.seq);
                tally.origins.push(s.event.origin);
            }
            Delivery::Lagged { missed } => {
                assert!(missed > 0);
                tally.missed += missed;
                tally.lag_markers += 1;
            }
            Delivery::Gap { .. } => panic!("no resume, no gap"),
        }
    }

    let hub = Hub::new();
    // (filter, capacity, slow, async)
    let specs: Vec<(Filter, usize, bool, bool)> = vec![
        (Filter::all(), 1 << 16, false, false),
        (Filter::all(), 64, true, false),
        (Filter::all().origin(1), 1024, false, false),
        (Filter::all().origin(2), 8, true, false),
        (Filter::all().kind(ObjectKind::Network), 256, false, false),
        (Filter::all(), 16, true, false),
        (Filter::all(), 1 << 16, false, true),
        (Filter::all().origin(3), 32, true, true),
    ];

    let mut readers = Vec::new();
    for (filter, capacity, slow, is_async) in specs.iter().cloned() {
        let opts = SubscribeOptions::new(filter).capacity(capacity);
        if is_async {
            let mut sub = hub.subscribe_with(opts).unwrap();
            readers.push(thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let mut tally = Tally::default();
                    let mut n = 0u32;
                    while let Some(d) = sub.next().await {
                        record(&mut tally, d);
                        n += 1;
                        if slow && n.is_multiple_of(500) {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                    tally
                })
            }));
        } else {
            let sub = hub.subscribe_blocking_with(opts).unwrap();
            readers.push(thread::spawn(move || {
                let mut tally = Tally::default();
                for (n, d) in sub.enumerate() {
                    record(&mut tally, d);
                    if slow && n.is_multiple_of(500) {
                        thread::sleep(Duration::from_millis(1));
                    }
                }
                tally
            }));
        }
    }

    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|origin| {
            let hub = hub.clone();
            thread::spawn(move || {
                let mut mine = Vec::with_capacity(PER_PUBLISHER as usize);
                for i in 0..PER_PUBLISHER {
                    let event = if i % 4 == 0 {
                        network(origin, i as u8)
                    } else {
                        started(origin, i as u8)
                    };
                    mine.push((hub.publish(event.clone()), event));
                }
                mine
            })
        })
        .collect();
    let mut published: HashMap<u64, Event> = HashMap::new();
    for p in publishers {
        for (s, e) in p.join().unwrap() {
            assert!(published.insert(s, e).is_none(), "seq {s} handed out twice");
        }
    }
    let total = u64::from(PUBLISHERS * PER_PUBLISHER);
    assert_eq!(published.len() as u64, total);
    assert_eq!(hub.last_seq(), total);
    let stats = hub.stats();
    assert_eq!(stats.subscribers, specs.len());
    drop(hub);

    let mut matched_total = 0;
    for ((filter, ..), reader) in specs.iter().zip(readers) {
        let tally = reader.join().unwrap();
        assert!(
            tally.seqs.windows(2).all(|w| w[0] < w[1]),
            "{filter:?}: seqs not strictly increasing"
        );
        for &s in &tally.seqs {
            assert!(filter.matches(&published[&s]), "{filter:?} got seq {s}");
        }
        let matching = (1..=total)
            .filter(|s| filter.matches(&published[s]))
            .count() as u64;
        matched_total += matching;
        assert_eq!(
            tally.seqs.len() as u64 + tally.missed,
            matching,
            "{filter:?}: received {} + missed {} != matching {matching}",
            tally.seqs.len(),
            tally.missed
        );
        assert!(tally.lag_markers <= tally.seqs.len() as u64 + 1);
    }
    assert_eq!(stats.delivered + stats.dropped, matched_total);
}

#[test]
fn a_zero_capacity_is_treated_as_one() {
    let hub = Hub::with_config(HubConfig {
        ring_capacity: 16,
        queue_capacity: 0,
    });
    assert_eq!(hub.config().queue_capacity, 1);
    let mut by_default = hub.subscribe_blocking(Filter::all());
    let mut explicit = hub
        .subscribe_blocking_with(SubscribeOptions::new(Filter::all()).capacity(0))
        .unwrap();
    hub.publish(started(0, 1));
    hub.publish(started(0, 2));
    for sub in [&mut by_default, &mut explicit] {
        assert_eq!(seq(&sub.try_recv().unwrap()), 1);
        assert_eq!(sub.try_recv(), Err(TryRecvError::Empty));
    }
}

//! `vireo events`: subscribe to domain events and print each as it arrives.
//!
//! It registers for lifecycle and reboot events of every domain (callback-style
//! registrations, as current libvirt clients do), then prints one line per event and
//! flushes it, so the output can be piped into another program and read live. The
//! `--domain` filter is applied here, by name, rather than by the daemon: that way
//! a domain that does not exist yet (about to be defined) can be watched too.
//!
//! Text lines are `TIME DOMAIN EVENT DETAIL`: TIME is the moment the event was
//! received, in UTC (RFC 3339 with milliseconds); EVENT and DETAIL are libvirt's
//! names (`VIR_DOMAIN_EVENT_STOPPED` / `VIR_DOMAIN_EVENT_STOPPED_DESTROYED` print as
//! `stopped destroyed`); a detail number this client does not know prints as the
//! number. A reboot prints as `reboot -`. With `--json`, each event is one JSON
//! object on its own line.
//!
//! Once both registrations are in place, `vireo: watching domain events` is written
//! to stderr: a person sees that it is listening, and a script can wait for it
//! before causing events. The command ends with status 0 after `--count` printed
//! events, after `--timeout` seconds, or on SIGINT/SIGTERM; if the daemon goes away
//! it fails.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde_json::{Value, json};
use vireo_client::{Client, DomainEventKind, Event, EventBody, EventStream};

use super::{CliError, Output};

/// `VIR_DOMAIN_EVENT_ID_LIFECYCLE`.
const EVENT_ID_LIFECYCLE: i32 = 0;
/// `VIR_DOMAIN_EVENT_ID_REBOOT`.
const EVENT_ID_REBOOT: i32 = 1;

/// The options of `vireo events`.
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Only events of the domain with this name.
    #[arg(long, value_name = "NAME")]
    pub domain: Option<String>,
    /// Stop after printing N events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop after SECS seconds (fractions allowed).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<f64>,
    /// Output format.
    #[command(flatten)]
    pub out: Output,
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..1e9).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a number of seconds")),
    }
}

/// libvirt's name of a lifecycle event (`virDomainEventType`), lower case.
pub fn event_name(event: i32) -> Option<&'static str> {
    Some(match event {
        0 => "defined",
        1 => "undefined",
        2 => "started",
        3 => "suspended",
        4 => "resumed",
        5 => "stopped",
        6 => "shutdown",
        7 => "pmsuspended",
        8 => "crashed",
        _ => return None,
    })
}

/// libvirt's name of a lifecycle event's detail (`virDomainEvent*DetailType`), lower
/// case.
pub fn detail_name(event: i32, detail: i32) -> Option<&'static str> {
    let names: &[&str] = match event {
        0 => &["added", "updated", "renamed", "from_snapshot"],
        1 => &["removed", "renamed"],
        2 => &["booted", "migrated", "restored", "from_snapshot", "wakeup"],
        3 => &[
            "paused",
            "migrated",
            "ioerror",
            "watchdog",
            "restored",
            "from_snapshot",
            "api_error",
            "postcopy",
            "postcopy_failed",
        ],
        4 => &[
            "unpaused",
            "migrated",
            "from_snapshot",
            "postcopy",
            "postcopy_failed",
        ],
        5 => &[
            "shutdown",
            "destroyed",
            "crashed",
            "migrated",
            "saved",
            "failed",
            "from_snapshot",
        ],
        6 => &["finished", "guest", "host"],
        7 => &["memory", "disk"],
        8 => &["panicked", "crashloaded"],
        _ => &[],
    };
    usize::try_from(detail)
        .ok()
        .and_then(|i| names.get(i))
        .copied()
}

/// One event, ready to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// When it was received (RFC 3339, UTC).
    pub time: String,
    /// The domain's name.
    pub domain: String,
    /// Its UUID.
    pub uuid: String,
    /// The event's name.
    pub event: String,
    /// The detail's name; `None` for events without one (reboot).
    pub detail: Option<String>,
}

impl Line {
    /// The text form: `TIME DOMAIN EVENT DETAIL`.
    pub fn text(&self) -> String {
        format!(
            "{} {} {} {}",
            self.time,
            self.domain,
            self.event,
            self.detail.as_deref().unwrap_or("-")
        )
    }

    /// The JSON form.
    pub fn json(&self) -> Value {
        json!({
            "time": self.time,
            "domain": self.domain,
            "uuid": self.uuid,
            "event": self.event,
            "detail": self.detail,
        })
    }
}

/// The printable form of `ev` received at `time`, if it is a domain event this
/// command shows and it passes the `domain` filter.
pub fn line_of(ev: &Event, time: &str, domain: Option<&str>) -> Option<Line> {
    let EventBody::Domain { dom, kind } = &ev.body else {
        return None;
    };
    if domain.is_some_and(|n| n != dom.name) {
        return None;
    }
    let (event, detail) = match kind {
        DomainEventKind::Lifecycle { event, detail } => (
            event_name(*event).map_or_else(|| event.to_string(), str::to_string),
            Some(detail_name(*event, *detail).map_or_else(|| detail.to_string(), str::to_string)),
        ),
        DomainEventKind::Reboot => ("reboot".to_string(), None),
        _ => return None,
    };
    Some(Line {
        time: time.to_string(),
        domain: dom.name.clone(),
        uuid: dom.uuid.hyphenated().to_string(),
        event,
        detail,
    })
}

/// `t` as RFC 3339 in UTC with milliseconds, e.g. `2026-11-27T10:53:49.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// A future that resolves on SIGINT or SIGTERM. The handlers are installed now, when
/// this is called, not when the future is first polled, so a signal that arrives in
/// between is not lost (nor does it kill the process).
fn interrupted() -> Result<impl Future<Output = ()>, CliError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

async fn next(life: &mut EventStream, reboot: &mut EventStream) -> Option<Event> {
    // Lifecycle first when both have one queued: they are the ones scripts wait for.
    tokio::select! {
        biased;
        e = life.recv() => e,
        e = reboot.recv() => e,
    }
}

/// `vireo events`.
pub async fn watch(client: &Client, a: &EventsArgs, out: &mut dyn Write) -> Result<(), CliError> {
    // Watch for signals before subscribing, so none is missed once we say we listen.
    let stop = interrupted()?;
    tokio::pin!(stop);
    let deadline = a
        .timeout
        .map(|s| tokio::time::Instant::now() + Duration::from_secs_f64(s));
    let mut life = client
        .register_domain_events(EVENT_ID_LIFECYCLE, None)
        .await?;
    let mut reboot = client.register_domain_events(EVENT_ID_REBOOT, None).await?;
    eprintln!("vireo: watching domain events");
    let mut printed = 0u64;
    let result = loop {
        if a.count.is_some_and(|n| printed >= n) {
            break Ok(());
        }
        let ev = tokio::select! {
            ev = next(&mut life, &mut reboot) => ev,
            _ = &mut stop => break Ok(()),
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => break Ok(()),
        };
        let Some(ev) = ev else {
            break Err(CliError::ConnectionLost);
        };
        let now = rfc3339(SystemTime::now());
        let Some(line) = line_of(&ev, &now, a.domain.as_deref()) else {
            continue;
        };
        let text = if a.out.json {
            line.json().to_string()
        } else {
            line.text()
        };
        if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
            break Err(e.into());
        }
        printed += 1;
    };
    if result.is_ok() {
        for id in [life.callback_id, reboot.callback_id] {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), client.deregister_domain_events(id))
                    .await;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use vireo_client::NonnullDomain;
    use vireo_client::wire::RemoteProc;

    fn lifecycle(name: &str, event: i32, detail: i32) -> Event {
        Event {
            callback_id: 1,
            proc_: RemoteProc::DomainEventCallbackLifecycle,
            body: EventBody::Domain {
                dom: NonnullDomain {
                    name: name.into(),
                    uuid: uuid::Uuid::from_u128(0x1234),
                    id: -1,
                },
                kind: DomainEventKind::Lifecycle { event, detail },
            },
        }
    }

    #[test]
    fn names_follow_libvirts_enums() {
        assert_eq!(event_name(0), Some("defined"));
        assert_eq!(event_name(8), Some("crashed"));
        assert_eq!(event_name(9), None);
        assert_eq!(detail_name(5, 1), Some("destroyed"));
        assert_eq!(detail_name(2, 0), Some("booted"));
        assert_eq!(detail_name(3, 6), Some("api_error"));
        assert_eq!(detail_name(6, 2), Some("host"));
        assert_eq!(detail_name(1, 7), None);
        assert_eq!(detail_name(1, -1), None);
    }

    #[test]
    fn lifecycle_lines() {
        let l = line_of(&lifecycle("vm", 5, 1), "T", None).unwrap();
        assert_eq!(l.text(), "T vm stopped destroyed");
        assert_eq!(
            l.json(),
            json!({"time": "T", "domain": "vm", "uuid": "00000000-0000-0000-0000-000000001234",
                   "event": "stopped", "detail": "destroyed"})
        );
        // Numbers this client has no name for are printed as numbers.
        let l = line_of(&lifecycle("vm", 42, 7), "T", None).unwrap();
        assert_eq!(l.text(), "T vm 42 7");
    }

    #[test]
    fn the_domain_filter_is_by_name() {
        assert!(line_of(&lifecycle("vm", 0, 0), "T", Some("other")).is_none());
        assert!(line_of(&lifecycle("vm", 0, 0), "T", Some("vm")).is_some());
    }

    #[test]
    fn reboot_has_no_detail_and_other_events_are_skipped() {
        let mut e = lifecycle("vm", 0, 0);
        if let EventBody::Domain { kind, .. } = &mut e.body {
            *kind = DomainEventKind::Reboot;
        }
        let l = line_of(&e, "T", None).unwrap();
        assert_eq!(l.text(), "T vm reboot -");
        assert_eq!(l.json()["detail"], Value::Null);
        if let EventBody::Domain { kind, .. } = &mut e.body {
            *kind = DomainEventKind::ControlError;
        }
        assert!(line_of(&e, "T", None).is_none());
        e.body = EventBody::Other(bytes::Bytes::new());
        assert!(line_of(&e, "T", None).is_none());
    }

    #[test]
    fn rfc3339_in_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_262_029_123);
        assert_eq!(rfc3339(t), "2026-11-21T11:53:49.123Z");
        // A leap day.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn timeouts_must_be_seconds() {
        assert_eq!(parse_secs("1.5"), Ok(1.5));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("soon").is_err());
        assert!(parse_secs("inf").is_err());
    }
}

//! libvirt's `test` hypervisor: guests exist only as state in memory.
//!
//! Every operation succeeds at once; shutdown powers off immediately; reboot happens
//! without any event (as in libvirt 9.0). The guests are the daemon's memory: the
//! domain actors record them only when the daemon shuts down cleanly, and reattach then
//! always finds them, with the paused flag taken from the status record; a daemon killed
//! with SIGKILL loses them, as a crashed in-memory hypervisor would.

use tokio::sync::mpsc;
use vireo_messages::{ErrorDomain, VirResult};
use vireo_xml::DomainDef;

use crate::hypervisor::{
    BoxFuture, Flavour, Guest, GuestEvent, Hypervisor, ShutdownOutcome, StartOptions, Started,
};

/// The test hypervisor.
#[derive(Debug, Default, Clone, Copy)]
pub struct TestHypervisor;

impl Hypervisor for TestHypervisor {
    fn type_name(&self) -> &'static str {
        "TEST"
    }

    fn error_domain(&self) -> ErrorDomain {
        ErrorDomain::Test
    }

    fn flavour(&self) -> Flavour {
        Flavour::Test
    }

    fn start<'a>(
        &'a self,
        _def: &'a DomainDef,
        opts: StartOptions,
    ) -> BoxFuture<'a, VirResult<Started>> {
        Box::pin(async move { Ok(new_guest(opts.paused)) })
    }

    fn reattach<'a>(
        &'a self,
        record: &'a serde_json::Value,
        _def: &'a DomainDef,
    ) -> BoxFuture<'a, VirResult<Option<Started>>> {
        let paused = record
            .get("paused")
            .and_then(|p| p.as_bool())
            .unwrap_or(false);
        Box::pin(async move { Ok(Some(new_guest(paused))) })
    }
}

fn new_guest(paused: bool) -> Started {
    let (tx, rx) = mpsc::unbounded_channel();
    Started {
        guest: Box::new(TestGuest {
            paused,
            _events: tx,
        }),
        events: rx,
        paused,
        live: None,
    }
}

/// A guest of the test hypervisor.
struct TestGuest {
    paused: bool,
    /// Kept so the event stream stays open while the guest exists.
    _events: mpsc::UnboundedSender<GuestEvent>,
}

impl Guest for TestGuest {
    fn pause(&mut self) -> BoxFuture<'_, VirResult<()>> {
        self.paused = true;
        Box::pin(async { Ok(()) })
    }

    fn resume(&mut self) -> BoxFuture<'_, VirResult<()>> {
        self.paused = false;
        Box::pin(async { Ok(()) })
    }

    fn shutdown(&mut self) -> BoxFuture<'_, VirResult<ShutdownOutcome>> {
        Box::pin(async { Ok(ShutdownOutcome::PoweredOff) })
    }

    fn reboot(&mut self) -> BoxFuture<'_, VirResult<bool>> {
        self.paused = false;
        Box::pin(async { Ok(true) })
    }

    fn reset(&mut self) -> BoxFuture<'_, VirResult<()>> {
        Box::pin(async { Ok(()) })
    }

    fn destroy(&mut self, _graceful: bool) -> BoxFuture<'_, VirResult<()>> {
        Box::pin(async { Ok(()) })
    }

    fn status_record(&self) -> serde_json::Value {
        serde_json::json!({ "driver": "test", "paused": self.paused })
    }
}

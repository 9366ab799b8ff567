//! A scriptable hypervisor for tests of the layers above.
//!
//! It behaves like the test hypervisor, plus: starts can be held at a gate until a test
//! opens it (to create long-running jobs), the next start can be made to fail, shutdown
//! can be left to the "guest" (a test injects the guest's answer), and guest events can
//! be injected by domain name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, mpsc};
use vireo_messages::{ErrorDomain, VirError, VirResult};
use vireo_xml::DomainDef;

use crate::hypervisor::{
    BoxFuture, Flavour, Guest, GuestEvent, GuestUsage, Hypervisor, ShutdownOutcome, StartOptions,
    Started,
};

/// The fake hypervisor; clones share their script.
#[derive(Clone, Default)]
pub struct FakeHypervisor {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    gate: Mutex<Option<Arc<Semaphore>>>,
    fail_next_start: Mutex<Option<VirError>>,
    guest_decides_shutdown: Mutex<bool>,
    guests: Mutex<HashMap<String, mpsc::UnboundedSender<GuestEvent>>>,
    starts: Mutex<u32>,
    usage_reads: Mutex<u64>,
}

impl FakeHypervisor {
    /// A fake whose operations all succeed at once.
    pub fn new() -> FakeHypervisor {
        FakeHypervisor::default()
    }

    /// From now on, starts wait until [`FakeHypervisor::open_gate`] releases them.
    pub fn close_gate(&self) {
        *self.inner.gate.lock().unwrap() = Some(Arc::new(Semaphore::new(0)));
    }

    /// Lets `n` held (or future) starts through.
    pub fn open_gate(&self, n: usize) {
        if let Some(g) = self.inner.gate.lock().unwrap().as_ref() {
            g.add_permits(n);
        }
    }

    /// Makes the next start fail with `err`.
    pub fn fail_next_start(&self, err: VirError) {
        *self.inner.fail_next_start.lock().unwrap() = Some(err);
    }

    /// When set, shutdown only requests; the test injects [`GuestEvent::Shutdown`].
    pub fn set_guest_decides_shutdown(&self, v: bool) {
        *self.inner.guest_decides_shutdown.lock().unwrap() = v;
    }

    /// Sends `ev` as if the guest of domain `name` did it. Returns false if no such guest.
    pub fn inject(&self, name: &str, ev: GuestEvent) -> bool {
        match self.inner.guests.lock().unwrap().get(name) {
            Some(tx) => tx.send(ev).is_ok(),
            None => false,
        }
    }

    /// How many times a guest's usage was read. Each read reports this count (after
    /// the read) as its user CPU time, so a test can tell fresh reads from kept ones.
    pub fn usage_reads(&self) -> u64 {
        *self.inner.usage_reads.lock().unwrap()
    }

    /// How many starts were attempted.
    pub fn starts(&self) -> u32 {
        *self.inner.starts.lock().unwrap()
    }

    fn new_guest(&self, name: &str, paused: bool) -> Started {
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner
            .guests
            .lock()
            .unwrap()
            .insert(name.to_string(), tx);
        Started {
            guest: Box::new(FakeGuest {
                paused,
                inner: self.inner.clone(),
            }),
            events: rx,
            paused,
        }
    }
}

impl Hypervisor for FakeHypervisor {
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
        def: &'a DomainDef,
        opts: StartOptions,
    ) -> BoxFuture<'a, VirResult<Started>> {
        Box::pin(async move {
            *self.inner.starts.lock().unwrap() += 1;
            let gate = self.inner.gate.lock().unwrap().clone();
            if let Some(g) = gate {
                let permit = g
                    .acquire()
                    .await
                    .map_err(|_| VirError::internal(ErrorDomain::Test, "fake gate closed"))?;
                permit.forget();
            }
            if let Some(e) = self.inner.fail_next_start.lock().unwrap().take() {
                return Err(e);
            }
            Ok(self.new_guest(&def.name(), opts.paused))
        })
    }

    fn reattach<'a>(
        &'a self,
        record: &'a serde_json::Value,
        def: &'a DomainDef,
    ) -> BoxFuture<'a, VirResult<Option<Started>>> {
        Box::pin(async move {
            if record.get("gone").and_then(|g| g.as_bool()) == Some(true) {
                return Ok(None);
            }
            let paused = record.get("paused").and_then(|p| p.as_bool()) == Some(true);
            Ok(Some(self.new_guest(&def.name(), paused)))
        })
    }
}

struct FakeGuest {
    paused: bool,
    inner: Arc<Inner>,
}

impl Guest for FakeGuest {
    fn pause(&mut self) -> BoxFuture<'_, VirResult<()>> {
        self.paused = true;
        Box::pin(async { Ok(()) })
    }

    fn resume(&mut self) -> BoxFuture<'_, VirResult<()>> {
        self.paused = false;
        Box::pin(async { Ok(()) })
    }

    fn shutdown(&mut self) -> BoxFuture<'_, VirResult<ShutdownOutcome>> {
        let guest_decides = *self.inner.guest_decides_shutdown.lock().unwrap();
        Box::pin(async move {
            Ok(if guest_decides {
                ShutdownOutcome::Requested
            } else {
                ShutdownOutcome::PoweredOff
            })
        })
    }

    fn reboot(&mut self) -> BoxFuture<'_, VirResult<bool>> {
        Box::pin(async { Ok(true) })
    }

    fn reset(&mut self) -> BoxFuture<'_, VirResult<()>> {
        Box::pin(async { Ok(()) })
    }

    fn destroy(&mut self, _graceful: bool) -> BoxFuture<'_, VirResult<()>> {
        Box::pin(async { Ok(()) })
    }

    fn status_record(&self) -> serde_json::Value {
        serde_json::json!({ "driver": "fake", "paused": self.paused })
    }

    fn usage(&self) -> Option<GuestUsage> {
        let mut n = self.inner.usage_reads.lock().unwrap();
        *n += 1;
        Some(GuestUsage {
            cpu_user_ns: *n,
            rss_kib: 1024,
            ..GuestUsage::default()
        })
    }
}

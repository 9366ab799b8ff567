//! A scriptable hypervisor for tests of the layers above.
//!
//! It behaves like the test hypervisor, plus: starts can be held at a gate until a test
//! opens it (to create long-running jobs), the next start can be made to fail, shutdown
//! can be left to the "guest" (a test injects the guest's answer), and guest events can
//! be injected by domain name.
//!
//! It can also pose as a QEMU-flavoured hypervisor ([`FakeHypervisor::set_flavour`]) with
//! a migration stream: [`Guest::save_to_fd`] writes a synthetic stream (QEMU's `QEVM`
//! magic, then a counter pattern of [`FakeHypervisor::set_save_size`] bytes, optionally
//! slowed down per chunk), honours [`SaveControl`]'s cancellation and progress, and can be
//! made to "die" mid-stream; [`Hypervisor::restore`] reads such a stream back to its end
//! and checks it.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use vireo_messages::{ErrorDomain, VirError, VirResult};
use vireo_xml::DomainDef;

use crate::hypervisor::{
    BoxFuture, Flavour, Guest, GuestEvent, GuestUsage, Hypervisor, SaveControl, ShutdownOutcome,
    StartOptions, Started,
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
    panic_next_start: Mutex<bool>,
    guest_decides_shutdown: Mutex<bool>,
    guests: Mutex<HashMap<String, mpsc::UnboundedSender<GuestEvent>>>,
    starts: Mutex<u32>,
    usage_reads: Mutex<u64>,
    flavour: Mutex<Option<Flavour>>,
    save: Mutex<SaveScript>,
    restored: Mutex<Vec<(String, u64)>>,
}

/// How the fake's guests save themselves.
#[derive(Debug, Clone, Copy)]
struct SaveScript {
    size: u64,
    chunk_delay: Duration,
    die_after: Option<u64>,
}

impl Default for SaveScript {
    fn default() -> SaveScript {
        SaveScript {
            size: 1 << 20,
            chunk_delay: Duration::ZERO,
            die_after: None,
        }
    }
}

/// Bytes per write of the fake migration stream.
const SAVE_CHUNK: usize = 64 * 1024;

/// The byte at `pos` of the fake stream's payload (after the 4-byte magic).
pub fn fake_stream_byte(pos: u64) -> u8 {
    (pos % 251) as u8
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

    /// Makes the next start panic (a bug in a driver), to test supervision.
    pub fn panic_next_start(&self) {
        *self.inner.panic_next_start.lock().unwrap() = true;
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

    /// Poses as `flavour` (the default is [`Flavour::Test`]); as [`Flavour::Qemu`] the
    /// errors are in the QEMU error domain.
    pub fn set_flavour(&self, flavour: Flavour) {
        *self.inner.flavour.lock().unwrap() = Some(flavour);
    }

    /// Saves write `bytes` of payload after the magic (default 1 MiB).
    pub fn set_save_size(&self, bytes: u64) {
        self.inner.save.lock().unwrap().size = bytes;
    }

    /// Saves sleep `delay` after each 64 KiB chunk (to make long saves).
    pub fn set_save_delay(&self, delay: Duration) {
        self.inner.save.lock().unwrap().chunk_delay = delay;
    }

    /// The next save "kills QEMU" after `bytes` of payload: the stream stops, the save
    /// fails and the guest reports [`GuestEvent::Exited`] `{ crashed: true }`.
    pub fn die_during_next_save(&self, bytes: u64) {
        self.inner.save.lock().unwrap().die_after = Some(bytes);
    }

    /// The restores so far: (domain name, payload bytes read and checked).
    pub fn restores(&self) -> Vec<(String, u64)> {
        self.inner.restored.lock().unwrap().clone()
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
                name: name.to_string(),
                paused,
                inner: self.inner.clone(),
            }),
            events: rx,
            paused,
            live: None,
        }
    }
}

impl Hypervisor for FakeHypervisor {
    fn type_name(&self) -> &'static str {
        "TEST"
    }

    fn error_domain(&self) -> ErrorDomain {
        match self.flavour() {
            Flavour::Test => ErrorDomain::Test,
            Flavour::Qemu => ErrorDomain::Qemu,
        }
    }

    fn flavour(&self) -> Flavour {
        self.inner.flavour.lock().unwrap().unwrap_or(Flavour::Test)
    }

    fn restore<'a>(
        &'a self,
        def: &'a DomainDef,
        source: OwnedFd,
        opts: StartOptions,
    ) -> BoxFuture<'a, VirResult<Started>> {
        Box::pin(async move {
            let domain = self.error_domain();
            let read = tokio::task::spawn_blocking(move || read_fake_stream(source))
                .await
                .map_err(|e| VirError::internal(domain, format!("restore reader failed: {e}")))?
                .map_err(|m| VirError::operation_failed(domain, m))?;
            self.inner
                .restored
                .lock()
                .unwrap()
                .push((def.name().to_string(), read));
            let _ = opts;
            Ok(self.new_guest(&def.name(), true))
        })
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
            if std::mem::take(&mut *self.inner.panic_next_start.lock().unwrap()) {
                panic!("fake hypervisor: injected panic in start");
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

/// Reads a fake migration stream to its end and checks every byte.
fn read_fake_stream(source: OwnedFd) -> Result<u64, String> {
    use std::io::Read;
    let mut f = std::fs::File::from(source);
    let mut magic = [0u8; 4];
    f.read_exact(&mut magic)
        .map_err(|e| format!("cannot read the stream's magic: {e}"))?;
    if &magic != b"QEVM" {
        return Err("the stream does not start with QEVM".into());
    }
    let mut pos = 0u64;
    let mut buf = vec![0u8; SAVE_CHUNK];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("cannot read the stream: {e}"))?;
        if n == 0 {
            return Ok(pos);
        }
        for &b in &buf[..n] {
            if b != fake_stream_byte(pos) {
                return Err(format!("the stream is corrupt at payload byte {pos}"));
            }
            pos += 1;
        }
    }
}

/// Writes a fake migration stream into `sink`; `Err` carries the reason it stopped.
fn write_fake_stream(sink: OwnedFd, script: SaveScript, ctl: &SaveControl) -> Result<(), String> {
    use std::io::Write;
    let mut f = std::fs::File::from(sink);
    f.write_all(b"QEVM")
        .map_err(|e| format!("unable to write to the migration stream: {e}"))?;
    ctl.total.store(script.size + 4, Ordering::Relaxed);
    ctl.processed.store(4, Ordering::Relaxed);
    let mut pos = 0u64;
    let mut buf = vec![0u8; SAVE_CHUNK];
    while pos < script.size {
        if ctl.cancel.is_cancelled() {
            return Err("migration was cancelled".into());
        }
        if let Some(limit) = script.die_after
            && pos >= limit
        {
            return Err("QEMU exited during the save".into());
        }
        let n = (script.size - pos).min(SAVE_CHUNK as u64) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = fake_stream_byte(pos + i as u64);
        }
        f.write_all(&buf[..n])
            .map_err(|e| format!("unable to write to the migration stream: {e}"))?;
        pos += n as u64;
        ctl.processed.fetch_add(n as u64, Ordering::Relaxed);
        if !script.chunk_delay.is_zero() {
            std::thread::sleep(script.chunk_delay);
        }
    }
    Ok(())
}

struct FakeGuest {
    name: String,
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

    fn save_to_fd(&mut self, sink: OwnedFd, ctl: SaveControl) -> BoxFuture<'_, VirResult<()>> {
        let script = std::mem::take(&mut *self.inner.save.lock().unwrap());
        // The size and delay stay for later saves; only the death is one-shot.
        {
            let mut s = self.inner.save.lock().unwrap();
            s.size = script.size;
            s.chunk_delay = script.chunk_delay;
        }
        let domain = match *self.inner.flavour.lock().unwrap() {
            Some(Flavour::Qemu) => ErrorDomain::Qemu,
            _ => ErrorDomain::Test,
        };
        let inner = self.inner.clone();
        let name = self.name.clone();
        Box::pin(async move {
            let c = ctl.clone();
            let r = tokio::task::spawn_blocking(move || write_fake_stream(sink, script, &c))
                .await
                .map_err(|e| VirError::internal(domain, format!("save writer failed: {e}")))?;
            match r {
                Ok(()) => Ok(()),
                Err(m) => {
                    if script.die_after.is_some()
                        && let Some(tx) = inner.guests.lock().unwrap().get(&name)
                    {
                        let _ = tx.send(GuestEvent::Exited { crashed: true });
                    }
                    if ctl.cancel.is_cancelled() {
                        return Err(VirError::with(
                            vireo_messages::ErrorCode::OperationAborted,
                            domain,
                            "migration was cancelled",
                        ));
                    }
                    Err(VirError::operation_failed(domain, m))
                }
            }
        })
    }
}

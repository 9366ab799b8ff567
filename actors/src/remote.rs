//! Connections to a daemon over libvirt's remote protocol, for `…+unix://` and
//! `…+tcp://` URIs: the embedding API's answer when the actors run in another process
//! (a `vireod`, or a real `libvirtd`).
//!
//! [`Host::open`](crate::Host::open) serves URIs of the host's own driver instances;
//! [`open`] serves both: a local URI gives [`AnyConnection::Local`], a URI with a
//! transport gives [`AnyConnection::Remote`]. A [`RemoteConnection`] offers the common
//! domain operations as async calls carried by [`vireo_client::Client`]; errors are
//! the daemon's own `VirError`s (code, domain, message), so an app handles a remote
//! "domain not found" exactly like a local one. Lifecycle events arrive as
//! [`vireo_messages::Event`]s, the type the local hub delivers.

use vireo_client::event::{DomainEventKind as WireEventKind, EventBody};
use vireo_client::{Client, ClientError, EventStream};
use vireo_messages::{
    DomainEventKind, DomainState, ErrorCode, ErrorDomain, Event, EventKind, ObjectRef, StateReason,
    VirError, VirResult,
};
use vireo_wire::RemoteProc;
use vireo_wire::procs::{DomainRet, XmlFlagsArgs};
use vireo_wire::types::NonnullDomain;

use crate::Host;
use crate::handles::Connection;

/// `VIR_DOMAIN_EVENT_ID_LIFECYCLE`.
const EVENT_ID_LIFECYCLE: i32 = 0;

/// A connection of either kind.
pub enum AnyConnection {
    /// One of the host's own driver instances.
    Local(Connection),
    /// A daemon reached over a socket.
    Remote(RemoteConnection),
}

/// Opens `uri`: through `host` when it names a local driver instance
/// (`test:///default`, `qemu:///system`, …), over the remote protocol when it names a
/// transport (`test+unix:///default?socket=PATH`, `qemu+tcp://HOST/system`).
pub async fn open(host: &Host, uri: &str) -> VirResult<AnyConnection> {
    if is_remote(uri) {
        Ok(AnyConnection::Remote(RemoteConnection::open(uri).await?))
    } else {
        Ok(AnyConnection::Local(host.open(uri).await?))
    }
}

/// Whether a URI names a transport (`scheme+transport://`).
pub fn is_remote(uri: &str) -> bool {
    uri.split("://")
        .next()
        .is_some_and(|scheme| scheme.contains('+'))
}

fn vir(e: ClientError) -> VirError {
    match e.vir_error() {
        Some(v) => v.clone(),
        None => VirError::with(ErrorCode::Rpc, ErrorDomain::Rpc, e.to_string()),
    }
}

/// A connection to a remote daemon.
#[derive(Clone)]
pub struct RemoteConnection {
    client: Client,
}

impl RemoteConnection {
    /// Connects and opens the driver the URI names (read-write).
    pub async fn open(uri: &str) -> VirResult<RemoteConnection> {
        let client = Client::connect_uri(uri, false).await.map_err(vir)?;
        Ok(RemoteConnection { client })
    }

    /// The underlying protocol client, for procedures this type does not wrap.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `virConnectGetType` of the remote driver ("TEST", "QEMU").
    pub async fn type_name(&self) -> VirResult<String> {
        self.client.get_type().await.map_err(vir)
    }

    /// Defines (or redefines) a persistent domain.
    pub async fn define_domain(&self, xml: &str) -> VirResult<RemoteDomain> {
        let dom = self.client.define_xml(xml).await.map_err(vir)?;
        Ok(self.domain(dom))
    }

    /// Creates and starts a transient domain (`virDomainCreateXML`).
    pub async fn create_domain(&self, xml: &str, paused: bool) -> VirResult<RemoteDomain> {
        let r: DomainRet = self
            .client
            .call(
                RemoteProc::DomainCreateXml,
                &XmlFlagsArgs {
                    xml: xml.into(),
                    flags: u32::from(paused),
                },
            )
            .await
            .map_err(vir)?;
        Ok(self.domain(r.dom))
    }

    /// Looks a domain up by name.
    pub async fn lookup_domain_by_name(&self, name: &str) -> VirResult<RemoteDomain> {
        let dom = self.client.lookup_by_name(name).await.map_err(vir)?;
        Ok(self.domain(dom))
    }

    /// Looks a domain up by uuid.
    pub async fn lookup_domain_by_uuid(&self, uuid: uuid::Uuid) -> VirResult<RemoteDomain> {
        let dom = self.client.lookup_by_uuid(uuid).await.map_err(vir)?;
        Ok(self.domain(dom))
    }

    /// Every domain the remote driver has (`virConnectListAllDomains` with `flags`).
    pub async fn list_domains(&self, flags: u32) -> VirResult<Vec<RemoteDomain>> {
        let doms = self.client.list_all_domains(flags).await.map_err(vir)?;
        Ok(doms.into_iter().map(|d| self.domain(d)).collect())
    }

    /// Subscribes to every domain's lifecycle events.
    pub async fn subscribe_lifecycle(&self) -> VirResult<RemoteEvents> {
        let stream = self
            .client
            .register_domain_events(EVENT_ID_LIFECYCLE, None)
            .await
            .map_err(vir)?;
        Ok(RemoteEvents { stream })
    }

    /// Closes the connection.
    pub async fn close(self) -> VirResult<()> {
        self.client.close().await.map_err(vir)
    }

    fn domain(&self, dom: NonnullDomain) -> RemoteDomain {
        RemoteDomain {
            client: self.client.clone(),
            dom,
        }
    }
}

/// What [`RemoteDomain::info`] reports (`virDomainGetInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteDomainInfo {
    /// Current state (without reason; see [`RemoteDomain::state`]).
    pub state: DomainState,
    /// Maximum memory in KiB.
    pub max_mem_kib: u64,
    /// Current memory in KiB.
    pub mem_kib: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// CPU time used, in nanoseconds.
    pub cpu_time_ns: u64,
}

/// A domain of a remote daemon. The reference carries name and uuid; the daemon finds
/// the domain by uuid.
#[derive(Clone)]
pub struct RemoteDomain {
    client: Client,
    dom: NonnullDomain,
}

impl RemoteDomain {
    /// Name.
    pub fn name(&self) -> &str {
        &self.dom.name
    }

    /// Uuid.
    pub fn uuid(&self) -> uuid::Uuid {
        self.dom.uuid
    }

    /// The id the reference was made with (`None` when it was inactive then).
    pub fn id(&self) -> Option<u32> {
        u32::try_from(self.dom.id).ok()
    }

    /// Starts the defined domain; the returned reference carries the new id.
    pub async fn start(&self) -> VirResult<RemoteDomain> {
        let dom = self.client.create(&self.dom).await.map_err(vir)?;
        Ok(RemoteDomain {
            client: self.client.clone(),
            dom,
        })
    }

    /// Pulls the plug.
    pub async fn destroy(&self) -> VirResult<()> {
        self.client.destroy(&self.dom).await.map_err(vir)
    }

    /// Pauses the vCPUs.
    pub async fn suspend(&self) -> VirResult<()> {
        self.client.suspend(&self.dom).await.map_err(vir)
    }

    /// Unpauses.
    pub async fn resume(&self) -> VirResult<()> {
        self.client.resume(&self.dom).await.map_err(vir)
    }

    /// Removes the persistent definition.
    pub async fn undefine(&self) -> VirResult<()> {
        self.client.undefine(&self.dom).await.map_err(vir)
    }

    /// The XML description (`VIR_DOMAIN_XML_*` flags).
    pub async fn xml_desc(&self, flags: u32) -> VirResult<String> {
        self.client.xml_desc(&self.dom, flags).await.map_err(vir)
    }

    /// State and reason.
    pub async fn state(&self) -> VirResult<StateReason> {
        let (s, r) = self.client.get_state(&self.dom).await.map_err(vir)?;
        Ok(StateReason::new(DomainState::from_i32(s), r))
    }

    /// `virDomainGetInfo`.
    pub async fn info(&self) -> VirResult<RemoteDomainInfo> {
        let i = self.client.get_info(&self.dom).await.map_err(vir)?;
        Ok(RemoteDomainInfo {
            state: DomainState::from_i32(i.state as i32),
            max_mem_kib: i.max_mem,
            mem_kib: i.memory,
            vcpus: i.nr_virt_cpu,
            cpu_time_ns: i.cpu_time,
        })
    }
}

/// Lifecycle events from a remote daemon, as [`Event`]s (origin 0: the remote
/// connection is its own origin).
pub struct RemoteEvents {
    stream: EventStream,
}

impl RemoteEvents {
    /// The next lifecycle event; `None` once the connection is gone.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            let ev = self.stream.recv().await?;
            if let EventBody::Domain {
                dom,
                kind: WireEventKind::Lifecycle { event, detail },
            } = ev.body
            {
                let Some(kind) = lifecycle_kind(event) else {
                    continue;
                };
                let id = u32::try_from(dom.id).ok().map(vireo_messages::DomainId);
                return Some(Event {
                    origin: 0,
                    object: ObjectRef::domain(dom.name, dom.uuid, id),
                    kind: EventKind::lifecycle(kind, detail),
                });
            }
        }
    }
}

fn lifecycle_kind(v: i32) -> Option<DomainEventKind> {
    use DomainEventKind::*;
    [
        Defined,
        Undefined,
        Started,
        Suspended,
        Resumed,
        Stopped,
        Shutdown,
        PmSuspended,
        Crashed,
    ]
    .into_iter()
    .find(|k| *k as i32 == v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_make_a_uri_remote() {
        assert!(is_remote("test+unix:///default?socket=/x"));
        assert!(is_remote("qemu+tcp://h/system"));
        assert!(!is_remote("test:///default"));
        assert!(!is_remote("qemu:///system"));
        assert!(!is_remote("test:///tmp/a+b.xml"));
    }

    #[test]
    fn lifecycle_numbers_map_back() {
        assert_eq!(lifecycle_kind(2), Some(DomainEventKind::Started));
        assert_eq!(lifecycle_kind(8), Some(DomainEventKind::Crashed));
        assert_eq!(lifecycle_kind(9), None);
    }
}

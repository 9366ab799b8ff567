//! Argument and return structs of the REMOTE procedures Vireo speaks.
//!
//! Field order and types follow `remote_protocol.x` (XDR does not carry field names, so
//! procedures whose payloads have the same shape share one struct: e.g. every call that
//! only takes a domain uses [`DomainArgs`], every reply that is a single `int` uses
//! [`IntRet`]). The procedure table says which struct each procedure uses. Lists carry
//! the `.x` maximum where it matters; shared list structs use the largest maximum any
//! of their procedures declares (decoding is lenient, encoders must respect the
//! per-procedure limit).

use uuid::Uuid;

use crate::types::limits::*;
use crate::types::*;
use crate::xdr::{CharArray, FixedChars};

crate::xdr_struct! {
    // ----- shared argument shapes -----

    /// `{ flags }`.
    #[derive(Eq, Default)]
    pub struct FlagsArgs {
        /// Flags.
        pub flags: u32,
    }

    /// `{ name }`: lookups by name, and node-device calls (which take the device name).
    #[derive(Eq)]
    pub struct NameArgs {
        /// The object's name.
        pub name: String,
    }

    /// `{ name, flags }`.
    #[derive(Eq)]
    pub struct NameFlagsArgs {
        /// The object's name.
        pub name: String,
        /// Flags.
        pub flags: u32,
    }

    /// `{ uuid }`: lookups by UUID.
    #[derive(Eq)]
    pub struct UuidArgs {
        /// The object's UUID.
        pub uuid: Uuid,
    }

    /// `{ xml }`: define or create from an XML document.
    #[derive(Eq)]
    pub struct XmlArgs {
        /// The XML document.
        pub xml: String,
    }

    /// `{ xml, flags }`.
    #[derive(Eq)]
    pub struct XmlFlagsArgs {
        /// The XML document.
        pub xml: String,
        /// Flags.
        pub flags: u32,
    }

    /// `{ maxnames }`: the legacy list calls (also `maxids`, `maxuuids`).
    #[derive(Eq)]
    pub struct MaxNamesArgs {
        /// The most entries the caller wants.
        pub maxnames: i32,
    }

    /// `{ need_results, flags }`: the `CONNECT_LIST_ALL_*` calls. With `need_results`
    /// 0 the reply carries only the count.
    #[derive(Eq)]
    pub struct ListAllArgs {
        /// Whether to return the objects (non-zero) or only their count.
        pub need_results: i32,
        /// Filter flags.
        pub flags: u32,
    }

    /// `{ callbackID }`: event deregistration.
    #[derive(Eq)]
    pub struct CallbackIdArgs {
        /// The id returned at registration.
        pub callback_id: i32,
    }

    /// `{ eventID }`: legacy domain event (de)registration.
    #[derive(Eq)]
    pub struct EventIdArgs {
        /// `VIR_DOMAIN_EVENT_ID_*`.
        pub event_id: i32,
    }

    /// `{ dom }`.
    #[derive(Eq)]
    pub struct DomainArgs {
        /// The domain.
        pub dom: NonnullDomain,
    }

    /// `{ dom, flags }`.
    #[derive(Eq)]
    pub struct DomainFlagsArgs {
        /// The domain.
        pub dom: NonnullDomain,
        /// Flags.
        pub flags: u32,
    }

    /// `{ dom, xml }`: device attach/detach without flags.
    #[derive(Eq)]
    pub struct DomainXmlArgs {
        /// The domain.
        pub dom: NonnullDomain,
        /// The XML document.
        pub xml: String,
    }

    /// `{ dom, xml, flags }`: device calls with flags, snapshot creation.
    #[derive(Eq)]
    pub struct DomainXmlFlagsArgs {
        /// The domain.
        pub dom: NonnullDomain,
        /// The XML document.
        pub xml: String,
        /// Flags.
        pub flags: u32,
    }

    /// `{ dom, autostart }`.
    #[derive(Eq)]
    pub struct DomainAutostartArgs {
        /// The domain.
        pub dom: NonnullDomain,
        /// Non-zero to enable.
        pub autostart: i32,
    }

    /// `{ dom, memory }`: KiB.
    #[derive(Eq)]
    pub struct DomainMemoryArgs {
        /// The domain.
        pub dom: NonnullDomain,
        /// Memory in KiB.
        pub memory: u64,
    }

    /// `{ dom, memory, flags }`.
    #[derive(Eq)]
    pub struct DomainMemoryFlagsArgs {
        /// The domain.
        pub dom: NonnullDomain,
        /// Memory in KiB.
        pub memory: u64,
        /// `VIR_DOMAIN_MEM_*`.
        pub flags: u32,
    }

    /// `{ dom, nvcpus }`.
    #[derive(Eq)]
    pub struct DomainVcpusArgs {
        /// The domain.
        pub dom: NonnullDomain,
        /// Number of vCPUs.
        pub nvcpus: u32,
    }

    /// `{ dom, nvcpus, flags }`.
    #[derive(Eq)]
    pub struct DomainVcpusFlagsArgs {
        /// The domain.
        pub dom: NonnullDomain,
        /// Number of vCPUs.
        pub nvcpus: u32,
        /// `VIR_DOMAIN_VCPU_*` / `AFFECT_*`.
        pub flags: u32,
    }

    /// `{ net }`.
    #[derive(Eq)]
    pub struct NetworkArgs {
        /// The network.
        pub net: NonnullNetwork,
    }

    /// `{ net, flags }`.
    #[derive(Eq)]
    pub struct NetworkFlagsArgs {
        /// The network.
        pub net: NonnullNetwork,
        /// Flags.
        pub flags: u32,
    }

    /// `{ net, autostart }`.
    #[derive(Eq)]
    pub struct NetworkAutostartArgs {
        /// The network.
        pub net: NonnullNetwork,
        /// Non-zero to enable.
        pub autostart: i32,
    }

    /// `{ pool }`.
    #[derive(Eq)]
    pub struct StoragePoolArgs {
        /// The pool.
        pub pool: NonnullStoragePool,
    }

    /// `{ pool, flags }`.
    #[derive(Eq)]
    pub struct StoragePoolFlagsArgs {
        /// The pool.
        pub pool: NonnullStoragePool,
        /// Flags.
        pub flags: u32,
    }

    /// `{ pool, autostart }`.
    #[derive(Eq)]
    pub struct StoragePoolAutostartArgs {
        /// The pool.
        pub pool: NonnullStoragePool,
        /// Non-zero to enable.
        pub autostart: i32,
    }

    /// `{ vol }`.
    #[derive(Eq)]
    pub struct StorageVolArgs {
        /// The volume.
        pub vol: NonnullStorageVol,
    }

    /// `{ vol, flags }`.
    #[derive(Eq)]
    pub struct StorageVolFlagsArgs {
        /// The volume.
        pub vol: NonnullStorageVol,
        /// Flags.
        pub flags: u32,
    }

    /// `{ iface }`.
    #[derive(Eq)]
    pub struct InterfaceArgs {
        /// The interface.
        pub iface: NonnullInterface,
    }

    /// `{ iface, flags }`.
    #[derive(Eq)]
    pub struct InterfaceFlagsArgs {
        /// The interface.
        pub iface: NonnullInterface,
        /// Flags.
        pub flags: u32,
    }

    /// `{ secret }`.
    #[derive(Eq)]
    pub struct SecretArgs {
        /// The secret.
        pub secret: NonnullSecret,
    }

    /// `{ secret, flags }`.
    #[derive(Eq)]
    pub struct SecretFlagsArgs {
        /// The secret.
        pub secret: NonnullSecret,
        /// Flags.
        pub flags: u32,
    }

    /// `{ snap, flags }`.
    #[derive(Eq)]
    pub struct SnapshotFlagsArgs {
        /// The snapshot.
        pub snap: NonnullDomainSnapshot,
        /// Flags.
        pub flags: u32,
    }

    // ----- shared return shapes -----

    /// A single `int` (`num`, `active`, `persistent`, `autostart`, `result`, ...).
    #[derive(Eq, Default)]
    pub struct IntRet {
        /// The value.
        pub value: i32,
    }

    /// A single `unsigned hyper` (versions, memory sizes).
    #[derive(Eq, Default)]
    pub struct UHyperRet {
        /// The value.
        pub value: u64,
    }

    /// A single string (`type`, `hostname`, `xml`, `capabilities`, ...).
    #[derive(Eq, Default)]
    pub struct StringRet {
        /// The value.
        pub value: String,
    }

    /// A single optional string (node device parent, screenshot MIME type).
    #[derive(Eq, Default)]
    pub struct OptStringRet {
        /// The value.
        pub value: Option<String>,
    }

    /// A list of names (or UUID strings, or messages).
    #[derive(Eq, Default)]
    pub struct NamesRet {
        /// The names.
        pub names: Vec<String> [max NODE_DEVICE_CAPS_LIST_MAX],
    }

    /// A list of domain ids.
    #[derive(Eq, Default)]
    pub struct IdsRet {
        /// The ids.
        pub ids: Vec<i32> [max DOMAIN_LIST_MAX],
    }

    /// `{ callbackID }`: event registration.
    #[derive(Eq)]
    pub struct CallbackIdRet {
        /// The id the daemon picked.
        pub callback_id: i32,
    }

    /// `{ dom }`.
    #[derive(Eq)]
    pub struct DomainRet {
        /// The domain.
        pub dom: NonnullDomain,
    }

    /// `{ net }`.
    #[derive(Eq)]
    pub struct NetworkRet {
        /// The network.
        pub net: NonnullNetwork,
    }

    /// `{ pool }`.
    #[derive(Eq)]
    pub struct StoragePoolRet {
        /// The pool.
        pub pool: NonnullStoragePool,
    }

    /// `{ vol }`.
    #[derive(Eq)]
    pub struct StorageVolRet {
        /// The volume.
        pub vol: NonnullStorageVol,
    }

    /// `{ dev }`.
    #[derive(Eq)]
    pub struct NodeDeviceRet {
        /// The node device.
        pub dev: NonnullNodeDevice,
    }

    /// `{ iface }`.
    #[derive(Eq)]
    pub struct InterfaceRet {
        /// The interface.
        pub iface: NonnullInterface,
    }

    /// `{ secret }`.
    #[derive(Eq)]
    pub struct SecretRet {
        /// The secret.
        pub secret: NonnullSecret,
    }

    /// `{ snap }`.
    #[derive(Eq)]
    pub struct SnapshotRet {
        /// The snapshot.
        pub snap: NonnullDomainSnapshot,
    }

    // ----- connection and host -----

    /// CONNECT_OPEN arguments.
    #[derive(Eq)]
    pub struct ConnectOpenArgs {
        /// The URI without transport parts; NULL = the daemon's default.
        pub name: Option<String>,
        /// `VIR_CONNECT_RO` = 1.
        pub flags: u32,
    }

    /// CONNECT_SUPPORTS_FEATURE arguments.
    #[derive(Eq)]
    pub struct ConnectSupportsFeatureArgs {
        /// `VIR_DRV_FEATURE_*`.
        pub feature: i32,
    }

    /// CONNECT_SUPPORTS_FEATURE reply.
    #[derive(Eq)]
    pub struct ConnectSupportsFeatureRet {
        /// 1 if supported.
        pub supported: i32,
    }

    /// CONNECT_GET_MAX_VCPUS arguments.
    #[derive(Eq)]
    pub struct ConnectGetMaxVcpusArgs {
        /// The virtualization type, may be NULL.
        pub type_: Option<String>,
    }

    /// CONNECT_GET_DOMAIN_CAPABILITIES arguments.
    #[derive(Eq)]
    pub struct ConnectGetDomainCapabilitiesArgs {
        /// Emulator binary.
        pub emulatorbin: Option<String>,
        /// Architecture.
        pub arch: Option<String>,
        /// Machine type.
        pub machine: Option<String>,
        /// Virtualization type.
        pub virttype: Option<String>,
        /// Flags.
        pub flags: u32,
    }

    /// NODE_GET_INFO reply.
    #[derive(Eq)]
    pub struct NodeGetInfoRet {
        /// CPU model, a fixed `char[32]` (128 bytes on the wire).
        pub model: FixedChars<32>,
        /// Memory in KiB.
        pub memory: u64,
        /// Active CPUs.
        pub cpus: i32,
        /// CPU frequency in MHz.
        pub mhz: i32,
        /// NUMA nodes.
        pub nodes: i32,
        /// Sockets per node.
        pub sockets: i32,
        /// Cores per socket.
        pub cores: i32,
        /// Threads per core.
        pub threads: i32,
    }

    /// NODE_GET_CELLS_FREE_MEMORY arguments.
    #[derive(Eq)]
    pub struct NodeGetCellsFreeMemoryArgs {
        /// First cell.
        pub start_cell: i32,
        /// How many cells.
        pub maxcells: i32,
    }

    /// NODE_GET_CELLS_FREE_MEMORY reply.
    #[derive(Eq)]
    pub struct NodeGetCellsFreeMemoryRet {
        /// Free memory per cell.
        pub cells: Vec<u64> [max NODE_MAX_CELLS],
    }

    /// NODE_GET_CPU_MAP arguments.
    #[derive(Eq)]
    pub struct NodeGetCpuMapArgs {
        /// Whether to return the map.
        pub need_map: i32,
        /// Whether to return the online count.
        pub need_online: i32,
        /// Flags.
        pub flags: u32,
    }

    /// NODE_GET_CPU_MAP reply.
    #[derive(Eq)]
    pub struct NodeGetCpuMapRet {
        /// Bitmap of online CPUs.
        pub cpumap: Vec<u8> [max CPUMAP_MAX],
        /// Number of online CPUs.
        pub online: u32,
        /// Number of host CPUs.
        pub ret: i32,
    }

    /// NODE_GET_SECURITY_MODEL reply: `char<>` arrays including the NUL.
    #[derive(Eq)]
    pub struct NodeGetSecurityModelRet {
        /// Security model.
        pub model: CharArray [max SECURITY_MODEL_MAX],
        /// Domain of interpretation.
        pub doi: CharArray [max SECURITY_DOI_MAX],
    }

    /// AUTH_LIST reply.
    #[derive(Eq)]
    pub struct AuthListRet {
        /// Offered auth types.
        pub types: Vec<AuthType> [max AUTH_TYPE_LIST_MAX],
    }

    /// AUTH_SASL_INIT reply.
    #[derive(Eq)]
    pub struct AuthSaslInitRet {
        /// Space-separated mechanisms.
        pub mechlist: String,
    }

    /// AUTH_SASL_START arguments.
    #[derive(Eq)]
    pub struct AuthSaslStartArgs {
        /// Chosen mechanism.
        pub mech: String,
        /// Non-zero when `data` is NULL.
        pub nil: i32,
        /// SASL data.
        pub data: CharArray [max AUTH_SASL_DATA_MAX],
    }

    /// AUTH_SASL_STEP arguments.
    #[derive(Eq)]
    pub struct AuthSaslStepArgs {
        /// Non-zero when `data` is NULL.
        pub nil: i32,
        /// SASL data.
        pub data: CharArray [max AUTH_SASL_DATA_MAX],
    }

    /// AUTH_SASL_START / AUTH_SASL_STEP reply.
    #[derive(Eq)]
    pub struct AuthSaslRet {
        /// Non-zero when authentication is complete.
        pub complete: i32,
        /// Non-zero when `data` is NULL.
        pub nil: i32,
        /// SASL data.
        pub data: CharArray [max AUTH_SASL_DATA_MAX],
    }

    // ----- domains -----

    /// CONNECT_LIST_ALL_DOMAINS reply.
    #[derive(Eq)]
    pub struct ConnectListAllDomainsRet {
        /// The domains (empty when `need_results` was 0).
        pub domains: Vec<NonnullDomain> [max DOMAIN_LIST_MAX],
        /// The count.
        pub ret: u32,
    }

    /// DOMAIN_LOOKUP_BY_ID arguments.
    #[derive(Eq)]
    pub struct DomainLookupByIdArgs {
        /// The id.
        pub id: i32,
    }

    /// DOMAIN_GET_INFO reply.
    #[derive(Eq)]
    pub struct DomainGetInfoRet {
        /// `virDomainState` (an `unsigned char`, 4 bytes on the wire).
        pub state: u32,
        /// Maximum memory in KiB.
        pub max_mem: u64,
        /// Current memory in KiB.
        pub memory: u64,
        /// vCPUs (an `unsigned short`, 4 bytes on the wire).
        pub nr_virt_cpu: u32,
        /// CPU time in nanoseconds.
        pub cpu_time: u64,
    }

    /// DOMAIN_GET_STATE reply.
    #[derive(Eq)]
    pub struct DomainGetStateRet {
        /// `virDomainState`.
        pub state: i32,
        /// The per-state reason.
        pub reason: i32,
    }

    /// DOMAIN_GET_SECURITY_LABEL reply.
    #[derive(Eq)]
    pub struct DomainGetSecurityLabelRet {
        /// The label, a `char<>` including the NUL (empty when there is none).
        pub label: CharArray [max SECURITY_LABEL_MAX],
        /// Whether the label is enforced.
        pub enforcing: i32,
    }

    /// DOMAIN_SAVE arguments.
    #[derive(Eq)]
    pub struct DomainSaveArgs {
        /// The domain.
        pub dom: NonnullDomain,
        /// Destination path on the daemon host.
        pub to: String,
    }

    /// DOMAIN_SAVE_FLAGS arguments.
    #[derive(Eq)]
    pub struct DomainSaveFlagsArgs {
        /// The domain.
        pub dom: NonnullDomain,
        /// Destination path on the daemon host.
        pub to: String,
        /// Replacement domain XML.
        pub dxml: Option<String>,
        /// `VIR_DOMAIN_SAVE_*`.
        pub flags: u32,
    }

    /// DOMAIN_RESTORE arguments.
    #[derive(Eq)]
    pub struct DomainRestoreArgs {
        /// Source path on the daemon host.
        pub from: String,
    }

    /// DOMAIN_RESTORE_FLAGS arguments.
    #[derive(Eq)]
    pub struct DomainRestoreFlagsArgs {
        /// Source path on the daemon host.
        pub from: String,
        /// Replacement domain XML.
        pub dxml: Option<String>,
        /// `VIR_DOMAIN_SAVE_*`.
        pub flags: u32,
    }

    /// DOMAIN_GET_JOB_INFO reply (`virDomainJobInfo`).
    #[derive(Eq, Default)]
    pub struct DomainGetJobInfoRet {
        /// `virDomainJobType`.
        pub type_: i32,
        /// Milliseconds since the job started.
        pub time_elapsed: u64,
        /// Estimated milliseconds left.
        pub time_remaining: u64,
        /// Total bytes.
        pub data_total: u64,
        /// Bytes done.
        pub data_processed: u64,
        /// Bytes left.
        pub data_remaining: u64,
        /// Memory bytes total.
        pub mem_total: u64,
        /// Memory bytes done.
        pub mem_processed: u64,
        /// Memory bytes left.
        pub mem_remaining: u64,
        /// File bytes total.
        pub file_total: u64,
        /// File bytes done.
        pub file_processed: u64,
        /// File bytes left.
        pub file_remaining: u64,
    }

    /// DOMAIN_GET_JOB_STATS reply.
    pub struct DomainGetJobStatsRet {
        /// `virDomainJobType`.
        pub type_: i32,
        /// The statistics.
        pub params: Vec<TypedParam> [max DOMAIN_JOB_STATS_MAX],
    }

    /// DOMAIN_SAVE_IMAGE_GET_XML_DESC arguments.
    #[derive(Eq)]
    pub struct SaveImageXmlArgs {
        /// The image path on the daemon host.
        pub file: String,
        /// `VIR_DOMAIN_SAVE_IMAGE_XML_SECURE`.
        pub flags: u32,
    }

    /// DOMAIN_SAVE_IMAGE_DEFINE_XML arguments.
    #[derive(Eq)]
    pub struct SaveImageDefineXmlArgs {
        /// The image path on the daemon host.
        pub file: String,
        /// The replacement domain XML.
        pub dxml: String,
        /// `VIR_DOMAIN_SAVE_RUNNING` / `_PAUSED`.
        pub flags: u32,
    }

    /// DOMAIN_MANAGED_SAVE_DEFINE_XML arguments.
    #[derive(Eq)]
    pub struct DomainManagedSaveDefineXmlArgs {
        /// The domain.
        pub dom: NonnullDomain,
        /// The replacement domain XML.
        pub dxml: Option<String>,
        /// `VIR_DOMAIN_SAVE_RUNNING` / `_PAUSED`.
        pub flags: u32,
    }

    /// DOMAIN_CORE_DUMP arguments.
    #[derive(Eq)]
    pub struct DomainCoreDumpArgs {
        /// The domain.
        pub dom: NonnullDomain,
        /// Destination path on the daemon host.
        pub to: String,
        /// `VIR_DUMP_*`.
        pub flags: u32,
    }

    /// DOMAIN_GET_VCPUS arguments.
    #[derive(Eq)]
    pub struct DomainGetVcpusArgs {
        /// The domain.
        pub dom: NonnullDomain,
        /// Entries wanted.
        pub maxinfo: i32,
        /// Bytes per CPU map (0 = no maps).
        pub maplen: i32,
    }

    /// DOMAIN_GET_VCPUS reply.
    #[derive(Eq)]
    pub struct DomainGetVcpusRet {
        /// Per-vCPU information.
        pub info: Vec<VcpuInfo> [max VCPUINFO_MAX],
        /// `maxinfo * maplen` bytes of CPU maps.
        pub cpumaps: Vec<u8> [max CPUMAPS_MAX],
    }

    /// DOMAIN_SCREENSHOT arguments.
    #[derive(Eq)]
    pub struct DomainScreenshotArgs {
        /// The domain.
        pub dom: NonnullDomain,
        /// Screen number.
        pub screen: u32,
        /// Flags.
        pub flags: u32,
    }

    /// DOMAIN_OPEN_CONSOLE / DOMAIN_OPEN_CHANNEL arguments.
    #[derive(Eq)]
    pub struct DomainOpenConsoleArgs {
        /// The domain.
        pub dom: NonnullDomain,
        /// Device alias, NULL = the first console.
        pub dev_name: Option<String>,
        /// Flags.
        pub flags: u32,
    }

    /// DOMAIN_GET_SCHEDULER_TYPE reply.
    #[derive(Eq)]
    pub struct DomainGetSchedulerTypeRet {
        /// Scheduler name.
        pub type_: String,
        /// Number of scheduler parameters.
        pub nparams: i32,
    }

    /// `{ dom, nparams }`: DOMAIN_GET_SCHEDULER_PARAMETERS.
    #[derive(Eq)]
    pub struct DomainNparamsArgs {
        /// The domain.
        pub dom: NonnullDomain,
        /// Parameters the caller has room for.
        pub nparams: i32,
    }

    /// `{ dom, nparams, flags }`: the typed-parameter "get" calls. Clients first send
    /// `nparams` 0 to learn the count.
    #[derive(Eq)]
    pub struct DomainNparamsFlagsArgs {
        /// The domain.
        pub dom: NonnullDomain,
        /// Parameters the caller has room for.
        pub nparams: i32,
        /// Flags (clients add `VIR_TYPED_PARAM_STRING_OKAY` = 4).
        pub flags: u32,
    }

    /// `{ params }`: DOMAIN_GET_SCHEDULER_PARAMETERS(_FLAGS) reply.
    pub struct TypedParamsRet {
        /// The parameters.
        pub params: Vec<TypedParam> [max DOMAIN_EVENT_TUNABLE_MAX],
    }

    /// `{ params, nparams }`: reply of the typed-parameter "get" calls. With
    /// `nparams` 0 in the call, `params` is empty and `nparams` is the count.
    pub struct TypedParamsCountRet {
        /// The parameters.
        pub params: Vec<TypedParam> [max DOMAIN_EVENT_TUNABLE_MAX],
        /// How many parameters the object has.
        pub nparams: i32,
    }

    /// `{ dom, params }`: DOMAIN_SET_SCHEDULER_PARAMETERS.
    pub struct DomainSetParamsArgs {
        /// The domain.
        pub dom: NonnullDomain,
        /// The parameters.
        pub params: Vec<TypedParam> [max DOMAIN_EVENT_TUNABLE_MAX],
    }

    /// `{ dom, params, flags }`: the typed-parameter "set" calls.
    pub struct DomainSetParamsFlagsArgs {
        /// The domain.
        pub dom: NonnullDomain,
        /// The parameters.
        pub params: Vec<TypedParam> [max DOMAIN_EVENT_TUNABLE_MAX],
        /// `AFFECT_*` flags.
        pub flags: u32,
    }

    // ----- snapshots -----

    /// DOMAIN_SNAPSHOT_LIST_NAMES arguments.
    #[derive(Eq)]
    pub struct DomainSnapshotListNamesArgs {
        /// The domain.
        pub dom: NonnullDomain,
        /// Most names wanted.
        pub maxnames: i32,
        /// `VIR_DOMAIN_SNAPSHOT_LIST_*`.
        pub flags: u32,
    }

    /// `{ dom, need_results, flags }`: DOMAIN_LIST_ALL_SNAPSHOTS.
    #[derive(Eq)]
    pub struct DomainListAllArgs {
        /// The domain.
        pub dom: NonnullDomain,
        /// Whether to return the objects or only the count.
        pub need_results: i32,
        /// Flags.
        pub flags: u32,
    }

    /// DOMAIN_SNAPSHOT_LIST_ALL_CHILDREN arguments.
    #[derive(Eq)]
    pub struct SnapshotListAllChildrenArgs {
        /// The parent snapshot.
        pub snapshot: NonnullDomainSnapshot,
        /// Whether to return the objects or only the count.
        pub need_results: i32,
        /// Flags.
        pub flags: u32,
    }

    /// Reply of the snapshot list-all calls.
    #[derive(Eq)]
    pub struct SnapshotListRet {
        /// The snapshots.
        pub snapshots: Vec<NonnullDomainSnapshot> [max DOMAIN_SNAPSHOT_LIST_MAX],
        /// The count.
        pub ret: i32,
    }

    /// DOMAIN_SNAPSHOT_LOOKUP_BY_NAME arguments.
    #[derive(Eq)]
    pub struct DomainSnapshotLookupByNameArgs {
        /// The domain.
        pub dom: NonnullDomain,
        /// Snapshot name.
        pub name: String,
        /// Flags.
        pub flags: u32,
    }

    // ----- event registration -----

    /// CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY arguments.
    #[derive(Eq)]
    pub struct ConnectDomainEventCallbackRegisterAnyArgs {
        /// `VIR_DOMAIN_EVENT_ID_*`.
        pub event_id: i32,
        /// Only events of this domain; NULL = all.
        pub dom: Option<NonnullDomain>,
    }

    /// CONNECT_NETWORK_EVENT_REGISTER_ANY arguments.
    #[derive(Eq)]
    pub struct ConnectNetworkEventRegisterAnyArgs {
        /// `VIR_NETWORK_EVENT_ID_*`.
        pub event_id: i32,
        /// Only events of this network; NULL = all.
        pub net: Option<NonnullNetwork>,
    }

    /// CONNECT_STORAGE_POOL_EVENT_REGISTER_ANY arguments.
    #[derive(Eq)]
    pub struct ConnectStoragePoolEventRegisterAnyArgs {
        /// `VIR_STORAGE_POOL_EVENT_ID_*`.
        pub event_id: i32,
        /// Only events of this pool; NULL = all.
        pub pool: Option<NonnullStoragePool>,
    }

    /// CONNECT_NODE_DEVICE_EVENT_REGISTER_ANY arguments.
    #[derive(Eq)]
    pub struct ConnectNodeDeviceEventRegisterAnyArgs {
        /// `VIR_NODE_DEVICE_EVENT_ID_*`.
        pub event_id: i32,
        /// Only events of this device; NULL = all.
        pub dev: Option<NonnullNodeDevice>,
    }

    /// CONNECT_SECRET_EVENT_REGISTER_ANY arguments.
    #[derive(Eq)]
    pub struct ConnectSecretEventRegisterAnyArgs {
        /// `VIR_SECRET_EVENT_ID_*`.
        pub event_id: i32,
        /// Only events of this secret; NULL = all.
        pub secret: Option<NonnullSecret>,
    }

    // ----- networks -----

    /// CONNECT_LIST_ALL_NETWORKS reply.
    #[derive(Eq)]
    pub struct ConnectListAllNetworksRet {
        /// The networks.
        pub nets: Vec<NonnullNetwork> [max NETWORK_LIST_MAX],
        /// The count.
        pub ret: u32,
    }

    /// NETWORK_UPDATE arguments (command and section in the corrected order, feature 16).
    #[derive(Eq)]
    pub struct NetworkUpdateArgs {
        /// The network.
        pub net: NonnullNetwork,
        /// `VIR_NETWORK_UPDATE_COMMAND_*`.
        pub command: u32,
        /// `VIR_NETWORK_SECTION_*`.
        pub section: u32,
        /// Index of the parent element, -1 = any.
        pub parent_index: i32,
        /// The XML fragment.
        pub xml: String,
        /// `VIR_NETWORK_UPDATE_AFFECT_*`.
        pub flags: u32,
    }

    // ----- storage -----

    /// CONNECT_LIST_ALL_STORAGE_POOLS reply.
    #[derive(Eq)]
    pub struct ConnectListAllStoragePoolsRet {
        /// The pools.
        pub pools: Vec<NonnullStoragePool> [max STORAGE_POOL_LIST_MAX],
        /// The count.
        pub ret: u32,
    }

    /// CONNECT_FIND_STORAGE_POOL_SOURCES arguments.
    #[derive(Eq)]
    pub struct ConnectFindStoragePoolSourcesArgs {
        /// Pool type.
        pub type_: String,
        /// Source specification XML.
        pub src_spec: Option<String>,
        /// Flags.
        pub flags: u32,
    }

    /// STORAGE_POOL_GET_INFO reply.
    #[derive(Eq)]
    pub struct StoragePoolGetInfoRet {
        /// `virStoragePoolState` (an `unsigned char`, 4 bytes on the wire).
        pub state: u32,
        /// Capacity in bytes.
        pub capacity: u64,
        /// Allocation in bytes.
        pub allocation: u64,
        /// Available bytes.
        pub available: u64,
    }

    /// STORAGE_POOL_LIST_VOLUMES arguments.
    #[derive(Eq)]
    pub struct StoragePoolListVolumesArgs {
        /// The pool.
        pub pool: NonnullStoragePool,
        /// Most names wanted.
        pub maxnames: i32,
    }

    /// STORAGE_POOL_LIST_ALL_VOLUMES arguments.
    #[derive(Eq)]
    pub struct StoragePoolListAllVolumesArgs {
        /// The pool.
        pub pool: NonnullStoragePool,
        /// Whether to return the objects or only the count.
        pub need_results: i32,
        /// Flags.
        pub flags: u32,
    }

    /// STORAGE_POOL_LIST_ALL_VOLUMES reply.
    #[derive(Eq)]
    pub struct StoragePoolListAllVolumesRet {
        /// The volumes.
        pub vols: Vec<NonnullStorageVol> [max STORAGE_VOL_LIST_MAX],
        /// The count.
        pub ret: u32,
    }

    /// STORAGE_VOL_LOOKUP_BY_NAME arguments.
    #[derive(Eq)]
    pub struct StorageVolLookupByNameArgs {
        /// The pool.
        pub pool: NonnullStoragePool,
        /// Volume name.
        pub name: String,
    }

    /// STORAGE_VOL_LOOKUP_BY_KEY arguments.
    #[derive(Eq)]
    pub struct StorageVolLookupByKeyArgs {
        /// Volume key.
        pub key: String,
    }

    /// STORAGE_VOL_LOOKUP_BY_PATH arguments.
    #[derive(Eq)]
    pub struct StorageVolLookupByPathArgs {
        /// Volume path.
        pub path: String,
    }

    /// STORAGE_VOL_CREATE_XML arguments.
    #[derive(Eq)]
    pub struct StorageVolCreateXmlArgs {
        /// The pool.
        pub pool: NonnullStoragePool,
        /// Volume XML.
        pub xml: String,
        /// `VIR_STORAGE_VOL_CREATE_*`.
        pub flags: u32,
    }

    /// STORAGE_VOL_CREATE_XML_FROM arguments.
    #[derive(Eq)]
    pub struct StorageVolCreateXmlFromArgs {
        /// The pool.
        pub pool: NonnullStoragePool,
        /// Volume XML.
        pub xml: String,
        /// The volume to clone.
        pub clonevol: NonnullStorageVol,
        /// `VIR_STORAGE_VOL_CREATE_*`.
        pub flags: u32,
    }

    /// STORAGE_VOL_RESIZE arguments.
    #[derive(Eq)]
    pub struct StorageVolResizeArgs {
        /// The volume.
        pub vol: NonnullStorageVol,
        /// New capacity in bytes.
        pub capacity: u64,
        /// `VIR_STORAGE_VOL_RESIZE_*`.
        pub flags: u32,
    }

    /// STORAGE_VOL_GET_INFO(_FLAGS) reply.
    #[derive(Eq)]
    pub struct StorageVolGetInfoRet {
        /// `virStorageVolType` (a `char`, 4 bytes on the wire).
        pub type_: i32,
        /// Capacity in bytes.
        pub capacity: u64,
        /// Allocation in bytes.
        pub allocation: u64,
    }

    /// STORAGE_VOL_UPLOAD / STORAGE_VOL_DOWNLOAD arguments.
    #[derive(Eq)]
    pub struct StorageVolTransferArgs {
        /// The volume.
        pub vol: NonnullStorageVol,
        /// Start offset in bytes.
        pub offset: u64,
        /// Bytes to transfer, 0 = to the end.
        pub length: u64,
        /// `*_SPARSE_STREAM` = 1.
        pub flags: u32,
    }

    // ----- node devices, interfaces, secrets -----

    /// CONNECT_LIST_ALL_NODE_DEVICES reply.
    #[derive(Eq)]
    pub struct ConnectListAllNodeDevicesRet {
        /// The devices.
        pub devices: Vec<NonnullNodeDevice> [max NODE_DEVICE_LIST_MAX],
        /// The count.
        pub ret: u32,
    }

    /// NODE_NUM_OF_DEVICES arguments.
    #[derive(Eq)]
    pub struct NodeNumOfDevicesArgs {
        /// Capability filter, NULL = all.
        pub cap: Option<String>,
        /// Flags.
        pub flags: u32,
    }

    /// NODE_LIST_DEVICES arguments.
    #[derive(Eq)]
    pub struct NodeListDevicesArgs {
        /// Capability filter, NULL = all.
        pub cap: Option<String>,
        /// Most names wanted.
        pub maxnames: i32,
        /// Flags.
        pub flags: u32,
    }

    /// NODE_DEVICE_LIST_CAPS arguments.
    #[derive(Eq)]
    pub struct NodeDeviceListCapsArgs {
        /// Device name.
        pub name: String,
        /// Most names wanted.
        pub maxnames: i32,
    }

    /// CONNECT_LIST_ALL_INTERFACES reply.
    #[derive(Eq)]
    pub struct ConnectListAllInterfacesRet {
        /// The interfaces.
        pub ifaces: Vec<NonnullInterface> [max INTERFACE_LIST_MAX],
        /// The count.
        pub ret: u32,
    }

    /// CONNECT_LIST_ALL_SECRETS reply.
    #[derive(Eq)]
    pub struct ConnectListAllSecretsRet {
        /// The secrets.
        pub secrets: Vec<NonnullSecret> [max SECRET_LIST_MAX],
        /// The count.
        pub ret: u32,
    }

    /// SECRET_LOOKUP_BY_USAGE arguments.
    #[derive(Eq)]
    pub struct SecretLookupByUsageArgs {
        /// `virSecretUsageType`.
        pub usage_type: i32,
        /// Usage id.
        pub usage_id: String,
    }

    /// SECRET_SET_VALUE arguments.
    #[derive(Eq)]
    pub struct SecretSetValueArgs {
        /// The secret.
        pub secret: NonnullSecret,
        /// The value.
        pub value: Vec<u8> [max SECRET_VALUE_MAX],
        /// Flags.
        pub flags: u32,
    }

    /// SECRET_GET_VALUE reply.
    #[derive(Eq)]
    pub struct SecretGetValueRet {
        /// The value.
        pub value: Vec<u8> [max SECRET_VALUE_MAX],
    }
}

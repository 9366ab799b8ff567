//! The structs the REMOTE protocol shares between procedures: object references
//! (`remote_nonnull_*`), typed parameters, the error payload and the auth types, plus
//! the list-size limits of `remote_protocol.x`.
//!
//! Object references carry a name and usually a UUID; daemons should find objects by
//! UUID and treat the name (and a domain's id) as informative. The `Option<..>` of a
//! reference is the protocol's nullable form (`remote_domain`, `remote_network`, ...).
//!
//! [`RemoteError`] converts to and from [`vireo_messages::VirError`], and
//! [`TypedParam`] to and from [`vireo_messages::TypedParam`], so the rest of Vireo never
//! sees wire types.

use bytes::{BufMut, BytesMut};
use uuid::Uuid;
use vireo_messages::{DomainId, ErrorCode, ErrorDomain, VirError};

use crate::xdr::{Decoder, XdrDecode, XdrEncode, XdrError};

/// Limits on list sizes and buffers (`REMOTE_*_MAX` in `remote_protocol.x`). Decoders
/// enforce them as sanity limits; encoders must not exceed them because libvirt's
/// clients reject longer lists.
pub mod limits {
    /// Longest string (`REMOTE_STRING_MAX`).
    pub const STRING_MAX: u32 = crate::xdr::STRING_MAX;
    /// Domains in a list (`REMOTE_DOMAIN_LIST_MAX`).
    pub const DOMAIN_LIST_MAX: u32 = 16384;
    /// Bytes of a cpumap (`REMOTE_CPUMAP_MAX`).
    pub const CPUMAP_MAX: u32 = 2048;
    /// Entries of GET_VCPUS (`REMOTE_VCPUINFO_MAX`).
    pub const VCPUINFO_MAX: u32 = 16384;
    /// Bytes of GET_VCPUS cpumaps (`REMOTE_CPUMAPS_MAX`).
    pub const CPUMAPS_MAX: u32 = 8_388_608;
    /// Networks in a list (`REMOTE_NETWORK_LIST_MAX`).
    pub const NETWORK_LIST_MAX: u32 = 16384;
    /// Interfaces in a list (`REMOTE_INTERFACE_LIST_MAX`).
    pub const INTERFACE_LIST_MAX: u32 = 16384;
    /// Storage pools in a list (`REMOTE_STORAGE_POOL_LIST_MAX`; 4096 in older releases).
    pub const STORAGE_POOL_LIST_MAX: u32 = 16384;
    /// Storage volumes in a list (`REMOTE_STORAGE_VOL_LIST_MAX`).
    pub const STORAGE_VOL_LIST_MAX: u32 = 16384;
    /// Node devices in a list (`REMOTE_NODE_DEVICE_LIST_MAX`).
    pub const NODE_DEVICE_LIST_MAX: u32 = 65536;
    /// Capabilities of a node device (`REMOTE_NODE_DEVICE_CAPS_LIST_MAX`).
    pub const NODE_DEVICE_CAPS_LIST_MAX: u32 = 65536;
    /// Network filters in a list (`REMOTE_NWFILTER_LIST_MAX`).
    pub const NWFILTER_LIST_MAX: u32 = 16384;
    /// Secrets in a list (`REMOTE_SECRET_LIST_MAX`).
    pub const SECRET_LIST_MAX: u32 = 16384;
    /// Snapshots in a list (`REMOTE_DOMAIN_SNAPSHOT_LIST_MAX`; 1024 in older releases).
    pub const DOMAIN_SNAPSHOT_LIST_MAX: u32 = 16384;
    /// Checkpoints in a list (`REMOTE_DOMAIN_CHECKPOINT_LIST_MAX`).
    pub const DOMAIN_CHECKPOINT_LIST_MAX: u32 = 16384;
    /// NUMA cells (`REMOTE_NODE_MAX_CELLS`).
    pub const NODE_MAX_CELLS: u32 = 1024;
    /// Bytes of SASL data (`REMOTE_AUTH_SASL_DATA_MAX`).
    pub const AUTH_SASL_DATA_MAX: u32 = 65536;
    /// Auth types offered (`REMOTE_AUTH_TYPE_LIST_MAX`).
    pub const AUTH_TYPE_LIST_MAX: u32 = 20;
    /// Chars of a security model, including the NUL (`VIR_SECURITY_MODEL_BUFLEN`).
    pub const SECURITY_MODEL_MAX: u32 = 257;
    /// Chars of a security DOI, including the NUL (`VIR_SECURITY_DOI_BUFLEN`).
    pub const SECURITY_DOI_MAX: u32 = 257;
    /// Chars of a security label, including the NUL (`VIR_SECURITY_LABEL_BUFLEN`).
    pub const SECURITY_LABEL_MAX: u32 = 4097;
    /// Security labels in a list (`REMOTE_SECURITY_LABEL_LIST_MAX`).
    pub const SECURITY_LABEL_LIST_MAX: u32 = 64;
    /// Bytes of a secret value (`REMOTE_SECRET_VALUE_MAX`).
    pub const SECRET_VALUE_MAX: u32 = 65536;
    /// Messages of DOMAIN_GET_MESSAGES (`REMOTE_DOMAIN_MESSAGES_MAX`).
    pub const DOMAIN_MESSAGES_MAX: u32 = 2048;
    /// Scheduler parameters (`REMOTE_DOMAIN_SCHEDULER_PARAMETERS_MAX`).
    pub const DOMAIN_SCHEDULER_PARAMETERS_MAX: u32 = 16;
    /// Blkio parameters (`REMOTE_DOMAIN_BLKIO_PARAMETERS_MAX`).
    pub const DOMAIN_BLKIO_PARAMETERS_MAX: u32 = 16;
    /// Memory parameters (`REMOTE_DOMAIN_MEMORY_PARAMETERS_MAX`).
    pub const DOMAIN_MEMORY_PARAMETERS_MAX: u32 = 16;
    /// NUMA parameters (`REMOTE_DOMAIN_NUMA_PARAMETERS_MAX`).
    pub const DOMAIN_NUMA_PARAMETERS_MAX: u32 = 16;
    /// Block I/O tuning parameters (`REMOTE_DOMAIN_BLOCK_IO_TUNE_PARAMETERS_MAX`).
    pub const DOMAIN_BLOCK_IO_TUNE_PARAMETERS_MAX: u32 = 32;
    /// Interface parameters (`REMOTE_DOMAIN_INTERFACE_PARAMETERS_MAX`).
    pub const DOMAIN_INTERFACE_PARAMETERS_MAX: u32 = 16;
    /// Block stats parameters (`REMOTE_DOMAIN_BLOCK_STATS_PARAMETERS_MAX`).
    pub const DOMAIN_BLOCK_STATS_PARAMETERS_MAX: u32 = 16;
    /// Memory stats (`REMOTE_DOMAIN_MEMORY_STATS_MAX`).
    pub const DOMAIN_MEMORY_STATS_MAX: u32 = 1024;
    /// Node memory parameters (`REMOTE_NODE_MEMORY_PARAMETERS_MAX`).
    pub const NODE_MEMORY_PARAMETERS_MAX: u32 = 64;
    /// Node CPU stats (`REMOTE_NODE_CPU_STATS_MAX`).
    pub const NODE_CPU_STATS_MAX: u32 = 16;
    /// Node memory stats (`REMOTE_NODE_MEMORY_STATS_MAX`).
    pub const NODE_MEMORY_STATS_MAX: u32 = 16;
    /// Job statistics (`REMOTE_DOMAIN_JOB_STATS_MAX`).
    pub const DOMAIN_JOB_STATS_MAX: u32 = 64;
    /// Parameters of a TUNABLE event (`REMOTE_DOMAIN_EVENT_TUNABLE_MAX`).
    pub const DOMAIN_EVENT_TUNABLE_MAX: u32 = 2048;
    /// Subject identities of a GRAPHICS event (`REMOTE_DOMAIN_EVENT_GRAPHICS_IDENTITY_MAX`).
    pub const DOMAIN_EVENT_GRAPHICS_IDENTITY_MAX: u32 = 20;
    /// Disks with errors (`REMOTE_DOMAIN_DISK_ERRORS_MAX`).
    pub const DOMAIN_DISK_ERRORS_MAX: u32 = 256;
    /// Bytes of a migration cookie (`REMOTE_MIGRATE_COOKIE_MAX`).
    pub const MIGRATE_COOKIE_MAX: u32 = 4_194_304;
}

crate::xdr_struct! {
    /// `remote_nonnull_domain`: a domain reference. `id` is -1 when not running.
    #[derive(Eq, Hash)]
    pub struct NonnullDomain {
        /// Name (informative; find the domain by uuid).
        pub name: String,
        /// UUID.
        pub uuid: Uuid,
        /// The id while running, -1 otherwise.
        pub id: i32,
    }

    /// `remote_nonnull_network`.
    #[derive(Eq, Hash)]
    pub struct NonnullNetwork {
        /// Name.
        pub name: String,
        /// UUID.
        pub uuid: Uuid,
    }

    /// `remote_nonnull_network_port`.
    #[derive(Eq, Hash)]
    pub struct NonnullNetworkPort {
        /// The network the port belongs to.
        pub net: NonnullNetwork,
        /// The port's UUID.
        pub uuid: Uuid,
    }

    /// `remote_nonnull_nwfilter`.
    #[derive(Eq, Hash)]
    pub struct NonnullNwfilter {
        /// Name.
        pub name: String,
        /// UUID.
        pub uuid: Uuid,
    }

    /// `remote_nonnull_nwfilter_binding`.
    #[derive(Eq, Hash)]
    pub struct NonnullNwfilterBinding {
        /// The port device.
        pub portdev: String,
        /// The filter's name.
        pub filtername: String,
    }

    /// `remote_nonnull_interface`: host interfaces are known by name and MAC.
    #[derive(Eq, Hash)]
    pub struct NonnullInterface {
        /// Name.
        pub name: String,
        /// MAC address as text.
        pub mac: String,
    }

    /// `remote_nonnull_storage_pool`.
    #[derive(Eq, Hash)]
    pub struct NonnullStoragePool {
        /// Name.
        pub name: String,
        /// UUID.
        pub uuid: Uuid,
    }

    /// `remote_nonnull_storage_vol`.
    #[derive(Eq, Hash)]
    pub struct NonnullStorageVol {
        /// The pool's *name*.
        pub pool: String,
        /// The volume's name.
        pub name: String,
        /// The volume key (dir pools use the target path).
        pub key: String,
    }

    /// `remote_nonnull_node_device`: node devices are known by name only.
    #[derive(Eq, Hash)]
    pub struct NonnullNodeDevice {
        /// Name.
        pub name: String,
    }

    /// `remote_nonnull_secret`.
    #[derive(Eq, Hash)]
    pub struct NonnullSecret {
        /// UUID.
        pub uuid: Uuid,
        /// `virSecretUsageType`: 0 NONE, 1 VOLUME, 2 CEPH, 3 ISCSI, 4 TLS, 5 VTPM.
        pub usage_type: i32,
        /// The usage id (volume path, ceph name, ...).
        pub usage_id: String,
    }

    /// `remote_nonnull_domain_snapshot`.
    #[derive(Eq, Hash)]
    pub struct NonnullDomainSnapshot {
        /// The snapshot's name.
        pub name: String,
        /// Its domain.
        pub dom: NonnullDomain,
    }

    /// `remote_nonnull_domain_checkpoint`.
    #[derive(Eq, Hash)]
    pub struct NonnullDomainCheckpoint {
        /// The checkpoint's name.
        pub name: String,
        /// Its domain.
        pub dom: NonnullDomain,
    }

    /// `remote_vcpu_info` (`virVcpuInfo`).
    #[derive(Eq, Hash)]
    pub struct VcpuInfo {
        /// Virtual CPU number.
        pub number: u32,
        /// 0 OFFLINE, 1 RUNNING, 2 BLOCKED.
        pub state: i32,
        /// CPU time used, in nanoseconds.
        pub cpu_time: u64,
        /// Host CPU it runs on, or -1.
        pub cpu: i32,
    }

    /// `remote_node_get_cpu_stats` / `remote_node_get_memory_stats`: a named counter.
    #[derive(Eq, Hash)]
    pub struct NodeStat {
        /// Counter name.
        pub field: String,
        /// Value.
        pub value: u64,
    }

    /// `remote_domain_disk_error`.
    #[derive(Eq, Hash)]
    pub struct DomainDiskError {
        /// Disk target.
        pub disk: String,
        /// `virDomainDiskErrorCode`.
        pub error: i32,
    }

    /// `remote_typed_param`: a named typed value.
    pub struct TypedParam {
        /// Parameter name.
        pub field: String,
        /// Its value.
        pub value: TypedParamValue,
    }
}

impl NonnullDomain {
    /// A domain reference; `id` is `None` for an inactive domain (sent as -1).
    pub fn new(name: impl Into<String>, uuid: Uuid, id: Option<DomainId>) -> NonnullDomain {
        NonnullDomain {
            name: name.into(),
            uuid,
            id: DomainId::wire(id),
        }
    }

    /// The id, if the reference says the domain is running.
    pub fn domain_id(&self) -> Option<DomainId> {
        u32::try_from(self.id).ok().map(DomainId)
    }
}

/// `remote_typed_param_value`: the union of typed parameter values, discriminated by
/// `VIR_TYPED_PARAM_*` (1 INT .. 7 STRING).
#[derive(Debug, Clone, PartialEq)]
pub enum TypedParamValue {
    /// 1: `int`.
    Int(i32),
    /// 2: `unsigned int`.
    UInt(u32),
    /// 3: `hyper`.
    LLong(i64),
    /// 4: `unsigned hyper`.
    ULLong(u64),
    /// 5: `double`.
    Double(f64),
    /// 6: boolean, sent as an `int`.
    Boolean(i32),
    /// 7: string.
    String(String),
}

impl TypedParamValue {
    /// The discriminant (`VIR_TYPED_PARAM_*`).
    pub fn type_code(&self) -> i32 {
        match self {
            TypedParamValue::Int(_) => 1,
            TypedParamValue::UInt(_) => 2,
            TypedParamValue::LLong(_) => 3,
            TypedParamValue::ULLong(_) => 4,
            TypedParamValue::Double(_) => 5,
            TypedParamValue::Boolean(_) => 6,
            TypedParamValue::String(_) => 7,
        }
    }
}

impl XdrEncode for TypedParamValue {
    fn encode(&self, out: &mut BytesMut) {
        out.put_i32(self.type_code());
        match self {
            TypedParamValue::Int(v) | TypedParamValue::Boolean(v) => v.encode(out),
            TypedParamValue::UInt(v) => v.encode(out),
            TypedParamValue::LLong(v) => v.encode(out),
            TypedParamValue::ULLong(v) => v.encode(out),
            TypedParamValue::Double(v) => v.encode(out),
            TypedParamValue::String(v) => v.encode(out),
        }
    }
}

impl XdrDecode for TypedParamValue {
    const MIN_LEN: usize = 8;
    fn decode(buf: &mut Decoder<'_>) -> Result<TypedParamValue, XdrError> {
        Ok(match buf.read_i32()? {
            1 => TypedParamValue::Int(buf.decode()?),
            2 => TypedParamValue::UInt(buf.decode()?),
            3 => TypedParamValue::LLong(buf.decode()?),
            4 => TypedParamValue::ULLong(buf.decode()?),
            5 => TypedParamValue::Double(buf.decode()?),
            6 => TypedParamValue::Boolean(buf.decode()?),
            7 => TypedParamValue::String(buf.decode()?),
            value => {
                return Err(XdrError::UnknownDiscriminant {
                    what: "remote_typed_param_value",
                    value,
                });
            }
        })
    }
}

impl From<vireo_messages::TypedValue> for TypedParamValue {
    fn from(v: vireo_messages::TypedValue) -> TypedParamValue {
        use vireo_messages::TypedValue as T;
        match v {
            T::Int(x) => TypedParamValue::Int(x),
            T::UInt(x) => TypedParamValue::UInt(x),
            T::LLong(x) => TypedParamValue::LLong(x),
            T::ULLong(x) => TypedParamValue::ULLong(x),
            T::Double(x) => TypedParamValue::Double(x),
            T::Boolean(x) => TypedParamValue::Boolean(i32::from(x)),
            T::String(x) => TypedParamValue::String(x),
        }
    }
}

impl From<TypedParamValue> for vireo_messages::TypedValue {
    fn from(v: TypedParamValue) -> vireo_messages::TypedValue {
        use vireo_messages::TypedValue as T;
        match v {
            TypedParamValue::Int(x) => T::Int(x),
            TypedParamValue::UInt(x) => T::UInt(x),
            TypedParamValue::LLong(x) => T::LLong(x),
            TypedParamValue::ULLong(x) => T::ULLong(x),
            TypedParamValue::Double(x) => T::Double(x),
            TypedParamValue::Boolean(x) => T::Boolean(x != 0),
            TypedParamValue::String(x) => T::String(x),
        }
    }
}

impl From<vireo_messages::TypedParam> for TypedParam {
    fn from(p: vireo_messages::TypedParam) -> TypedParam {
        TypedParam {
            field: p.name,
            value: p.value.into(),
        }
    }
}

impl From<&vireo_messages::TypedParam> for TypedParam {
    fn from(p: &vireo_messages::TypedParam) -> TypedParam {
        p.clone().into()
    }
}

impl From<TypedParam> for vireo_messages::TypedParam {
    fn from(p: TypedParam) -> vireo_messages::TypedParam {
        vireo_messages::TypedParam {
            name: p.field,
            value: p.value.into(),
        }
    }
}

/// Converts a list of typed parameters to their wire form.
pub fn typed_params_to_wire(params: &[vireo_messages::TypedParam]) -> Vec<TypedParam> {
    params.iter().map(TypedParam::from).collect()
}

/// Converts wire typed parameters to Vireo's.
pub fn typed_params_from_wire(params: Vec<TypedParam>) -> Vec<vireo_messages::TypedParam> {
    params.into_iter().map(Into::into).collect()
}

crate::xdr_enum! {
    /// `remote_auth_type`: what AUTH_LIST offers.
    pub enum AuthType {
        /// No authentication.
        None = 0,
        /// SASL (AUTH_SASL_INIT/START/STEP).
        Sasl = 1,
        /// PolicyKit (AUTH_POLKIT).
        Polkit = 2,
    }
}

/// `virErrorLevel` of an error: what libvirt puts in `remote_error.level`.
pub const ERROR_LEVEL_ERROR: i32 = vireo_messages::error::LEVEL_ERROR;

crate::xdr_struct! {
    /// `remote_error`: the payload of a failed REPLY and of a STREAM ERROR packet.
    ///
    /// A minimal correct error is `code, domain, message=present, level=2, dom=NULL,
    /// str1=present, str2=NULL-or-detail, str3=NULL, int1=-1, int2=-1, net=NULL`; the
    /// conversion from [`VirError`] produces exactly that.
    #[derive(Eq)]
    pub struct RemoteError {
        /// `virErrorNumber`.
        pub code: i32,
        /// `virErrorDomain`.
        pub domain: i32,
        /// The complete message.
        pub message: Option<String>,
        /// `virErrorLevel`: 2 = ERROR.
        pub level: i32,
        /// Always NULL in modern daemons.
        pub dom: Option<NonnullDomain>,
        /// The message template (or the bare text).
        pub str1: Option<String>,
        /// The substituted detail.
        pub str2: Option<String>,
        /// Unused.
        pub str3: Option<String>,
        /// errno for system errors, else -1.
        pub int1: i32,
        /// -1.
        pub int2: i32,
        /// Always NULL.
        pub net: Option<NonnullNetwork>,
    }
}

impl From<&VirError> for RemoteError {
    fn from(e: &VirError) -> RemoteError {
        RemoteError {
            code: e.code as i32,
            domain: e.domain as i32,
            message: Some(e.message.clone()),
            level: ERROR_LEVEL_ERROR,
            dom: None,
            str1: e.str1.clone(),
            str2: e.str2.clone(),
            str3: e.str3.clone(),
            int1: e.int1,
            int2: e.int2,
            net: None,
        }
    }
}

impl From<VirError> for RemoteError {
    fn from(e: VirError) -> RemoteError {
        RemoteError::from(&e)
    }
}

/// Unknown codes become `InternalError` and unknown domains `None` (the conversions of
/// `vireo_messages`); a missing message becomes the code's bare text.
impl From<RemoteError> for VirError {
    fn from(e: RemoteError) -> VirError {
        let code = ErrorCode::from_i32(e.code);
        VirError {
            code,
            domain: ErrorDomain::from_i32(e.domain),
            message: e.message.unwrap_or_else(|| code.bare_text().to_string()),
            str1: e.str1,
            str2: e.str2,
            str3: e.str3,
            int1: e.int1,
            int2: e.int2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdr::{from_bytes, from_bytes_exact, to_bytes};

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn test_uuid() -> Uuid {
        Uuid::parse_str("6695eb01-f6a4-8304-79aa-97f2502e193f").unwrap()
    }

    #[test]
    fn domain_reference_golden() {
        // §5: {name "test", uuid 6695eb01-..., id 1}.
        let golden = unhex("00000004 74657374 6695eb01f6a4830479aa97f2502e193f 00000001");
        let dom = NonnullDomain::new("test", test_uuid(), Some(DomainId(1)));
        assert_eq!(to_bytes(&dom).to_vec(), golden);
        assert_eq!(from_bytes_exact::<NonnullDomain>(&golden).unwrap(), dom);
        // Inactive: id -1.
        let inactive = NonnullDomain::new("test", test_uuid(), None);
        assert!(to_bytes(&inactive).ends_with(&[0xff, 0xff, 0xff, 0xff]));
        assert_eq!(inactive.domain_id(), None);
        assert_eq!(dom.domain_id(), Some(DomainId(1)));
        assert_eq!(<NonnullDomain as XdrDecode>::MIN_LEN, 24);
    }

    #[test]
    fn other_references_round_trip() {
        let vol = NonnullStorageVol {
            pool: "default-pool".into(),
            name: "v.img".into(),
            key: "/pool/v.img".into(),
        };
        assert_eq!(
            from_bytes_exact::<NonnullStorageVol>(&to_bytes(&vol)).unwrap(),
            vol
        );
        let secret = NonnullSecret {
            uuid: test_uuid(),
            usage_type: 1,
            usage_id: "/var/lib/x".into(),
        };
        assert_eq!(
            from_bytes_exact::<NonnullSecret>(&to_bytes(&secret)).unwrap(),
            secret
        );
        let snap = NonnullDomainSnapshot {
            name: "s1".into(),
            dom: NonnullDomain::new("test", test_uuid(), Some(DomainId(1))),
        };
        assert_eq!(
            from_bytes_exact::<NonnullDomainSnapshot>(&to_bytes(&snap)).unwrap(),
            snap
        );
        let port = NonnullNetworkPort {
            net: NonnullNetwork {
                name: "default".into(),
                uuid: test_uuid(),
            },
            uuid: Uuid::nil(),
        };
        assert_eq!(
            from_bytes_exact::<NonnullNetworkPort>(&to_bytes(&port)).unwrap(),
            port
        );
    }

    #[test]
    fn domain_not_found_error_golden() {
        // §7.1: the 84-byte payload of the 9.0 test driver's "no such domain".
        let golden = unhex(
            "0000002a 0000000c 00000001 00000010 446f6d61696e206e6f7420666f756e64
             00000002 00000000 00000001 00000010 446f6d61696e206e6f7420666f756e64
             00000000 00000000 ffffffff ffffffff 00000000",
        );
        assert_eq!(golden.len(), 84);
        let decoded: RemoteError = from_bytes_exact(&golden).unwrap();
        assert_eq!(decoded.code, 42);
        assert_eq!(decoded.domain, 12);
        assert_eq!(decoded.message.as_deref(), Some("Domain not found"));
        assert_eq!(to_bytes(&decoded).to_vec(), golden);

        // The same bytes come out of Vireo's error.
        let vir = VirError::bare(ErrorCode::NoDomain, ErrorDomain::Test);
        assert_eq!(to_bytes(&RemoteError::from(&vir)).to_vec(), golden);
        assert_eq!(VirError::from(decoded), vir);
    }

    #[test]
    fn detailed_error_round_trips_through_vir_error() {
        let vir = VirError::operation_invalid(ErrorDomain::Domain, "domain is not running");
        let wire = RemoteError::from(&vir);
        assert_eq!(wire.str2.as_deref(), Some("domain is not running"));
        let back: RemoteError = from_bytes_exact(&to_bytes(&wire)).unwrap();
        assert_eq!(VirError::from(back), vir);
        // Missing message: the code's bare text.
        let mut bare = RemoteError::from(&vir);
        bare.message = None;
        assert_eq!(
            VirError::from(bare).message,
            "Requested operation is not valid"
        );
    }

    #[test]
    fn typed_params() {
        let params = vec![
            vireo_messages::TypedParam::new("i", vireo_messages::TypedValue::Int(-3)),
            vireo_messages::TypedParam::new("u", vireo_messages::TypedValue::UInt(3)),
            vireo_messages::TypedParam::new("l", vireo_messages::TypedValue::LLong(-1 << 40)),
            vireo_messages::TypedParam::new("ul", vireo_messages::TypedValue::ULLong(1 << 40)),
            vireo_messages::TypedParam::new("d", vireo_messages::TypedValue::Double(0.25)),
            vireo_messages::TypedParam::new("b", vireo_messages::TypedValue::Boolean(true)),
            vireo_messages::TypedParam::new("s", vireo_messages::TypedValue::String("text".into())),
        ];
        let wire = typed_params_to_wire(&params);
        let bytes = to_bytes(&wire);
        let back: Vec<TypedParam> = from_bytes_exact(&bytes).unwrap();
        assert_eq!(typed_params_from_wire(back), params);

        // weight = uint 500: name, discriminant 2, value.
        let one = TypedParam {
            field: "weight".into(),
            value: TypedParamValue::UInt(500),
        };
        assert_eq!(
            to_bytes(&one).to_vec(),
            unhex("00000006 776569676874 0000 00000002 000001f4")
        );
        // Unknown discriminant.
        let bad = unhex("00000001 78000000 00000008 00000000");
        assert_eq!(
            from_bytes::<TypedParam>(&bad),
            Err(XdrError::UnknownDiscriminant {
                what: "remote_typed_param_value",
                value: 8
            })
        );
        // Booleans other than 0 mean true.
        let b: TypedParam = from_bytes(&unhex("00000001 62000000 00000006 00000005")).unwrap();
        let vm: vireo_messages::TypedParam = b.into();
        assert_eq!(vm.value, vireo_messages::TypedValue::Boolean(true));
    }

    #[test]
    fn auth_types() {
        let types = vec![AuthType::None];
        assert_eq!(to_bytes(&types).to_vec(), unhex("00000001 00000000"));
        assert!(from_bytes::<AuthType>(&unhex("00000003")).is_err());
    }
}

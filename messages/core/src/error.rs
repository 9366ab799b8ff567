//! libvirt's error model: a code (`virErrorNumber`), the subsystem that raised it
//! (`virErrorDomain`) and a human message, plus the extra fields the RPC error struct
//! carries.
//!
//! Every failure that can reach a client is a [`VirError`]. Messages follow libvirt's
//! templates ("Requested operation is not valid: %s") so that `virsh` prints what users
//! already know; clients branch on the code, never on the text.

/// libvirt's `virErrorNumber`. The discriminant is the wire value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
#[allow(missing_docs)]
pub enum ErrorCode {
    Ok = 0,
    InternalError = 1,
    NoMemory = 2,
    NoSupport = 3,
    UnknownHost = 4,
    NoConnect = 5,
    InvalidConn = 6,
    InvalidDomain = 7,
    InvalidArg = 8,
    OperationFailed = 9,
    GetFailed = 10,
    PostFailed = 11,
    HttpError = 12,
    SexprSerial = 13,
    NoXen = 14,
    XenCall = 15,
    OsType = 16,
    NoKernel = 17,
    NoRoot = 18,
    NoSource = 19,
    NoTarget = 20,
    NoName = 21,
    NoOs = 22,
    NoDevice = 23,
    NoXenstore = 24,
    DriverFull = 25,
    CallFailed = 26,
    XmlError = 27,
    DomExist = 28,
    OperationDenied = 29,
    OpenFailed = 30,
    ReadFailed = 31,
    ParseFailed = 32,
    ConfSyntax = 33,
    WriteFailed = 34,
    XmlDetail = 35,
    InvalidNetwork = 36,
    NetworkExist = 37,
    SystemError = 38,
    Rpc = 39,
    GnutlsError = 40,
    WarNoNetwork = 41,
    NoDomain = 42,
    NoNetwork = 43,
    InvalidMac = 44,
    AuthFailed = 45,
    InvalidStoragePool = 46,
    InvalidStorageVol = 47,
    WarNoStorage = 48,
    NoStoragePool = 49,
    NoStorageVol = 50,
    WarNoNode = 51,
    InvalidNodeDevice = 52,
    NoNodeDevice = 53,
    NoSecurityModel = 54,
    OperationInvalid = 55,
    WarNoInterface = 56,
    NoInterface = 57,
    InvalidInterface = 58,
    MultipleInterfaces = 59,
    WarNoNwfilter = 60,
    InvalidNwfilter = 61,
    NoNwfilter = 62,
    BuildFirewall = 63,
    WarNoSecret = 64,
    InvalidSecret = 65,
    NoSecret = 66,
    ConfigUnsupported = 67,
    OperationTimeout = 68,
    MigratePersistFailed = 69,
    HookScriptFailed = 70,
    InvalidDomainSnapshot = 71,
    NoDomainSnapshot = 72,
    InvalidStream = 73,
    ArgumentUnsupported = 74,
    StorageProbeFailed = 75,
    StoragePoolBuilt = 76,
    SnapshotRevertRisky = 77,
    OperationAborted = 78,
    AuthCancelled = 79,
    NoDomainMetadata = 80,
    MigrateUnsafe = 81,
    Overflow = 82,
    BlockCopyActive = 83,
    OperationUnsupported = 84,
    Ssh = 85,
    AgentUnresponsive = 86,
    ResourceBusy = 87,
    AccessDenied = 88,
    DbusService = 89,
    StorageVolExist = 90,
    CpuIncompatible = 91,
    XmlInvalidSchema = 92,
    MigrateFinishOk = 93,
    AuthUnavailable = 94,
    NoServer = 95,
    NoClient = 96,
    AgentUnsynced = 97,
    Libssh = 98,
    DeviceMissing = 99,
    InvalidNwfilterBinding = 100,
    NoNwfilterBinding = 101,
    InvalidDomainCheckpoint = 102,
    NoDomainCheckpoint = 103,
    NoDomainBackup = 104,
    InvalidNetworkPort = 105,
    NetworkPortExist = 106,
    NoNetworkPort = 107,
    NoHostname = 108,
    CheckpointInconsistent = 109,
    MultipleDomains = 110,
    NoNetworkMetadata = 111,
    AgentCommandTimeout = 112,
    AgentCommandFailed = 113,
}

impl ErrorCode {
    /// Converts a wire value back to a code; unknown values become `InternalError`.
    pub fn from_i32(v: i32) -> ErrorCode {
        match v {
            0 => ErrorCode::Ok,
            1 => ErrorCode::InternalError,
            2 => ErrorCode::NoMemory,
            3 => ErrorCode::NoSupport,
            4 => ErrorCode::UnknownHost,
            5 => ErrorCode::NoConnect,
            6 => ErrorCode::InvalidConn,
            7 => ErrorCode::InvalidDomain,
            8 => ErrorCode::InvalidArg,
            9 => ErrorCode::OperationFailed,
            10 => ErrorCode::GetFailed,
            11 => ErrorCode::PostFailed,
            12 => ErrorCode::HttpError,
            13 => ErrorCode::SexprSerial,
            14 => ErrorCode::NoXen,
            15 => ErrorCode::XenCall,
            16 => ErrorCode::OsType,
            17 => ErrorCode::NoKernel,
            18 => ErrorCode::NoRoot,
            19 => ErrorCode::NoSource,
            20 => ErrorCode::NoTarget,
            21 => ErrorCode::NoName,
            22 => ErrorCode::NoOs,
            23 => ErrorCode::NoDevice,
            24 => ErrorCode::NoXenstore,
            25 => ErrorCode::DriverFull,
            26 => ErrorCode::CallFailed,
            27 => ErrorCode::XmlError,
            28 => ErrorCode::DomExist,
            29 => ErrorCode::OperationDenied,
            30 => ErrorCode::OpenFailed,
            31 => ErrorCode::ReadFailed,
            32 => ErrorCode::ParseFailed,
            33 => ErrorCode::ConfSyntax,
            34 => ErrorCode::WriteFailed,
            35 => ErrorCode::XmlDetail,
            36 => ErrorCode::InvalidNetwork,
            37 => ErrorCode::NetworkExist,
            38 => ErrorCode::SystemError,
            39 => ErrorCode::Rpc,
            40 => ErrorCode::GnutlsError,
            41 => ErrorCode::WarNoNetwork,
            42 => ErrorCode::NoDomain,
            43 => ErrorCode::NoNetwork,
            44 => ErrorCode::InvalidMac,
            45 => ErrorCode::AuthFailed,
            46 => ErrorCode::InvalidStoragePool,
            47 => ErrorCode::InvalidStorageVol,
            48 => ErrorCode::WarNoStorage,
            49 => ErrorCode::NoStoragePool,
            50 => ErrorCode::NoStorageVol,
            51 => ErrorCode::WarNoNode,
            52 => ErrorCode::InvalidNodeDevice,
            53 => ErrorCode::NoNodeDevice,
            54 => ErrorCode::NoSecurityModel,
            55 => ErrorCode::OperationInvalid,
            56 => ErrorCode::WarNoInterface,
            57 => ErrorCode::NoInterface,
            58 => ErrorCode::InvalidInterface,
            59 => ErrorCode::MultipleInterfaces,
            60 => ErrorCode::WarNoNwfilter,
            61 => ErrorCode::InvalidNwfilter,
            62 => ErrorCode::NoNwfilter,
            63 => ErrorCode::BuildFirewall,
            64 => ErrorCode::WarNoSecret,
            65 => ErrorCode::InvalidSecret,
            66 => ErrorCode::NoSecret,
            67 => ErrorCode::ConfigUnsupported,
            68 => ErrorCode::OperationTimeout,
            69 => ErrorCode::MigratePersistFailed,
            70 => ErrorCode::HookScriptFailed,
            71 => ErrorCode::InvalidDomainSnapshot,
            72 => ErrorCode::NoDomainSnapshot,
            73 => ErrorCode::InvalidStream,
            74 => ErrorCode::ArgumentUnsupported,
            75 => ErrorCode::StorageProbeFailed,
            76 => ErrorCode::StoragePoolBuilt,
            77 => ErrorCode::SnapshotRevertRisky,
            78 => ErrorCode::OperationAborted,
            79 => ErrorCode::AuthCancelled,
            80 => ErrorCode::NoDomainMetadata,
            81 => ErrorCode::MigrateUnsafe,
            82 => ErrorCode::Overflow,
            83 => ErrorCode::BlockCopyActive,
            84 => ErrorCode::OperationUnsupported,
            85 => ErrorCode::Ssh,
            86 => ErrorCode::AgentUnresponsive,
            87 => ErrorCode::ResourceBusy,
            88 => ErrorCode::AccessDenied,
            89 => ErrorCode::DbusService,
            90 => ErrorCode::StorageVolExist,
            91 => ErrorCode::CpuIncompatible,
            92 => ErrorCode::XmlInvalidSchema,
            93 => ErrorCode::MigrateFinishOk,
            94 => ErrorCode::AuthUnavailable,
            95 => ErrorCode::NoServer,
            96 => ErrorCode::NoClient,
            97 => ErrorCode::AgentUnsynced,
            98 => ErrorCode::Libssh,
            99 => ErrorCode::DeviceMissing,
            100 => ErrorCode::InvalidNwfilterBinding,
            101 => ErrorCode::NoNwfilterBinding,
            102 => ErrorCode::InvalidDomainCheckpoint,
            103 => ErrorCode::NoDomainCheckpoint,
            104 => ErrorCode::NoDomainBackup,
            105 => ErrorCode::InvalidNetworkPort,
            106 => ErrorCode::NetworkPortExist,
            107 => ErrorCode::NoNetworkPort,
            108 => ErrorCode::NoHostname,
            109 => ErrorCode::CheckpointInconsistent,
            110 => ErrorCode::MultipleDomains,
            111 => ErrorCode::NoNetworkMetadata,
            112 => ErrorCode::AgentCommandTimeout,
            113 => ErrorCode::AgentCommandFailed,
            _ => ErrorCode::InternalError,
        }
    }

    /// The message libvirt uses when the error has no detail.
    pub fn bare_text(self) -> &'static str {
        match self {
            ErrorCode::InternalError => "internal error",
            ErrorCode::NoMemory => "out of memory",
            ErrorCode::NoSupport => "this function is not supported by the connection driver",
            ErrorCode::NoConnect => "no connection driver available",
            ErrorCode::InvalidConn => "invalid connection pointer in",
            ErrorCode::InvalidDomain => "invalid domain pointer in",
            ErrorCode::InvalidArg => "invalid argument",
            ErrorCode::OperationFailed => "operation failed",
            ErrorCode::XmlError => "XML description is invalid or not well formed",
            ErrorCode::DomExist => "this domain exists already",
            ErrorCode::OperationDenied => "operation forbidden for read only access",
            ErrorCode::XmlDetail => "parser error",
            ErrorCode::NetworkExist => "this network exists already",
            ErrorCode::SystemError => "system call error",
            ErrorCode::Rpc => "RPC error",
            ErrorCode::NoDomain => "Domain not found",
            ErrorCode::NoNetwork => "Network not found",
            ErrorCode::AuthFailed => "authentication failed",
            ErrorCode::NoStoragePool => "Storage pool not found",
            ErrorCode::NoStorageVol => "Storage volume not found",
            ErrorCode::NoNodeDevice => "Node device not found",
            ErrorCode::OperationInvalid => "Requested operation is not valid",
            ErrorCode::NoInterface => "Interface not found",
            ErrorCode::NoSecret => "Secret not found",
            ErrorCode::ConfigUnsupported => "unsupported configuration",
            ErrorCode::NoDomainSnapshot => "Domain snapshot not found",
            ErrorCode::InvalidStream => "invalid stream pointer",
            ErrorCode::ArgumentUnsupported => "argument unsupported",
            ErrorCode::NoDomainMetadata => "metadata not found",
            ErrorCode::OperationUnsupported => "Operation not supported",
            ErrorCode::AccessDenied => "access denied",
            ErrorCode::StorageVolExist => "this storage volume exists already",
            ErrorCode::XmlInvalidSchema => "XML document failed to validate against schema",
            ErrorCode::OperationTimeout => "Timed out during operation",
            ErrorCode::OperationAborted => "operation aborted",
            ErrorCode::ResourceBusy => "resource busy",
            ErrorCode::ReadFailed => "Failed to read file",
            ErrorCode::WriteFailed => "Failed to write file",
            _ => "error",
        }
    }

    /// The printf-style template libvirt uses when a detail is substituted (`%s`).
    pub fn template(self) -> &'static str {
        match self {
            ErrorCode::InternalError => "internal error: %s",
            ErrorCode::NoMemory => "out of memory: %s",
            ErrorCode::NoSupport => "this function is not supported by the connection driver: %s",
            ErrorCode::NoConnect => "no connection driver available for %s",
            ErrorCode::InvalidConn => "invalid connection pointer in %s",
            ErrorCode::InvalidDomain => "invalid domain pointer in %s",
            ErrorCode::InvalidArg => "invalid argument: %s",
            ErrorCode::OperationFailed => "operation failed: %s",
            ErrorCode::XmlError => "XML error: %s",
            ErrorCode::DomExist => "domain %s exists already",
            ErrorCode::OperationDenied => "operation forbidden: %s",
            ErrorCode::XmlDetail => "%s",
            ErrorCode::NetworkExist => "network %s exists already",
            ErrorCode::SystemError => "%s",
            ErrorCode::Rpc => "%s",
            ErrorCode::NoDomain => "Domain not found: %s",
            ErrorCode::NoNetwork => "Network not found: %s",
            ErrorCode::AuthFailed => "authentication failed: %s",
            ErrorCode::NoStoragePool => "Storage pool not found: %s",
            ErrorCode::NoStorageVol => "Storage volume not found: %s",
            ErrorCode::NoNodeDevice => "Node device not found: %s",
            ErrorCode::OperationInvalid => "Requested operation is not valid: %s",
            ErrorCode::NoInterface => "Interface not found: %s",
            ErrorCode::NoSecret => "Secret not found: %s",
            ErrorCode::ConfigUnsupported => "unsupported configuration: %s",
            ErrorCode::NoDomainSnapshot => "Domain snapshot not found: %s",
            ErrorCode::InvalidStream => "invalid stream pointer in %s",
            ErrorCode::ArgumentUnsupported => "argument unsupported: %s",
            ErrorCode::NoDomainMetadata => "metadata not found: %s",
            ErrorCode::OperationUnsupported => "Operation not supported: %s",
            ErrorCode::AccessDenied => "access denied: %s",
            ErrorCode::StorageVolExist => "storage volume %s exists already",
            ErrorCode::XmlInvalidSchema => "XML document failed to validate against schema: %s",
            ErrorCode::OperationTimeout => "Timed out during operation: %s",
            ErrorCode::OperationAborted => "operation aborted: %s",
            ErrorCode::ResourceBusy => "resource busy: %s",
            ErrorCode::ReadFailed => "Failed to read file: %s",
            ErrorCode::WriteFailed => "Failed to write file: %s",
            _ => "%s",
        }
    }
}

/// libvirt's `virErrorDomain`: which subsystem raised an error. The discriminant is the
/// wire value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
#[allow(missing_docs)]
pub enum ErrorDomain {
    None = 0,
    Xen = 1,
    Xend = 2,
    Xenstore = 3,
    Sexpr = 4,
    Xml = 5,
    Dom = 6,
    Rpc = 7,
    Proxy = 8,
    Conf = 9,
    Qemu = 10,
    Net = 11,
    Test = 12,
    Remote = 13,
    Openvz = 14,
    Xenxm = 15,
    StatsLinux = 16,
    Lxc = 17,
    Storage = 18,
    Network = 19,
    Domain = 20,
    Uml = 21,
    Nodedev = 22,
    XenInotify = 23,
    Security = 24,
    Vbox = 25,
    Interface = 26,
    One = 27,
    Esx = 28,
    Phyp = 29,
    Secret = 30,
    Cpu = 31,
    Xenapi = 32,
    Nwfilter = 33,
    Hook = 34,
    DomainSnapshot = 35,
    Audit = 36,
    Sysinfo = 37,
    Streams = 38,
    Vmware = 39,
    Event = 40,
    Libxl = 41,
    Locking = 42,
    Hyperv = 43,
    Capabilities = 44,
    Uri = 45,
    Auth = 46,
    Dbus = 47,
    Parallels = 48,
    Device = 49,
    Ssh = 50,
    Lockspace = 51,
    Initctl = 52,
    Identity = 53,
    Cgroup = 54,
    Access = 55,
    Systemd = 56,
    Bhyve = 57,
    Crypto = 58,
    Firewall = 59,
    Polkit = 60,
    Thread = 61,
    Admin = 62,
    Logging = 63,
    Xenxl = 64,
    Perf = 65,
    Libssh = 66,
    Resctrl = 67,
    Firewalld = 68,
    DomainCheckpoint = 69,
    Tpm = 70,
    Bpf = 71,
    Ch = 72,
}

impl ErrorDomain {
    /// Converts a wire value back to a domain; unknown values become `None`.
    pub fn from_i32(v: i32) -> ErrorDomain {
        match v {
            0 => ErrorDomain::None,
            1 => ErrorDomain::Xen,
            2 => ErrorDomain::Xend,
            3 => ErrorDomain::Xenstore,
            4 => ErrorDomain::Sexpr,
            5 => ErrorDomain::Xml,
            6 => ErrorDomain::Dom,
            7 => ErrorDomain::Rpc,
            8 => ErrorDomain::Proxy,
            9 => ErrorDomain::Conf,
            10 => ErrorDomain::Qemu,
            11 => ErrorDomain::Net,
            12 => ErrorDomain::Test,
            13 => ErrorDomain::Remote,
            14 => ErrorDomain::Openvz,
            15 => ErrorDomain::Xenxm,
            16 => ErrorDomain::StatsLinux,
            17 => ErrorDomain::Lxc,
            18 => ErrorDomain::Storage,
            19 => ErrorDomain::Network,
            20 => ErrorDomain::Domain,
            21 => ErrorDomain::Uml,
            22 => ErrorDomain::Nodedev,
            23 => ErrorDomain::XenInotify,
            24 => ErrorDomain::Security,
            25 => ErrorDomain::Vbox,
            26 => ErrorDomain::Interface,
            27 => ErrorDomain::One,
            28 => ErrorDomain::Esx,
            29 => ErrorDomain::Phyp,
            30 => ErrorDomain::Secret,
            31 => ErrorDomain::Cpu,
            32 => ErrorDomain::Xenapi,
            33 => ErrorDomain::Nwfilter,
            34 => ErrorDomain::Hook,
            35 => ErrorDomain::DomainSnapshot,
            36 => ErrorDomain::Audit,
            37 => ErrorDomain::Sysinfo,
            38 => ErrorDomain::Streams,
            39 => ErrorDomain::Vmware,
            40 => ErrorDomain::Event,
            41 => ErrorDomain::Libxl,
            42 => ErrorDomain::Locking,
            43 => ErrorDomain::Hyperv,
            44 => ErrorDomain::Capabilities,
            45 => ErrorDomain::Uri,
            46 => ErrorDomain::Auth,
            47 => ErrorDomain::Dbus,
            48 => ErrorDomain::Parallels,
            49 => ErrorDomain::Device,
            50 => ErrorDomain::Ssh,
            51 => ErrorDomain::Lockspace,
            52 => ErrorDomain::Initctl,
            53 => ErrorDomain::Identity,
            54 => ErrorDomain::Cgroup,
            55 => ErrorDomain::Access,
            56 => ErrorDomain::Systemd,
            57 => ErrorDomain::Bhyve,
            58 => ErrorDomain::Crypto,
            59 => ErrorDomain::Firewall,
            60 => ErrorDomain::Polkit,
            61 => ErrorDomain::Thread,
            62 => ErrorDomain::Admin,
            63 => ErrorDomain::Logging,
            64 => ErrorDomain::Xenxl,
            65 => ErrorDomain::Perf,
            66 => ErrorDomain::Libssh,
            67 => ErrorDomain::Resctrl,
            68 => ErrorDomain::Firewalld,
            69 => ErrorDomain::DomainCheckpoint,
            70 => ErrorDomain::Tpm,
            71 => ErrorDomain::Bpf,
            72 => ErrorDomain::Ch,
            _ => ErrorDomain::None,
        }
    }
}

/// The severity carried in the RPC error struct (`virErrorLevel`).
pub const LEVEL_ERROR: i32 = 2;

/// An error as libvirt reports it: code, subsystem, full message and the template and
/// detail it was built from.
///
/// `message` is what users see (virsh prints `error: <message>`); `str1` is the template
/// and `str2` the substituted detail, as libvirt sends them; `int1` carries `errno` for
/// [`ErrorCode::SystemError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct VirError {
    /// What went wrong, as libvirt numbers it.
    pub code: ErrorCode,
    /// The subsystem that raised it.
    pub domain: ErrorDomain,
    /// The complete human-readable message.
    pub message: String,
    /// The message template (or the bare text when there is no detail).
    pub str1: Option<String>,
    /// The detail substituted into the template.
    pub str2: Option<String>,
    /// Unused by the errors Vireo raises; kept for wire fidelity.
    pub str3: Option<String>,
    /// `errno` for system errors, otherwise -1.
    pub int1: i32,
    /// Always -1 for the errors Vireo raises.
    pub int2: i32,
}

/// Result alias for operations that fail with a libvirt error.
pub type VirResult<T> = Result<T, VirError>;

impl VirError {
    /// Builds an error the way libvirt does: with a detail, the message is the code's
    /// template with the detail substituted; without, it is the code's bare text.
    pub fn new(code: ErrorCode, domain: ErrorDomain, detail: Option<String>) -> VirError {
        match detail {
            Some(d) => {
                let template = code.template();
                VirError {
                    code,
                    domain,
                    message: template.replacen("%s", &d, 1),
                    str1: Some(template.to_string()),
                    str2: Some(d),
                    str3: None,
                    int1: -1,
                    int2: -1,
                }
            }
            None => {
                let bare = code.bare_text().to_string();
                VirError {
                    code,
                    domain,
                    message: bare.clone(),
                    str1: Some(bare),
                    str2: None,
                    str3: None,
                    int1: -1,
                    int2: -1,
                }
            }
        }
    }

    /// An error with a detail (the common case).
    pub fn with(code: ErrorCode, domain: ErrorDomain, detail: impl Into<String>) -> VirError {
        VirError::new(code, domain, Some(detail.into()))
    }

    /// An error without a detail: the message is the code's bare text.
    pub fn bare(code: ErrorCode, domain: ErrorDomain) -> VirError {
        VirError::new(code, domain, None)
    }

    /// A system error (code 38) whose message is `what: strerror(errno)` and whose
    /// `int1` is the errno, as libvirt reports failed system calls.
    pub fn system(domain: ErrorDomain, what: impl Into<String>, err: &std::io::Error) -> VirError {
        let errno = err.raw_os_error().unwrap_or(-1);
        let text = strip_os_error_suffix(&err.to_string());
        let mut e = VirError::with(
            ErrorCode::SystemError,
            domain,
            format!("{}: {}", what.into(), text),
        );
        e.int1 = errno;
        e
    }

    /// "this function is not supported by the connection driver: API" (code 3).
    pub fn no_support(domain: ErrorDomain, api: &str) -> VirError {
        VirError::with(ErrorCode::NoSupport, domain, api)
    }

    /// "unsupported flags (0x..) in function F" (code 8), for unknown flag bits.
    pub fn unsupported_flags(domain: ErrorDomain, flags: u32, function: &str) -> VirError {
        let detail = format!("unsupported flags (0x{flags:x}) in function {function}");
        // libvirt reports flag checks with the text alone, not the "invalid argument" prefix.
        let mut e = VirError::with(ErrorCode::InvalidArg, domain, detail.clone());
        e.message = detail;
        e.str1 = Some("%s".into());
        e
    }

    /// "Requested operation is not valid: DETAIL" (code 55).
    pub fn operation_invalid(domain: ErrorDomain, detail: impl Into<String>) -> VirError {
        VirError::with(ErrorCode::OperationInvalid, domain, detail)
    }

    /// "internal error: DETAIL" (code 1).
    pub fn internal(domain: ErrorDomain, detail: impl Into<String>) -> VirError {
        VirError::with(ErrorCode::InternalError, domain, detail)
    }

    /// "operation failed: DETAIL" (code 9).
    pub fn operation_failed(domain: ErrorDomain, detail: impl Into<String>) -> VirError {
        VirError::with(ErrorCode::OperationFailed, domain, detail)
    }

    /// "invalid argument: DETAIL" (code 8).
    pub fn invalid_arg(domain: ErrorDomain, detail: impl Into<String>) -> VirError {
        VirError::with(ErrorCode::InvalidArg, domain, detail)
    }

    /// "XML error: DETAIL" (code 27).
    pub fn xml(domain: ErrorDomain, detail: impl Into<String>) -> VirError {
        VirError::with(ErrorCode::XmlError, domain, detail)
    }

    /// "unsupported configuration: DETAIL" (code 67).
    pub fn config_unsupported(domain: ErrorDomain, detail: impl Into<String>) -> VirError {
        VirError::with(ErrorCode::ConfigUnsupported, domain, detail)
    }

    /// "operation forbidden: DETAIL" (code 29), e.g. a write on a read-only connection.
    pub fn operation_denied(domain: ErrorDomain, detail: impl Into<String>) -> VirError {
        VirError::with(ErrorCode::OperationDenied, domain, detail)
    }

    /// "Timed out during operation: DETAIL" (code 68), e.g. a job slot that stayed busy.
    pub fn timeout(domain: ErrorDomain, detail: impl Into<String>) -> VirError {
        VirError::with(ErrorCode::OperationTimeout, domain, detail)
    }
}

/// std's io::Error Display appends " (os error N)"; libvirt prints strerror alone.
fn strip_os_error_suffix(text: &str) -> String {
    match text.rfind(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_libvirt() {
        assert_eq!(ErrorCode::NoDomain as i32, 42);
        assert_eq!(ErrorCode::OperationInvalid as i32, 55);
        assert_eq!(ErrorCode::XmlInvalidSchema as i32, 92);
        assert_eq!(ErrorDomain::Test as i32, 12);
        assert_eq!(ErrorDomain::Domain as i32, 20);
        assert_eq!(ErrorDomain::Streams as i32, 38);
        assert_eq!(ErrorCode::from_i32(50), ErrorCode::NoStorageVol);
        assert_eq!(ErrorDomain::from_i32(19), ErrorDomain::Network);
    }

    #[test]
    fn bare_and_detailed_messages() {
        let e = VirError::bare(ErrorCode::NoDomain, ErrorDomain::Test);
        assert_eq!(e.message, "Domain not found");
        assert_eq!(e.str1.as_deref(), Some("Domain not found"));
        assert_eq!(e.str2, None);
        let e = VirError::operation_invalid(ErrorDomain::Domain, "domain is not running");
        assert_eq!(
            e.message,
            "Requested operation is not valid: domain is not running"
        );
        assert_eq!(e.str2.as_deref(), Some("domain is not running"));
        assert_eq!(e.int1, -1);
    }

    #[test]
    fn system_error_carries_errno() {
        let io = std::io::Error::from_raw_os_error(2);
        let e = VirError::system(ErrorDomain::Test, "cannot read domain image '/x'", &io);
        assert_eq!(e.code, ErrorCode::SystemError);
        assert_eq!(e.int1, 2);
        assert_eq!(
            e.message,
            "cannot read domain image '/x': No such file or directory"
        );
    }
}

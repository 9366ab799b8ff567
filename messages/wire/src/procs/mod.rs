//! The REMOTE program's procedures: their numbers, names and flags, and the typed
//! arguments, return values and event messages of the ones Vireo speaks.
//!
//! Procedures are listed once, in a single [`remote_procedures!`](crate::remote_procedures)
//! invocation:
//!
//! ```text
//! NUMBER WIRE_NAME VariantName(ArgsType) -> RetType [flags];
//! NUMBER WIRE_NAME VariantName;                       // number and name only
//! ```
//!
//! Flags: `readonly_ok` (allowed on a read-only connection), `priority` (libvirt runs it
//! on its high-priority workers: it never blocks on a hypervisor), `stream` (the call
//! opens a data stream), `event` (a server-to-client MESSAGE, never called).
//!
//! From that list the macro generates the [`RemoteProc`] enum (discriminant = libvirt's
//! number), its lookups ([`RemoteProc::from_u32`], [`RemoteProc::name`], the flag
//! queries) and, for every procedure with types, a marker type in [`typed`] that
//! implements [`Procedure`], tying the number to its argument and return types.
//! Argument, return and message structs are declared with [`xdr_struct!`](crate::xdr_struct).
//!
//! Every REMOTE procedure number (1..=453 upstream) is in the enum, so
//! [`RemoteProc::api_name`] can name any of them in a "not supported" error.

mod events;
mod stats;
mod structs;
mod table;

pub use events::*;
pub use stats::*;
pub use structs::*;
pub use table::{RemoteProc, typed};

use crate::xdr::{XdrDecode, XdrEncode};

/// A procedure with known argument and return types. Implemented by the marker types
/// in [`typed`]; for event messages `Args` is the message and `Ret` is `()`.
pub trait Procedure {
    /// The procedure.
    const PROC: RemoteProc;
    /// The CALL payload (or the MESSAGE payload of an event).
    type Args: XdrEncode + XdrDecode;
    /// The successful REPLY payload.
    type Ret: XdrEncode + XdrDecode;
}

/// Flag bits of a procedure (see the module docs).
#[doc(hidden)]
#[macro_export]
macro_rules! __proc_flag_bit {
    (readonly_ok) => {
        1u8
    };
    (priority) => {
        2u8
    };
    (stream) => {
        4u8
    };
    (event) => {
        8u8
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __proc_has_types {
    () => {
        false
    };
    ($t:ty) => {
        true
    };
}

/// Declares the REMOTE procedures; see the [module docs](self) for the syntax.
#[macro_export]
macro_rules! remote_procedures {
    ($(
        $num:literal $wire:ident $variant:ident
            $( ( $args:ty ) -> $ret:ty )?
            $( [ $($flag:ident)* ] )?
        ;
    )*) => {
        /// A REMOTE program procedure. The discriminant is libvirt's number
        /// (`REMOTE_PROC_*`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u32)]
        pub enum RemoteProc {
            $(
                #[doc = concat!("`REMOTE_PROC_", stringify!($wire), "` (", stringify!($num), ").")]
                $variant = $num,
            )*
        }

        impl RemoteProc {
            /// Every procedure, in number order.
            pub const ALL: &'static [RemoteProc] = &[$(RemoteProc::$variant),*];

            /// The procedure with libvirt number `n`.
            pub fn from_u32(n: u32) -> ::core::option::Option<RemoteProc> {
                match n {
                    $( $num => ::core::option::Option::Some(RemoteProc::$variant), )*
                    _ => ::core::option::Option::None,
                }
            }

            /// The name without the `REMOTE_PROC_` prefix, e.g. `DOMAIN_GET_XML_DESC`.
            pub fn name(self) -> &'static str {
                match self {
                    $( RemoteProc::$variant => stringify!($wire), )*
                }
            }

            #[doc(hidden)]
            pub(crate) fn flag_bits(self) -> u8 {
                match self {
                    $( RemoteProc::$variant => 0u8 $( $( | $crate::__proc_flag_bit!($flag) )* )?, )*
                }
            }

            /// Whether Vireo knows this procedure's argument and return types (a marker
            /// type exists in [`typed`]).
            pub fn has_types(self) -> bool {
                match self {
                    $( RemoteProc::$variant => $crate::__proc_has_types!($($args)?), )*
                }
            }
        }

        /// Marker types tying each typed procedure to its argument and return types.
        pub mod typed {
            #[allow(unused_imports)]
            use super::*;
            $($(
                #[doc = concat!("`REMOTE_PROC_", stringify!($wire), "` (", stringify!($num),
                    "): `", stringify!($args), "` -> `", stringify!($ret), "`.")]
                #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
                pub struct $variant;

                impl $crate::procs::Procedure for $variant {
                    const PROC: $crate::procs::RemoteProc = $crate::procs::RemoteProc::$variant;
                    type Args = $args;
                    type Ret = $ret;
                }
            )?)*
        }
    };
}

impl RemoteProc {
    /// The libvirt number.
    pub fn number(self) -> u32 {
        self as u32
    }

    /// The procedure with libvirt number `n` (the header carries it as an XDR `int`).
    pub fn from_i32(n: i32) -> Option<RemoteProc> {
        u32::try_from(n).ok().and_then(RemoteProc::from_u32)
    }

    /// Whether the procedure is allowed on a read-only connection. Some allowed
    /// procedures still refuse certain flags (e.g. `VIR_DOMAIN_XML_SECURE`); that check
    /// is the handler's.
    pub fn is_readonly_safe(self) -> bool {
        self.flag_bits() & 1 != 0
    }

    /// Whether libvirt runs the procedure on its high-priority workers (it never blocks
    /// on a hypervisor).
    pub fn is_priority(self) -> bool {
        self.flag_bits() & 2 != 0
    }

    /// Whether a successful call opens a data stream on its serial.
    pub fn is_stream(self) -> bool {
        self.flag_bits() & 4 != 0
    }

    /// Whether this is a server-to-client event MESSAGE (never called; calling it is an
    /// "unknown procedure").
    pub fn is_event(self) -> bool {
        self.flag_bits() & 8 != 0
    }

    /// The public libvirt API a procedure implements, e.g. `virDomainAttachDeviceFlags`
    /// for `DOMAIN_ATTACH_DEVICE_FLAGS`, for "this function is not supported by the
    /// connection driver: ..." errors. Internal procedures (auth, migration steps,
    /// events) get the same mechanical name.
    pub fn api_name(self) -> String {
        match self {
            RemoteProc::ConnectDomainEventCallbackRegisterAny => {
                "virConnectDomainEventRegisterAny".to_string()
            }
            RemoteProc::ConnectDomainEventCallbackDeregisterAny => {
                "virConnectDomainEventDeregisterAny".to_string()
            }
            other => format!("vir{}", camel(other.name())),
        }
    }
}

/// CamelCase of an underscore-separated upper-case name, with libvirt's acronyms.
fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for word in name.split('_') {
        let special = match word {
            "XML" | "UUID" | "ID" | "URI" | "OS" | "CPU" | "PM" | "NMI" | "MAC" | "SEV" | "FD"
            | "DHCP" | "SSH" | "SCSI" | "WWN" => Some(word.to_string()),
            "IOTHREAD" => Some("IOThread".into()),
            "FSFREEZE" => Some("FSFreeze".into()),
            "FSTHAW" => Some("FSThaw".into()),
            "FSTRIM" => Some("FSTrim".into()),
            "FSINFO" => Some("FSInfo".into()),
            "NWFILTER" => Some("NWFilter".into()),
            "NWFILTERS" => Some("NWFilters".into()),
            _ => None,
        };
        match special {
            Some(s) => out.push_str(&s),
            None => {
                let mut chars = word.chars();
                if let Some(first) = chars.next() {
                    out.push(first);
                    out.extend(chars.map(|c| c.to_ascii_lowercase()));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;

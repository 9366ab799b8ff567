//! libvirt's remote RPC protocol on the wire, for Vireo's daemon and clients.
//!
//! * [`xdr`]: the XDR codec ([`XdrEncode`], [`XdrDecode`], bounded decoding) and the
//!   [`xdr_struct!`]/[`xdr_enum!`] macros protocol types are declared with.
//! * [`packet`]: framing (length word + 24-byte [`Header`] + payload), program numbers,
//!   message types and statuses, and helpers to encode calls, replies, events and
//!   keepalives and to decode replies.
//! * [`types`]: the shared protocol structs (object references, typed parameters,
//!   `remote_error`, auth types) with conversions to and from `vireo_messages`.
//! * [`procs`]: every REMOTE procedure ([`RemoteProc`]) and the typed arguments, return
//!   values and event messages of the ones Vireo speaks.
//!
//! The crate has no runtime: it turns bytes into values and back. A tokio-util codec
//! for the framing is available behind the `codec` feature.
//!
//! ```
//! use vireo_wire::packet::{decode_frame, decode_reply, encode_call, encode_reply};
//! use vireo_wire::procs::{ConnectOpenArgs, RemoteProc};
//!
//! // Client side: a CALL.
//! let args = ConnectOpenArgs { name: Some("test:///default".into()), flags: 0 };
//! let frame = encode_call(RemoteProc::ConnectOpen, 2, &args);
//!
//! // Server side: cut the frame, decode the arguments, answer.
//! let (packet, _used) = decode_frame(&frame).unwrap().unwrap();
//! assert_eq!(packet.header.remote_proc(), Some(RemoteProc::ConnectOpen));
//! let got: ConnectOpenArgs = packet.decode_payload().unwrap();
//! assert_eq!(got, args);
//! let reply = encode_reply(&packet.header, &());
//!
//! // Client side again: the typed return value (or the server's error).
//! let (packet, _) = decode_frame(&reply).unwrap().unwrap();
//! decode_reply::<()>(&packet).unwrap();
//! ```

pub mod packet;
pub mod procs;
pub mod types;
pub mod xdr;

pub use packet::{Header, MessageStatus, MessageType, Packet};
pub use procs::{Procedure, RemoteProc};
pub use types::RemoteError;
pub use xdr::{Decoder, XdrDecode, XdrDecodeBounded, XdrEncode, XdrError};

#[doc(hidden)]
pub use bytes;

//! The client's error type. A server's error reply keeps libvirt's numbers
//! ([`VirError`]); everything else says what failed on this side of the socket.

use vireo_messages::VirError;
use vireo_wire::XdrError;
use vireo_wire::packet::{FrameError, ReplyError};

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be opened.
    #[error("Cannot connect to {addr}: {source}")]
    Connect {
        /// The path or address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The server answered the call with an error.
    #[error("{0}")]
    Remote(Box<VirError>),
    /// The connection is gone (closed by either side, or broken); calls in flight and
    /// later calls fail with this.
    #[error("The connection is closed: {0}.")]
    Closed(String),
    /// A reply or event payload could not be decoded.
    #[error("A message from the server could not be decoded: {0}")]
    Malformed(#[from] XdrError),
    /// A reply is not a well-formed reply (wrong type or status).
    #[error("The server sent a bad reply: {0}")]
    BadReply(String),
    /// The call's frame would exceed the protocol's 32 MiB limit.
    #[error("A call of {0} bytes exceeds the protocol limit.")]
    TooLarge(usize),
    /// The server only offers authentication schemes this client cannot do.
    #[error("The server requires authentication ({0}), which this client does not support.")]
    UnsupportedAuth(String),
    /// A connection URI could not be used.
    #[error("Cannot use the connection URI {0}.")]
    BadUri(String),
    /// The server lacks a protocol feature the operation needs.
    #[error("The server does not support {0}.")]
    MissingFeature(&'static str),
}

impl ClientError {
    /// The server's error, when this is an error reply.
    pub fn vir_error(&self) -> Option<&VirError> {
        match self {
            ClientError::Remote(e) => Some(e),
            _ => None,
        }
    }
}

impl From<VirError> for ClientError {
    fn from(e: VirError) -> ClientError {
        ClientError::Remote(Box::new(e))
    }
}

impl From<ReplyError> for ClientError {
    fn from(e: ReplyError) -> ClientError {
        match e {
            ReplyError::Remote(e) => ClientError::Remote(e),
            ReplyError::Malformed(e) => ClientError::Malformed(e),
            other => ClientError::BadReply(other.to_string()),
        }
    }
}

impl From<FrameError> for ClientError {
    fn from(e: FrameError) -> ClientError {
        ClientError::Closed(format!("bad framing from the server: {e}"))
    }
}

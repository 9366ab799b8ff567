//! Framing and the message header of libvirt's RPC protocol.
//!
//! Every message on the stream is a 4-byte big-endian length that **counts itself**, a
//! 24-byte [`Header`] (`prog, vers, proc, type, serial, status`) and a payload whose
//! meaning depends on the type and status. This module knows the program numbers, the
//! message types and statuses, the size limits, and how to cut a byte stream into
//! [`Packet`]s and back. It also has the conveniences for the common cases: encoding a
//! CALL, a REPLY (success or error), an event MESSAGE or a keepalive, and decoding a
//! REPLY into its typed return value.

use bytes::{BufMut, Bytes, BytesMut};
use vireo_messages::VirError;

use crate::procs::RemoteProc;
use crate::types::RemoteError;
use crate::xdr::{Decoder, XdrDecode, XdrEncode, XdrError};

/// The REMOTE program (everything virsh and libvirt-python use).
pub const REMOTE_PROGRAM: u32 = 0x2000_8086;
/// The QEMU program (monitor and agent pass-through).
pub const QEMU_PROGRAM: u32 = 0x2000_8087;
/// The LXC program (namespace pass-through).
pub const LXC_PROGRAM: u32 = 0x0006_8000;
/// The KEEPALIVE program (ASCII "keep").
pub const KEEPALIVE_PROGRAM: u32 = 0x6b65_6570;
/// The ADMIN program, spoken on the admin socket.
pub const ADMIN_PROGRAM: u32 = 0x0690_0690;
/// The version of every program.
pub const PROTOCOL_VERSION: u32 = 1;

/// KEEPALIVE procedure PING.
pub const KEEPALIVE_PING: i32 = 1;
/// KEEPALIVE procedure PONG.
pub const KEEPALIVE_PONG: i32 = 2;

/// Size of the length word (`VIR_NET_MESSAGE_LEN_MAX`).
pub const LEN_WORD: usize = 4;
/// Size of the header (`VIR_NET_MESSAGE_HEADER_MAX`).
pub const HEADER_LEN: usize = 24;
/// The largest `length - 4` libvirt 9.0 accepts (`VIR_NET_MESSAGE_MAX`, 32 MiB).
pub const MESSAGE_MAX: usize = 33_554_432;
/// The largest value of the length word itself: 32 MiB + 4.
pub const FRAME_MAX: usize = MESSAGE_MAX + LEN_WORD;
/// The largest payload (`VIR_NET_MESSAGE_PAYLOAD_MAX`).
pub const PAYLOAD_MAX: usize = MESSAGE_MAX - HEADER_LEN;
/// Stream data chunk size libvirtd uses when sending (`VIR_NET_MESSAGE_LEGACY_PAYLOAD_MAX`).
pub const STREAM_CHUNK_MAX: usize = 262_120;
/// Maximum file descriptors per message (`VIR_NET_MESSAGE_NUM_FDS_MAX`).
pub const NUM_FDS_MAX: u32 = 32;
/// The serial libvirt 9.0 puts on event MESSAGE packets (the protocol comment says 0).
pub const EVENT_SERIAL: u32 = 1;

crate::xdr_enum! {
    /// The type of a message (`virNetMessageType`).
    pub enum MessageType {
        /// Client to server: a procedure call.
        Call = 0,
        /// Server to client: the answer to a call.
        Reply = 1,
        /// An asynchronous message: events and keepalive.
        Message = 2,
        /// Stream data or control for a stream opened by a call.
        Stream = 3,
        /// A call with file descriptors passed alongside (UNIX sockets only).
        CallWithFds = 4,
        /// A reply with file descriptors passed alongside.
        ReplyWithFds = 5,
        /// A hole in a sparse stream.
        StreamHole = 6,
    }
}

crate::xdr_enum! {
    /// The status of a message (`virNetMessageStatus`).
    pub enum MessageStatus {
        /// Success; every CALL and MESSAGE; end of stream.
        Ok = 0,
        /// Failure: the payload is a `remote_error` (or empty for a client stream abort).
        Error = 1,
        /// A stream packet carrying data.
        Continue = 2,
    }
}

/// The 24-byte message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Program number, e.g. [`REMOTE_PROGRAM`].
    pub prog: u32,
    /// Program version, always [`PROTOCOL_VERSION`].
    pub vers: u32,
    /// Procedure number within the program (an XDR `int`).
    pub proc_: i32,
    /// Message type.
    pub kind: MessageType,
    /// Call serial, chosen by the client and echoed by the server.
    pub serial: u32,
    /// Status.
    pub status: MessageStatus,
}

impl Header {
    /// A REMOTE program CALL header.
    pub fn call(proc_: RemoteProc, serial: u32) -> Header {
        Header {
            prog: REMOTE_PROGRAM,
            vers: PROTOCOL_VERSION,
            proc_: proc_.number() as i32,
            kind: MessageType::Call,
            serial,
            status: MessageStatus::Ok,
        }
    }

    /// The header of the reply to the call with this header: same prog, vers, proc and
    /// serial, type REPLY (REPLY_WITH_FDS for CALL_WITH_FDS), the given status.
    pub fn reply(&self, status: MessageStatus) -> Header {
        let kind = match self.kind {
            MessageType::CallWithFds => MessageType::ReplyWithFds,
            _ => MessageType::Reply,
        };
        Header {
            kind,
            status,
            ..*self
        }
    }

    /// A REMOTE program event MESSAGE header (serial 1, as libvirt 9.0 sends).
    pub fn event(proc_: RemoteProc) -> Header {
        Header {
            prog: REMOTE_PROGRAM,
            vers: PROTOCOL_VERSION,
            proc_: proc_.number() as i32,
            kind: MessageType::Message,
            serial: EVENT_SERIAL,
            status: MessageStatus::Ok,
        }
    }

    /// A KEEPALIVE message header (`proc_` is [`KEEPALIVE_PING`] or [`KEEPALIVE_PONG`]).
    pub fn keepalive(proc_: i32) -> Header {
        Header {
            prog: KEEPALIVE_PROGRAM,
            vers: PROTOCOL_VERSION,
            proc_,
            kind: MessageType::Message,
            serial: 0,
            status: MessageStatus::Ok,
        }
    }

    /// A stream packet header for the stream opened by the call with this header.
    pub fn stream(&self, status: MessageStatus) -> Header {
        Header {
            kind: MessageType::Stream,
            status,
            ..*self
        }
    }

    /// The REMOTE procedure, when this is a REMOTE program message with a known number.
    pub fn remote_proc(&self) -> Option<RemoteProc> {
        if self.prog == REMOTE_PROGRAM {
            RemoteProc::from_i32(self.proc_)
        } else {
            None
        }
    }

    /// Whether this is a keepalive PING.
    pub fn is_ping(&self) -> bool {
        self.prog == KEEPALIVE_PROGRAM && self.proc_ == KEEPALIVE_PING
    }

    /// Whether this is a keepalive PONG.
    pub fn is_pong(&self) -> bool {
        self.prog == KEEPALIVE_PROGRAM && self.proc_ == KEEPALIVE_PONG
    }
}

impl XdrEncode for Header {
    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.prog);
        out.put_u32(self.vers);
        out.put_i32(self.proc_);
        self.kind.encode(out);
        out.put_u32(self.serial);
        self.status.encode(out);
    }
}

impl XdrDecode for Header {
    const MIN_LEN: usize = HEADER_LEN;
    fn decode(buf: &mut Decoder<'_>) -> Result<Header, XdrError> {
        Ok(Header {
            prog: buf.read_u32()?,
            vers: buf.read_u32()?,
            proc_: buf.read_i32()?,
            kind: MessageType::decode(buf)?,
            serial: buf.read_u32()?,
            status: MessageStatus::decode(buf)?,
        })
    }
}

/// Errors in the framing of the byte stream. libvirt answers none of these; it closes
/// the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length word is smaller than a length word plus a header.
    #[error("A packet of {0} bytes is too small to hold a header.")]
    TooSmall(u32),
    /// The length word exceeds the protocol maximum.
    #[error("A packet of {0} bytes is larger than the maximum of {max} bytes.", max = FRAME_MAX)]
    TooLarge(u32),
    /// The header could not be decoded (e.g. an unknown message type).
    #[error("The message header could not be decoded: {0}")]
    Header(XdrError),
}

/// Checks a frame's length word and returns it as a size. The length counts itself and
/// must be at least 28 (length word plus header) and at most [`FRAME_MAX`].
pub fn check_length_word(len: u32) -> Result<usize, FrameError> {
    let size = len as usize;
    if size < LEN_WORD + HEADER_LEN {
        Err(FrameError::TooSmall(len))
    } else if size > FRAME_MAX {
        Err(FrameError::TooLarge(len))
    } else {
        Ok(size)
    }
}

/// One message: header and (undecoded) payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The header.
    pub header: Header,
    /// The payload, without length word or header.
    pub payload: Bytes,
}

impl Packet {
    /// A packet.
    pub fn new(header: Header, payload: impl Into<Bytes>) -> Packet {
        Packet {
            header,
            payload: payload.into(),
        }
    }

    /// Decodes a packet from one frame's bytes *after* the length word (header and
    /// payload).
    pub fn from_body(body: Bytes) -> Result<Packet, FrameError> {
        let header = Header::decode(&mut Decoder::new(&body)).map_err(FrameError::Header)?;
        Ok(Packet {
            header,
            payload: body.slice(HEADER_LEN..),
        })
    }

    /// The complete frame: length word, header, payload.
    pub fn to_frame(&self) -> Bytes {
        encode_packet(&self.header, &self.payload)
    }

    /// Decodes the payload as `T`, ignoring trailing bytes as libvirt does.
    pub fn decode_payload<T: XdrDecode>(&self) -> Result<T, XdrError> {
        crate::xdr::from_bytes(&self.payload)
    }

    /// The number of file descriptors a CALL_WITH_FDS or REPLY_WITH_FDS announces
    /// (the first payload word); 0 for other types.
    pub fn fd_count(&self) -> Result<u32, XdrError> {
        match self.header.kind {
            MessageType::CallWithFds | MessageType::ReplyWithFds => {
                Decoder::new(&self.payload).read_u32()
            }
            _ => Ok(0),
        }
    }

    /// Decodes a call's arguments: the payload of a CALL, or of a CALL_WITH_FDS after
    /// its fd count. Trailing bytes are ignored as libvirt does.
    pub fn decode_args<T: XdrDecode>(&self) -> Result<T, XdrError> {
        let mut d = Decoder::new(&self.payload);
        if self.header.kind == MessageType::CallWithFds {
            d.read_u32()?;
        }
        T::decode(&mut d)
    }
}

fn frame_with(header: &Header, body: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut out = BytesMut::with_capacity(64);
    out.put_u32(0);
    header.encode(&mut out);
    body(&mut out);
    let len = out.len() as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out.freeze()
}

/// Encodes a frame from a header and raw payload bytes.
pub fn encode_packet(header: &Header, payload: &[u8]) -> Bytes {
    frame_with(header, |out| out.put_slice(payload))
}

/// Encodes a frame whose payload is the XDR encoding of `body`.
pub fn encode_message<T: XdrEncode + ?Sized>(header: &Header, body: &T) -> Bytes {
    frame_with(header, |out| body.encode(out))
}

/// Splits one frame off the front of `buf`. Returns `Ok(None)` when `buf` does not yet
/// hold a complete frame, otherwise the packet and the number of bytes it used.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(Packet, usize)>, FrameError> {
    if buf.len() < LEN_WORD {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let size = check_length_word(len)?;
    if buf.len() < size {
        return Ok(None);
    }
    let body = Bytes::copy_from_slice(&buf[LEN_WORD..size]);
    Ok(Some((Packet::from_body(body)?, size)))
}

/// Encodes a REMOTE program CALL of `proc_` with the given serial and arguments (use
/// `&()` for procedures without arguments).
pub fn encode_call<A: XdrEncode + ?Sized>(proc_: RemoteProc, serial: u32, args: &A) -> Bytes {
    encode_message(&Header::call(proc_, serial), args)
}

/// Encodes a reply with the given status; a REPLY_WITH_FDS payload starts with the fd
/// count (the descriptors themselves travel as ancillary data).
fn encode_reply_body<R: XdrEncode + ?Sized>(
    call: &Header,
    status: MessageStatus,
    nfds: u32,
    body: &R,
) -> Bytes {
    let header = call.reply(status);
    frame_with(&header, |out| {
        if header.kind == MessageType::ReplyWithFds {
            out.put_u32(nfds);
        }
        body.encode(out);
    })
}

/// Encodes the successful REPLY to the call with header `call`. The reply to a
/// CALL_WITH_FDS is a REPLY_WITH_FDS announcing no descriptors; use
/// [`encode_reply_with_fds`] to pass some.
pub fn encode_reply<R: XdrEncode + ?Sized>(call: &Header, ret: &R) -> Bytes {
    encode_reply_body(call, MessageStatus::Ok, 0, ret)
}

/// Encodes a successful REPLY_WITH_FDS announcing `nfds` descriptors, which the caller
/// sends as `SCM_RIGHTS` ancillary data with the frame.
pub fn encode_reply_with_fds<R: XdrEncode + ?Sized>(call: &Header, nfds: u32, ret: &R) -> Bytes {
    // Replying as if to a CALL_WITH_FDS gives a REPLY_WITH_FDS header (DOMAIN_OPEN_GRAPHICS_FD
    // is a plain CALL answered that way).
    let as_fd_call = Header {
        kind: MessageType::CallWithFds,
        ..*call
    };
    encode_reply_body(&as_fd_call, MessageStatus::Ok, nfds, ret)
}

/// Encodes the failed REPLY (status ERROR, `remote_error` payload) to the call with
/// header `call`.
pub fn encode_error_reply(call: &Header, error: &RemoteError) -> Bytes {
    encode_reply_body(call, MessageStatus::Error, 0, error)
}

/// Encodes a STREAM packet of the stream opened by the call with header `call`:
/// `Continue` with data, `Ok` with an empty payload to finish.
pub fn encode_stream(call: &Header, status: MessageStatus, data: &[u8]) -> Bytes {
    encode_packet(&call.stream(status), data)
}

/// Encodes a STREAM ERROR packet carrying `error`, which ends the stream.
pub fn encode_stream_error(call: &Header, error: &RemoteError) -> Bytes {
    encode_message(&call.stream(MessageStatus::Error), error)
}

crate::xdr_struct! {
    /// `virNetStreamHole`: the payload of a STREAM_HOLE packet (sparse streams only):
    /// skip `length` bytes.
    #[derive(Eq, Copy)]
    pub struct StreamHole {
        /// Size of the hole in bytes.
        pub length: i64,
        /// Flags (none defined).
        pub flags: u32,
    }
}

/// Encodes a REMOTE event MESSAGE (serial 1, as libvirt sends).
pub fn encode_event<M: XdrEncode + ?Sized>(proc_: RemoteProc, msg: &M) -> Bytes {
    encode_message(&Header::event(proc_), msg)
}

/// A 28-byte keepalive PING frame.
pub fn keepalive_ping() -> Bytes {
    encode_packet(&Header::keepalive(KEEPALIVE_PING), &[])
}

/// A 28-byte keepalive PONG frame.
pub fn keepalive_pong() -> Bytes {
    encode_packet(&Header::keepalive(KEEPALIVE_PONG), &[])
}

/// Why a reply could not be turned into a return value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReplyError {
    /// The server answered with an error.
    #[error("{0}")]
    Remote(Box<VirError>),
    /// The packet is not a REPLY or REPLY_WITH_FDS.
    #[error("Expected a reply but got a {0:?} message.")]
    NotAReply(MessageType),
    /// The reply's status is neither OK nor ERROR.
    #[error("A reply has the unexpected status {0:?}.")]
    BadStatus(MessageStatus),
    /// The payload could not be decoded.
    #[error("The reply payload could not be decoded: {0}")]
    Malformed(#[from] XdrError),
}

/// Decodes a REPLY: the return value on status OK, the server's error on status ERROR.
/// A REPLY_WITH_FDS carries the fd count first; it is skipped.
pub fn decode_reply<R: XdrDecode>(packet: &Packet) -> Result<R, ReplyError> {
    let mut d = Decoder::new(&packet.payload);
    match packet.header.kind {
        MessageType::Reply => {}
        MessageType::ReplyWithFds => {
            d.read_u32()?;
        }
        other => return Err(ReplyError::NotAReply(other)),
    }
    match packet.header.status {
        MessageStatus::Ok => Ok(R::decode(&mut d)?),
        MessageStatus::Error => {
            let err = RemoteError::decode(&mut d)?;
            Err(ReplyError::Remote(Box::new(err.into())))
        }
        other => Err(ReplyError::BadStatus(other)),
    }
}

#[cfg(feature = "codec")]
pub use self::codec::{CodecError, PacketCodec};

#[cfg(feature = "codec")]
mod codec {
    //! A tokio-util codec for the framing.

    use super::*;

    /// Errors from [`PacketCodec`].
    #[derive(Debug, thiserror::Error)]
    pub enum CodecError {
        /// Bad framing; the connection should be closed.
        #[error(transparent)]
        Frame(#[from] FrameError),
        /// The underlying transport failed.
        #[error(transparent)]
        Io(#[from] std::io::Error),
    }

    /// Cuts a byte stream into [`Packet`]s and writes packets or ready-made frames.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct PacketCodec;

    impl tokio_util::codec::Decoder for PacketCodec {
        type Item = Packet;
        type Error = CodecError;

        fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, CodecError> {
            if src.len() < LEN_WORD {
                return Ok(None);
            }
            let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
            let size = check_length_word(len)?;
            if src.len() < size {
                src.reserve(size - src.len());
                return Ok(None);
            }
            let mut frame = src.split_to(size);
            let body = frame.split_off(LEN_WORD).freeze();
            Ok(Some(Packet::from_body(body)?))
        }
    }

    impl tokio_util::codec::Encoder<Packet> for PacketCodec {
        type Error = CodecError;

        fn encode(&mut self, item: Packet, dst: &mut BytesMut) -> Result<(), CodecError> {
            let len = LEN_WORD + HEADER_LEN + item.payload.len();
            check_length_word(u32::try_from(len).unwrap_or(u32::MAX))?;
            dst.reserve(len);
            dst.put_u32(len as u32);
            item.header.encode(dst);
            dst.put_slice(&item.payload);
            Ok(())
        }
    }

    /// Writes an already-encoded frame (from [`encode_call`] and friends) as is.
    impl tokio_util::codec::Encoder<Bytes> for PacketCodec {
        type Error = CodecError;

        fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), CodecError> {
            dst.extend_from_slice(&item);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdr::to_bytes;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn keepalive_ping_is_28_bytes() {
        let ping = keepalive_ping();
        assert_eq!(
            ping.to_vec(),
            unhex("0000001c 6b656570 00000001 00000001 00000002 00000000 00000000")
        );
        let (packet, used) = decode_frame(&ping).unwrap().unwrap();
        assert_eq!(used, 28);
        assert!(packet.header.is_ping());
        assert!(packet.payload.is_empty());
        assert!(
            decode_frame(&keepalive_pong())
                .unwrap()
                .unwrap()
                .0
                .header
                .is_pong()
        );
    }

    #[test]
    fn header_round_trip_and_bad_enums() {
        let h = Header::call(RemoteProc::ConnectOpen, 2);
        let bytes = to_bytes(&h);
        assert_eq!(
            hex(&bytes),
            "200080860000000100000001000000000000000200000000"
        );
        assert_eq!(crate::xdr::from_bytes_exact::<Header>(&bytes).unwrap(), h);
        let mut bad = bytes.to_vec();
        bad[15] = 7; // message type 7 does not exist
        assert!(matches!(
            crate::xdr::from_bytes::<Header>(&bad),
            Err(XdrError::InvalidEnum {
                what: "MessageType",
                value: 7
            })
        ));
        let mut bad = bytes.to_vec();
        bad[23] = 3; // status 3 does not exist
        assert!(crate::xdr::from_bytes::<Header>(&bad).is_err());
    }

    #[test]
    fn length_word_rules() {
        assert_eq!(check_length_word(0), Err(FrameError::TooSmall(0)));
        assert_eq!(check_length_word(3), Err(FrameError::TooSmall(3)));
        assert_eq!(check_length_word(27), Err(FrameError::TooSmall(27)));
        assert_eq!(check_length_word(28), Ok(28));
        // Observed: 33554436 is accepted, 33554437 is not.
        assert_eq!(check_length_word(33_554_436), Ok(33_554_436));
        assert_eq!(
            check_length_word(33_554_437),
            Err(FrameError::TooLarge(33_554_437))
        );
        assert_eq!(
            decode_frame(&[0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::TooLarge(u32::MAX))
        );
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let frame = encode_call(RemoteProc::AuthList, 0, &());
        for cut in 0..frame.len() {
            assert_eq!(decode_frame(&frame[..cut]).unwrap(), None, "cut at {cut}");
        }
        let mut two = frame.to_vec();
        two.extend_from_slice(&keepalive_ping());
        let (first, used) = decode_frame(&two).unwrap().unwrap();
        assert_eq!(first.header.remote_proc(), Some(RemoteProc::AuthList));
        let (second, _) = decode_frame(&two[used..]).unwrap().unwrap();
        assert!(second.header.is_ping());
    }

    #[test]
    fn handshake_calls_byte_for_byte() {
        // §8.1, serial 0: AUTH_LIST with no arguments.
        assert_eq!(
            hex(&encode_call(RemoteProc::AuthList, 0, &())),
            "0000001c200080860000000100000042000000000000000000000000"
        );
        // Serial 1: CONNECT_SUPPORTS_FEATURE(10).
        let frame = encode_call(
            RemoteProc::ConnectSupportsFeature,
            1,
            &crate::procs::ConnectSupportsFeatureArgs { feature: 10 },
        );
        assert_eq!(
            frame.to_vec(),
            unhex("00000020 20008086 00000001 0000003c 00000000 00000001 00000000 0000000a")
        );
        // Serial 2: CONNECT_OPEN("test:///default", 0).
        let expected = unhex(
            "00000038 20008086 00000001 00000001 00000000 00000002 00000000
             00000001 0000000f 746573743a2f2f2f64656661756c7400 00000000",
        );
        let args = crate::procs::ConnectOpenArgs {
            name: Some("test:///default".into()),
            flags: 0,
        };
        assert_eq!(
            encode_call(RemoteProc::ConnectOpen, 2, &args).to_vec(),
            expected
        );
        let (packet, used) = decode_frame(&expected).unwrap().unwrap();
        assert_eq!(used, expected.len());
        assert_eq!(packet.header.kind, MessageType::Call);
        assert_eq!(packet.header.serial, 2);
        let back: crate::procs::ConnectOpenArgs = packet.decode_payload().unwrap();
        assert_eq!(back, args);
        assert_eq!(packet.to_frame().to_vec(), expected);
    }

    #[test]
    fn replies_ok_and_error() {
        let call = Header::call(RemoteProc::ConnectSupportsFeature, 1);
        let frame = encode_reply(
            &call,
            &crate::procs::ConnectSupportsFeatureRet { supported: 1 },
        );
        let (packet, _) = decode_frame(&frame).unwrap().unwrap();
        assert_eq!(packet.header.kind, MessageType::Reply);
        assert_eq!(packet.header.serial, 1);
        let ret: crate::procs::ConnectSupportsFeatureRet = decode_reply(&packet).unwrap();
        assert_eq!(ret.supported, 1);

        let err = vireo_messages::VirError::bare(
            vireo_messages::ErrorCode::NoDomain,
            vireo_messages::ErrorDomain::Test,
        );
        let frame = encode_error_reply(&call, &RemoteError::from(&err));
        let (packet, _) = decode_frame(&frame).unwrap().unwrap();
        assert_eq!(packet.header.status, MessageStatus::Error);
        match decode_reply::<crate::procs::ConnectSupportsFeatureRet>(&packet) {
            Err(ReplyError::Remote(e)) => assert_eq!(*e, err),
            other => panic!("unexpected {other:?}"),
        }
        let ping = decode_frame(&keepalive_ping()).unwrap().unwrap().0;
        assert_eq!(
            decode_reply::<()>(&ping),
            Err(ReplyError::NotAReply(MessageType::Message))
        );
    }

    #[test]
    fn fds_and_streams() {
        let mut call = Header::call(RemoteProc::DomainOpenGraphicsFd, 9);
        call.kind = MessageType::CallWithFds;
        let args = crate::procs::DomainFlagsArgs {
            dom: crate::types::NonnullDomain::new("d", uuid::Uuid::nil(), None),
            flags: 0,
        };
        let mut body = BytesMut::new();
        body.put_u32(1);
        args.encode(&mut body);
        let packet = Packet::new(call, body.freeze());
        assert_eq!(packet.fd_count().unwrap(), 1);
        assert_eq!(
            packet
                .decode_args::<crate::procs::DomainFlagsArgs>()
                .unwrap(),
            args
        );
        let reply = encode_reply_with_fds(&call, 1, &());
        let (packet, _) = decode_frame(&reply).unwrap().unwrap();
        assert_eq!(packet.header.kind, MessageType::ReplyWithFds);
        assert_eq!(packet.fd_count().unwrap(), 1);
        decode_reply::<()>(&packet).unwrap();
        // An error to a CALL_WITH_FDS is a REPLY_WITH_FDS with 0 fds, then the error.
        let err = RemoteError::from(vireo_messages::VirError::bare(
            vireo_messages::ErrorCode::NoSupport,
            vireo_messages::ErrorDomain::Domain,
        ));
        let (packet, _) = decode_frame(&encode_error_reply(&call, &err))
            .unwrap()
            .unwrap();
        assert_eq!(packet.fd_count().unwrap(), 0);
        assert!(matches!(
            decode_reply::<()>(&packet),
            Err(ReplyError::Remote(_))
        ));

        // Streams reuse the call's serial; the end of data is an empty CONTINUE.
        let call = Header::call(RemoteProc::StorageVolDownload, 7);
        let data = encode_stream(&call, MessageStatus::Continue, b"abc");
        let (packet, _) = decode_frame(&data).unwrap().unwrap();
        assert_eq!(packet.header.kind, MessageType::Stream);
        assert_eq!(packet.header.serial, 7);
        assert_eq!(&packet.payload[..], b"abc");
        let end = encode_stream(&call, MessageStatus::Continue, &[]);
        assert_eq!(end.len(), 28);
        let hole = StreamHole {
            length: 4096,
            flags: 0,
        };
        assert_eq!(
            crate::xdr::to_bytes(&hole).to_vec(),
            unhex("00000000 00001000 00000000")
        );
    }

    #[cfg(feature = "codec")]
    #[test]
    fn tokio_codec_splits_frames() {
        use tokio_util::codec::{Decoder as _, Encoder as _};
        let mut codec = PacketCodec;
        let mut buf = BytesMut::new();
        codec
            .encode(encode_call(RemoteProc::AuthList, 0, &()), &mut buf)
            .unwrap();
        codec
            .encode(
                decode_frame(&keepalive_ping()).unwrap().unwrap().0,
                &mut buf,
            )
            .unwrap();
        let mut partial = buf.split_to(10);
        assert!(codec.decode(&mut partial).unwrap().is_none());
        partial.unsplit(buf);
        let first = codec.decode(&mut partial).unwrap().unwrap();
        assert_eq!(first.header.remote_proc(), Some(RemoteProc::AuthList));
        let second = codec.decode(&mut partial).unwrap().unwrap();
        assert!(second.header.is_ping());
        assert!(partial.is_empty());
        let mut bad = BytesMut::from(&[0u8, 0, 0, 3][..]);
        assert!(matches!(
            codec.decode(&mut bad),
            Err(CodecError::Frame(FrameError::TooSmall(3)))
        ));
    }

    #[test]
    fn garbage_headers_never_panic() {
        let mut seed = 0x1234_5678u32;
        for _ in 0..2000 {
            let mut buf = Vec::new();
            let n = (seed % 64) as usize;
            for _ in 0..n {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                buf.push(seed as u8);
            }
            if buf.len() >= 4 {
                // Make the length plausible half of the time.
                if seed & 1 == 0 {
                    let len = buf.len() as u32;
                    buf[..4].copy_from_slice(&len.to_be_bytes());
                }
            }
            let _ = decode_frame(&buf);
        }
    }
}

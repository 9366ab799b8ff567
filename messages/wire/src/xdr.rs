//! XDR (RFC 4506) encoding and decoding, as libvirt's RPC protocol uses it.
//!
//! Everything on the wire is big-endian and padded to a multiple of four bytes. This
//! module provides the two traits every protocol type implements ([`XdrEncode`],
//! [`XdrDecode`]), a position-tracking [`Decoder`] over a byte slice, and the
//! implementations for the primitive XDR types.
//!
//! Decoding is *bounded*: every length read from the input is checked against the
//! declared maximum of the field **and** against the bytes actually left in the input
//! before anything is allocated, so a hostile length word (say `0xffffffff`) fails with
//! an error instead of reserving gigabytes. Variable-length fields declared with a
//! maximum (`string<N>`, `opaque<N>`, `T<N>`, `char<N>`) implement
//! [`XdrDecodeBounded`]; their plain [`XdrDecode`] uses a generous default maximum.
//! Malformed input never panics.
//!
//! Type mapping (XDR -> Rust):
//!
//! | XDR | Rust |
//! | --- | --- |
//! | `int` / `unsigned int` / `enum` | `i32` / `u32` (enums: a Rust enum with a checked conversion) |
//! | `hyper` / `unsigned hyper` | `i64` / `u64` |
//! | `bool` | `bool` (0 or 1, anything else is an error) |
//! | `double` | `f64` |
//! | `string<N>` | `String` (UTF-8 checked, never lossy) |
//! | `opaque<N>` | `Vec<u8>` |
//! | `opaque[N]` | `[u8; N]`, or [`uuid::Uuid`] for `remote_uuid` |
//! | `T *` (optional data) | `Option<T>` |
//! | `T<N>` | `Vec<T>` |
//! | `char<N>` | [`CharArray`] (one 4-byte word per byte, libvirt includes the NUL) |
//! | `char[N]` | [`FixedChars<N>`] (N words, NUL padded) |
//! | `void` | `()` |
//!
//! `char`, `unsigned char`, `short` and `unsigned short` fields are widened to 4 bytes
//! by XDR; protocol structs declare them as `i32`/`u32`.

use bytes::{BufMut, BytesMut};

/// libvirt's `REMOTE_STRING_MAX` (and `VIR_NET_MESSAGE_STRING_MAX`): the longest string
/// in bytes. Used as the maximum of `String` fields that declare none.
pub const STRING_MAX: u32 = 4_194_304;

/// The default maximum byte count of an `opaque<>` field that declares none: the largest
/// payload a message can carry.
pub const OPAQUE_MAX: u32 = 33_554_408;

/// The default maximum element count of an array field that declares none. The input
/// size bounds real arrays much more tightly.
pub const ARRAY_MAX: u32 = 8_388_602;

/// Errors from decoding XDR data. Encoding cannot fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XdrError {
    /// The input ended in the middle of an item.
    #[error("The input ended early: {needed} more bytes were needed but only {remaining} remain.")]
    Truncated {
        /// Bytes the item needed.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// A length or count word is larger than the field's declared maximum.
    #[error("A declared length of {len} exceeds the field's maximum of {max}.")]
    LengthExceedsMax {
        /// The length read from the input.
        len: u32,
        /// The field's maximum.
        max: u32,
    },
    /// A length or count word promises more data than the input holds.
    #[error("A declared length of {len} needs {needed} bytes but only {remaining} remain.")]
    LengthExceedsInput {
        /// The length read from the input.
        len: u32,
        /// The minimum number of bytes that many items need.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// A string is not valid UTF-8.
    #[error("The string at byte offset {offset} is not valid UTF-8.")]
    InvalidUtf8 {
        /// Offset of the string's first byte in the input.
        offset: usize,
    },
    /// A `bool` word is neither 0 nor 1.
    #[error("A boolean has the value {0}; only 0 and 1 are valid.")]
    InvalidBool(u32),
    /// The presence word of optional data is neither 0 nor 1.
    #[error("An optional-data flag has the value {0}; only 0 and 1 are valid.")]
    InvalidOptional(u32),
    /// A union discriminant names no arm.
    #[error("The {what} union has no arm for discriminant {value}.")]
    UnknownDiscriminant {
        /// Which union.
        what: &'static str,
        /// The discriminant read.
        value: i32,
    },
    /// An enum word has a value the enum does not define.
    #[error("The value {value} is not a valid {what}.")]
    InvalidEnum {
        /// Which enum.
        what: &'static str,
        /// The value read.
        value: i32,
    },
    /// A `char` word does not hold a byte value.
    #[error("A char word has the value {0}, which does not fit in a byte.")]
    InvalidChar(i32),
    /// Bytes were left over after the item ended (only reported by strict decoding).
    #[error("There are {0} unexpected bytes after the end of the data.")]
    TrailingBytes(usize),
}

/// Something that can be written as XDR.
pub trait XdrEncode {
    /// Appends the XDR encoding of `self` to `out`.
    fn encode(&self, out: &mut BytesMut);
}

/// Something that can be read from XDR.
pub trait XdrDecode: Sized {
    /// The fewest bytes any value of this type takes on the wire. Array decoding uses it
    /// to reject counts the remaining input cannot possibly hold before allocating.
    const MIN_LEN: usize = 4;

    /// Reads one value, advancing the decoder past it.
    fn decode(buf: &mut Decoder<'_>) -> Result<Self, XdrError>;
}

/// A variable-length XDR item with a declared maximum (`string<N>`, `opaque<N>`, `T<N>`,
/// `char<N>`): `max` is N, in bytes for strings and opaque data, in elements for arrays.
pub trait XdrDecodeBounded: Sized {
    /// Reads one value whose length must not exceed `max`.
    fn decode_bounded(buf: &mut Decoder<'_>, max: u32) -> Result<Self, XdrError>;
}

/// Encodes a value into a fresh buffer.
pub fn to_bytes<T: XdrEncode + ?Sized>(value: &T) -> BytesMut {
    let mut out = BytesMut::new();
    value.encode(&mut out);
    out
}

/// Decodes a value from the start of `data`, ignoring bytes after it (libvirt ignores
/// extra bytes after a call's arguments).
pub fn from_bytes<T: XdrDecode>(data: &[u8]) -> Result<T, XdrError> {
    T::decode(&mut Decoder::new(data))
}

/// Decodes a value that must use all of `data`.
pub fn from_bytes_exact<T: XdrDecode>(data: &[u8]) -> Result<T, XdrError> {
    let mut d = Decoder::new(data);
    let value = T::decode(&mut d)?;
    d.finish()?;
    Ok(value)
}

/// Number of pad bytes after `len` bytes of data.
pub fn padding(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// A cursor over XDR input that tracks its position.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// A decoder at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Decoder<'a> {
        Decoder { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether all input has been consumed.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The unconsumed input.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Fails with [`XdrError::TrailingBytes`] unless all input has been consumed.
    pub fn finish(&self) -> Result<(), XdrError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(XdrError::TrailingBytes(n)),
        }
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], XdrError> {
        let remaining = self.remaining();
        if n > remaining {
            return Err(XdrError::Truncated {
                needed: n,
                remaining,
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], XdrError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Skips the padding after `len` bytes of data. The pad bytes should be zero but
    /// their value is not checked.
    pub fn skip_padding(&mut self, len: usize) -> Result<(), XdrError> {
        self.take(padding(len)).map(|_| ())
    }

    /// Reads an unsigned int.
    pub fn read_u32(&mut self) -> Result<u32, XdrError> {
        Ok(u32::from_be_bytes(self.take_array()?))
    }

    /// Reads an int.
    pub fn read_i32(&mut self) -> Result<i32, XdrError> {
        Ok(i32::from_be_bytes(self.take_array()?))
    }

    /// Reads an unsigned hyper.
    pub fn read_u64(&mut self) -> Result<u64, XdrError> {
        Ok(u64::from_be_bytes(self.take_array()?))
    }

    /// Reads a hyper.
    pub fn read_i64(&mut self) -> Result<i64, XdrError> {
        Ok(i64::from_be_bytes(self.take_array()?))
    }

    /// Reads a length or count word and checks it against `max` and against the input
    /// left, assuming each unit takes at least `unit_len` bytes. Returns the length.
    pub fn read_len(&mut self, max: u32, unit_len: usize) -> Result<usize, XdrError> {
        let len = self.read_u32()?;
        if len > max {
            return Err(XdrError::LengthExceedsMax { len, max });
        }
        let needed = (len as usize).saturating_mul(unit_len);
        let remaining = self.remaining();
        if needed > remaining {
            return Err(XdrError::LengthExceedsInput {
                len,
                needed,
                remaining,
            });
        }
        Ok(len as usize)
    }

    /// Reads variable-length opaque data of at most `max` bytes, without copying.
    pub fn read_opaque(&mut self, max: u32) -> Result<&'a [u8], XdrError> {
        let len = self.read_len(max, 1)?;
        let data = self.take(len)?;
        self.skip_padding(len)?;
        Ok(data)
    }

    /// Reads a string of at most `max` bytes, without copying. Fails on invalid UTF-8.
    pub fn read_str(&mut self, max: u32) -> Result<&'a str, XdrError> {
        let offset = self.pos + 4;
        let data = self.read_opaque(max)?;
        std::str::from_utf8(data).map_err(|_| XdrError::InvalidUtf8 { offset })
    }

    /// Reads an XDR `char` (a 4-byte word holding one byte, signed or unsigned).
    pub fn read_char(&mut self) -> Result<u8, XdrError> {
        let v = self.read_i32()?;
        if (-128..=255).contains(&v) {
            Ok(v as u8)
        } else {
            Err(XdrError::InvalidChar(v))
        }
    }

    /// Reads a value.
    pub fn decode<T: XdrDecode>(&mut self) -> Result<T, XdrError> {
        T::decode(self)
    }

    /// Reads a value with a declared maximum length.
    pub fn decode_bounded<T: XdrDecodeBounded>(&mut self, max: u32) -> Result<T, XdrError> {
        T::decode_bounded(self, max)
    }
}

/// Appends `len` zero bytes of padding when `len` is not a multiple of 4.
fn put_padding(out: &mut BytesMut, len: usize) {
    out.put_bytes(0, padding(len));
}

/// Writes variable-length opaque data (length, bytes, padding).
pub fn put_opaque(out: &mut BytesMut, data: &[u8]) {
    out.put_u32(data.len() as u32);
    out.put_slice(data);
    put_padding(out, data.len());
}

/// Writes an XDR `char`: the byte sign-extended to a 4-byte word, as libvirt's C code
/// does with the (signed) `char` type.
pub fn put_char(out: &mut BytesMut, byte: u8) {
    out.put_i32(byte as i8 as i32);
}

impl<T: XdrEncode + ?Sized> XdrEncode for &T {
    fn encode(&self, out: &mut BytesMut) {
        (**self).encode(out)
    }
}

impl XdrEncode for () {
    fn encode(&self, _out: &mut BytesMut) {}
}

impl XdrDecode for () {
    const MIN_LEN: usize = 0;
    fn decode(_buf: &mut Decoder<'_>) -> Result<(), XdrError> {
        Ok(())
    }
}

macro_rules! xdr_number {
    ($ty:ty, $put:ident, $read:ident, $len:expr) => {
        impl XdrEncode for $ty {
            fn encode(&self, out: &mut BytesMut) {
                out.$put(*self);
            }
        }
        impl XdrDecode for $ty {
            const MIN_LEN: usize = $len;
            fn decode(buf: &mut Decoder<'_>) -> Result<$ty, XdrError> {
                buf.$read()
            }
        }
    };
}

xdr_number!(i32, put_i32, read_i32, 4);
xdr_number!(u32, put_u32, read_u32, 4);
xdr_number!(i64, put_i64, read_i64, 8);
xdr_number!(u64, put_u64, read_u64, 8);

impl XdrEncode for f64 {
    fn encode(&self, out: &mut BytesMut) {
        out.put_u64(self.to_bits());
    }
}

impl XdrDecode for f64 {
    const MIN_LEN: usize = 8;
    fn decode(buf: &mut Decoder<'_>) -> Result<f64, XdrError> {
        Ok(f64::from_bits(buf.read_u64()?))
    }
}

impl XdrEncode for bool {
    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(u32::from(*self));
    }
}

impl XdrDecode for bool {
    fn decode(buf: &mut Decoder<'_>) -> Result<bool, XdrError> {
        match buf.read_u32()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(XdrError::InvalidBool(v)),
        }
    }
}

impl XdrEncode for str {
    fn encode(&self, out: &mut BytesMut) {
        put_opaque(out, self.as_bytes());
    }
}

impl XdrEncode for String {
    fn encode(&self, out: &mut BytesMut) {
        put_opaque(out, self.as_bytes());
    }
}

impl XdrDecode for String {
    fn decode(buf: &mut Decoder<'_>) -> Result<String, XdrError> {
        String::decode_bounded(buf, STRING_MAX)
    }
}

impl XdrDecodeBounded for String {
    fn decode_bounded(buf: &mut Decoder<'_>, max: u32) -> Result<String, XdrError> {
        buf.read_str(max).map(str::to_owned)
    }
}

/// Variable-length opaque data.
impl XdrEncode for [u8] {
    fn encode(&self, out: &mut BytesMut) {
        put_opaque(out, self);
    }
}

/// Variable-length opaque data (`opaque<N>`).
impl XdrEncode for Vec<u8> {
    fn encode(&self, out: &mut BytesMut) {
        put_opaque(out, self);
    }
}

impl XdrDecode for Vec<u8> {
    fn decode(buf: &mut Decoder<'_>) -> Result<Vec<u8>, XdrError> {
        Vec::<u8>::decode_bounded(buf, OPAQUE_MAX)
    }
}

impl XdrDecodeBounded for Vec<u8> {
    fn decode_bounded(buf: &mut Decoder<'_>, max: u32) -> Result<Vec<u8>, XdrError> {
        buf.read_opaque(max).map(<[u8]>::to_vec)
    }
}

/// Fixed-length opaque data (`opaque[N]`).
impl<const N: usize> XdrEncode for [u8; N] {
    fn encode(&self, out: &mut BytesMut) {
        out.put_slice(self);
        put_padding(out, N);
    }
}

impl<const N: usize> XdrDecode for [u8; N] {
    const MIN_LEN: usize = N + (4 - N % 4) % 4;
    fn decode(buf: &mut Decoder<'_>) -> Result<[u8; N], XdrError> {
        let mut out = [0u8; N];
        out.copy_from_slice(buf.take(N)?);
        buf.skip_padding(N)?;
        Ok(out)
    }
}

/// `remote_uuid`: 16 raw bytes.
impl XdrEncode for uuid::Uuid {
    fn encode(&self, out: &mut BytesMut) {
        out.put_slice(self.as_bytes());
    }
}

impl XdrDecode for uuid::Uuid {
    const MIN_LEN: usize = 16;
    fn decode(buf: &mut Decoder<'_>) -> Result<uuid::Uuid, XdrError> {
        Ok(uuid::Uuid::from_bytes(<[u8; 16]>::decode(buf)?))
    }
}

/// Optional data (`T *`): a presence word (0 or 1) followed by the value when present.
impl<T: XdrEncode> XdrEncode for Option<T> {
    fn encode(&self, out: &mut BytesMut) {
        match self {
            None => out.put_u32(0),
            Some(v) => {
                out.put_u32(1);
                v.encode(out);
            }
        }
    }
}

fn read_presence(buf: &mut Decoder<'_>) -> Result<bool, XdrError> {
    match buf.read_u32()? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(XdrError::InvalidOptional(v)),
    }
}

impl<T: XdrDecode> XdrDecode for Option<T> {
    fn decode(buf: &mut Decoder<'_>) -> Result<Option<T>, XdrError> {
        if read_presence(buf)? {
            T::decode(buf).map(Some)
        } else {
            Ok(None)
        }
    }
}

impl<T: XdrDecodeBounded> XdrDecodeBounded for Option<T> {
    fn decode_bounded(buf: &mut Decoder<'_>, max: u32) -> Result<Option<T>, XdrError> {
        if read_presence(buf)? {
            T::decode_bounded(buf, max).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Variable-length arrays (`T<N>`): a count word, then the elements.
impl<T: XdrEncode> XdrEncode for [T] {
    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.len() as u32);
        for item in self {
            item.encode(out);
        }
    }
}

impl<T: XdrEncode> XdrEncode for Vec<T> {
    fn encode(&self, out: &mut BytesMut) {
        self.as_slice().encode(out)
    }
}

impl<T: XdrDecode> XdrDecode for Vec<T> {
    fn decode(buf: &mut Decoder<'_>) -> Result<Vec<T>, XdrError> {
        Vec::<T>::decode_bounded(buf, ARRAY_MAX)
    }
}

impl<T: XdrDecode> XdrDecodeBounded for Vec<T> {
    fn decode_bounded(buf: &mut Decoder<'_>, max: u32) -> Result<Vec<T>, XdrError> {
        // Every element takes at least MIN_LEN bytes (at least 1 for the bound, so that a
        // zero-sized element type still cannot make us loop over a huge count).
        let count = buf.read_len(max, T::MIN_LEN.max(1))?;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(T::decode(buf)?);
        }
        Ok(out)
    }
}

/// A variable-length array of XDR chars (`char x<N>`): a count, then one 4-byte word
/// per byte.
///
/// libvirt uses these for the security model, DOI and label (which **include** the
/// terminating NUL) and for SASL data (raw bytes). [`CharArray::with_nul`] builds the
/// former, [`CharArray::text`] reads it back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CharArray(pub Vec<u8>);

impl CharArray {
    /// The bytes of `text` followed by a NUL, as libvirt sends C strings in `char<>`.
    pub fn with_nul(text: &str) -> CharArray {
        let mut bytes = Vec::with_capacity(text.len() + 1);
        bytes.extend_from_slice(text.as_bytes());
        bytes.push(0);
        CharArray(bytes)
    }

    /// The text up to the first NUL (or all of it when there is none), if it is UTF-8.
    pub fn text(&self) -> Result<&str, XdrError> {
        let end = self.0.iter().position(|b| *b == 0).unwrap_or(self.0.len());
        std::str::from_utf8(&self.0[..end]).map_err(|_| XdrError::InvalidUtf8 { offset: 0 })
    }
}

impl XdrEncode for CharArray {
    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.0.len() as u32);
        for b in &self.0 {
            put_char(out, *b);
        }
    }
}

impl XdrDecode for CharArray {
    fn decode(buf: &mut Decoder<'_>) -> Result<CharArray, XdrError> {
        CharArray::decode_bounded(buf, OPAQUE_MAX / 4)
    }
}

impl XdrDecodeBounded for CharArray {
    fn decode_bounded(buf: &mut Decoder<'_>, max: u32) -> Result<CharArray, XdrError> {
        let count = buf.read_len(max, 4)?;
        let mut bytes = Vec::with_capacity(count);
        for _ in 0..count {
            bytes.push(buf.read_char()?);
        }
        Ok(CharArray(bytes))
    }
}

/// A fixed array of XDR chars (`char x[N]`), e.g. `NODE_GET_INFO`'s `char model[32]`,
/// which costs `4 * N` bytes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FixedChars<const N: usize>(pub [u8; N]);

impl<const N: usize> FixedChars<N> {
    /// `text` truncated to `N - 1` bytes (at a character boundary) and NUL padded, the
    /// way libvirt fills such fields with `virStrcpy`.
    pub fn from_text(text: &str) -> FixedChars<N> {
        let mut out = [0u8; N];
        let mut end = text.len().min(N.saturating_sub(1));
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        out[..end].copy_from_slice(&text.as_bytes()[..end]);
        FixedChars(out)
    }

    /// The text up to the first NUL, if it is UTF-8.
    pub fn text(&self) -> Result<&str, XdrError> {
        let end = self.0.iter().position(|b| *b == 0).unwrap_or(N);
        std::str::from_utf8(&self.0[..end]).map_err(|_| XdrError::InvalidUtf8 { offset: 0 })
    }
}

impl<const N: usize> Default for FixedChars<N> {
    fn default() -> Self {
        FixedChars([0u8; N])
    }
}

impl<const N: usize> XdrEncode for FixedChars<N> {
    fn encode(&self, out: &mut BytesMut) {
        for b in &self.0 {
            put_char(out, *b);
        }
    }
}

impl<const N: usize> XdrDecode for FixedChars<N> {
    const MIN_LEN: usize = 4 * N;
    fn decode(buf: &mut Decoder<'_>) -> Result<FixedChars<N>, XdrError> {
        let mut out = [0u8; N];
        for b in out.iter_mut() {
            *b = buf.read_char()?;
        }
        Ok(FixedChars(out))
    }
}

/// Declares a struct whose XDR form is its fields in declaration order, and implements
/// [`XdrEncode`] and [`XdrDecode`] for it.
///
/// A field may carry a declared maximum after its type, `[max N]`, for
/// `string<N>`/`opaque<N>`/`T<N>`/`char<N>` fields; it is enforced when decoding.
///
/// ```
/// use vireo_wire::xdr_struct;
/// xdr_struct! {
///     /// Example.
///     #[derive(Default)]
///     pub struct NamesRet {
///         /// The names.
///         pub names: Vec<String> [max 16384],
///         /// A count.
///         pub ret: i32,
///     }
/// }
/// let v = NamesRet { names: vec!["a".into()], ret: 1 };
/// let bytes = vireo_wire::xdr::to_bytes(&v);
/// assert_eq!(vireo_wire::xdr::from_bytes::<NamesRet>(&bytes).unwrap(), v);
/// ```
#[macro_export]
macro_rules! xdr_struct {
    ($(
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $fvis:vis $field:ident : $ty:ty $([max $max:expr])?
            ),* $(,)?
        }
    )*) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        $vis struct $name {
            $(
                $(#[$fmeta])*
                $fvis $field: $ty,
            )*
        }

        impl $crate::xdr::XdrEncode for $name {
            #[allow(unused_variables)]
            fn encode(&self, out: &mut $crate::bytes::BytesMut) {
                $( $crate::xdr::XdrEncode::encode(&self.$field, out); )*
            }
        }

        impl $crate::xdr::XdrDecode for $name {
            const MIN_LEN: usize = 0 $(+ <$ty as $crate::xdr::XdrDecode>::MIN_LEN)*;

            #[allow(unused_variables)]
            fn decode(
                buf: &mut $crate::xdr::Decoder<'_>,
            ) -> ::core::result::Result<Self, $crate::xdr::XdrError> {
                ::core::result::Result::Ok($name {
                    $( $field: $crate::__xdr_field!(buf, $ty $(, $max)?), )*
                })
            }
        }
    )*};
}

/// Decodes one field for [`xdr_struct!`]: bounded when a maximum is given.
#[doc(hidden)]
#[macro_export]
macro_rules! __xdr_field {
    ($buf:ident, $ty:ty) => {
        <$ty as $crate::xdr::XdrDecode>::decode($buf)?
    };
    ($buf:ident, $ty:ty, $max:expr) => {
        <$ty as $crate::xdr::XdrDecodeBounded>::decode_bounded($buf, $max)?
    };
}

/// Declares a C-like enum carried as an XDR `int`, with [`XdrEncode`], [`XdrDecode`]
/// (unknown values are an [`XdrError::InvalidEnum`]) and a `from_i32` conversion.
#[macro_export]
macro_rules! xdr_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:expr ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(i32)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant = $value, )*
        }

        impl $name {
            /// Converts a wire value; `None` for values the enum does not define.
            pub fn from_i32(value: i32) -> ::core::option::Option<$name> {
                match value {
                    $( v if v == $value => ::core::option::Option::Some($name::$variant), )*
                    _ => ::core::option::Option::None,
                }
            }
        }

        impl $crate::xdr::XdrEncode for $name {
            fn encode(&self, out: &mut $crate::bytes::BytesMut) {
                $crate::xdr::XdrEncode::encode(&(*self as i32), out);
            }
        }

        impl $crate::xdr::XdrDecode for $name {
            fn decode(
                buf: &mut $crate::xdr::Decoder<'_>,
            ) -> ::core::result::Result<$name, $crate::xdr::XdrError> {
                let value = buf.read_i32()?;
                $name::from_i32(value).ok_or($crate::xdr::XdrError::InvalidEnum {
                    what: stringify!($name),
                    value,
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: XdrEncode + XdrDecode + PartialEq + std::fmt::Debug>(v: T, hex: &str) {
        let bytes = to_bytes(&v);
        assert_eq!(hex_of(&bytes), hex, "encoding of {v:?}");
        assert_eq!(from_bytes_exact::<T>(&bytes).unwrap(), v);
    }

    pub(crate) fn hex_of(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn integers() {
        round_trip(0i32, "00000000");
        round_trip(-1i32, "ffffffff");
        round_trip(42u32, "0000002a");
        round_trip(u32::MAX, "ffffffff");
        round_trip(-2i64, "fffffffffffffffe");
        round_trip(9_000_000u64, "0000000000895440");
        round_trip(u64::MAX, "ffffffffffffffff");
    }

    #[test]
    fn floats_and_bools() {
        round_trip(1.5f64, "3ff8000000000000");
        round_trip(-0.0f64, "8000000000000000");
        round_trip(true, "00000001");
        round_trip(false, "00000000");
        assert_eq!(
            from_bytes::<bool>(&[0, 0, 0, 2]),
            Err(XdrError::InvalidBool(2))
        );
        let nan = from_bytes::<f64>(&to_bytes(&f64::NAN)).unwrap();
        assert!(nan.is_nan());
    }

    #[test]
    fn strings_pad() {
        round_trip(String::new(), "00000000");
        round_trip("a".to_string(), "0000000161000000");
        round_trip("test".to_string(), "0000000474657374");
        // The observed encoding of "test:///default" (§5).
        round_trip(
            Some("test:///default".to_string()),
            "000000010000000f746573743a2f2f2f64656661756c7400",
        );
        round_trip(None::<String>, "00000000");
        round_trip("héllo".to_string(), "0000000668c3a96c6c6f0000");
    }

    #[test]
    fn nonzero_padding_is_tolerated() {
        let bytes = [0, 0, 0, 1, b'x', 0xff, 0xee, 0xdd];
        assert_eq!(from_bytes_exact::<String>(&bytes).unwrap(), "x");
    }

    #[test]
    fn bad_utf8_is_an_error() {
        let bytes = [0, 0, 0, 2, 0xc3, 0x28, 0, 0];
        assert_eq!(
            from_bytes::<String>(&bytes),
            Err(XdrError::InvalidUtf8 { offset: 4 })
        );
    }

    #[test]
    fn huge_lengths_fail_before_allocating() {
        let bytes = [0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4];
        assert!(matches!(
            from_bytes::<String>(&bytes),
            Err(XdrError::LengthExceedsMax {
                len: 0xffff_ffff,
                ..
            })
        ));
        assert!(matches!(
            from_bytes::<Vec<u8>>(&bytes),
            Err(XdrError::LengthExceedsMax { .. })
        ));
        assert!(matches!(
            from_bytes::<Vec<u64>>(&bytes),
            Err(XdrError::LengthExceedsMax { .. })
        ));
        // Within the maximum but beyond the input.
        let bytes = [0x00, 0x10, 0x00, 0x00, 1, 2, 3, 4];
        assert_eq!(
            from_bytes::<String>(&bytes),
            Err(XdrError::LengthExceedsInput {
                len: 0x0010_0000,
                needed: 0x0010_0000,
                remaining: 4
            })
        );
        // An array of hypers needs 8 bytes per element.
        let bytes = [0, 0, 0, 1, 0, 0, 0, 0];
        assert_eq!(
            from_bytes::<Vec<u64>>(&bytes),
            Err(XdrError::LengthExceedsInput {
                len: 1,
                needed: 8,
                remaining: 4
            })
        );
        // Declared maxima are enforced.
        let mut d = Decoder::new(&[0, 0, 0, 5, 1, 2, 3, 4, 5, 0, 0, 0]);
        assert_eq!(
            d.decode_bounded::<Vec<u8>>(4),
            Err(XdrError::LengthExceedsMax { len: 5, max: 4 })
        );
    }

    #[test]
    fn truncated_inputs() {
        assert_eq!(
            from_bytes::<u32>(&[0, 0, 1]),
            Err(XdrError::Truncated {
                needed: 4,
                remaining: 3
            })
        );
        assert!(from_bytes::<u64>(&[0, 0, 0, 0, 0]).is_err());
        // Length fine but the padding is missing.
        assert!(from_bytes::<String>(&[0, 0, 0, 1, b'x']).is_err());
        assert!(from_bytes::<uuid::Uuid>(&[0; 15]).is_err());
        assert!(from_bytes::<Option<u32>>(&[0, 0, 0, 1]).is_err());
    }

    #[test]
    fn optional_flag_must_be_0_or_1() {
        assert_eq!(
            from_bytes::<Option<u32>>(&[0, 0, 0, 2, 0, 0, 0, 0]),
            Err(XdrError::InvalidOptional(2))
        );
    }

    #[test]
    fn opaque_and_arrays() {
        round_trip(vec![1u8, 2, 3], "0000000301020300");
        round_trip(Vec::<u8>::new(), "00000000");
        round_trip(vec![1u32, 2], "000000020000000100000002");
        round_trip(vec![-1i64], "00000001ffffffffffffffff");
        round_trip(
            vec!["a".to_string(), "bc".to_string()],
            "0000000200000001610000000000000262630000",
        );
        round_trip([1u8, 2, 3, 4, 5], "0102030405000000");
        round_trip(vec![Some(1u32), None], "00000002000000010000000100000000");
    }

    #[test]
    fn uuids_are_16_raw_bytes() {
        let u = uuid::Uuid::parse_str("6695eb01-f6a4-8304-79aa-97f2502e193f").unwrap();
        round_trip(u, "6695eb01f6a4830479aa97f2502e193f");
        round_trip(*u.as_bytes(), "6695eb01f6a4830479aa97f2502e193f");
    }

    #[test]
    fn char_arrays() {
        // Observed: "testSecurity" is count 13, one word per character plus the NUL.
        let model = CharArray::with_nul("testSecurity");
        let bytes = to_bytes(&model);
        assert_eq!(bytes.len(), 4 + 13 * 4);
        assert_eq!(&bytes[..8], &[0, 0, 0, 13, 0, 0, 0, b't']);
        assert_eq!(&bytes[bytes.len() - 4..], &[0, 0, 0, 0]);
        let back: CharArray = from_bytes_exact(&bytes).unwrap();
        assert_eq!(back.text().unwrap(), "testSecurity");
        // An empty doi is a single NUL.
        round_trip(CharArray::with_nul(""), "0000000100000000");
        // High bytes are sign-extended like C's char, and decode back.
        round_trip(CharArray(vec![0xe9]), "00000001ffffffe9");
        assert_eq!(
            from_bytes::<CharArray>(&[0, 0, 0, 1, 0, 0, 1, 0]),
            Err(XdrError::InvalidChar(256))
        );
    }

    #[test]
    fn fixed_chars_model() {
        // Observed: "i686" as 00000069 00000036 00000038 00000036 then 28 zero words.
        let model = FixedChars::<32>::from_text("i686");
        let bytes = to_bytes(&model);
        assert_eq!(bytes.len(), 128);
        assert_eq!(hex_of(&bytes[..16]), "00000069000000360000003800000036");
        assert!(bytes[16..].iter().all(|b| *b == 0));
        let back: FixedChars<32> = from_bytes_exact(&bytes).unwrap();
        assert_eq!(back.text().unwrap(), "i686");
        // Long text is truncated to leave room for the NUL.
        let long = FixedChars::<4>::from_text("abcdef");
        assert_eq!(long.text().unwrap(), "abc");
        let multi = FixedChars::<4>::from_text("aéé");
        assert_eq!(multi.text().unwrap(), "aé");
    }

    #[test]
    fn trailing_bytes() {
        assert_eq!(from_bytes::<u32>(&[0, 0, 0, 1, 9]).unwrap(), 1);
        assert_eq!(
            from_bytes_exact::<u32>(&[0, 0, 0, 1, 9]),
            Err(XdrError::TrailingBytes(1))
        );
    }

    xdr_enum! {
        /// Test enum.
        enum Colour { Red = 0, Blue = 2 }
    }

    #[test]
    fn enums() {
        round_trip(Colour::Blue, "00000002");
        assert_eq!(
            from_bytes::<Colour>(&[0, 0, 0, 1]),
            Err(XdrError::InvalidEnum {
                what: "Colour",
                value: 1
            })
        );
    }

    xdr_struct! {
        /// Test struct.
        struct Sample {
            name: String [max 8],
            ids: Vec<i32> [max 2],
            maybe: Option<String> [max 3],
            total: u64,
        }
    }

    #[test]
    fn struct_macro() {
        assert_eq!(<Sample as XdrDecode>::MIN_LEN, 4 + 4 + 4 + 8);
        let s = Sample {
            name: "abc".into(),
            ids: vec![7],
            maybe: Some("xy".into()),
            total: 5,
        };
        round_trip(
            s,
            "00000003616263000000000100000007000000010000000278790000\
             0000000000000005",
        );
        let too_long = Sample {
            name: "123456789".into(),
            ids: vec![],
            maybe: None,
            total: 0,
        };
        assert_eq!(
            from_bytes::<Sample>(&to_bytes(&too_long)),
            Err(XdrError::LengthExceedsMax { len: 9, max: 8 })
        );
        let three = Sample {
            name: String::new(),
            ids: vec![1, 2, 3],
            maybe: None,
            total: 0,
        };
        assert_eq!(
            from_bytes::<Sample>(&to_bytes(&three)),
            Err(XdrError::LengthExceedsMax { len: 3, max: 2 })
        );
    }
}

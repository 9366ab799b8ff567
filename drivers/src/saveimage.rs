//! Save image formats: libvirt's qemu save image and the test driver's save image.
//!
//! A saved guest is a file that starts with a small header saying what is inside, then
//! the domain XML, then the hypervisor's own state. Vireo reads and writes exactly the
//! layout libvirt uses, so that an image saved by libvirtd can be restored by vireod and
//! the other way round.
//!
//! # The qemu save image
//!
//! ```text
//! offset  size  field
//!      0    16  magic: "LibvirtQemudPart" while being written, "LibvirtQemudSave" when complete
//!     16     4  version (2; 1 is still accepted when reading)
//!     20     4  data_len: size of the XML + cookie region that follows the header
//!     24     4  was_running (1 if the guest ran when it was saved)
//!     28     4  format (0 raw, 1 gzip, 2 bzip2, 3 xz, 4 lzop, 5 zstd, 6 sparse/mapped-ram)
//!     32     4  cookie offset, relative to the start of the region (0 = no cookie)
//!     36    56  unused, zero
//!     92  data_len  XML + NUL, then cookie + NUL if any, then zero padding
//! 92+data_len   QEMU's migration stream (possibly compressed, see `format`)
//! ```
//!
//! The integers are in the byte order of the host that wrote the image (libvirt writes the
//! C struct as it is in memory). A reader that finds a version larger than it knows swaps
//! the bytes and tries again, which is how libvirt recognises an image written on a host of
//! the other endianness.
//!
//! libvirt pads the region with at least 64 KiB of zeros so that the XML can later be
//! replaced by a larger one in place (`save-image-define-xml`). Vireo does the same and
//! additionally rounds the region up so that the migration stream starts on a 4 KiB
//! boundary, which lets the I/O helper write the stream with `O_DIRECT`. libvirt reads the
//! region length from the header, so the extra padding is invisible to it.
//!
//! The header is first written with the *partial* magic. Only after the stream has been
//! written and synced is the magic switched to the final one (and synced again), so a file
//! with the partial magic is always an interrupted save: [`read_header`] reports it as
//! [`SaveImageError::Partial`] so that a restarted daemon can recognise and remove it.
//!
//! # The test driver's save image
//!
//! libvirt's `test:///` driver writes `"TestGuestMagic\0"` (15 bytes), the XML length as a
//! native `int`, and the XML without a terminating NUL; it refuses to read an XML length
//! outside 1..=8192. See [`test_image`].

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The final magic of a complete qemu save image.
pub const QEMU_SAVE_MAGIC: &[u8; 16] = b"LibvirtQemudSave";
/// The magic of a qemu save image that is still being written (or whose save failed).
pub const QEMU_SAVE_PARTIAL: &[u8; 16] = b"LibvirtQemudPart";
/// The newest header version libvirt writes and understands.
pub const QEMU_SAVE_VERSION: u32 = 2;
/// Size of the fixed header in bytes (16 magic + 5 × u32 + 14 × u32 unused).
pub const HEADER_LEN: u64 = 92;
/// Zero padding libvirt reserves after the XML (and cookie) so it can grow in place.
pub const XML_RESERVE: u64 = 64 * 1024;
/// Alignment of the migration stream's start in images Vireo writes (for `O_DIRECT`).
pub const DATA_ALIGN: u64 = 4096;

/// How the migration stream after the header is encoded (libvirt's `virQEMUSaveFormat`;
/// the numbers are on-disk values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SaveFormat {
    /// The plain QEMU migration stream.
    #[default]
    Raw,
    /// Compressed with `gzip -c`.
    Gzip,
    /// Compressed with `bzip2 -c`.
    Bzip2,
    /// Compressed with `xz -c -3`.
    Xz,
    /// Compressed with `lzop -c`.
    Lzop,
    /// Compressed with `zstd -c`.
    Zstd,
    /// QEMU's mapped-ram layout written directly by QEMU into the file.
    Sparse,
}

impl SaveFormat {
    /// The on-disk number.
    pub fn to_u32(self) -> u32 {
        match self {
            SaveFormat::Raw => 0,
            SaveFormat::Gzip => 1,
            SaveFormat::Bzip2 => 2,
            SaveFormat::Xz => 3,
            SaveFormat::Lzop => 4,
            SaveFormat::Zstd => 5,
            SaveFormat::Sparse => 6,
        }
    }

    /// The format for an on-disk number, if it is one libvirt defines.
    pub fn from_u32(v: u32) -> Option<SaveFormat> {
        Some(match v {
            0 => SaveFormat::Raw,
            1 => SaveFormat::Gzip,
            2 => SaveFormat::Bzip2,
            3 => SaveFormat::Xz,
            4 => SaveFormat::Lzop,
            5 => SaveFormat::Zstd,
            6 => SaveFormat::Sparse,
            _ => return None,
        })
    }

    /// The name libvirt uses in `qemu.conf` (`save_image_format`).
    pub fn name(self) -> &'static str {
        match self {
            SaveFormat::Raw => "raw",
            SaveFormat::Gzip => "gzip",
            SaveFormat::Bzip2 => "bzip2",
            SaveFormat::Xz => "xz",
            SaveFormat::Lzop => "lzop",
            SaveFormat::Zstd => "zstd",
            SaveFormat::Sparse => "sparse",
        }
    }
}

/// What a qemu save image says about its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveHeader {
    /// Header version (1 or 2; Vireo writes 2).
    pub version: u32,
    /// The domain XML (migratable form), without the terminating NUL.
    pub xml: String,
    /// Whether the guest was running when it was saved (restore resumes it then).
    pub was_running: bool,
    /// Encoding of the migration stream.
    pub format: SaveFormat,
    /// libvirt's save cookie (an XML fragment with CPU data), if any.
    pub cookie: Option<String>,
}

impl SaveHeader {
    /// A version-2 raw header for `xml` without cookie.
    pub fn new(xml: impl Into<String>, was_running: bool) -> SaveHeader {
        SaveHeader {
            version: QEMU_SAVE_VERSION,
            xml: xml.into(),
            was_running,
            format: SaveFormat::Raw,
            cookie: None,
        }
    }
}

/// Why a file is not a usable qemu save image.
#[derive(Debug, thiserror::Error)]
pub enum SaveImageError {
    /// The file could not be read (or written, for the update functions).
    #[error("cannot access the save image: {0}")]
    Io(#[from] io::Error),
    /// The file ends before the part named.
    #[error("save image is truncated: {what} needs {needed} bytes, the file has {available}")]
    Truncated {
        /// Which part is cut off ("header", "domain XML", "migration stream").
        what: &'static str,
        /// Bytes the part needs from the start of the file.
        needed: u64,
        /// Bytes the file has.
        available: u64,
    },
    /// The header has the partial magic: a save that never completed.
    #[error("save image is incomplete (an interrupted save left it behind)")]
    Partial,
    /// The file does not start with either magic: not a qemu save image at all.
    #[error("image magic is incorrect: not a libvirt qemu save image")]
    BadMagic,
    /// A header version newer than this code knows (in either byte order).
    #[error("image version is not supported ({0} > {QEMU_SAVE_VERSION})")]
    UnsupportedVersion(u32),
    /// A stream format number libvirt does not define.
    #[error("unsupported save image format: {0}")]
    UnsupportedFormat(u32),
    /// The region length or cookie offset in the header cannot be right.
    #[error("invalid header: {0}")]
    InvalidHeader(String),
    /// The XML or cookie in the region is not a NUL-terminated UTF-8 string.
    #[error("corrupted save image: {0}")]
    Corrupted(String),
    /// A new XML does not fit into the region reserved when the image was written.
    #[error("new xml too large to fit in file ({needed} bytes needed, {available} reserved)")]
    XmlTooLarge {
        /// Bytes the new XML and cookie need.
        needed: u64,
        /// Bytes the image reserves.
        available: u64,
    },
    /// The XML (or cookie) to write contains a NUL byte or is too large for the header.
    #[error("invalid data for the save image header: {0}")]
    InvalidInput(String),
}

/// The raw fields of the fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RawHeader {
    magic: [u8; 16],
    version: u32,
    data_len: u32,
    was_running: u32,
    format: u32,
    cookie_offset: u32,
}

impl RawHeader {
    fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut b = [0u8; HEADER_LEN as usize];
        b[..16].copy_from_slice(&self.magic);
        let fields = [
            self.version,
            self.data_len,
            self.was_running,
            self.format,
            self.cookie_offset,
        ];
        for (i, v) in fields.iter().enumerate() {
            b[16 + 4 * i..20 + 4 * i].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }

    fn decode(b: &[u8; HEADER_LEN as usize]) -> RawHeader {
        let word = |i: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&b[16 + 4 * i..20 + 4 * i]);
            u32::from_ne_bytes(w)
        };
        let mut magic = [0u8; 16];
        magic.copy_from_slice(&b[..16]);
        RawHeader {
            magic,
            version: word(0),
            data_len: word(1),
            was_running: word(2),
            format: word(3),
            cookie_offset: word(4),
        }
    }

    fn swapped(self) -> RawHeader {
        RawHeader {
            magic: self.magic,
            version: self.version.swap_bytes(),
            data_len: self.data_len.swap_bytes(),
            was_running: self.was_running.swap_bytes(),
            format: self.format.swap_bytes(),
            cookie_offset: self.cookie_offset.swap_bytes(),
        }
    }
}

/// The XML + NUL + cookie + NUL bytes of a header, and the cookie offset.
fn region_payload(xml: &str, cookie: Option<&str>) -> Result<(Vec<u8>, u32), SaveImageError> {
    if xml.as_bytes().contains(&0) {
        return Err(SaveImageError::InvalidInput(
            "the domain XML contains a NUL byte".into(),
        ));
    }
    let mut payload = Vec::with_capacity(xml.len() + 2 + cookie.map_or(0, str::len));
    payload.extend_from_slice(xml.as_bytes());
    payload.push(0);
    let mut cookie_offset = 0u32;
    if let Some(c) = cookie {
        if c.as_bytes().contains(&0) {
            return Err(SaveImageError::InvalidInput(
                "the save cookie contains a NUL byte".into(),
            ));
        }
        cookie_offset = u32::try_from(payload.len())
            .map_err(|_| SaveImageError::InvalidInput("the domain XML is too large".into()))?;
        payload.extend_from_slice(c.as_bytes());
        payload.push(0);
    }
    Ok((payload, cookie_offset))
}

/// The region length for a payload of `len` bytes: at least the 64 KiB reserve, rounded
/// so that the stream after the region starts on a [`DATA_ALIGN`] boundary.
fn region_len(len: u64) -> u64 {
    let end = HEADER_LEN + len + XML_RESERVE;
    end.div_ceil(DATA_ALIGN) * DATA_ALIGN - HEADER_LEN
}

/// Encodes a complete header + region for `header` with `magic`; returns the bytes
/// (whose length is the data offset).
fn encode_image_start(header: &SaveHeader, magic: &[u8; 16]) -> Result<Vec<u8>, SaveImageError> {
    let (payload, cookie_offset) = region_payload(&header.xml, header.cookie.as_deref())?;
    let data_len = u32::try_from(region_len(payload.len() as u64))
        .map_err(|_| SaveImageError::InvalidInput("the domain XML is too large".into()))?;
    let raw = RawHeader {
        magic: *magic,
        version: header.version,
        data_len,
        was_running: u32::from(header.was_running),
        format: header.format.to_u32(),
        cookie_offset,
    };
    let total = HEADER_LEN as usize + data_len as usize;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&raw.encode());
    out.extend_from_slice(&payload);
    out.resize(total, 0);
    Ok(out)
}

/// Writes the header (with the partial magic), the XML, the cookie and the padding at the
/// start of `file`, and returns the data offset where the migration stream must begin
/// (a multiple of [`DATA_ALIGN`]). Nothing is synced; the stream copy syncs everything.
pub fn write_partial_header(file: &File, header: &SaveHeader) -> io::Result<u64> {
    let bytes = encode_image_start(header, QEMU_SAVE_PARTIAL).map_err(|e| match e {
        SaveImageError::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidInput, other.to_string()),
    })?;
    file.write_all_at(&bytes, 0)?;
    Ok(bytes.len() as u64)
}

/// Marks the image complete: replaces the partial magic by the final one and
/// `fdatasync`s. Call it only after the stream itself has been written and synced.
pub fn finalize(file: &File) -> io::Result<()> {
    file.write_all_at(QEMU_SAVE_MAGIC, 0)?;
    file.sync_data()
}

/// Reads exactly `buf.len()` bytes at `offset`, or reports how many there were.
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// A NUL-terminated UTF-8 string at the start of `bytes`.
fn c_string(bytes: &[u8], what: &str) -> Result<String, SaveImageError> {
    let end = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| SaveImageError::Corrupted(format!("the {what} is not NUL-terminated")))?;
    String::from_utf8(bytes[..end].to_vec())
        .map_err(|_| SaveImageError::Corrupted(format!("the {what} is not valid UTF-8")))
}

/// Reads and checks the raw header at the start of `file`, including the magic.
/// Returns the header in host byte order, the file length and whether the file's byte
/// order is the other one.
fn read_raw_header(file: &File) -> Result<(RawHeader, u64, bool), SaveImageError> {
    let file_len = file.metadata()?.len();
    let mut buf = [0u8; HEADER_LEN as usize];
    let got = read_exact_at(file, &mut buf, 0)?;
    if got < buf.len() {
        // A short file that starts with neither magic is foreign rather than truncated.
        let m = &buf[..got.min(16)];
        if !QEMU_SAVE_MAGIC.starts_with(m) && !QEMU_SAVE_PARTIAL.starts_with(m) {
            return Err(SaveImageError::BadMagic);
        }
        return Err(SaveImageError::Truncated {
            what: "header",
            needed: HEADER_LEN,
            available: file_len,
        });
    }
    let mut raw = RawHeader::decode(&buf);
    if &raw.magic != QEMU_SAVE_MAGIC {
        if &raw.magic == QEMU_SAVE_PARTIAL {
            return Err(SaveImageError::Partial);
        }
        return Err(SaveImageError::BadMagic);
    }
    let swapped = raw.version > QEMU_SAVE_VERSION;
    if swapped {
        raw = raw.swapped();
    }
    if raw.version > QEMU_SAVE_VERSION || raw.version == 0 {
        // Report the version as it reads in this host's byte order.
        let shown = if raw.version == 0 {
            0
        } else {
            raw.version.swap_bytes()
        };
        return Err(SaveImageError::UnsupportedVersion(shown));
    }
    Ok((raw, file_len, swapped))
}

/// Reads the header, XML and cookie of a qemu save image and returns them with the data
/// offset (where the migration stream starts).
///
/// Rejects, each with its own error: files shorter than the header or the region the
/// header announces ([`SaveImageError::Truncated`]), or with no stream after it; images
/// with the partial magic ([`SaveImageError::Partial`]); foreign files
/// ([`SaveImageError::BadMagic`]); unknown versions and formats; impossible lengths; and
/// XML or cookie that are not NUL-terminated UTF-8.
pub fn read_header(file: &File) -> Result<(SaveHeader, u64), SaveImageError> {
    let (raw, file_len, _) = read_raw_header(file)?;
    let format =
        SaveFormat::from_u32(raw.format).ok_or(SaveImageError::UnsupportedFormat(raw.format))?;
    if raw.data_len == 0 {
        return Err(SaveImageError::InvalidHeader(
            "invalid header data length: 0".into(),
        ));
    }
    if raw.cookie_offset > raw.data_len {
        return Err(SaveImageError::InvalidHeader(format!(
            "cookie offset {} lies beyond the data length {}",
            raw.cookie_offset, raw.data_len
        )));
    }
    let data_offset = HEADER_LEN + u64::from(raw.data_len);
    if file_len < data_offset {
        return Err(SaveImageError::Truncated {
            what: "domain XML",
            needed: data_offset,
            available: file_len,
        });
    }
    if format != SaveFormat::Sparse && file_len == data_offset {
        return Err(SaveImageError::Truncated {
            what: "migration stream",
            needed: data_offset + 1,
            available: file_len,
        });
    }
    let mut region = vec![0u8; raw.data_len as usize];
    let got = read_exact_at(file, &mut region, HEADER_LEN)?;
    if got < region.len() {
        return Err(SaveImageError::Truncated {
            what: "domain XML",
            needed: data_offset,
            available: HEADER_LEN + got as u64,
        });
    }
    let xml_end = if raw.cookie_offset != 0 {
        raw.cookie_offset as usize
    } else {
        region.len()
    };
    let xml = c_string(&region[..xml_end], "domain XML")?;
    if xml.trim().is_empty() {
        return Err(SaveImageError::Corrupted("the domain XML is empty".into()));
    }
    let cookie = if raw.cookie_offset != 0 {
        Some(c_string(&region[xml_end..], "save cookie")?)
    } else {
        None
    };
    Ok((
        SaveHeader {
            version: raw.version,
            xml,
            was_running: raw.was_running != 0,
            format,
            cookie,
        },
        data_offset,
    ))
}

/// Whether `file` is an interrupted save, without judging the rest: it starts with the
/// partial magic, or it is shorter than the magic and what it has is the start of the
/// partial magic (empty included: the writer died before or while writing the header).
/// A restarted daemon uses it to find and remove left-over images.
pub fn is_partial(file: &File) -> io::Result<bool> {
    let mut magic = [0u8; 16];
    let n = read_exact_at(file, &mut magic, 0)?;
    Ok(QEMU_SAVE_PARTIAL.starts_with(&magic[..n]))
}

/// Replaces the domain XML stored in a complete image in place (for
/// `save-image-define-xml`), keeping the cookie, the magic and the stream; `fdatasync`s.
/// Fails with [`SaveImageError::XmlTooLarge`] when the new XML and the cookie do not fit
/// into the region reserved when the image was written. `file` must be open for writing.
pub fn update_xml(file: &File, xml: &str) -> Result<(), SaveImageError> {
    let (old, data_offset) = read_header(file)?;
    let (raw, _, swapped) = read_raw_header(file)?;
    let (payload, cookie_offset) = region_payload(xml, old.cookie.as_deref())?;
    let available = u64::from(raw.data_len);
    if payload.len() as u64 > available {
        return Err(SaveImageError::XmlTooLarge {
            needed: payload.len() as u64,
            available,
        });
    }
    let mut region = payload;
    region.resize(raw.data_len as usize, 0);
    // Keep the header in the byte order it was written in.
    let mut new_raw = RawHeader {
        cookie_offset,
        ..raw
    };
    if swapped {
        new_raw = new_raw.swapped();
    }
    debug_assert_eq!(HEADER_LEN + region.len() as u64, data_offset);
    file.write_all_at(&region, HEADER_LEN)?;
    file.write_all_at(&new_raw.encode(), 0)?;
    file.sync_data()?;
    Ok(())
}

/// The save image of libvirt's `test:///` driver: magic, native `int` length, XML.
pub mod test_image {
    use std::fs::{File, OpenOptions};
    use std::io::{self, Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::{Path, PathBuf};

    /// The magic, including the C string's terminating NUL (15 bytes), as libvirt writes it.
    pub const MAGIC: &[u8; 15] = b"TestGuestMagic\0";
    /// The largest XML length libvirt's test driver accepts when reading.
    pub const MAX_XML_LEN: usize = 8192;

    /// Why a test driver save image cannot be read.
    #[derive(Debug, thiserror::Error)]
    pub enum TestImageError {
        /// The file cannot be opened or read.
        #[error("cannot read domain image '{}': {source}", path.display())]
        Open {
            /// The image path.
            path: PathBuf,
            /// The OS error.
            source: io::Error,
        },
        /// The file is shorter than the magic.
        #[error("incomplete save header in '{}'", path.display())]
        IncompleteHeader {
            /// The image path.
            path: PathBuf,
        },
        /// The file does not start with the test driver's magic.
        #[error("mismatched header magic")]
        BadMagic,
        /// The length field is missing.
        #[error("failed to read metadata length in '{}'", path.display())]
        NoLength {
            /// The image path.
            path: PathBuf,
        },
        /// The length is outside 1..=8192.
        #[error("length of metadata out of range")]
        LengthOutOfRange(i32),
        /// The file ends before the XML does, or the XML is not UTF-8.
        #[error("incomplete metadata in '{}'", path.display())]
        IncompleteMetadata {
            /// The image path.
            path: PathBuf,
        },
    }

    /// Encodes an image for `xml`.
    pub fn encode(xml: &str) -> io::Result<Vec<u8>> {
        let len = i32::try_from(xml.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "domain XML too large"))?;
        let mut out = Vec::with_capacity(MAGIC.len() + 4 + xml.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(xml.as_bytes());
        Ok(out)
    }

    /// Decodes an image from a reader; `path` is only used in messages.
    pub fn decode(mut r: impl Read, path: &Path) -> Result<String, TestImageError> {
        let open = |source| TestImageError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut magic = [0u8; 15];
        if read_full(&mut r, &mut magic).map_err(open)? < magic.len() {
            return Err(TestImageError::IncompleteHeader {
                path: path.to_path_buf(),
            });
        }
        if &magic != MAGIC {
            return Err(TestImageError::BadMagic);
        }
        let mut len = [0u8; 4];
        if read_full(&mut r, &mut len).map_err(open)? < len.len() {
            return Err(TestImageError::NoLength {
                path: path.to_path_buf(),
            });
        }
        let len = i32::from_ne_bytes(len);
        if len < 1 || len as usize > MAX_XML_LEN {
            return Err(TestImageError::LengthOutOfRange(len));
        }
        let mut xml = vec![0u8; len as usize];
        if read_full(&mut r, &mut xml).map_err(open)? < xml.len() {
            return Err(TestImageError::IncompleteMetadata {
                path: path.to_path_buf(),
            });
        }
        String::from_utf8(xml).map_err(|_| TestImageError::IncompleteMetadata {
            path: path.to_path_buf(),
        })
    }

    fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match r.read(&mut buf[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// Writes an image for `xml` to `path` (created with mode 0600 or truncated) and
    /// syncs it; on failure the file is removed, as libvirt does.
    pub fn write(path: &Path, xml: &str) -> io::Result<()> {
        let bytes = encode(xml)?;
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)?;
            f.write_all(&bytes)?;
            f.sync_data()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(path);
        }
        result
    }

    /// Reads the XML from the image at `path`.
    pub fn read(path: &Path) -> Result<String, TestImageError> {
        let f = File::open(path).map_err(|source| TestImageError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        decode(io::BufReader::new(f), path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const XML: &str = "<domain type='kvm'><name>g</name><memory>65536</memory></domain>\n";

    fn image_with(header: &SaveHeader, stream: &[u8]) -> (tempfile::NamedTempFile, u64) {
        let f = tempfile::NamedTempFile::new().unwrap();
        let off = write_partial_header(f.as_file(), header).unwrap();
        f.as_file().write_all_at(stream, off).unwrap();
        (f, off)
    }

    fn complete_image(header: &SaveHeader) -> (tempfile::NamedTempFile, u64) {
        let (f, off) = image_with(header, b"QEVM\0\0\0\x03rest-of-stream");
        finalize(f.as_file()).unwrap();
        (f, off)
    }

    /// A header laid out by hand from libvirt's struct (little-endian host).
    fn libvirt_style(magic: &[u8; 16], fields: [u32; 5], region: &[u8]) -> Vec<u8> {
        let mut v = magic.to_vec();
        for f in fields {
            v.extend_from_slice(&f.to_le_bytes());
        }
        v.extend_from_slice(&[0u8; 56]);
        assert_eq!(v.len(), 92);
        v.extend_from_slice(region);
        v
    }

    fn file_of(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn round_trip_without_cookie() {
        let h = SaveHeader::new(XML, true);
        let (f, off) = complete_image(&h);
        assert_eq!(off % DATA_ALIGN, 0);
        assert!(off >= HEADER_LEN + XML.len() as u64 + 1 + XML_RESERVE);
        let (got, got_off) = read_header(f.as_file()).unwrap();
        assert_eq!(got, h);
        assert_eq!(got_off, off);
        let mut stream = [0u8; 4];
        f.as_file().read_exact_at(&mut stream, off).unwrap();
        assert_eq!(&stream, b"QEVM");
    }

    #[test]
    fn round_trip_with_cookie_and_format() {
        let h = SaveHeader {
            version: 2,
            xml: XML.into(),
            was_running: false,
            format: SaveFormat::Zstd,
            cookie: Some("<cookie><cpu mode='custom'/></cookie>".into()),
        };
        let (f, off) = complete_image(&h);
        assert_eq!(read_header(f.as_file()).unwrap(), (h, off));
    }

    #[test]
    fn partial_image_is_reported_as_partial() {
        let h = SaveHeader::new(XML, true);
        let (f, _) = image_with(&h, b"QEVM");
        assert!(is_partial(f.as_file()).unwrap());
        assert!(matches!(
            read_header(f.as_file()),
            Err(SaveImageError::Partial)
        ));
        finalize(f.as_file()).unwrap();
        assert!(!is_partial(f.as_file()).unwrap());
        read_header(f.as_file()).unwrap();
        // A crash before or while the header was written.
        assert!(is_partial(file_of(b"").as_file()).unwrap());
        assert!(is_partial(file_of(b"LibvirtQem").as_file()).unwrap());
        assert!(!is_partial(file_of(b"LibvirtQemudSav").as_file()).unwrap());
        assert!(!is_partial(file_of(b"something else").as_file()).unwrap());
    }

    #[test]
    fn foreign_files_have_bad_magic() {
        for bytes in [
            &b"hello, this is not a save image at all, but it is long enough to hold a header...................."[..],
            b"short",
        ] {
            let f = file_of(bytes);
            let e = read_header(f.as_file()).unwrap_err();
            assert!(
                matches!(e, SaveImageError::BadMagic),
                "{bytes:?}: {e}"
            );
        }
        // The test driver's image is foreign to the qemu reader and the other way round.
        let f = file_of(&test_image::encode(XML).unwrap());
        assert!(matches!(
            read_header(f.as_file()),
            Err(SaveImageError::BadMagic)
        ));
    }

    #[test]
    fn truncated_images_are_rejected() {
        let h = SaveHeader::new(XML, true);
        let (f, off) = complete_image(&h);
        let full = std::fs::read(f.path()).unwrap();
        // Inside the header, inside the XML region, right at the stream start.
        for (cut, what) in [
            (40usize, "header"),
            (200, "domain XML"),
            (off as usize, "migration stream"),
        ] {
            let t = file_of(&full[..cut]);
            match read_header(t.as_file()) {
                Err(SaveImageError::Truncated { what: w, .. }) => assert_eq!(w, what),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        // A cut inside the magic, and an empty file, are truncated headers.
        for cut in [10, 0] {
            let t = file_of(&full[..cut]);
            assert!(matches!(
                read_header(t.as_file()),
                Err(SaveImageError::Truncated { .. })
            ));
        }
    }

    #[test]
    fn corrupted_headers_are_rejected() {
        let h = SaveHeader::new(XML, true);
        let (f, _) = complete_image(&h);
        let full = std::fs::read(f.path()).unwrap();
        let patch = |at: usize, val: u32| {
            let mut b = full.clone();
            b[at..at + 4].copy_from_slice(&val.to_ne_bytes());
            file_of(&b)
        };
        // version 3 (and its byte-swapped form is no better)
        let e = read_header(patch(16, 3).as_file()).unwrap_err();
        assert!(matches!(e, SaveImageError::UnsupportedVersion(3)), "{e}");
        let e = read_header(patch(16, 0).as_file()).unwrap_err();
        assert!(matches!(e, SaveImageError::UnsupportedVersion(0)), "{e}");
        // data_len 0 and data_len beyond the file
        let e = read_header(patch(20, 0).as_file()).unwrap_err();
        assert!(matches!(e, SaveImageError::InvalidHeader(_)), "{e}");
        let e = read_header(patch(20, 0x7fff_0000).as_file()).unwrap_err();
        assert!(matches!(e, SaveImageError::Truncated { .. }), "{e}");
        // unknown format
        let e = read_header(patch(28, 7).as_file()).unwrap_err();
        assert!(matches!(e, SaveImageError::UnsupportedFormat(7)), "{e}");
        // cookie offset beyond the region, and one that cuts the XML's NUL off
        let e = read_header(patch(32, 0x0100_0000).as_file()).unwrap_err();
        assert!(matches!(e, SaveImageError::InvalidHeader(_)), "{e}");
        let e = read_header(patch(32, 5).as_file()).unwrap_err();
        assert!(matches!(e, SaveImageError::Corrupted(_)), "{e}");
        // XML region without any NUL
        let mut b = full.clone();
        let end = 92 + u32::from_ne_bytes(b[20..24].try_into().unwrap()) as usize;
        b[92..end].fill(b'x');
        let e = read_header(file_of(&b).as_file()).unwrap_err();
        assert!(matches!(e, SaveImageError::Corrupted(_)), "{e}");
        // invalid UTF-8
        let mut b = full.clone();
        b[92] = 0xff;
        let e = read_header(file_of(&b).as_file()).unwrap_err();
        assert!(matches!(e, SaveImageError::Corrupted(_)), "{e}");
        // empty XML
        let mut b = full;
        b[92] = 0;
        let e = read_header(file_of(&b).as_file()).unwrap_err();
        assert!(matches!(e, SaveImageError::Corrupted(_)), "{e}");
    }

    #[test]
    fn reads_a_header_built_by_hand_from_libvirts_layout() {
        // What libvirt writes: region = XML + NUL + cookie + NUL + 64 KiB of zeros,
        // cookieOffset = strlen(xml) + 1, no alignment.
        let cookie = "<qemu-cookie/>";
        let mut region = XML.as_bytes().to_vec();
        region.push(0);
        region.extend_from_slice(cookie.as_bytes());
        region.push(0);
        region.resize(region.len() + 65536, 0);
        let data_len = region.len() as u32;
        let cookie_off = XML.len() as u32 + 1;
        let mut bytes = libvirt_style(QEMU_SAVE_MAGIC, [2, data_len, 1, 0, cookie_off], &region);
        bytes.extend_from_slice(b"QEVM\0\0\0\x03");
        let f = file_of(&bytes);
        let (h, off) = read_header(f.as_file()).unwrap();
        assert_eq!(off, 92 + u64::from(data_len));
        assert_eq!(h.xml, XML);
        assert_eq!(h.cookie.as_deref(), Some(cookie));
        assert!(h.was_running);
        assert_eq!(h.format, SaveFormat::Raw);
        assert_eq!(h.version, 2);

        // Same image without cookie and with gzip; and version 1.
        let mut region = XML.as_bytes().to_vec();
        region.resize(XML.len() + 1 + 65536, 0);
        let mut bytes = libvirt_style(QEMU_SAVE_MAGIC, [1, region.len() as u32, 0, 1, 0], &region);
        bytes.extend_from_slice(b"\x1f\x8b");
        let (h, _) = read_header(file_of(&bytes).as_file()).unwrap();
        assert_eq!(
            (h.version, h.format, h.was_running, h.cookie),
            (1, SaveFormat::Gzip, false, None)
        );
    }

    #[test]
    fn reads_an_image_written_in_the_other_byte_order() {
        let mut region = XML.as_bytes().to_vec();
        region.resize(XML.len() + 1 + 65536, 0);
        let mut v = QEMU_SAVE_MAGIC.to_vec();
        for f in [2u32, region.len() as u32, 1, 0, 0] {
            v.extend_from_slice(&f.swap_bytes().to_ne_bytes());
        }
        v.extend_from_slice(&[0u8; 56]);
        v.extend_from_slice(&region);
        v.extend_from_slice(b"QEVM");
        let (h, off) = read_header(file_of(&v).as_file()).unwrap();
        assert_eq!(h.xml, XML);
        assert!(h.was_running);
        assert_eq!(off, 92 + region.len() as u64);
    }

    #[test]
    fn our_header_matches_libvirts_layout_byte_for_byte() {
        let h = SaveHeader {
            cookie: Some("<c/>".into()),
            ..SaveHeader::new(XML, true)
        };
        let (f, off) = complete_image(&h);
        let b = std::fs::read(f.path()).unwrap();
        let data_len = (off - 92) as u32;
        let cookie_off = XML.len() as u32 + 1;
        let mut region = XML.as_bytes().to_vec();
        region.push(0);
        region.extend_from_slice(b"<c/>\0");
        region.resize(data_len as usize, 0);
        let expect = libvirt_style(QEMU_SAVE_MAGIC, [2, data_len, 1, 0, cookie_off], &region);
        if cfg!(target_endian = "little") {
            assert_eq!(&b[..off as usize], &expect[..]);
        }
        assert!(u64::from(data_len) >= XML.len() as u64 + 6 + XML_RESERVE);
    }

    #[test]
    fn update_xml_in_place_keeps_stream_and_cookie() {
        let h = SaveHeader {
            cookie: Some("<c/>".into()),
            ..SaveHeader::new(XML, false)
        };
        let (f, off) = complete_image(&h);
        let bigger = XML.replace(
            "<name>g</name>",
            &format!(
                "<name>g</name><description>{}</description>",
                "d".repeat(30_000)
            ),
        );
        update_xml(f.as_file(), &bigger).unwrap();
        let (got, got_off) = read_header(f.as_file()).unwrap();
        assert_eq!(got_off, off);
        assert_eq!(got.xml, bigger);
        assert_eq!(got.cookie.as_deref(), Some("<c/>"));
        let mut stream = [0u8; 4];
        f.as_file().read_exact_at(&mut stream, off).unwrap();
        assert_eq!(&stream, b"QEVM");
        // Too large for the reserved region.
        let huge = "x".repeat(200_000);
        assert!(matches!(
            update_xml(f.as_file(), &huge),
            Err(SaveImageError::XmlTooLarge { .. })
        ));
        assert_eq!(read_header(f.as_file()).unwrap().0.xml, bigger);
        // Partial images are not touched.
        let (p, _) = image_with(&h, b"QEVM");
        assert!(matches!(
            update_xml(p.as_file(), XML),
            Err(SaveImageError::Partial)
        ));
    }

    #[test]
    fn nul_in_xml_is_refused() {
        let f = tempfile::tempfile().unwrap();
        let e = write_partial_header(&f, &SaveHeader::new("<a>\0</a>", true)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn test_image_round_trip_and_layout() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.save");
        test_image::write(&p, XML).unwrap();
        let b = std::fs::read(&p).unwrap();
        assert_eq!(&b[..15], b"TestGuestMagic\0");
        assert_eq!(
            i32::from_ne_bytes(b[15..19].try_into().unwrap()),
            XML.len() as i32
        );
        assert_eq!(&b[19..], XML.as_bytes());
        assert_eq!(test_image::read(&p).unwrap(), XML);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn test_image_errors() {
        use test_image::{TestImageError as E, decode, encode};
        let p = std::path::Path::new("/x.save");
        let good = encode(XML).unwrap();
        assert!(matches!(
            decode(&good[..10], p),
            Err(E::IncompleteHeader { .. })
        ));
        assert!(matches!(decode(&good[..17], p), Err(E::NoLength { .. })));
        assert!(matches!(
            decode(&good[..30], p),
            Err(E::IncompleteMetadata { .. })
        ));
        let mut bad = good.clone();
        bad[0] = b't';
        assert!(matches!(decode(&bad[..], p), Err(E::BadMagic)));
        let big = encode(&"x".repeat(8193)).unwrap();
        assert!(matches!(
            decode(&big[..], p),
            Err(E::LengthOutOfRange(8193))
        ));
        let mut zero = good.clone();
        zero[15..19].copy_from_slice(&0i32.to_ne_bytes());
        assert!(matches!(decode(&zero[..], p), Err(E::LengthOutOfRange(0))));
        let e = test_image::read(std::path::Path::new("/nonexistent/x.save")).unwrap_err();
        assert!(matches!(e, E::Open { .. }));
        assert!(
            e.to_string()
                .starts_with("cannot read domain image '/nonexistent/x.save': ")
        );
        // A qemu image is foreign to the test reader.
        let (f, _) = complete_image(&SaveHeader::new(XML, true));
        assert!(matches!(test_image::read(f.path()), Err(E::BadMagic)));
        assert_eq!(decode(&good[..], p).unwrap(), XML);
    }
}

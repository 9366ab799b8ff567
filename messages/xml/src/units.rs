//! Scaled integers: sizes written as a number plus a `unit` attribute.
//!
//! libvirt accepts sizes such as `<memory unit='MiB'>512</memory>` or
//! `<capacity unit='G'>10</capacity>`. The rules (case-insensitive suffix) are:
//! `b`, `byte`, `bytes` mean 1; a single letter `k m g t p e` or the letter followed by
//! `iB` means a power of 1024; the letter followed by `B` alone means a power of 1000.
//! A missing unit means the caller's default scale (KiB for domain memory, bytes for
//! storage). Every step is checked, so absurd values yield an error, never a panic or
//! a silently wrapped number.

use std::fmt;

/// Why a scaled value was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScaleError {
    /// The number itself is not a non-negative decimal integer.
    InvalidNumber(String),
    /// The unit is not one libvirt knows.
    UnknownSuffix(String),
    /// The scaled value exceeds the limit.
    TooLarge {
        /// The number as written.
        value: u64,
        /// The unit as written (empty when absent).
        suffix: String,
    },
}

impl fmt::Display for ScaleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScaleError::InvalidNumber(s) => write!(f, "invalid number '{s}'"),
            ScaleError::UnknownSuffix(s) => write!(f, "unknown suffix '{s}'"),
            ScaleError::TooLarge { value, suffix } => write!(f, "value too large: {value}{suffix}"),
        }
    }
}

impl std::error::Error for ScaleError {}

/// The multiplier for `suffix`, or `default_scale` when it is absent or empty.
pub fn unit_scale(suffix: Option<&str>, default_scale: u64) -> Result<u64, ScaleError> {
    let s = match suffix {
        None | Some("") => return Ok(default_scale),
        Some(s) => s,
    };
    let lower = s.to_ascii_lowercase();
    if matches!(lower.as_str(), "b" | "byte" | "bytes") {
        return Ok(1);
    }
    let mut chars = lower.chars();
    let letter = chars.next();
    let rest = chars.as_str();
    let base: u64 = match rest {
        "" | "ib" => 1024,
        "b" => 1000,
        _ => return Err(ScaleError::UnknownSuffix(s.to_string())),
    };
    let power = match letter {
        Some('k') => 1,
        Some('m') => 2,
        Some('g') => 3,
        Some('t') => 4,
        Some('p') => 5,
        Some('e') => 6,
        _ => return Err(ScaleError::UnknownSuffix(s.to_string())),
    };
    // 1000^6 and 1024^6 both fit in u64.
    Ok(base.pow(power))
}

/// Scales `value` by `suffix` (or `default_scale`), failing if the result would exceed
/// `limit`.
pub fn scale_integer(
    value: u64,
    suffix: Option<&str>,
    default_scale: u64,
    limit: u64,
) -> Result<u64, ScaleError> {
    let scale = unit_scale(suffix, default_scale)?.max(1);
    if value != 0 && value > limit / scale {
        return Err(ScaleError::TooLarge {
            value,
            suffix: suffix.unwrap_or("").to_string(),
        });
    }
    Ok(value * scale)
}

/// Parses a decimal unsigned integer the way libvirt's `virStrToLong_ullp` does:
/// leading whitespace and a `+` sign are accepted, nothing may follow the digits,
/// negative numbers and overflow are errors.
pub fn parse_u64(text: &str) -> Option<u64> {
    let t = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let t = t.strip_prefix('+').unwrap_or(t);
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse::<u64>().ok()
}

/// Parses `text` with unit `suffix` into a byte count (`default_scale` applies when
/// the unit is absent), bounded by `limit`.
pub fn parse_scaled(
    text: &str,
    suffix: Option<&str>,
    default_scale: u64,
    limit: u64,
) -> Result<u64, ScaleError> {
    let value = parse_u64(text).ok_or_else(|| ScaleError::InvalidNumber(text.to_string()))?;
    scale_integer(value, suffix, default_scale, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes() {
        let k = 1024u64;
        for (s, v) in [
            ("b", 1),
            ("bytes", 1),
            ("Byte", 1),
            ("k", k),
            ("KiB", k),
            ("KB", 1000),
            ("kb", 1000),
            ("M", k * k),
            ("MiB", k * k),
            ("MB", 1_000_000),
            ("G", k * k * k),
            ("GiB", k * k * k),
            ("GB", 1_000_000_000),
            ("T", k.pow(4)),
            ("TiB", k.pow(4)),
            ("TB", 1000u64.pow(4)),
            ("P", k.pow(5)),
            ("PiB", k.pow(5)),
            ("PB", 1000u64.pow(5)),
            ("E", k.pow(6)),
            ("EiB", k.pow(6)),
            ("EB", 1000u64.pow(6)),
        ] {
            assert_eq!(unit_scale(Some(s), 7), Ok(v), "{s}");
        }
        assert_eq!(unit_scale(None, 1024), Ok(1024));
        assert_eq!(unit_scale(Some(""), 1), Ok(1));
        for bad in ["x", "KiBB", "Ki", "Z", "kbytes", "é"] {
            assert!(
                matches!(unit_scale(Some(bad), 1), Err(ScaleError::UnknownSuffix(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn numbers_and_overflow() {
        assert_eq!(parse_scaled("2", Some("GiB"), 1024, u64::MAX), Ok(2 << 30));
        assert_eq!(parse_scaled(" +5", None, 1024, u64::MAX), Ok(5120));
        assert!(matches!(
            parse_scaled("-1", None, 1, u64::MAX),
            Err(ScaleError::InvalidNumber(_))
        ));
        assert!(matches!(
            parse_scaled("1 ", None, 1, u64::MAX),
            Err(ScaleError::InvalidNumber(_))
        ));
        assert!(matches!(
            parse_scaled("99999999999999999999999", None, 1, u64::MAX),
            Err(ScaleError::InvalidNumber(_))
        ));
        assert!(matches!(
            parse_scaled("16", Some("EiB"), 1, u64::MAX),
            Err(ScaleError::TooLarge { .. })
        ));
        assert_eq!(parse_scaled("0", Some("EiB"), 1, 0), Ok(0));
        assert_eq!(
            ScaleError::TooLarge {
                value: 16,
                suffix: "EiB".into()
            }
            .to_string(),
            "value too large: 16EiB"
        );
    }
}

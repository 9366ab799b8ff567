//! Pieces every typed view shares: parsing a document with the right error domain and
//! root check, name and UUID handling, and sizes with units.
//!
//! Keeping them here makes the four views report the same problem the same way.

use vireo_messages::{ErrorCode, ErrorDomain, Uuid, VirError, VirResult, parse_uuid};

use crate::dom::{Document, Element};
use crate::error::{malformed_uuid, wrong_root};
use crate::units::{ScaleError, parse_scaled};

/// Parses `xml` and checks that its root element is `expected` (compared without
/// namespace prefix, as libvirt does). Syntax errors become code 35 in `domain`
/// with `doc_name` as the document name.
pub fn parse_root(
    xml: &str,
    expected: &str,
    domain: ErrorDomain,
    doc_name: &str,
) -> VirResult<Element> {
    let doc = Document::parse(xml).map_err(|e| e.to_vir(domain, doc_name))?;
    check_root(&doc.root, expected)?;
    Ok(doc.root)
}

/// Fails with libvirt's "expecting root element" error unless `root` is `expected`.
pub fn check_root(root: &Element, expected: &str) -> VirResult<()> {
    if root.local_name() != expected {
        return Err(wrong_root(expected, root.local_name()));
    }
    Ok(())
}

/// The `<name>` text, `None` when absent or empty (libvirt treats both as missing).
pub fn name_of(root: &Element) -> Option<String> {
    root.child("name")
        .map(Element::text)
        .filter(|s| !s.is_empty())
}

/// Replaces the `<name>` text, creating `<name>` as first child when absent.
pub fn set_name(root: &mut Element, name: &str) {
    match root.child_mut("name") {
        Some(n) => {
            n.set_text(name);
        }
        None => {
            root.insert_node(
                0,
                crate::dom::Node::Element(Element::with_text("name", name)),
            );
        }
    }
}

/// The parsed `<uuid>`; `Ok(None)` when absent, an error when malformed.
pub fn uuid_of(root: &Element, domain: ErrorDomain) -> VirResult<Option<Uuid>> {
    match root.child("uuid") {
        None => Ok(None),
        Some(u) => {
            let text = u.text();
            if text.is_empty() {
                // libvirt's XPath string lookup treats an empty element as absent.
                return Ok(None);
            }
            parse_uuid(&text)
                .map(Some)
                .ok_or_else(|| malformed_uuid(domain))
        }
    }
}

/// Sets `<uuid>` (hyphenated lower case), inserting it right after `<name>`.
pub fn set_uuid(root: &mut Element, uuid: Uuid) {
    let text = uuid.hyphenated().to_string();
    match root.child_mut("uuid") {
        Some(u) => {
            u.set_text(text);
        }
        None => {
            root.insert_child_after("name", Element::with_text("uuid", text));
        }
    }
}

/// Returns the UUID, generating a random (v4) one after `<name>` when missing or
/// empty. A malformed UUID is left alone and reported.
pub fn ensure_uuid(root: &mut Element, domain: ErrorDomain) -> VirResult<Uuid> {
    match uuid_of(root, domain)? {
        Some(u) => Ok(u),
        None => {
            let u = Uuid::new_v4();
            set_uuid(root, u);
            Ok(u)
        }
    }
}

/// Rejects names containing any of `illegal` with libvirt's "invalid char in name".
pub fn check_name_chars(name: &str, illegal: &[char], domain: ErrorDomain) -> VirResult<()> {
    match name.chars().find(|c| illegal.contains(c)) {
        Some(c) => Err(crate::error::illegal_char(domain, "name", c)),
        None => Ok(()),
    }
}

/// Converts a unit-scaling failure the way libvirt reports it for an element located
/// by `xpath`: a bad number is an XML error (27), an unknown unit an invalid argument
/// (8), an overflow code 82.
pub fn scale_error(err: ScaleError, xpath: &str, domain: ErrorDomain) -> VirError {
    match err {
        ScaleError::InvalidNumber(text) => VirError::xml(
            domain,
            format!("Invalid value '{text}' for element or attribute '{xpath}'"),
        ),
        ScaleError::UnknownSuffix(_) => VirError::invalid_arg(domain, err.to_string()),
        ScaleError::TooLarge { .. } => VirError::with(ErrorCode::Overflow, domain, err.to_string()),
    }
}

/// Reads an optional size element (`<capacity unit='G'>10</capacity>`) in bytes,
/// `default_scale` applying when no unit is given. Number problems are reported with
/// `malformed` (storage style) or, when `None`, with the generic XPath wording.
pub fn size_of(
    el: Option<&Element>,
    xpath: &str,
    default_scale: u64,
    limit: u64,
    domain: ErrorDomain,
    malformed: Option<&str>,
) -> VirResult<Option<u64>> {
    let Some(el) = el else { return Ok(None) };
    let text = el.text();
    if text.is_empty() {
        return Ok(None);
    }
    match parse_scaled(&text, el.attr("unit"), default_scale, limit) {
        Ok(v) => Ok(Some(v)),
        Err(ScaleError::InvalidNumber(_)) if malformed.is_some() => Err(VirError::xml(
            domain,
            malformed.unwrap_or_default().to_string(),
        )),
        Err(e) => Err(scale_error(e, xpath, domain)),
    }
}

/// Writes a byte count into an element as `unit='bytes'`.
pub fn set_size_bytes(el: &mut Element, bytes: u64) {
    el.set_attr("unit", "bytes");
    el.set_text(bytes.to_string());
}

/// Parses `yes`/`no`/`on`/`off` style booleans.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "yes" | "on" | "true" | "1" => Some(true),
        "no" | "off" | "false" | "0" => Some(false),
        _ => None,
    }
}

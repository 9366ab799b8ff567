//! Errors of the XML layer and their translation into libvirt errors.
//!
//! The DOM parser reports [`XmlError`], which knows *where* a document stops being
//! well-formed (byte offset, line, column and the text of the offending line). Callers
//! that talk to clients turn it into a [`VirError`] with [`XmlError::to_vir`], which
//! produces the same shape of message libvirt builds from libxml2's diagnostics:
//!
//! ```text
//! (domain_definition):2: Opening and ending tag mismatch: name line 2 and nam
//!   <name>x</nam>
//! ---------^
//! ```
//!
//! i.e. `DOCNAME:LINE: MESSAGE`, newline, the offending line, newline and a marker
//! whose `^` sits under the offending column (code 35, `VIR_ERR_XML_DETAIL`). Semantic
//! errors (well-formed XML with wrong content) are raised by the typed views directly
//! as [`VirError`]s; the helpers at the bottom of this module build the ones libvirt
//! uses for those.

use vireo_messages::{ErrorCode, ErrorDomain, VirError};

/// A document that is not well-formed XML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// The text violates XML syntax at a known position.
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        /// What is wrong, worded like libxml2's diagnostics.
        message: String,
        /// Byte offset of the problem in the parsed text.
        offset: usize,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column (in characters) of the problem.
        column: usize,
        /// The complete line containing the problem, without its line terminator.
        source_line: String,
    },
}

impl XmlError {
    /// Builds a syntax error at byte `offset` of `input`, computing line, column and
    /// the context line. Offsets past the end or inside a character are clamped.
    pub fn at(input: &str, offset: usize, message: impl Into<String>) -> XmlError {
        let (offset, line, column, source_line) = locate(input, offset);
        XmlError::Syntax {
            message: message.into(),
            offset,
            line,
            column,
            source_line,
        }
    }

    /// 1-based line of the error.
    pub fn line(&self) -> usize {
        match self {
            XmlError::Syntax { line, .. } => *line,
        }
    }

    /// 1-based column of the error.
    pub fn column(&self) -> usize {
        match self {
            XmlError::Syntax { column, .. } => *column,
        }
    }

    /// The diagnostic without position.
    pub fn message(&self) -> &str {
        match self {
            XmlError::Syntax { message, .. } => message,
        }
    }

    /// Converts to libvirt's error: code 35 (`VIR_ERR_XML_DETAIL`) in `domain`, with
    /// the message `DOCNAME:LINE: MESSAGE\nLINE TEXT\n----^`. `doc_name` is what
    /// libvirt passes as the document URL, e.g. `(domain_definition)`.
    pub fn to_vir(&self, domain: ErrorDomain, doc_name: &str) -> VirError {
        match self {
            XmlError::Syntax {
                message,
                line,
                column,
                source_line,
                ..
            } => {
                let mut pointer = String::with_capacity(column.saturating_add(1).min(4096));
                for c in source_line.chars().take(column.saturating_sub(1)) {
                    pointer.push(if c == '\t' { '\t' } else { '-' });
                }
                pointer.push('^');
                let detail = format!("{doc_name}:{line}: {message}\n{source_line}\n{pointer}");
                VirError::with(ErrorCode::XmlDetail, domain, detail)
            }
        }
    }
}

/// Finds the line, column and line text of byte `offset` in `input`.
fn locate(input: &str, offset: usize) -> (usize, usize, usize, String) {
    let mut offset = offset.min(input.len());
    while !input.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &input[..offset];
    let line = before.bytes().filter(|b| *b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = input[line_start..offset].chars().count() + 1;
    let source_line = input[line_start..]
        .split(['\n', '\r'])
        .next()
        .unwrap_or("")
        .to_string();
    (offset, line, column, source_line)
}

/// The document names libvirt uses for each kind of definition when it reports XML
/// syntax errors.
pub mod doc_names {
    /// Domain XML.
    pub const DOMAIN: &str = "(domain_definition)";
    /// Network XML.
    pub const NETWORK: &str = "(network_definition)";
    /// Storage pool XML.
    pub const POOL: &str = "(storage_pool_definition)";
    /// Storage volume XML.
    pub const VOLUME: &str = "(storage_volume_definition)";
}

/// "XML error: expecting root element of 'EXPECTED', not 'FOUND'" (code 27, domain
/// `Xml`), as libvirt's XML helper reports a document of the wrong kind.
pub fn wrong_root(expected: &str, found: &str) -> VirError {
    VirError::xml(
        ErrorDomain::Xml,
        format!("expecting root element of '{expected}', not '{found}'"),
    )
}

/// "missing name information" (code 21, `VIR_ERR_NO_NAME`).
pub fn no_name(domain: ErrorDomain) -> VirError {
    let text = "missing name information".to_string();
    VirError {
        code: ErrorCode::NoName,
        domain,
        message: text.clone(),
        str1: Some(text),
        str2: None,
        str3: None,
        int1: -1,
        int2: -1,
    }
}

/// "invalid char in NODE: C" (code 35), libvirt's check for characters that may not
/// appear in names.
pub fn illegal_char(domain: ErrorDomain, node: &str, c: char) -> VirError {
    VirError::with(
        ErrorCode::XmlDetail,
        domain,
        format!("invalid char in {node}: {c}"),
    )
}

/// "internal error: malformed uuid element" (code 1), libvirt's report for an
/// unparsable `<uuid>`.
pub fn malformed_uuid(domain: ErrorDomain) -> VirError {
    VirError::internal(domain, "malformed uuid element")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_line_and_column() {
        let input = "<a>\n  <b>\n\t<c/>";
        let e = XmlError::at(input, input.find("<c").unwrap(), "boom");
        assert_eq!((e.line(), e.column()), (3, 2));
        let v = e.to_vir(ErrorDomain::Domain, "(domain_definition)");
        assert_eq!(v.code, ErrorCode::XmlDetail);
        assert_eq!(v.message, "(domain_definition):3: boom\n\t<c/>\n\t^");
    }

    #[test]
    fn locate_clamps() {
        let input = "é";
        let e = XmlError::at(input, 1, "x");
        assert_eq!((e.line(), e.column()), (1, 1));
        let e = XmlError::at(input, 99, "x");
        assert_eq!((e.line(), e.column()), (1, 2));
    }
}

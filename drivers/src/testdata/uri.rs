//! Which state a `test:` connection URI asks for (spec §1).
//!
//! The daemon strips the transport (`test+unix:///default` reaches the driver as
//! `test:///default` in CONNECT_OPEN); this module only decides between the shared
//! default state and a custom file, with libvirt's error for a missing path.

use std::path::PathBuf;

use vireo_messages::{ErrorCode, ErrorDomain, VirError, VirResult};

/// What a test-driver URI designates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestUriTarget {
    /// `test:///default`: the shared built-in default state.
    Default,
    /// `test:///PATH`: a private state built from the `<node>` file at `PATH`.
    File(PathBuf),
}

/// Parses the URI a client sent in CONNECT_OPEN for the test driver.
///
/// `test:///default` gives [`TestUriTarget::Default`] (the path must be exactly
/// `/default`); any other path gives [`TestUriTarget::File`] with the percent-decoded
/// path; `test://` and `test:///` fail with code 8 (domain 12) "invalid argument:
/// testOpen: supply a path or use test:///default". The query (`?socket=...`) and
/// fragment are ignored, as is the authority (`test://host/default`). A scheme with a
/// transport suffix (`test+unix`) is tolerated for convenience; any other scheme fails
/// with code 5 "no connection driver available for URI".
pub fn parse_test_uri(uri: &str) -> VirResult<TestUriTarget> {
    let not_test = || VirError::with(ErrorCode::NoConnect, ErrorDomain::None, uri.to_string());
    let (scheme, rest) = uri.split_once(':').ok_or_else(not_test)?;
    let driver = scheme.split('+').next().unwrap_or_default();
    if !driver.eq_ignore_ascii_case("test") {
        return Err(not_test());
    }
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let path = match rest.strip_prefix("//") {
        Some(after) => match after.find('/') {
            Some(i) => &after[i..],
            None => "",
        },
        None => rest,
    };
    let path = percent_decode(path);
    if path.is_empty() || path == "/" {
        return Err(VirError::invalid_arg(
            ErrorDomain::Test,
            "testOpen: supply a path or use test:///default",
        ));
    }
    if path == "/default" {
        Ok(TestUriTarget::Default)
    } else {
        Ok(TestUriTarget::File(PathBuf::from(path)))
    }
}

/// Decodes `%XX` escapes (invalid escapes are kept literally).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_file() {
        assert_eq!(
            parse_test_uri("test:///default").unwrap(),
            TestUriTarget::Default
        );
        assert_eq!(
            parse_test_uri("test:///default?socket=/tmp/x").unwrap(),
            TestUriTarget::Default
        );
        assert_eq!(
            parse_test_uri("test://host/default").unwrap(),
            TestUriTarget::Default
        );
        assert_eq!(
            parse_test_uri("test+unix:///default").unwrap(),
            TestUriTarget::Default
        );
        assert_eq!(
            parse_test_uri("test:///tmp/node.xml").unwrap(),
            TestUriTarget::File(PathBuf::from("/tmp/node.xml"))
        );
        assert_eq!(
            parse_test_uri("test:///tmp/my%20node.xml").unwrap(),
            TestUriTarget::File(PathBuf::from("/tmp/my node.xml"))
        );
        // "/default/" is not the default state; libvirt would try to open it as a file.
        assert_eq!(
            parse_test_uri("test:///default/").unwrap(),
            TestUriTarget::File(PathBuf::from("/default/"))
        );
    }

    #[test]
    fn missing_path_is_refused() {
        for uri in ["test:///", "test://", "test://host", "test:"] {
            let e = parse_test_uri(uri).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArg, "{uri}");
            assert_eq!(e.domain, ErrorDomain::Test);
            assert_eq!(
                e.message,
                "invalid argument: testOpen: supply a path or use test:///default"
            );
        }
    }

    #[test]
    fn other_schemes_are_refused() {
        let e = parse_test_uri("qemu:///system").unwrap_err();
        assert_eq!(e.code, ErrorCode::NoConnect);
        assert!(parse_test_uri("default").is_err());
    }
}

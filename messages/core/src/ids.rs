//! Identities of managed objects.
//!
//! libvirt names every object three ways: a UUID (stable forever), a name (unique per
//! object type on a host, may change with rename) and, for running domains, a numeric
//! id that is handed out anew on every start and never reused while the host lives.

pub use uuid::Uuid;

/// A running domain's numeric id. Inactive domains have none (libvirt sends -1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainId(pub u32);

impl DomainId {
    /// The value sent on the wire for an optional id: the id, or -1 when inactive.
    pub fn wire(id: Option<DomainId>) -> i32 {
        id.map(|d| d.0 as i32).unwrap_or(-1)
    }
}

impl std::fmt::Display for DomainId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The kinds of object a host manages; used in filters and error selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// A virtual machine.
    Domain,
    /// A virtual network.
    Network,
    /// A storage pool.
    StoragePool,
    /// A storage volume inside a pool.
    StorageVolume,
    /// A host interface.
    Interface,
    /// A node (host) device.
    NodeDevice,
    /// A secret.
    Secret,
}

/// Parses a UUID the way libvirt accepts it: 32 hex digits, optionally grouped by
/// hyphens (libvirt also tolerates spaces between groups). Returns `None` on bad input.
pub fn parse_uuid(text: &str) -> Option<Uuid> {
    let hex: String = text
        .trim()
        .chars()
        .filter(|c| *c != '-' && *c != ' ')
        .collect();
    if hex.len() != 32 {
        return None;
    }
    Uuid::parse_str(&hex).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_forms() {
        let a = parse_uuid("6695eb01-f6a4-8304-79aa-97f2502e193f").unwrap();
        let b = parse_uuid("6695eb01f6a4830479aa97f2502e193f").unwrap();
        assert_eq!(a, b);
        assert!(parse_uuid("6695eb01").is_none());
        assert!(parse_uuid("zz95eb01f6a4830479aa97f2502e193f").is_none());
    }

    #[test]
    fn wire_id() {
        assert_eq!(DomainId::wire(None), -1);
        assert_eq!(DomainId::wire(Some(DomainId(7))), 7);
    }
}

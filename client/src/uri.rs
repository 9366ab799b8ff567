//! Connection URIs of libvirt's remote driver: `DRIVER+TRANSPORT://[HOST[:PORT]]/PATH[?PARAMS]`,
//! e.g. `test+unix:///default?socket=/run/x/libvirt-sock` or
//! `qemu+tcp://host:16509/system`. The transport part picks the socket; the rest,
//! without the transport and without the remote driver's own parameters, is the
//! connection name sent in CONNECT_OPEN (`test:///default`, `qemu:///system`).

use std::path::PathBuf;

use crate::error::ClientError;

/// The default read-write socket of a system libvirtd.
pub const DEFAULT_SOCKET: &str = "/var/run/libvirt/libvirt-sock";
/// The default read-only socket of a system libvirtd.
pub const DEFAULT_SOCKET_RO: &str = "/var/run/libvirt/libvirt-sock-ro";
/// libvirtd's default plain-TCP port.
pub const DEFAULT_TCP_PORT: u16 = 16509;

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A unix socket path.
    Unix(PathBuf),
    /// `host:port` over plain TCP.
    Tcp(String),
}

/// A parsed remote-driver URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteUri {
    /// Where to connect.
    pub transport: Transport,
    /// The connection name for CONNECT_OPEN.
    pub name: String,
}

/// Query parameters the remote driver consumes itself (they are not part of the name).
const REMOTE_PARAMS: &[&str] = &[
    "name",
    "command",
    "socket",
    "netcat",
    "keyfile",
    "no_verify",
    "no_tty",
    "pkipath",
    "known_hosts",
    "known_hosts_verify",
    "sshauth",
    "mode",
    "proxy",
    "tls_priority",
];

fn bad(uri: &str, why: &str) -> ClientError {
    ClientError::BadUri(format!("{uri}: {why}"))
}

/// Decodes `%XX` escapes.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl RemoteUri {
    /// Parses a remote-driver URI. `read_only` picks the read-only default socket
    /// when the URI names none. Transports other than `unix` and `tcp` (tls, ssh,
    /// ext, libssh) are refused.
    pub fn parse(uri: &str, read_only: bool) -> Result<RemoteUri, ClientError> {
        let (scheme, rest) = uri.split_once("://").ok_or_else(|| bad(uri, "not a URI"))?;
        let (driver, transport) = match scheme.split_once('+') {
            Some((d, t)) => (d, t),
            None => (scheme, "unix"),
        };
        if driver.is_empty() {
            return Err(bad(uri, "no driver"));
        }
        let (before_query, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match before_query.find('/') {
            Some(i) => (&before_query[..i], &before_query[i..]),
            None => (before_query, ""),
        };
        let mut socket = None;
        let mut name_param = None;
        let mut kept = Vec::new();
        for kv in query.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            match k {
                "socket" => socket = Some(unescape(v)),
                "name" => name_param = Some(unescape(v)),
                _ if REMOTE_PARAMS.contains(&k) => {}
                _ => kept.push(kv),
            }
        }
        let name = name_param.unwrap_or_else(|| {
            let mut n = format!("{driver}://{path}");
            if !kept.is_empty() {
                n.push('?');
                n.push_str(&kept.join("&"));
            }
            n
        });
        let transport = match transport {
            "unix" => Transport::Unix(PathBuf::from(socket.unwrap_or_else(|| {
                if read_only {
                    DEFAULT_SOCKET_RO.into()
                } else {
                    DEFAULT_SOCKET.into()
                }
            }))),
            "tcp" => {
                let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
                if host_port.is_empty() {
                    return Err(bad(uri, "tcp needs a host"));
                }
                let has_port = match host_port.rfind(':') {
                    Some(i) => !host_port[..i].ends_with(':') && !host_port.ends_with(']'),
                    None => false,
                };
                if has_port {
                    Transport::Tcp(host_port.to_string())
                } else {
                    Transport::Tcp(format!("{host_port}:{DEFAULT_TCP_PORT}"))
                }
            }
            other => return Err(bad(uri, &format!("the {other} transport is not supported"))),
        };
        Ok(RemoteUri { transport, name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_with_socket() {
        let u = RemoteUri::parse("test+unix:///default?socket=/tmp/s/libvirt-sock", false).unwrap();
        assert_eq!(u.transport, Transport::Unix("/tmp/s/libvirt-sock".into()));
        assert_eq!(u.name, "test:///default");
    }

    #[test]
    fn default_sockets_and_plain_driver_uris() {
        let u = RemoteUri::parse("qemu:///system", false).unwrap();
        assert_eq!(u.transport, Transport::Unix(DEFAULT_SOCKET.into()));
        assert_eq!(u.name, "qemu:///system");
        let u = RemoteUri::parse("qemu+unix:///system", true).unwrap();
        assert_eq!(u.transport, Transport::Unix(DEFAULT_SOCKET_RO.into()));
    }

    #[test]
    fn tcp_hosts_ports_and_kept_params() {
        let u = RemoteUri::parse("test+tcp://127.0.0.1:1234/default", false).unwrap();
        assert_eq!(u.transport, Transport::Tcp("127.0.0.1:1234".into()));
        assert_eq!(u.name, "test:///default");
        let u = RemoteUri::parse("qemu+tcp://user@host/system?mode=direct&foo=1", false).unwrap();
        assert_eq!(u.transport, Transport::Tcp("host:16509".into()));
        assert_eq!(u.name, "qemu:///system?foo=1");
        let u = RemoteUri::parse("test+unix:///x?name=test%3A%2F%2F%2Fdefault", false).unwrap();
        assert_eq!(u.name, "test:///default");
        assert_eq!(unescape("a%2Fb%zz%é%"), "a/b%zz%é%");
    }

    #[test]
    fn refusals() {
        for bad in [
            "nonsense",
            "+unix:///x",
            "qemu+ssh://h/system",
            "test+tcp:///default",
        ] {
            assert!(
                matches!(RemoteUri::parse(bad, false), Err(ClientError::BadUri(_))),
                "{bad}"
            );
        }
    }
}

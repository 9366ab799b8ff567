//! `vireo version`: the client's own version, the libvirt library version the daemon
//! reports (`virConnectGetLibVersion`), and the hypervisor's type and version
//! (`virConnectGetType`, `virConnectGetVersion`). Knowing all three is what a bug
//! report needs.

use std::io::Write;

use serde_json::json;
use vireo_client::Client;
use vireo_client::wire::RemoteProc;
use vireo_client::wire::procs::UHyperRet;

use super::CliError;

/// libvirt's packed version number (`major * 1_000_000 + minor * 1000 + release`)
/// as `major.minor.release`.
pub fn dotted(v: u64) -> String {
    format!("{}.{}.{}", v / 1_000_000, v / 1000 % 1000, v % 1000)
}

/// `vireo version`.
pub async fn show(client: &Client, json: bool, out: &mut dyn Write) -> Result<(), CliError> {
    let (lib, kind, hv) = tokio::try_join!(
        client.get_lib_version(),
        client.get_type(),
        client.call::<_, UHyperRet>(RemoteProc::ConnectGetVersion, &()),
    )?;
    let client_version = env!("CARGO_PKG_VERSION");
    if json {
        let v = json!({
            "client": client_version,
            "daemon": dotted(lib),
            "hypervisor": kind,
            "hypervisor_version": dotted(hv.value),
        });
        writeln!(out, "{v}")?;
    } else {
        writeln!(out, "client:     vireo {client_version}")?;
        writeln!(out, "daemon:     libvirt {}", dotted(lib))?;
        writeln!(out, "hypervisor: {kind} {}", dotted(hv.value))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_versions() {
        assert_eq!(dotted(10_000_000), "10.0.0");
        assert_eq!(dotted(8_005_012), "8.5.12");
        assert_eq!(dotted(2_000), "0.2.0");
    }
}

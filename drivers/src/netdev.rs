//! Traffic counters of host network devices, as the guest behind a tap sees them.
//!
//! Why: a QEMU guest's `bridge`/`ethernet` interface is a tap device on the host, and
//! what libvirt reports as the guest interface's traffic (`domstats` `net.N.*`,
//! `domifstat`) is that tap's, turned around: what the host transmits into the tap is
//! what the guest receives. The counters come from sysfs
//! (`/sys/class/net/DEV/statistics/`), one small file each; no process or monitor is
//! asked.

use std::path::Path;

/// One interface's counters from the guest's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GuestTraffic {
    /// Bytes the guest received (the tap's transmitted bytes).
    pub rx_bytes: u64,
    /// Packets the guest received.
    pub rx_packets: u64,
    /// Receive errors.
    pub rx_errs: u64,
    /// Packets dropped on the way to the guest.
    pub rx_drop: u64,
    /// Bytes the guest sent (the tap's received bytes).
    pub tx_bytes: u64,
    /// Packets the guest sent.
    pub tx_packets: u64,
    /// Transmit errors.
    pub tx_errs: u64,
    /// Packets the guest sent that were dropped.
    pub tx_drop: u64,
}

/// Where the kernel lists network devices.
const SYSFS_NET: &str = "/sys/class/net";

/// The counters of host device `dev` from the guest's side; `None` when there is no
/// such device (or `dev` is not a plain device name).
pub fn guest_traffic(dev: &str) -> Option<GuestTraffic> {
    guest_traffic_in(Path::new(SYSFS_NET), dev)
}

fn guest_traffic_in(root: &Path, dev: &str) -> Option<GuestTraffic> {
    // The name comes from a domain definition: no path tricks.
    if dev.is_empty() || dev == "." || dev == ".." || dev.contains('/') {
        return None;
    }
    let stats = root.join(dev).join("statistics");
    let read = |name: &str| -> Option<u64> {
        std::fs::read_to_string(stats.join(name))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    Some(GuestTraffic {
        rx_bytes: read("tx_bytes")?,
        rx_packets: read("tx_packets")?,
        rx_errs: read("tx_errors")?,
        rx_drop: read("tx_dropped")?,
        tx_bytes: read("rx_bytes")?,
        tx_packets: read("rx_packets")?,
        tx_errs: read("rx_errors")?,
        tx_drop: read("rx_dropped")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_the_taps_turned_around() {
        let dir = tempfile::tempdir().unwrap();
        let stats = dir.path().join("vnet7").join("statistics");
        std::fs::create_dir_all(&stats).unwrap();
        for (name, v) in [
            ("rx_bytes", 1),
            ("rx_packets", 2),
            ("rx_errors", 3),
            ("rx_dropped", 4),
            ("tx_bytes", 5),
            ("tx_packets", 6),
            ("tx_errors", 7),
            ("tx_dropped", 8),
        ] {
            std::fs::write(stats.join(name), format!("{v}\n")).unwrap();
        }
        assert_eq!(
            guest_traffic_in(dir.path(), "vnet7"),
            Some(GuestTraffic {
                rx_bytes: 5,
                rx_packets: 6,
                rx_errs: 7,
                rx_drop: 8,
                tx_bytes: 1,
                tx_packets: 2,
                tx_errs: 3,
                tx_drop: 4,
            })
        );
        assert_eq!(guest_traffic_in(dir.path(), "nosuch"), None);
        assert_eq!(guest_traffic_in(dir.path(), "../vnet7"), None);
        assert_eq!(guest_traffic_in(dir.path(), ".."), None);
        // A device the host really has: loopback.
        assert!(guest_traffic("lo").is_some());
    }
}

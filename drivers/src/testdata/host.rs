//! The host ("node") the test driver pretends to run on: `NODE_GET_INFO`, the NUMA
//! cells, the capabilities and sysinfo documents and the fixed answers of the host
//! calls (libvirt 9.0, spec §1 and §2.1).
//!
//! Everything here is plain data or a pure function of a [`TestConfig`], so the driver
//! can answer host calls without locking any object state.

use std::fmt::Write as _;

use super::TestConfig;

/// `virConnectGetType`.
pub const HYPERVISOR_TYPE: &str = "TEST";
/// `virConnectGetVersion` (virsh prints "Running hypervisor: TEST 0.0.2").
pub const HYPERVISOR_VERSION: u64 = 2;
/// `virConnectGetMaxVcpus`, whatever the type argument.
pub const MAX_VCPUS: i32 = 32;
/// `NODE_GET_SECURITY_MODEL`: the model name.
pub const SECURITY_MODEL: &str = "testSecurity";
/// `NODE_GET_SECURITY_MODEL`: the DOI (empty).
pub const SECURITY_DOI: &str = "";
/// The emulator path advertised in the capabilities' guest sections.
pub const EMULATOR: &str = "/usr/bin/test-hv";
/// The node model of the default configuration (also the capabilities' host arch).
pub const DEFAULT_MODEL: &str = "i686";
/// Longest model string a `<cpu><model>` may carry (libvirt's `char model[32]`).
pub const MODEL_MAX_LEN: usize = 31;

/// `NODE_GET_CPU_MAP`: number of CPUs reported (8, although NODE_GET_INFO says 16).
pub const CPU_MAP_CPUS: i32 = 8;
/// `NODE_GET_CPU_MAP`: the online bitmap, one byte: CPUs 0, 2 and 4.
pub const CPU_MAP_ONLINE: u8 = 0b0001_0101;
/// `NODE_GET_CPU_MAP`: number of online CPUs.
pub const CPU_MAP_ONLINE_COUNT: u32 = 3;

/// `NODE_GET_CPU_STATS` (any cpuNum): fixed `(field, value)` pairs in libvirt's order.
pub const NODE_CPU_STATS: [(&str, u64); 4] = [
    ("user", 9_797_400_000),
    ("kernel", 34_678_723_400_000),
    ("idle", 87_264_900_000),
    ("iowait", 763_600_000),
];

/// Page sizes (KiB) the host advertises in `<cpu><pages>`.
pub const HOST_PAGE_SIZES_KIB: [u32; 4] = [4, 8, 2048, 1_048_576];

/// `CONNECT_GET_SYSINFO`: the fixed SMBIOS document (libvirt returns it verbatim, with
/// the odd space in the BIOS version).
pub const SYSINFO_XML: &str = "<sysinfo type='smbios'>
  <bios>
    <entry name='vendor'>LENOVO</entry>
    <entry name='version'>G4ETA1WW (2.61 )</entry>
    <entry name='date'>05/07/2014</entry>
    <entry name='release'>2.61</entry>
  </bios>
</sysinfo>
";

/// What `NODE_GET_INFO` returns (`virNodeInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// CPU model string (at most 31 bytes).
    pub model: String,
    /// Host memory in KiB.
    pub memory_kib: u64,
    /// Number of active CPUs.
    pub cpus: u32,
    /// CPU frequency in MHz.
    pub mhz: u32,
    /// NUMA nodes.
    pub nodes: u32,
    /// Sockets per node.
    pub sockets: u32,
    /// Cores per socket.
    pub cores: u32,
    /// Threads per core.
    pub threads: u32,
}

impl Default for NodeInfo {
    /// The default node of spec §2.1 (also the starting point of a custom file).
    fn default() -> Self {
        NodeInfo {
            model: DEFAULT_MODEL.to_string(),
            memory_kib: 3 * 1024 * 1024,
            cpus: 16,
            mhz: 1400,
            nodes: 2,
            sockets: 2,
            cores: 2,
            threads: 2,
        }
    }
}

impl NodeInfo {
    /// The real host's facts (`/proc/meminfo`, `/proc/cpuinfo`), for drivers that run
    /// real guests. Counts every online CPU as one core of one socket on one node,
    /// which is what `virsh nodeinfo` needs; a field that cannot be read keeps the
    /// test driver's default.
    pub fn from_host() -> NodeInfo {
        let mut n = NodeInfo {
            model: std::env::consts::ARCH.to_string(),
            ..NodeInfo::default()
        };
        if let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") {
            n.memory_kib = parse_meminfo_total(&meminfo).unwrap_or(n.memory_kib);
        }
        n.cpus = std::thread::available_parallelism()
            .map(|c| c.get() as u32)
            .unwrap_or(1);
        if let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") {
            n.mhz = parse_cpu_mhz(&cpuinfo).unwrap_or(0);
        }
        n.nodes = 1;
        n.sockets = 1;
        n.cores = n.cpus;
        n.threads = 1;
        n
    }
}

fn parse_meminfo_total(s: &str) -> Option<u64> {
    s.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn parse_cpu_mhz(s: &str) -> Option<u32> {
    s.lines()
        .find(|l| l.starts_with("cpu MHz"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u32)
}

/// One logical CPU of a NUMA cell as the capabilities describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumaCpu {
    /// CPU id.
    pub id: u32,
    /// Socket the CPU sits on.
    pub socket_id: u32,
    /// Die within the socket (always 0 here).
    pub die_id: u32,
    /// Core within the socket.
    pub core_id: u32,
    /// The sibling list as libvirt prints it (here each CPU is its own sibling).
    pub siblings: String,
}

/// One NUMA cell of the default node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumaCell {
    /// Cell id.
    pub id: u32,
    /// Total memory in KiB (also what `NODE_GET_CELLS_FREE_MEMORY` returns).
    pub memory_kib: u64,
    /// The cell's "free memory" field in KiB (summed by `NODE_GET_FREE_MEMORY`).
    pub free_memory_kib: u64,
    /// Page pools: `(page size KiB, page count)` in the order printed.
    pub pages: Vec<(u32, u64)>,
    /// The CPUs of the cell.
    pub cpus: Vec<NumaCpu>,
}

/// The two NUMA cells of `test:///default`: 8 CPUs each (ids 0-7 on socket 0, 8-15 on
/// socket 1, core id = id mod 8), memory 2 GiB and 4 GiB, free memory 1 GiB and 2 GiB.
/// Cell 0's first page pool has 4 KiB pages, cell 1's 8 KiB pages (libvirt's quirk),
/// each sized to cover the cell's memory, followed by empty 2 MiB and 1 GiB pools.
pub fn default_cells() -> Vec<NumaCell> {
    (0..2u32)
        .map(|i| {
            let memory_kib = u64::from(i + 1) * 2048 * 1024;
            let first_page = if i == 1 {
                HOST_PAGE_SIZES_KIB[1]
            } else {
                HOST_PAGE_SIZES_KIB[0]
            };
            NumaCell {
                id: i,
                memory_kib,
                free_memory_kib: u64::from(i + 1) * 1024 * 1024,
                pages: vec![
                    (first_page, memory_kib / u64::from(first_page)),
                    (HOST_PAGE_SIZES_KIB[2], 0),
                    (HOST_PAGE_SIZES_KIB[3], 0),
                ],
                cpus: (0..8u32)
                    .map(|j| {
                        let id = i * 8 + j;
                        NumaCpu {
                            id,
                            socket_id: i,
                            die_id: 0,
                            core_id: j,
                            siblings: id.to_string(),
                        }
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The NUMA cells of a configuration: the default cells when it has NUMA data, none
/// otherwise (a custom file never has any).
pub fn cells(config: &TestConfig) -> Vec<NumaCell> {
    if config.numa {
        default_cells()
    } else {
        Vec::new()
    }
}

/// `NODE_GET_CELLS_FREE_MEMORY(start, max)`: the cells' *total* memory in KiB (the
/// test driver returns `mem`, not `freeMem`). Out-of-range starts give an empty list;
/// the caller decides which error to raise.
pub fn cells_free_memory(config: &TestConfig, start: usize, max: usize) -> Vec<u64> {
    cells(config)
        .iter()
        .skip(start)
        .take(max)
        .map(|c| c.memory_kib)
        .collect()
}

/// `NODE_GET_FREE_MEMORY`: the sum of the cells' free-memory fields, in KiB (although
/// the API says bytes): 3145728 for the default node, 0 without cells.
pub fn free_memory(config: &TestConfig) -> u64 {
    cells(config).iter().map(|c| c.free_memory_kib).sum()
}

/// `CONNECT_GET_SYSINFO`.
pub fn sysinfo_xml() -> String {
    SYSINFO_XML.to_string()
}

/// `CONNECT_GET_CAPABILITIES`, formatted exactly as libvirt 9.0's
/// `virCapabilitiesFormatXML` prints the test driver's capabilities (blank lines
/// included, trailing newline included). Without NUMA cells `<topology>` is omitted.
pub fn capabilities_xml(config: &TestConfig) -> String {
    let mut s = String::with_capacity(4096);
    s.push_str("<capabilities>\n\n  <host>\n    <cpu>\n");
    let _ = writeln!(s, "      <arch>{DEFAULT_MODEL}</arch>");
    s.push_str("      <features>\n        <pae/>\n        <nonpae/>\n      </features>\n");
    for size in HOST_PAGE_SIZES_KIB {
        let _ = writeln!(s, "      <pages unit='KiB' size='{size}'/>");
    }
    s.push_str("    </cpu>\n    <power_management/>\n    <iommu support='no'/>\n");
    let cells = cells(config);
    if !cells.is_empty() {
        s.push_str("    <topology>\n");
        let _ = writeln!(s, "      <cells num='{}'>", cells.len());
        for cell in &cells {
            let _ = writeln!(s, "        <cell id='{}'>", cell.id);
            let _ = writeln!(
                s,
                "          <memory unit='KiB'>{}</memory>",
                cell.memory_kib
            );
            for (size, count) in &cell.pages {
                let _ = writeln!(
                    s,
                    "          <pages unit='KiB' size='{size}'>{count}</pages>"
                );
            }
            let _ = writeln!(s, "          <cpus num='{}'>", cell.cpus.len());
            for cpu in &cell.cpus {
                let _ = writeln!(
                    s,
                    "            <cpu id='{}' socket_id='{}' die_id='{}' core_id='{}' siblings='{}'/>",
                    cpu.id, cpu.socket_id, cpu.die_id, cpu.core_id, cpu.siblings
                );
            }
            s.push_str("          </cpus>\n        </cell>\n");
        }
        s.push_str("      </cells>\n    </topology>\n");
    }
    s.push_str("    <secmodel>\n");
    let _ = writeln!(s, "      <model>{SECURITY_MODEL}</model>");
    let _ = writeln!(s, "      <doi>{SECURITY_DOI}</doi>");
    s.push_str("    </secmodel>\n  </host>\n\n");
    for os_type in ["hvm", "xen"] {
        s.push_str("  <guest>\n");
        let _ = writeln!(s, "    <os_type>{os_type}</os_type>");
        let _ = writeln!(s, "    <arch name='{DEFAULT_MODEL}'>");
        s.push_str("      <wordsize>32</wordsize>\n");
        let _ = writeln!(s, "      <emulator>{EMULATOR}</emulator>");
        s.push_str("      <domain type='test'/>\n    </arch>\n");
        s.push_str("    <features>\n      <pae/>\n      <nonpae/>\n    </features>\n");
        s.push_str("  </guest>\n\n");
    }
    s.push_str("</capabilities>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_facts_parse_proc_files() {
        let mem = "MemTotal:       24567808 kB\nMemFree:  1 kB\n";
        assert_eq!(parse_meminfo_total(mem), Some(24_567_808));
        let cpu = "processor\t: 0\ncpu MHz\t\t: 2599.998\n";
        assert_eq!(parse_cpu_mhz(cpu), Some(2599));
        let n = NodeInfo::from_host();
        assert!(n.cpus >= 1 && n.memory_kib > 0);
        assert_eq!(n.cores, n.cpus);
    }

    /// The capabilities document of spec §2.1, copied from libvirt 9.0's output.
    const EXPECTED_DEFAULT_CAPS: &str = "<capabilities>

  <host>
    <cpu>
      <arch>i686</arch>
      <features>
        <pae/>
        <nonpae/>
      </features>
      <pages unit='KiB' size='4'/>
      <pages unit='KiB' size='8'/>
      <pages unit='KiB' size='2048'/>
      <pages unit='KiB' size='1048576'/>
    </cpu>
    <power_management/>
    <iommu support='no'/>
    <topology>
      <cells num='2'>
        <cell id='0'>
          <memory unit='KiB'>2097152</memory>
          <pages unit='KiB' size='4'>524288</pages>
          <pages unit='KiB' size='2048'>0</pages>
          <pages unit='KiB' size='1048576'>0</pages>
          <cpus num='8'>
            <cpu id='0' socket_id='0' die_id='0' core_id='0' siblings='0'/>
            <cpu id='1' socket_id='0' die_id='0' core_id='1' siblings='1'/>
            <cpu id='2' socket_id='0' die_id='0' core_id='2' siblings='2'/>
            <cpu id='3' socket_id='0' die_id='0' core_id='3' siblings='3'/>
            <cpu id='4' socket_id='0' die_id='0' core_id='4' siblings='4'/>
            <cpu id='5' socket_id='0' die_id='0' core_id='5' siblings='5'/>
            <cpu id='6' socket_id='0' die_id='0' core_id='6' siblings='6'/>
            <cpu id='7' socket_id='0' die_id='0' core_id='7' siblings='7'/>
          </cpus>
        </cell>
        <cell id='1'>
          <memory unit='KiB'>4194304</memory>
          <pages unit='KiB' size='8'>524288</pages>
          <pages unit='KiB' size='2048'>0</pages>
          <pages unit='KiB' size='1048576'>0</pages>
          <cpus num='8'>
            <cpu id='8' socket_id='1' die_id='0' core_id='0' siblings='8'/>
            <cpu id='9' socket_id='1' die_id='0' core_id='1' siblings='9'/>
            <cpu id='10' socket_id='1' die_id='0' core_id='2' siblings='10'/>
            <cpu id='11' socket_id='1' die_id='0' core_id='3' siblings='11'/>
            <cpu id='12' socket_id='1' die_id='0' core_id='4' siblings='12'/>
            <cpu id='13' socket_id='1' die_id='0' core_id='5' siblings='13'/>
            <cpu id='14' socket_id='1' die_id='0' core_id='6' siblings='14'/>
            <cpu id='15' socket_id='1' die_id='0' core_id='7' siblings='15'/>
          </cpus>
        </cell>
      </cells>
    </topology>
    <secmodel>
      <model>testSecurity</model>
      <doi></doi>
    </secmodel>
  </host>

  <guest>
    <os_type>hvm</os_type>
    <arch name='i686'>
      <wordsize>32</wordsize>
      <emulator>/usr/bin/test-hv</emulator>
      <domain type='test'/>
    </arch>
    <features>
      <pae/>
      <nonpae/>
    </features>
  </guest>

  <guest>
    <os_type>xen</os_type>
    <arch name='i686'>
      <wordsize>32</wordsize>
      <emulator>/usr/bin/test-hv</emulator>
      <domain type='test'/>
    </arch>
    <features>
      <pae/>
      <nonpae/>
    </features>
  </guest>

</capabilities>
";

    #[test]
    fn default_capabilities_are_byte_exact() {
        let caps = capabilities_xml(&TestConfig::default_config());
        assert_eq!(caps, EXPECTED_DEFAULT_CAPS);
    }

    #[test]
    fn capabilities_without_numa_have_no_topology() {
        let mut config = TestConfig::empty();
        config.numa = false;
        let caps = capabilities_xml(&config);
        assert!(!caps.contains("<topology>"));
        let start = EXPECTED_DEFAULT_CAPS.find("    <topology>").unwrap();
        let end = EXPECTED_DEFAULT_CAPS.find("    <secmodel>").unwrap();
        let expected = format!(
            "{}{}",
            &EXPECTED_DEFAULT_CAPS[..start],
            &EXPECTED_DEFAULT_CAPS[end..]
        );
        assert_eq!(caps, expected);
    }

    #[test]
    fn node_defaults_and_memory_figures() {
        let node = NodeInfo::default();
        assert_eq!(node.model, "i686");
        assert_eq!(node.memory_kib, 3_145_728);
        assert_eq!(
            (
                node.cpus,
                node.mhz,
                node.nodes,
                node.sockets,
                node.cores,
                node.threads
            ),
            (16, 1400, 2, 2, 2, 2)
        );
        let config = TestConfig::default_config();
        assert_eq!(cells_free_memory(&config, 0, 2), vec![2_097_152, 4_194_304]);
        assert_eq!(cells_free_memory(&config, 1, 5), vec![4_194_304]);
        assert_eq!(free_memory(&config), 3_145_728);
        assert_eq!(free_memory(&TestConfig::empty()), 0);
        assert_eq!(CPU_MAP_ONLINE.count_ones(), CPU_MAP_ONLINE_COUNT);
    }

    #[test]
    fn sysinfo_is_smbios_bios() {
        let s = sysinfo_xml();
        assert!(s.starts_with("<sysinfo type='smbios'>\n  <bios>\n"));
        assert!(s.contains("<entry name='version'>G4ETA1WW (2.61 )</entry>"));
        assert!(s.ends_with("</sysinfo>\n"));
    }
}

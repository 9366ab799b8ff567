//! Argument and return structs of the statistics and security-label procedures:
//! CONNECT_GET_ALL_DOMAIN_STATS (which also carries `virDomainListGetStats`: a call
//! with a non-empty `doms` list), DOMAIN_MEMORY_STATS, DOMAIN_BLOCK_STATS,
//! DOMAIN_INTERFACE_STATS and DOMAIN_GET_SECURITY_LABEL_LIST. Field order follows
//! `remote_protocol.x`.

use crate::types::limits::*;
use crate::types::*;

/// `REMOTE_CONNECT_GET_ALL_DOMAIN_STATS_MAX`: typed parameters in one stats record.
pub const CONNECT_GET_ALL_DOMAIN_STATS_MAX: u32 = 262_144;

crate::xdr_struct! {
    /// CONNECT_GET_ALL_DOMAIN_STATS arguments.
    #[derive(Eq)]
    pub struct ConnectGetAllDomainStatsArgs {
        /// The domains asked about; empty = every domain passing the filter flags.
        pub doms: Vec<NonnullDomain> [max DOMAIN_LIST_MAX],
        /// `VIR_DOMAIN_STATS_*` groups; 0 = every group the driver has.
        pub stats: u32,
        /// `VIR_CONNECT_GET_ALL_DOMAINS_STATS_*`.
        pub flags: u32,
    }

    /// `remote_domain_stats_record`: one domain's statistics.
    pub struct DomainStatsRecord {
        /// The domain.
        pub dom: NonnullDomain,
        /// Its statistics, e.g. `state.state`.
        pub params: Vec<TypedParam> [max CONNECT_GET_ALL_DOMAIN_STATS_MAX],
    }

    /// CONNECT_GET_ALL_DOMAIN_STATS reply.
    pub struct ConnectGetAllDomainStatsRet {
        /// One record per domain.
        pub ret_stats: Vec<DomainStatsRecord> [max DOMAIN_LIST_MAX],
    }

    /// DOMAIN_MEMORY_STATS arguments.
    #[derive(Eq)]
    pub struct DomainMemoryStatsArgs {
        /// The domain.
        pub dom: NonnullDomain,
        /// The most statistics the caller has room for.
        pub max_stats: u32,
        /// Flags.
        pub flags: u32,
    }

    /// `remote_domain_memory_stat`: a tagged memory statistic.
    #[derive(Eq)]
    pub struct DomainMemoryStat {
        /// `VIR_DOMAIN_MEMORY_STAT_*`.
        pub tag: i32,
        /// The value (KiB for sizes).
        pub val: u64,
    }

    /// DOMAIN_MEMORY_STATS reply.
    #[derive(Eq)]
    pub struct DomainMemoryStatsRet {
        /// The statistics.
        pub stats: Vec<DomainMemoryStat> [max DOMAIN_MEMORY_STATS_MAX],
    }

    /// DOMAIN_BLOCK_STATS arguments.
    #[derive(Eq)]
    pub struct DomainBlockStatsArgs {
        /// The domain.
        pub dom: NonnullDomain,
        /// The disk: its target (`vda`) or source path.
        pub path: String,
    }

    /// DOMAIN_BLOCK_STATS reply.
    #[derive(Eq)]
    pub struct DomainBlockStatsRet {
        /// Read requests.
        pub rd_req: i64,
        /// Bytes read.
        pub rd_bytes: i64,
        /// Write requests.
        pub wr_req: i64,
        /// Bytes written.
        pub wr_bytes: i64,
        /// Errors.
        pub errs: i64,
    }

    /// DOMAIN_INTERFACE_STATS arguments.
    #[derive(Eq)]
    pub struct DomainInterfaceStatsArgs {
        /// The domain.
        pub dom: NonnullDomain,
        /// The interface: its host device name (`<target dev>`) or MAC address.
        pub path: String,
    }

    /// DOMAIN_INTERFACE_STATS reply.
    #[derive(Eq)]
    pub struct DomainInterfaceStatsRet {
        /// Bytes received.
        pub rx_bytes: i64,
        /// Packets received.
        pub rx_packets: i64,
        /// Receive errors.
        pub rx_errs: i64,
        /// Received packets dropped.
        pub rx_drop: i64,
        /// Bytes sent.
        pub tx_bytes: i64,
        /// Packets sent.
        pub tx_packets: i64,
        /// Transmit errors.
        pub tx_errs: i64,
        /// Sent packets dropped.
        pub tx_drop: i64,
    }

    /// `remote_domain_get_security_label_ret` as a list element.
    #[derive(Eq)]
    pub struct SecurityLabel {
        /// The label, a `char<>` including the NUL.
        pub label: crate::xdr::CharArray [max SECURITY_LABEL_MAX],
        /// Whether the label is enforced.
        pub enforcing: i32,
    }

    /// DOMAIN_GET_SECURITY_LABEL_LIST reply. libvirtd answers a failed call with an
    /// empty list and `ret` -1 (no error), which clients report as an error of
    /// unknown cause.
    #[derive(Eq)]
    pub struct DomainGetSecurityLabelListRet {
        /// The labels, one per security driver.
        pub labels: Vec<SecurityLabel> [max SECURITY_LABEL_LIST_MAX],
        /// The number of labels, or -1.
        pub ret: i32,
    }

    /// DOMAIN_SET_MEMORY_STATS_PERIOD arguments.
    #[derive(Eq)]
    pub struct DomainSetMemoryStatsPeriodArgs {
        /// The domain.
        pub dom: NonnullDomain,
        /// Seconds between collections; 0 stops collection.
        pub period: i32,
        /// `VIR_DOMAIN_AFFECT_*`.
        pub flags: u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdr::{CharArray, from_bytes_exact, to_bytes};
    use uuid::Uuid;

    #[test]
    fn stats_record_layout_is_domain_then_typed_params() {
        let r = ConnectGetAllDomainStatsRet {
            ret_stats: vec![DomainStatsRecord {
                dom: NonnullDomain::new("t", Uuid::nil(), None),
                params: vec![TypedParam {
                    field: "state.state".into(),
                    value: TypedParamValue::Int(5),
                }],
            }],
        };
        let b = to_bytes(&r);
        // count 1; name "t" (4 + 4); uuid (16); id -1; 1 param: "state.state" (4 + 12),
        // type 1, value 5.
        assert_eq!(b.len(), 4 + 8 + 16 + 4 + 4 + 16 + 4 + 4);
        assert_eq!(&b[28..32], &(-1i32).to_be_bytes());
        assert_eq!(&b[b.len() - 8..], &[0, 0, 0, 1, 0, 0, 0, 5]);
        assert_eq!(
            from_bytes_exact::<ConnectGetAllDomainStatsRet>(&b).unwrap(),
            r
        );
    }

    #[test]
    fn label_list_and_memory_stats_round_trip() {
        let l = DomainGetSecurityLabelListRet {
            labels: vec![SecurityLabel {
                label: CharArray::with_nul(""),
                enforcing: 0,
            }],
            ret: 1,
        };
        let b = to_bytes(&l);
        // count 1; char<> of one NUL (4 + 4 padded); enforcing; ret.
        assert_eq!(b.len(), 4 + 8 + 4 + 4);
        assert_eq!(
            from_bytes_exact::<DomainGetSecurityLabelListRet>(&b).unwrap(),
            l
        );
        let m = DomainMemoryStatsRet {
            stats: vec![DomainMemoryStat { tag: 6, val: 32768 }],
        };
        let b = to_bytes(&m);
        assert_eq!(&b[..], &[0, 0, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0x80, 0]);
        assert_eq!(from_bytes_exact::<DomainMemoryStatsRet>(&b).unwrap(), m);
    }
}

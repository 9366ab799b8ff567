//! Tests of the procedure table and payload structs.

use super::*;
use crate::packet::{
    Header, MessageStatus, MessageType, decode_frame, decode_reply, encode_call, encode_event,
    encode_reply,
};
use crate::types::*;
use crate::xdr::{FixedChars, XdrError, from_bytes, from_bytes_exact, to_bytes};
use uuid::Uuid;
use vireo_messages::DomainId;

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn uuid() -> Uuid {
    Uuid::parse_str("6695eb01-f6a4-8304-79aa-97f2502e193f").unwrap()
}

fn dom() -> NonnullDomain {
    NonnullDomain::new("test", uuid(), Some(DomainId(1)))
}

#[test]
fn table_is_complete_and_consistent() {
    assert_eq!(RemoteProc::ALL.len(), 453);
    for (i, p) in RemoteProc::ALL.iter().enumerate() {
        assert_eq!(p.number() as usize, i + 1);
        assert_eq!(RemoteProc::from_u32(p.number()), Some(*p));
        assert!(!(p.is_event() && p.is_readonly_safe()), "{p:?}");
    }
    assert_eq!(RemoteProc::from_u32(0), None);
    assert_eq!(RemoteProc::from_u32(454), None);
    assert_eq!(RemoteProc::from_i32(-1), None);
    assert_eq!(
        RemoteProc::from_i32(318),
        Some(RemoteProc::DomainEventCallbackLifecycle)
    );
    assert_eq!(RemoteProc::DomainGetXmlDesc.name(), "DOMAIN_GET_XML_DESC");
    assert_eq!(RemoteProc::DomainGetAutostartOnce.number(), 449);
    assert_eq!(RemoteProc::DomainEventNicMacChange.number(), 453);
}

#[test]
fn flags() {
    assert!(RemoteProc::DomainLookupByName.is_readonly_safe());
    assert!(RemoteProc::ConnectOpen.is_readonly_safe());
    assert!(RemoteProc::ConnectDomainEventCallbackRegisterAny.is_readonly_safe());
    assert!(!RemoteProc::DomainDestroy.is_readonly_safe());
    assert!(!RemoteProc::SecretGetValue.is_readonly_safe());
    assert!(!RemoteProc::DomainGetHostname.is_readonly_safe());
    assert!(!RemoteProc::DomainSetSchedulerParameters.is_readonly_safe());
    assert!(RemoteProc::DomainDestroy.is_priority());
    assert!(!RemoteProc::DomainCreate.is_priority());
    assert!(RemoteProc::StorageVolDownload.is_stream());
    assert!(RemoteProc::DomainOpenConsole.is_stream());
    assert!(!RemoteProc::DomainCreate.is_stream());
    assert!(RemoteProc::DomainEventCallbackLifecycle.is_event());
    assert!(RemoteProc::DomainEventMemoryDeviceSizeChange.is_event());
    assert!(!RemoteProc::DomainGetState.is_event());
    assert!(RemoteProc::DomainGetState.has_types());
    assert!(!RemoteProc::DomainPinVcpu.has_types());
}

#[test]
fn every_event_and_trace_procedure_has_types() {
    for p in RemoteProc::ALL {
        if p.is_event() {
            assert!(p.has_types(), "{p:?}");
        }
    }
    // Every procedure seen in rpc-trace.md.
    let trace = [
        1, 2, 3, 4, 6, 7, 9, 10, 11, 12, 14, 15, 16, 19, 23, 24, 28, 33, 34, 35, 43, 44, 46, 54,
        55, 59, 60, 66, 84, 87, 89, 121, 122, 139, 150, 151, 152, 153, 154, 157, 182, 183, 187,
        212, 231, 273, 281, 282, 283, 285, 287, 316, 317, 318, 360, 361, 426,
    ];
    for n in trace {
        assert!(RemoteProc::from_u32(n).unwrap().has_types(), "{n}");
    }
}

#[test]
fn api_names() {
    let cases = [
        (
            RemoteProc::DomainAttachDeviceFlags,
            "virDomainAttachDeviceFlags",
        ),
        (RemoteProc::DomainGetXmlDesc, "virDomainGetXMLDesc"),
        (RemoteProc::DomainLookupByUuid, "virDomainLookupByUUID"),
        (RemoteProc::DomainLookupById, "virDomainLookupByID"),
        (RemoteProc::ConnectGetUri, "virConnectGetURI"),
        (RemoteProc::DomainGetOsType, "virDomainGetOSType"),
        (RemoteProc::NodeGetCpuMap, "virNodeGetCPUMap"),
        (
            RemoteProc::ConnectListAllSecrets,
            "virConnectListAllSecrets",
        ),
        (
            RemoteProc::ConnectSecretEventRegisterAny,
            "virConnectSecretEventRegisterAny",
        ),
        (
            RemoteProc::ConnectDomainEventCallbackRegisterAny,
            "virConnectDomainEventRegisterAny",
        ),
        (RemoteProc::DomainSetBlockIoTune, "virDomainSetBlockIoTune"),
        (RemoteProc::DomainPinIothread, "virDomainPinIOThread"),
        (RemoteProc::DomainFsfreeze, "virDomainFSFreeze"),
        (
            RemoteProc::ConnectNumOfNwfilters,
            "virConnectNumOfNWFilters",
        ),
        (
            RemoteProc::InterfaceLookupByMacString,
            "virInterfaceLookupByMACString",
        ),
        (
            RemoteProc::DomainPmSuspendForDuration,
            "virDomainPMSuspendForDuration",
        ),
        (RemoteProc::NetworkGetDhcpLeases, "virNetworkGetDHCPLeases"),
        (
            RemoteProc::NodeDeviceLookupScsiHostByWwn,
            "virNodeDeviceLookupSCSIHostByWWN",
        ),
        (RemoteProc::DomainDestroy, "virDomainDestroy"),
    ];
    for (p, api) in cases {
        assert_eq!(p.api_name(), api);
    }
}

#[test]
fn typed_markers_tie_numbers_to_types() {
    fn check<P: Procedure>(n: u32) {
        assert_eq!(P::PROC.number(), n);
    }
    check::<typed::ConnectOpen>(1);
    check::<typed::DomainGetState>(212);
    check::<typed::DomainEventCallbackLifecycle>(318);
    let args: <typed::DomainGetState as Procedure>::Args = DomainFlagsArgs {
        dom: dom(),
        flags: 0,
    };
    let frame = encode_call(typed::DomainGetState::PROC, 7, &args);
    let (packet, _) = decode_frame(&frame).unwrap().unwrap();
    assert_eq!(
        packet.header.remote_proc(),
        Some(RemoteProc::DomainGetState)
    );
    let ret = DomainGetStateRet {
        state: 1,
        reason: 0,
    };
    let reply = encode_reply(&packet.header, &ret);
    let (packet, _) = decode_frame(&reply).unwrap().unwrap();
    let back: <typed::DomainGetState as Procedure>::Ret = decode_reply(&packet).unwrap();
    assert_eq!(back, ret);
}

#[test]
fn lifecycle_event_golden() {
    // §10.2: callback lifecycle event for inactive domain "foo" just defined, id 0.
    let foo_uuid = Uuid::parse_str("00112233-4455-6677-8899-aabbccddeeff").unwrap();
    let golden = unhex(
        "00000044
         20008086 00000001 0000013e 00000002 00000001 00000000
         00000000
         00000003 666f6f00 00112233445566778899aabbccddeeff ffffffff
         00000000 00000000",
    );
    let msg = DomainEventCallbackLifecycleMsg {
        callback_id: 0,
        msg: DomainEventLifecycleMsg {
            dom: NonnullDomain::new("foo", foo_uuid, None),
            event: 0,
            detail: 0,
        },
    };
    let frame = encode_event(RemoteProc::DomainEventCallbackLifecycle, &msg);
    assert_eq!(frame.to_vec(), golden);
    let (packet, used) = decode_frame(&golden).unwrap().unwrap();
    assert_eq!(used, golden.len());
    assert_eq!(packet.header.kind, MessageType::Message);
    assert_eq!(packet.header.serial, 1);
    assert_eq!(packet.header.status, MessageStatus::Ok);
    let back: DomainEventCallbackLifecycleMsg = from_bytes_exact(&packet.payload).unwrap();
    assert_eq!(back, msg);
    assert_eq!(packet.to_frame().to_vec(), golden);
}

#[test]
fn handshake_replies() {
    // AUTH_LIST reply [0] (NONE).
    let call = Header::call(RemoteProc::AuthList, 0);
    let frame = encode_reply(
        &call,
        &AuthListRet {
            types: vec![AuthType::None],
        },
    );
    assert_eq!(
        frame.to_vec(),
        unhex(
            "00000024 20008086 00000001 00000042 00000001 00000000 00000000
             00000001 00000000"
        )
    );
    // CONNECT_LIST_ALL_DOMAINS(need_results 1, flags 3) and its reply.
    let args = ListAllArgs {
        need_results: 1,
        flags: 3,
    };
    assert_eq!(to_bytes(&args).to_vec(), unhex("00000001 00000003"));
    let ret = ConnectListAllDomainsRet {
        domains: vec![dom()],
        ret: 1,
    };
    assert_eq!(
        to_bytes(&ret).to_vec(),
        unhex(
            "00000001 00000004 74657374 6695eb01f6a4830479aa97f2502e193f 00000001
             00000001"
        )
    );
    assert_eq!(
        from_bytes_exact::<ConnectListAllDomainsRet>(&to_bytes(&ret)).unwrap(),
        ret
    );
}

#[test]
fn node_info_and_security_model() {
    let info = NodeGetInfoRet {
        model: FixedChars::from_text("i686"),
        memory: 3_145_728,
        cpus: 16,
        mhz: 1400,
        nodes: 2,
        sockets: 2,
        cores: 2,
        threads: 2,
    };
    let bytes = to_bytes(&info);
    assert_eq!(bytes.len(), 128 + 8 + 6 * 4);
    assert_eq!(
        &bytes[..16],
        &unhex("00000069 00000036 00000038 00000036")[..]
    );
    assert_eq!(from_bytes_exact::<NodeGetInfoRet>(&bytes).unwrap(), info);

    let model = NodeGetSecurityModelRet {
        model: crate::xdr::CharArray::with_nul("testSecurity"),
        doi: crate::xdr::CharArray::with_nul(""),
    };
    let bytes = to_bytes(&model);
    assert_eq!(bytes.len(), 4 + 13 * 4 + 4 + 4);
    let back: NodeGetSecurityModelRet = from_bytes_exact(&bytes).unwrap();
    assert_eq!(back.model.text().unwrap(), "testSecurity");
    assert_eq!(back.doi.text().unwrap(), "");
}

#[test]
fn round_trips_of_assorted_structs() {
    fn rt<T: crate::xdr::XdrEncode + crate::xdr::XdrDecode + PartialEq + std::fmt::Debug>(v: T) {
        let bytes = to_bytes(&v);
        assert_eq!(from_bytes_exact::<T>(&bytes).unwrap(), v);
    }
    rt(DomainGetInfoRet {
        state: 1,
        max_mem: 8_388_608,
        memory: 2_097_152,
        nr_virt_cpu: 2,
        cpu_time: 123_456_789,
    });
    rt(DomainSaveFlagsArgs {
        dom: dom(),
        to: "/tmp/x.save".into(),
        dxml: None,
        flags: 2,
    });
    rt(DomainGetVcpusRet {
        info: vec![VcpuInfo {
            number: 0,
            state: 1,
            cpu_time: 5,
            cpu: -1,
        }],
        cpumaps: vec![0xff, 0x01],
    });
    rt(NetworkUpdateArgs {
        net: NonnullNetwork {
            name: "default".into(),
            uuid: uuid(),
        },
        command: 3,
        section: 4,
        parent_index: -1,
        xml: "<host/>".into(),
        flags: 1,
    });
    rt(TypedParamsCountRet {
        params: vec![TypedParam {
            field: "weight".into(),
            value: TypedParamValue::UInt(500),
        }],
        nparams: 1,
    });
    rt(SecretSetValueArgs {
        secret: NonnullSecret {
            uuid: uuid(),
            usage_type: 4,
            usage_id: "tls".into(),
        },
        value: b"s3cret".to_vec(),
        flags: 0,
    });
    rt(DomainEventCallbackGraphicsMsg {
        callback_id: 5,
        msg: DomainEventGraphicsMsg {
            dom: dom(),
            phase: 0,
            local: DomainEventGraphicsAddress {
                family: 0,
                node: "127.0.0.1".into(),
                service: "5900".into(),
            },
            remote: DomainEventGraphicsAddress {
                family: 1,
                node: "::1".into(),
                service: "40000".into(),
            },
            auth_scheme: "none".into(),
            subject: vec![DomainEventGraphicsIdentity {
                type_: "x509dname".into(),
                name: "CN=a".into(),
            }],
        },
    });
    rt(DomainEventCallbackMetadataChangeMsg {
        callback_id: 1,
        dom: dom(),
        type_: 2,
        nsuri: Some("http://example.org/".into()),
    });
    rt(ConnectEventConnectionClosedMsg { reason: 1 });
}

#[test]
fn malformed_arguments_are_errors() {
    // Truncated CONNECT_OPEN args.
    let full = to_bytes(&ConnectOpenArgs {
        name: Some("test:///default".into()),
        flags: 0,
    });
    for cut in 0..full.len() {
        assert!(
            from_bytes::<ConnectOpenArgs>(&full[..cut]).is_err(),
            "cut {cut}"
        );
    }
    // A domain list claiming 0xffffffff entries.
    let bad = unhex("ffffffff 00000000");
    assert!(matches!(
        from_bytes::<ConnectListAllDomainsRet>(&bad),
        Err(XdrError::LengthExceedsMax { .. })
    ));
    // A domain list claiming 1000 entries with 8 bytes of input.
    let bad = unhex("000003e8 00000000");
    assert!(matches!(
        from_bytes::<ConnectListAllDomainsRet>(&bad),
        Err(XdrError::LengthExceedsInput { needed: 24000, .. })
    ));
    // Bad optional flag in CONNECT_OPEN.
    assert_eq!(
        from_bytes::<ConnectOpenArgs>(&unhex("00000002 00000000")),
        Err(XdrError::InvalidOptional(2))
    );
    // Bad UTF-8 in a domain name.
    let bad = unhex("00000002 ff fe 0000");
    assert!(matches!(
        from_bytes::<NameArgs>(&bad),
        Err(XdrError::InvalidUtf8 { .. })
    ));
    // Unknown auth type.
    assert!(from_bytes::<AuthListRet>(&unhex("00000001 00000009")).is_err());
}

/// Decoding random or truncated bytes into a few argument types never panics.
#[test]
fn random_input_never_panics() {
    let mut seed = 0x9e37_79b9u32;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    let samples: Vec<Vec<u8>> = vec![
        to_bytes(&ConnectOpenArgs {
            name: Some("test:///default".into()),
            flags: 1,
        })
        .to_vec(),
        to_bytes(&DomainEventCallbackLifecycleMsg {
            callback_id: 3,
            msg: DomainEventLifecycleMsg {
                dom: dom(),
                event: 2,
                detail: 0,
            },
        })
        .to_vec(),
        to_bytes(&TypedParamsCountRet {
            params: vec![TypedParam {
                field: "s".into(),
                value: TypedParamValue::String("v".into()),
            }],
            nparams: 1,
        })
        .to_vec(),
    ];
    for round in 0..20_000 {
        let mut buf: Vec<u8> = if round % 2 == 0 {
            let len = (next() % 96) as usize;
            (0..len).map(|_| next() as u8).collect()
        } else {
            // Mutate and truncate a valid encoding.
            let mut b = samples[(round / 2) % samples.len()].clone();
            let flips = next() % 4;
            for _ in 0..flips {
                let i = (next() as usize) % b.len();
                b[i] = next() as u8;
            }
            b
        };
        let cut = (next() as usize) % (buf.len() + 1);
        buf.truncate(cut);
        let _ = from_bytes::<ConnectOpenArgs>(&buf);
        let _ = from_bytes::<DomainEventCallbackLifecycleMsg>(&buf);
        let _ = from_bytes::<ConnectListAllDomainsRet>(&buf);
        let _ = from_bytes::<TypedParamsCountRet>(&buf);
        let _ = from_bytes::<NodeGetSecurityModelRet>(&buf);
        let _ = from_bytes::<RemoteError>(&buf);
        let _ = from_bytes::<DomainGetVcpusRet>(&buf);
        let _ = decode_frame(&buf);
    }
}

#[test]
fn vireo_events_become_callback_messages() {
    use vireo_messages::{DomainEventKind, Event, EventKind, ObjectKind, ObjectRef, PoolEventKind};
    let foo_uuid = Uuid::parse_str("00112233-4455-6677-8899-aabbccddeeff").unwrap();
    let event = Event {
        origin: 0,
        object: ObjectRef::domain("foo", foo_uuid, None),
        kind: EventKind::lifecycle(DomainEventKind::Defined, 0),
    };
    let (proc_, payload) = encode_event_message(0, &event).unwrap();
    assert_eq!(proc_, RemoteProc::DomainEventCallbackLifecycle);
    // The payload of the §10.2 wire example.
    assert_eq!(
        payload.to_vec(),
        unhex(
            "00000000 00000003 666f6f00 00112233445566778899aabbccddeeff ffffffff
             00000000 00000000"
        )
    );
    let pool = Event {
        origin: 0,
        object: ObjectRef::named(ObjectKind::StoragePool, "p", Some(foo_uuid)),
        kind: EventKind::PoolLifecycle(PoolEventKind::Started),
    };
    let (proc_, payload) = encode_event_message(3, &pool).unwrap();
    assert_eq!(proc_, RemoteProc::StoragePoolEventLifecycle);
    let msg: StoragePoolEventLifecycleMsg = from_bytes_exact(&payload).unwrap();
    assert_eq!(msg.callback_id, 3);
    assert_eq!(msg.event, 2);
    // Mismatched object kind.
    let odd = Event {
        origin: 0,
        object: ObjectRef::named(ObjectKind::Network, "n", None),
        kind: EventKind::PoolRefresh,
    };
    assert!(encode_event_message(0, &odd).is_none());
    // Every domain event kind maps to an event procedure whose payload decodes.
    let kinds = [
        vireo_messages::DomainEvent::Reboot,
        vireo_messages::DomainEvent::RtcChange { offset: -5 },
        vireo_messages::DomainEvent::IoError {
            src_path: "/a".into(),
            dev_alias: "vda".into(),
            action: 1,
            reason: Some("enospc".into()),
        },
        vireo_messages::DomainEvent::PmSuspend { reason: 0 },
        vireo_messages::DomainEvent::JobCompleted {
            stats: vec![vireo_messages::TypedParam::new(
                "time_elapsed",
                vireo_messages::TypedValue::ULLong(5),
            )],
        },
        vireo_messages::DomainEvent::MetadataChange {
            kind: 2,
            nsuri: None,
        },
    ];
    for k in kinds {
        let e = Event {
            origin: 0,
            object: ObjectRef::domain("foo", foo_uuid, Some(DomainId(3))),
            kind: EventKind::Domain(k),
        };
        let (p, payload) = encode_event_message(1, &e).unwrap();
        assert!(p.is_event());
        // Every callback message starts with the callback id.
        assert_eq!(&payload[..4], &[0, 0, 0, 1]);
    }
}

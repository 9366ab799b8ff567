//! Typed conveniences for the domain and connection calls Vireo's tools use (the
//! benchmark load generator above all). Each is one RPC; anything else is a
//! [`Client::call`] away.

use vireo_wire::RemoteProc;
use vireo_wire::procs::{
    ConnectListAllDomainsRet, DomainArgs, DomainFlagsArgs, DomainGetInfoRet, DomainGetStateRet,
    DomainRet, ListAllArgs, NameArgs, StringRet, UHyperRet, UuidArgs, XmlArgs,
};
use vireo_wire::types::NonnullDomain;

use crate::conn::Client;
use crate::error::ClientError;

fn args(dom: &NonnullDomain) -> DomainArgs {
    DomainArgs { dom: dom.clone() }
}

impl Client {
    /// `virDomainDefineXML` (DOMAIN_DEFINE_XML).
    pub async fn define_xml(&self, xml: &str) -> Result<NonnullDomain, ClientError> {
        let r: DomainRet = self
            .call(RemoteProc::DomainDefineXml, &XmlArgs { xml: xml.into() })
            .await?;
        Ok(r.dom)
    }

    /// `virDomainCreateWithFlags` (DOMAIN_CREATE_WITH_FLAGS): starts a defined domain;
    /// returns the reference with the new id.
    pub async fn create(&self, dom: &NonnullDomain) -> Result<NonnullDomain, ClientError> {
        let r: DomainRet = self
            .call(
                RemoteProc::DomainCreateWithFlags,
                &DomainFlagsArgs {
                    dom: dom.clone(),
                    flags: 0,
                },
            )
            .await?;
        Ok(r.dom)
    }

    /// `virDomainDestroy` (DOMAIN_DESTROY).
    pub async fn destroy(&self, dom: &NonnullDomain) -> Result<(), ClientError> {
        self.call(RemoteProc::DomainDestroy, &args(dom)).await
    }

    /// `virDomainUndefine` (DOMAIN_UNDEFINE).
    pub async fn undefine(&self, dom: &NonnullDomain) -> Result<(), ClientError> {
        self.call(RemoteProc::DomainUndefine, &args(dom)).await
    }

    /// `virDomainSuspend` (DOMAIN_SUSPEND).
    pub async fn suspend(&self, dom: &NonnullDomain) -> Result<(), ClientError> {
        self.call(RemoteProc::DomainSuspend, &args(dom)).await
    }

    /// `virDomainResume` (DOMAIN_RESUME).
    pub async fn resume(&self, dom: &NonnullDomain) -> Result<(), ClientError> {
        self.call(RemoteProc::DomainResume, &args(dom)).await
    }

    /// `virDomainLookupByName` (DOMAIN_LOOKUP_BY_NAME).
    pub async fn lookup_by_name(&self, name: &str) -> Result<NonnullDomain, ClientError> {
        let r: DomainRet = self
            .call(
                RemoteProc::DomainLookupByName,
                &NameArgs { name: name.into() },
            )
            .await?;
        Ok(r.dom)
    }

    /// `virDomainLookupByUUID` (DOMAIN_LOOKUP_BY_UUID).
    pub async fn lookup_by_uuid(&self, uuid: uuid::Uuid) -> Result<NonnullDomain, ClientError> {
        let r: DomainRet = self
            .call(RemoteProc::DomainLookupByUuid, &UuidArgs { uuid })
            .await?;
        Ok(r.dom)
    }

    /// `virDomainGetXMLDesc` (DOMAIN_GET_XML_DESC).
    pub async fn xml_desc(&self, dom: &NonnullDomain, flags: u32) -> Result<String, ClientError> {
        let r: StringRet = self
            .call(
                RemoteProc::DomainGetXmlDesc,
                &DomainFlagsArgs {
                    dom: dom.clone(),
                    flags,
                },
            )
            .await?;
        Ok(r.value)
    }

    /// `virDomainGetState` (DOMAIN_GET_STATE): `(state, reason)`.
    pub async fn get_state(&self, dom: &NonnullDomain) -> Result<(i32, i32), ClientError> {
        let r: DomainGetStateRet = self
            .call(
                RemoteProc::DomainGetState,
                &DomainFlagsArgs {
                    dom: dom.clone(),
                    flags: 0,
                },
            )
            .await?;
        Ok((r.state, r.reason))
    }

    /// `virDomainGetInfo` (DOMAIN_GET_INFO).
    pub async fn get_info(&self, dom: &NonnullDomain) -> Result<DomainGetInfoRet, ClientError> {
        self.call(RemoteProc::DomainGetInfo, &args(dom)).await
    }

    /// `virConnectListAllDomains` (CONNECT_LIST_ALL_DOMAINS) with filter `flags`.
    pub async fn list_all_domains(&self, flags: u32) -> Result<Vec<NonnullDomain>, ClientError> {
        let r: ConnectListAllDomainsRet = self
            .call(
                RemoteProc::ConnectListAllDomains,
                &ListAllArgs {
                    need_results: 1,
                    flags,
                },
            )
            .await?;
        Ok(r.domains)
    }

    /// `virConnectGetType` (CONNECT_GET_TYPE), e.g. `TEST`.
    pub async fn get_type(&self) -> Result<String, ClientError> {
        let r: StringRet = self.call(RemoteProc::ConnectGetType, &()).await?;
        Ok(r.value)
    }

    /// `virConnectGetLibVersion` (CONNECT_GET_LIB_VERSION).
    pub async fn get_lib_version(&self) -> Result<u64, ClientError> {
        let r: UHyperRet = self.call(RemoteProc::ConnectGetLibVersion, &()).await?;
        Ok(r.value)
    }
}

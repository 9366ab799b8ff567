//! Host interfaces of a driver instance, as the test driver keeps them: the
//! configuration's interfaces (for `test:///default`: `eth1`, active), define (inactive)
//! and undefine, start and stop, lookups by name and MAC, and the change
//! begin/commit/rollback transaction. Interfaces raise no events.
//!
//! Like the test driver, the definitions live in memory for the life of the instance:
//! a small locked map rather than an actor per interface.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use vireo_messages::{ErrorCode, ErrorDomain, VirError, VirResult};
use vireo_xml::Element;

use crate::driver::DriverCtx;

/// One interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Name (`name` attribute).
    pub name: String,
    /// MAC address (`<mac address>`), empty when the definition has none.
    pub mac: String,
    /// The definition.
    pub xml: String,
    /// Started.
    pub active: bool,
}

const TYPES: [&str; 4] = ["ethernet", "bridge", "bond", "vlan"];

impl Interface {
    /// Parses a definition (inactive).
    pub fn from_xml(xml: &str) -> VirResult<Interface> {
        let root = Element::parse(xml)
            .map_err(|e| e.to_vir(ErrorDomain::Interface, "(interface_definition)"))?;
        if root.name != "interface" {
            return Err(VirError::xml(
                ErrorDomain::Interface,
                format!(
                    "unexpected root element <{}>, expecting <interface>",
                    root.name
                ),
            ));
        }
        let kind = root.attr("type").ok_or_else(|| {
            VirError::xml(
                ErrorDomain::Interface,
                "interface misses the type attribute",
            )
        })?;
        if !TYPES.contains(&kind) {
            return Err(VirError::xml(
                ErrorDomain::Interface,
                format!("unknown interface type {kind}"),
            ));
        }
        let name = root
            .attr("name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| VirError::xml(ErrorDomain::Interface, "interface has no name"))?
            .to_string();
        Ok(Interface {
            mac: root
                .path_attr(&["mac"], "address")
                .unwrap_or("")
                .to_string(),
            xml: root.to_xml(),
            active: false,
            name,
        })
    }
}

#[derive(Default)]
struct State {
    ifaces: BTreeMap<String, Interface>,
    /// The copy taken by `change_begin`.
    backup: Option<BTreeMap<String, Interface>>,
}

/// The interfaces of one driver instance.
pub struct Interfaces {
    ctx: Arc<DriverCtx>,
    state: Mutex<State>,
}

impl Interfaces {
    /// The configuration's interfaces, all active.
    pub(crate) fn new(ctx: Arc<DriverCtx>) -> Interfaces {
        let ifaces = ctx
            .node
            .interfaces
            .iter()
            .filter_map(|x| Interface::from_xml(x).ok())
            .map(|mut i| {
                i.active = true;
                (i.name.clone(), i)
            })
            .collect();
        Interfaces {
            ctx,
            state: Mutex::new(State {
                ifaces,
                backup: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn not_found(&self, name: &str) -> VirError {
        VirError::with(
            ErrorCode::NoInterface,
            self.ctx.err_domain(),
            format!("no interface with matching name '{name}'"),
        )
    }

    /// Interfaces, sorted by name; `Some(active)` keeps only active or inactive ones.
    pub fn list(&self, active: Option<bool>) -> Vec<Interface> {
        self.lock()
            .ifaces
            .values()
            .filter(|i| active.is_none_or(|a| i.active == a))
            .cloned()
            .collect()
    }

    /// By name.
    pub fn lookup(&self, name: &str) -> VirResult<Interface> {
        self.lock()
            .ifaces
            .get(name)
            .cloned()
            .ok_or_else(|| self.not_found(name))
    }

    /// By MAC address (case-insensitive); more than one match is an error.
    pub fn lookup_by_mac(&self, mac: &str) -> VirResult<Interface> {
        let st = self.lock();
        let found: Vec<&Interface> = st
            .ifaces
            .values()
            .filter(|i| i.mac.eq_ignore_ascii_case(mac))
            .collect();
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(VirError::with(
                ErrorCode::NoInterface,
                self.ctx.err_domain(),
                format!("no interface with matching mac '{mac}'"),
            )),
            _ => Err(VirError::bare(
                ErrorCode::MultipleInterfaces,
                self.ctx.err_domain(),
            )),
        }
    }

    /// Defines (or redefines, keeping its state) an interface.
    pub fn define(&self, xml: &str) -> VirResult<Interface> {
        let mut new = Interface::from_xml(xml)?;
        let mut st = self.lock();
        if let Some(old) = st.ifaces.get(&new.name) {
            new.active = old.active;
        }
        st.ifaces.insert(new.name.clone(), new.clone());
        Ok(new)
    }

    /// Removes an interface (active or not).
    pub fn undefine(&self, name: &str) -> VirResult<()> {
        self.lock()
            .ifaces
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| self.not_found(name))
    }

    fn set_active(&self, name: &str, on: bool) -> VirResult<()> {
        let mut st = self.lock();
        let i = st
            .ifaces
            .get_mut(name)
            .ok_or_else(|| self.not_found(name))?;
        if i.active == on {
            return Err(VirError::bare(
                ErrorCode::OperationInvalid,
                self.ctx.err_domain(),
            ));
        }
        i.active = on;
        Ok(())
    }

    /// Starts an inactive interface.
    pub fn create(&self, name: &str) -> VirResult<()> {
        self.set_active(name, true)
    }

    /// Stops an active interface.
    pub fn destroy(&self, name: &str) -> VirResult<()> {
        self.set_active(name, false)
    }

    /// Starts a transaction: a copy of the interfaces to roll back to.
    pub fn change_begin(&self) -> VirResult<()> {
        let mut st = self.lock();
        if st.backup.is_some() {
            return Err(VirError::operation_invalid(
                self.ctx.err_domain(),
                "there is another transaction running.",
            ));
        }
        st.backup = Some(st.ifaces.clone());
        Ok(())
    }

    /// Ends the transaction, keeping the changes.
    pub fn change_commit(&self) -> VirResult<()> {
        let mut st = self.lock();
        if st.backup.take().is_none() {
            return Err(VirError::operation_invalid(
                self.ctx.err_domain(),
                "no transaction running, nothing to be committed.",
            ));
        }
        Ok(())
    }

    /// Ends the transaction, restoring the interfaces as they were at its start.
    pub fn change_rollback(&self) -> VirResult<()> {
        let mut st = self.lock();
        match st.backup.take() {
            Some(b) => {
                st.ifaces = b;
                Ok(())
            }
            None => Err(VirError::operation_invalid(
                self.ctx.err_domain(),
                "no transaction running, nothing to rollback.",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vireo_drivers::testdata::defaults::DEFAULT_INTERFACE_XML;

    #[test]
    fn parse_default_and_errors() {
        let i = Interface::from_xml(DEFAULT_INTERFACE_XML).unwrap();
        assert_eq!(
            (i.name.as_str(), i.mac.as_str()),
            ("eth1", "aa:bb:cc:dd:ee:ff")
        );
        assert_eq!(i.xml, DEFAULT_INTERFACE_XML);
        let e = Interface::from_xml("<interface type='ethernet'/>").unwrap_err();
        assert_eq!(e.code, ErrorCode::XmlError);
        assert!(e.message.contains("interface has no name"), "{}", e.message);
        let e = Interface::from_xml("<interface name='x'/>").unwrap_err();
        assert!(e.message.contains("misses the type"), "{}", e.message);
        let e = Interface::from_xml("<interface type='wifi' name='x'/>").unwrap_err();
        assert!(e.message.contains("unknown interface type wifi"));
        let i = Interface::from_xml("<interface type='bridge' name='br0'/>").unwrap();
        assert_eq!(i.mac, "");
    }
}

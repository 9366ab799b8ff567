//! Secrets of a driver instance, with the semantics of libvirt's secret driver (the
//! test driver has none): define (by uuid, one secret per usage), lookups by uuid and
//! usage, XML, value get/set, undefine, and secret lifecycle / value-changed events.
//!
//! Non-ephemeral secrets of an instance with a store are persistent: the definition as
//! `STORE/secrets/UUID.xml` and the value as `STORE/secrets/UUID.value` (directory mode
//! 0700), reloaded when the instance starts. Secrets have no long-running operations,
//! so they are a small locked map rather than an actor each.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use vireo_drivers::store::{remove_durable, write_atomic};
use vireo_messages::event::{EventKind, ObjectRef};
use vireo_messages::{ErrorCode, ErrorDomain, ObjectKind, Uuid, VirError, VirResult};
use vireo_xml::Element;

use crate::driver::DriverCtx;

/// `virSecretUsageType` names, by number.
pub const USAGE_TYPES: [(i32, &str, &str); 5] = [
    (1, "volume", "volume"),
    (2, "ceph", "name"),
    (3, "iscsi", "target"),
    (4, "tls", "name"),
    (5, "vtpm", "name"),
];

/// A secret's definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretDef {
    /// Identity.
    pub uuid: Uuid,
    /// Not kept on disk.
    pub ephemeral: bool,
    /// The value cannot be read back through the API.
    pub private: bool,
    /// Free text.
    pub description: Option<String>,
    /// `virSecretUsageType` (0 = none).
    pub usage_type: i32,
    /// The usage id (volume path, ceph/tls/vtpm name, iscsi target); empty for none.
    pub usage_id: String,
}

fn xml_err(detail: impl Into<String>) -> VirError {
    VirError::xml(ErrorDomain::Secret, detail)
}

fn yes_no(root: &Element, attr: &str) -> VirResult<bool> {
    match root.attr(attr) {
        None | Some("no") => Ok(false),
        Some("yes") => Ok(true),
        Some(_) => Err(xml_err(format!("invalid value of '{attr}'"))),
    }
}

impl SecretDef {
    /// Parses a definition; a missing uuid is generated.
    pub fn parse(xml: &str) -> VirResult<SecretDef> {
        let root = Element::parse(xml)
            .map_err(|e| e.to_vir(ErrorDomain::Secret, "(secret_definition)"))?;
        if root.name != "secret" {
            return Err(xml_err(format!(
                "unexpected root element <{}>, expecting <secret>",
                root.name
            )));
        }
        let uuid = match root.child_text("uuid") {
            Some(u) => Uuid::parse_str(u.trim()).map_err(|_| xml_err("malformed uuid element"))?,
            None => Uuid::new_v4(),
        };
        let (usage_type, usage_id) = match root.child("usage") {
            None => (0, String::new()),
            Some(u) => {
                let t = u
                    .attr("type")
                    .ok_or_else(|| xml_err("missing secret usage type"))?;
                let (n, _, field) = USAGE_TYPES
                    .iter()
                    .find(|(_, name, _)| *name == t)
                    .ok_or_else(|| xml_err(format!("unknown secret usage type {t}")))?;
                let what = match *n {
                    1 => "volume usage specified, but volume path is missing",
                    2 => "Ceph usage specified, but name is missing",
                    3 => "iSCSI usage specified, but target is missing",
                    4 => "TLS usage specified, but name is missing",
                    _ => "vTPM usage specified, but name is missing",
                };
                let id = u
                    .child_text(field)
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| xml_err(what))?;
                (*n, id)
            }
        };
        Ok(SecretDef {
            uuid,
            ephemeral: yes_no(&root, "ephemeral")?,
            private: yes_no(&root, "private")?,
            description: root.child_text("description"),
            usage_type,
            usage_id,
        })
    }

    /// The definition as libvirt formats it.
    pub fn to_xml(&self) -> String {
        let yn = |b: bool| if b { "yes" } else { "no" };
        let mut root = Element::new("secret");
        root.set_attr("ephemeral", yn(self.ephemeral));
        root.set_attr("private", yn(self.private));
        root.push_child(Element::with_text("uuid", self.uuid.to_string()));
        if let Some(d) = &self.description {
            root.push_child(Element::with_text("description", d.clone()));
        }
        if let Some((_, name, field)) = USAGE_TYPES.iter().find(|(n, _, _)| *n == self.usage_type) {
            let mut u = Element::new("usage");
            u.set_attr("type", *name);
            u.push_child(Element::with_text(*field, self.usage_id.clone()));
            root.push_child(u);
        }
        root.to_xml()
    }

    /// "TYPE ID" as libvirt names a usage in errors.
    fn usage_text(&self) -> String {
        let name = USAGE_TYPES
            .iter()
            .find(|(n, _, _)| *n == self.usage_type)
            .map(|(_, name, _)| *name)
            .unwrap_or("none");
        format!("{name} {}", self.usage_id)
    }
}

struct Secret {
    def: SecretDef,
    value: Option<Vec<u8>>,
}

/// The secrets of one driver instance.
pub struct Secrets {
    ctx: Arc<DriverCtx>,
    dir: Option<PathBuf>,
    map: Mutex<BTreeMap<Uuid, Secret>>,
}

fn io_err(what: String, e: &std::io::Error) -> VirError {
    VirError::system(ErrorDomain::Secret, what, e)
}

impl Secrets {
    /// The instance's secrets, loaded from its store if it has one.
    pub(crate) fn new(ctx: Arc<DriverCtx>) -> Secrets {
        let dir = ctx.store.as_ref().map(|s| s.config_root().join("secrets"));
        let mut map = BTreeMap::new();
        if let Some(d) = &dir {
            for (def, value) in load(d) {
                map.insert(def.uuid, Secret { def, value });
            }
        }
        Secrets {
            ctx,
            dir,
            map: Mutex::new(map),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Uuid, Secret>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn no_secret(&self, uuid: &Uuid) -> VirError {
        VirError::with(
            ErrorCode::NoSecret,
            ErrorDomain::Secret,
            format!("no secret with matching uuid '{uuid}'"),
        )
    }

    fn publish(&self, def: &SecretDef, kind: EventKind) {
        self.ctx.publish(
            ObjectRef::named(ObjectKind::Secret, def.usage_id.clone(), Some(def.uuid)),
            kind,
        );
    }

    /// Every secret, by uuid.
    pub fn list(&self) -> Vec<SecretDef> {
        self.lock().values().map(|s| s.def.clone()).collect()
    }

    /// By uuid.
    pub fn lookup(&self, uuid: &Uuid) -> VirResult<SecretDef> {
        self.lock()
            .get(uuid)
            .map(|s| s.def.clone())
            .ok_or_else(|| self.no_secret(uuid))
    }

    /// By usage.
    pub fn lookup_by_usage(&self, usage_type: i32, usage_id: &str) -> VirResult<SecretDef> {
        self.lock()
            .values()
            .find(|s| s.def.usage_type == usage_type && s.def.usage_id == usage_id)
            .map(|s| s.def.clone())
            .ok_or_else(|| {
                VirError::with(
                    ErrorCode::NoSecret,
                    ErrorDomain::Secret,
                    format!("no secret with matching usage '{usage_id}'"),
                )
            })
    }

    /// Defines or redefines a secret (same uuid and same usage keeps its value).
    pub fn define(&self, xml: &str) -> VirResult<SecretDef> {
        let def = SecretDef::parse(xml)?;
        let mut map = self.lock();
        if let Some(old) = map.get(&def.uuid)
            && (old.def.usage_type != def.usage_type || old.def.usage_id != def.usage_id)
        {
            return Err(VirError::internal(
                ErrorDomain::Secret,
                format!(
                    "a secret with UUID {} is already defined for use with {}",
                    def.uuid,
                    old.def.usage_text()
                ),
            ));
        }
        if def.usage_type != 0
            && let Some(other) = map.values().find(|s| {
                s.def.uuid != def.uuid
                    && s.def.usage_type == def.usage_type
                    && s.def.usage_id == def.usage_id
            })
        {
            return Err(VirError::internal(
                ErrorDomain::Secret,
                format!(
                    "a secret with UUID {} already defined for use with {}",
                    other.def.uuid,
                    def.usage_text()
                ),
            ));
        }
        let value = map.get(&def.uuid).and_then(|s| s.value.clone());
        self.persist(&def, value.as_deref())?;
        map.insert(
            def.uuid,
            Secret {
                def: def.clone(),
                value,
            },
        );
        drop(map);
        self.publish(&def, EventKind::SecretLifecycle(0));
        Ok(def)
    }

    /// The definition's XML.
    pub fn xml(&self, uuid: &Uuid) -> VirResult<String> {
        Ok(self.lookup(uuid)?.to_xml())
    }

    /// Sets the value.
    pub fn set_value(&self, uuid: &Uuid, value: &[u8]) -> VirResult<()> {
        let mut map = self.lock();
        let s = map.get_mut(uuid).ok_or_else(|| self.no_secret(uuid))?;
        self.persist(&s.def, Some(value))?;
        s.value = Some(value.to_vec());
        let def = s.def.clone();
        drop(map);
        self.publish(&def, EventKind::SecretValueChanged);
        Ok(())
    }

    /// The value, unless the secret is private or has none.
    pub fn get_value(&self, uuid: &Uuid) -> VirResult<Vec<u8>> {
        let map = self.lock();
        let s = map.get(uuid).ok_or_else(|| self.no_secret(uuid))?;
        if s.def.private {
            return Err(VirError::with(
                ErrorCode::InvalidSecret,
                ErrorDomain::Secret,
                "secret is private",
            ));
        }
        s.value.clone().ok_or_else(|| {
            VirError::with(
                ErrorCode::NoSecret,
                ErrorDomain::Secret,
                format!("secret '{uuid}' does not have a value"),
            )
        })
    }

    /// Removes a secret and its files.
    pub fn undefine(&self, uuid: &Uuid) -> VirResult<()> {
        let mut map = self.lock();
        let s = map.remove(uuid).ok_or_else(|| self.no_secret(uuid))?;
        if let Some(d) = &self.dir {
            for ext in ["xml", "value"] {
                let p = d.join(format!("{uuid}.{ext}"));
                remove_durable(&p)
                    .map_err(|e| io_err(format!("cannot remove {}", p.display()), &e))?;
            }
        }
        drop(map);
        self.publish(&s.def, EventKind::SecretLifecycle(1));
        Ok(())
    }

    /// Writes (or, for an ephemeral secret, removes) the files of a secret.
    fn persist(&self, def: &SecretDef, value: Option<&[u8]>) -> VirResult<()> {
        let Some(d) = &self.dir else { return Ok(()) };
        let xml_path = d.join(format!("{}.xml", def.uuid));
        let value_path = d.join(format!("{}.value", def.uuid));
        if def.ephemeral {
            let _ = remove_durable(&xml_path);
            let _ = remove_durable(&value_path);
            return Ok(());
        }
        std::fs::create_dir_all(d)
            .and_then(|()| std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)))
            .map_err(|e| io_err(format!("cannot create {}", d.display()), &e))?;
        write_atomic(&xml_path, def.to_xml().as_bytes())
            .map_err(|e| io_err(format!("cannot write {}", xml_path.display()), &e))?;
        if let Some(v) = value {
            write_atomic(&value_path, v)
                .map_err(|e| io_err(format!("cannot write {}", value_path.display()), &e))?;
        }
        Ok(())
    }
}

/// Reads the persisted secrets of `dir` (unreadable entries are skipped with a warning).
fn load(dir: &Path) -> Vec<(SecretDef, Option<Vec<u8>>)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("xml") {
            continue;
        }
        match std::fs::read_to_string(&p)
            .map_err(|e| e.to_string())
            .and_then(|x| SecretDef::parse(&x).map_err(|e| e.message))
        {
            Ok(def) => {
                let value = std::fs::read(p.with_extension("value")).ok();
                out.push((def, value));
            }
            Err(e) => tracing::warn!("skipping secret {}: {e}", p.display()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format() {
        let d = SecretDef::parse(
            "<secret ephemeral='no' private='yes'><uuid>0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f</uuid>\
             <description>d</description><usage type='ceph'><name>client.admin</name></usage></secret>",
        )
        .unwrap();
        assert!(d.private && !d.ephemeral);
        assert_eq!((d.usage_type, d.usage_id.as_str()), (2, "client.admin"));
        assert_eq!(
            d.to_xml(),
            "<secret ephemeral='no' private='yes'>\n  <uuid>0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f</uuid>\n  \
             <description>d</description>\n  <usage type='ceph'>\n    <name>client.admin</name>\n  \
             </usage>\n</secret>\n"
        );
        assert_eq!(SecretDef::parse(&d.to_xml()).unwrap(), d);
        let n = SecretDef::parse("<secret/>").unwrap();
        assert_eq!((n.usage_type, n.usage_id.as_str()), (0, ""));
        for (bad, msg) in [
            ("<x/>", "expecting <secret>"),
            (
                "<secret ephemeral='maybe'/>",
                "invalid value of 'ephemeral'",
            ),
            (
                "<secret><usage type='disk'/></secret>",
                "unknown secret usage type disk",
            ),
            (
                "<secret><usage type='volume'/></secret>",
                "volume usage specified, but volume path is missing",
            ),
        ] {
            let e = SecretDef::parse(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::XmlError);
            assert!(e.message.contains(msg), "{bad}: {}", e.message);
        }
    }
}

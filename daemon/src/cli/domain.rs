//! The domain commands: `list`, `info`, `xml`, `define` and the lifecycle actions
//! (`undefine`, `start`, `stop`, `destroy`, `suspend`, `resume`, `reboot`).
//!
//! Each looks the domain up by name first, so a missing domain fails with libvirt's
//! own "Domain not found" message, then makes one call (a few concurrent ones for
//! `list` and `info`). Formatting is kept in pure functions so it is tested without
//! a daemon.

use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};
use vireo_client::wire::RemoteProc;
use vireo_client::wire::procs::{DomainArgs, DomainFlagsArgs, DomainRet, IntRet};
use vireo_client::{Client, ClientError, NonnullDomain};
use vireo_messages::{DomainState, ErrorCode, StateReason};

use super::CliError;

/// `VIR_CONNECT_LIST_DOMAINS_ACTIVE`.
const LIST_ACTIVE: u32 = 1;
/// `VIR_DOMAIN_START_PAUSED`.
const START_PAUSED: u32 = 1;

/// One domain as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The id while active.
    pub id: Option<i32>,
    /// Name.
    pub name: String,
    /// UUID, hyphenated.
    pub uuid: String,
    /// State word (`running`, `shut off`, ...).
    pub state: &'static str,
    /// Reason word (`booted`, `destroyed`, ...).
    pub reason: &'static str,
}

fn state_words(state: i32, reason: i32) -> (&'static str, &'static str) {
    let s = DomainState::from_i32(state);
    (s.virsh_name(), StateReason::new(s, reason).reason_name())
}

fn id_of(d: &NonnullDomain) -> Option<i32> {
    (d.id >= 0).then_some(d.id)
}

/// Running domains first by id, then the others by name.
pub fn sort_rows(rows: &mut [Row]) {
    rows.sort_by(|a, b| match (a.id, b.id) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.name.cmp(&b.name),
    });
}

/// The text table: a header, then one line per row, columns padded to the widest.
pub fn format_table(rows: &[Row]) -> String {
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r.id.map_or("-".to_string(), |i| i.to_string()))
        .collect();
    let wid = ids.iter().map(String::len).chain([2]).max().unwrap_or(2);
    let wname = rows
        .iter()
        .map(|r| r.name.len())
        .chain([4])
        .max()
        .unwrap_or(4);
    let mut s = format!("{:<wid$}  {:<wname$}  STATE\n", "ID", "NAME");
    for (r, id) in rows.iter().zip(&ids) {
        s.push_str(&format!("{id:<wid$}  {:<wname$}  {}\n", r.name, r.state));
    }
    s
}

/// The JSON form of `list`.
pub fn rows_json(rows: &[Row]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "name": r.name,
                    "uuid": r.uuid,
                    "state": r.state,
                    "reason": r.reason,
                })
            })
            .collect(),
    )
}

fn is_gone(e: &ClientError) -> bool {
    e.vir_error().is_some_and(|v| v.code == ErrorCode::NoDomain)
}

/// `vireo list [--all]`.
pub async fn list(
    client: &Client,
    all: bool,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let doms = client
        .list_all_domains(if all { 0 } else { LIST_ACTIVE })
        .await?;
    let states = futures::future::join_all(doms.iter().map(|d| client.get_state(d))).await;
    let mut rows = Vec::with_capacity(doms.len());
    for (d, st) in doms.iter().zip(states) {
        let (state, reason) = match st {
            Ok(v) => v,
            // Undefined between the listing and the state query: it is gone.
            Err(e) if is_gone(&e) => continue,
            Err(e) => return Err(e.into()),
        };
        let (state, reason) = state_words(state, reason);
        rows.push(Row {
            id: id_of(d),
            name: d.name.clone(),
            uuid: d.uuid.hyphenated().to_string(),
            state,
            reason,
        });
    }
    sort_rows(&mut rows);
    if json {
        writeln!(out, "{}", rows_json(&rows))?;
    } else {
        out.write_all(format_table(&rows).as_bytes())?;
    }
    Ok(())
}

/// What `info` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Name.
    pub name: String,
    /// UUID.
    pub uuid: String,
    /// The id while active.
    pub id: Option<i32>,
    /// State word.
    pub state: &'static str,
    /// Reason word.
    pub reason: &'static str,
    /// Whether it has a persistent definition.
    pub persistent: bool,
    /// Whether it starts with the host.
    pub autostart: bool,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Maximum memory in KiB.
    pub max_memory_kib: u64,
    /// Current memory in KiB.
    pub memory_kib: u64,
    /// CPU time used, in nanoseconds.
    pub cpu_time_ns: u64,
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The text form of `info`: aligned `key: value` lines.
pub fn format_info(i: &Info) -> String {
    let id = i.id.map_or("-".to_string(), |v| v.to_string());
    let lines: [(&str, String); 11] = [
        ("name", i.name.clone()),
        ("uuid", i.uuid.clone()),
        ("id", id),
        ("state", i.state.to_string()),
        ("reason", i.reason.to_string()),
        ("persistent", yes_no(i.persistent).to_string()),
        ("autostart", yes_no(i.autostart).to_string()),
        ("vcpus", i.vcpus.to_string()),
        ("max memory", format!("{} KiB", i.max_memory_kib)),
        ("memory", format!("{} KiB", i.memory_kib)),
        ("cpu time", format!("{} ns", i.cpu_time_ns)),
    ];
    lines
        .iter()
        .map(|(k, v)| format!("{:<12}{v}\n", format!("{k}:")))
        .collect()
}

/// The JSON form of `info`.
pub fn info_json(i: &Info) -> Value {
    json!({
        "name": i.name,
        "uuid": i.uuid,
        "id": i.id,
        "state": i.state,
        "reason": i.reason,
        "persistent": i.persistent,
        "autostart": i.autostart,
        "vcpus": i.vcpus,
        "max_memory": i.max_memory_kib,
        "memory": i.memory_kib,
        "cpu_time": i.cpu_time_ns,
    })
}

/// `vireo info NAME`.
pub async fn info(
    client: &Client,
    name: &str,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let d = client.lookup_by_name(name).await?;
    let a = DomainArgs { dom: d.clone() };
    let (gi, (state, reason), persistent, autostart) = tokio::try_join!(
        client.get_info(&d),
        client.get_state(&d),
        client.call::<_, IntRet>(RemoteProc::DomainIsPersistent, &a),
        client.call::<_, IntRet>(RemoteProc::DomainGetAutostart, &a),
    )?;
    let (state, reason) = state_words(state, reason);
    let i = Info {
        name: d.name.clone(),
        uuid: d.uuid.hyphenated().to_string(),
        id: id_of(&d),
        state,
        reason,
        persistent: persistent.value != 0,
        autostart: autostart.value != 0,
        vcpus: gi.nr_virt_cpu,
        max_memory_kib: gi.max_mem,
        memory_kib: gi.memory,
        cpu_time_ns: gi.cpu_time,
    };
    if json {
        writeln!(out, "{}", info_json(&i))?;
    } else {
        out.write_all(format_info(&i).as_bytes())?;
    }
    Ok(())
}

/// `vireo xml NAME`.
pub async fn xml(client: &Client, name: &str, out: &mut dyn Write) -> Result<(), CliError> {
    let d = client.lookup_by_name(name).await?;
    let xml = client.xml_desc(&d, 0).await?;
    out.write_all(xml.as_bytes())?;
    if !xml.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// `vireo define FILE`.
pub async fn define(client: &Client, file: &Path, out: &mut dyn Write) -> Result<(), CliError> {
    let xml = std::fs::read_to_string(file).map_err(|source| CliError::ReadFile {
        path: file.to_path_buf(),
        source,
    })?;
    let d = client.define_xml(&xml).await?;
    writeln!(out, "defined domain {} ({})", d.name, d.uuid.hyphenated())?;
    Ok(())
}

/// A lifecycle action on one domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `virDomainUndefine`.
    Undefine,
    /// `virDomainCreateWithFlags`, optionally paused.
    Start {
        /// `VIR_DOMAIN_START_PAUSED`.
        paused: bool,
    },
    /// `virDomainShutdown`.
    Shutdown,
    /// `virDomainDestroy`.
    Destroy,
    /// `virDomainSuspend`.
    Suspend,
    /// `virDomainResume`.
    Resume,
    /// `virDomainReboot`.
    Reboot,
}

impl Action {
    /// The confirmation line printed once the daemon accepted the call.
    pub fn confirmation(self, name: &str) -> String {
        match self {
            Action::Undefine => format!("undefined domain {name}"),
            Action::Start { paused: false } => format!("started domain {name}"),
            Action::Start { paused: true } => format!("started domain {name} (paused)"),
            Action::Shutdown => format!("shutdown requested for domain {name}"),
            Action::Destroy => format!("destroyed domain {name}"),
            Action::Suspend => format!("suspended domain {name}"),
            Action::Resume => format!("resumed domain {name}"),
            Action::Reboot => format!("reboot requested for domain {name}"),
        }
    }
}

/// `vireo undefine|start|stop|destroy|suspend|resume|reboot NAME`.
pub async fn act(
    client: &Client,
    name: &str,
    action: Action,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let d = client.lookup_by_name(name).await?;
    match action {
        Action::Undefine => client.undefine(&d).await?,
        Action::Start { paused } => {
            let flags = if paused { START_PAUSED } else { 0 };
            let _: DomainRet = client
                .call(
                    RemoteProc::DomainCreateWithFlags,
                    &DomainFlagsArgs {
                        dom: d.clone(),
                        flags,
                    },
                )
                .await?;
        }
        Action::Shutdown => {
            client
                .call::<_, ()>(RemoteProc::DomainShutdown, &DomainArgs { dom: d.clone() })
                .await?
        }
        Action::Destroy => client.destroy(&d).await?,
        Action::Suspend => client.suspend(&d).await?,
        Action::Resume => client.resume(&d).await?,
        Action::Reboot => {
            client
                .call::<_, ()>(
                    RemoteProc::DomainReboot,
                    &DomainFlagsArgs {
                        dom: d.clone(),
                        flags: 0,
                    },
                )
                .await?
        }
    }
    writeln!(out, "{}", action.confirmation(&d.name))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: Option<i32>, name: &str, state: &'static str) -> Row {
        Row {
            id,
            name: name.into(),
            uuid: "u".into(),
            state,
            reason: "r",
        }
    }

    #[test]
    fn rows_sort_running_by_id_then_by_name() {
        let mut rows = vec![
            row(None, "zeta", "shut off"),
            row(Some(7), "b", "running"),
            row(None, "alpha", "shut off"),
            row(Some(2), "c", "paused"),
        ];
        sort_rows(&mut rows);
        let names: Vec<_> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["c", "b", "alpha", "zeta"]);
    }

    #[test]
    fn table_columns_are_padded() {
        let rows = vec![
            row(Some(1), "test", "running"),
            row(None, "a-longer-name", "shut off"),
        ];
        assert_eq!(
            format_table(&rows),
            "ID  NAME           STATE\n\
             1   test           running\n\
             -   a-longer-name  shut off\n"
        );
        assert_eq!(format_table(&[]), "ID  NAME  STATE\n");
    }

    #[test]
    fn list_json_has_null_ids_for_inactive_domains() {
        let v = rows_json(&[row(None, "x", "shut off")]);
        assert_eq!(
            v,
            json!([{"id": null, "name": "x", "uuid": "u", "state": "shut off", "reason": "r"}])
        );
    }

    #[test]
    fn state_words_use_libvirts_names() {
        assert_eq!(state_words(1, 1), ("running", "booted"));
        assert_eq!(state_words(5, 2), ("shut off", "destroyed"));
        assert_eq!(state_words(3, 1), ("paused", "user"));
    }

    #[test]
    fn info_text_and_json() {
        let i = Info {
            name: "vm".into(),
            uuid: "u".into(),
            id: None,
            state: "shut off",
            reason: "unknown",
            persistent: true,
            autostart: false,
            vcpus: 2,
            max_memory_kib: 1024,
            memory_kib: 512,
            cpu_time_ns: 0,
        };
        let t = format_info(&i);
        assert!(
            t.starts_with("name:       vm\nuuid:       u\nid:         -\n"),
            "{t}"
        );
        assert!(t.contains("max memory: 1024 KiB\n"), "{t}");
        assert!(t.contains("persistent: yes\nautostart:  no\n"), "{t}");
        assert_eq!(t.lines().count(), 11);
        let j = info_json(&i);
        assert_eq!(j["id"], Value::Null);
        assert_eq!(j["max_memory"], 1024);
        assert_eq!(j["persistent"], true);
    }
}

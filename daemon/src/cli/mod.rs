//! `vireo`: a small command-line client for vireod (or any libvirtd), speaking
//! libvirt's remote protocol through the `vireo-client` crate.
//!
//! It exists so that a Vireo host can be driven and watched without installing
//! libvirt's own tools, and so that scripts get one stable, documented output format
//! (plain text for people, `--json` for programs). The output is Vireo's own, not
//! virsh's.
//!
//! # Connecting
//!
//! `-c/--connect URI` takes a remote-driver URI (`test+unix:///default?socket=PATH`,
//! `qemu+tcp://host/system`, ...). Without it, `vireo` connects to the vireod whose
//! state directory is `$VIREO_STATE_DIR`:
//! `test+unix:///default?socket=$VIREO_STATE_DIR/run/libvirt-sock`. With neither,
//! it stops with an error saying so.
//!
//! # Commands and output
//!
//! * [`domain`]: `list [--all] [--json]`, `info NAME [--json]`, `xml NAME`,
//!   `define FILE`, `undefine NAME`, `start NAME [--paused]`, `stop NAME` (a graceful
//!   shutdown request), `destroy NAME`, `suspend NAME`, `resume NAME`, `reboot NAME`.
//! * [`events`]: `events [--domain NAME] [--count N] [--timeout SECS] [--json]`.
//! * [`version`]: `version [--json]`.
//!
//! The formats, exactly (they are also in `vireo --help`): see [`FORMATS`].
//!
//! # Errors
//!
//! Any failure prints one line `error: MESSAGE` on stderr and exits with status 1;
//! when the daemon refused the call, MESSAGE is libvirt's message (e.g. `Domain not
//! found: no domain with matching name 'x'`). Usage errors exit with status 2.

pub mod domain;
pub mod events;
pub mod version;

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use vireo_client::{Client, ClientError};

/// The output formats, as shown at the end of `vireo --help`.
pub const FORMATS: &str = "\
Output formats (plain text unless --json is given):
  list      a header line `ID NAME STATE`, then one line per domain in columns;
            ID is `-` for an inactive domain; running domains come first (by id),
            then the others by name. JSON: an array of
            {\"id\": N|null, \"name\", \"uuid\", \"state\", \"reason\"}.
  info      `key: value` lines: name, uuid, id, state, reason, persistent,
            autostart, vcpus, max memory (KiB), memory (KiB), cpu time (ns).
            JSON: one object with the same keys (spaces become underscores).
  xml       the domain's XML as the daemon returns it.
  define, undefine, start, stop, destroy, suspend, resume, reboot
            one line saying what was done, e.g. `started domain vm`.
  events    one line per event as it arrives: `TIME DOMAIN EVENT DETAIL`, TIME in
            UTC (RFC 3339, milliseconds), EVENT and DETAIL libvirt's lifecycle names
            in lower case (`defined added`, `started booted`, `stopped destroyed`,
            ...); a reboot is `reboot -`. JSON: one object per line,
            {\"time\", \"domain\", \"uuid\", \"event\", \"detail\"} (detail null for
            a reboot). Once subscribed, `vireo: watching domain events` goes to
            stderr. Ends on --count, on --timeout, or on SIGINT/SIGTERM (status 0).
  version   `client:`, `daemon:` (libvirt library version the daemon reports) and
            `hypervisor:` (type and version) lines. JSON: one object.
Errors: `error: MESSAGE` on stderr (libvirt's message when the daemon refused),
exit status 1.";

/// `vireo`'s command line.
#[derive(Debug, Parser)]
#[command(
    name = "vireo",
    version,
    about = "Manage the domains of a vireod (or libvirtd) over libvirt's remote protocol",
    after_help = FORMATS
)]
pub struct Cli {
    /// The connection URI (default: the vireod in $VIREO_STATE_DIR).
    #[arg(short = 'c', long = "connect", value_name = "URI", global = true)]
    pub connect: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--json`, for the commands that have a machine-readable form.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct Output {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the running domains (all of them with --all).
    List {
        /// Include inactive domains.
        #[arg(long)]
        all: bool,
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
    /// Show a domain's state and resources.
    Info {
        /// The domain's name.
        name: String,
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
    /// Print a domain's XML.
    Xml {
        /// The domain's name.
        name: String,
    },
    /// Define (or redefine) a domain from an XML file.
    Define {
        /// The XML file.
        file: PathBuf,
    },
    /// Remove an inactive domain's definition (a running one becomes transient).
    Undefine {
        /// The domain's name.
        name: String,
    },
    /// Start a defined domain.
    Start {
        /// The domain's name.
        name: String,
        /// Leave it paused once started.
        #[arg(long)]
        paused: bool,
    },
    /// Ask a domain to shut down (graceful).
    Stop {
        /// The domain's name.
        name: String,
    },
    /// Stop a domain at once (power off).
    Destroy {
        /// The domain's name.
        name: String,
    },
    /// Pause a running domain.
    Suspend {
        /// The domain's name.
        name: String,
    },
    /// Resume a paused domain.
    Resume {
        /// The domain's name.
        name: String,
    },
    /// Reboot a running domain.
    Reboot {
        /// The domain's name.
        name: String,
    },
    /// Print domain events as they happen.
    Events(events::EventsArgs),
    /// Print the client's, the daemon's and the hypervisor's versions.
    Version {
        /// Output format.
        #[command(flatten)]
        out: Output,
    },
}

/// Why a command failed. The message is what `vireo` prints after `error: `.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Neither `-c` nor `VIREO_STATE_DIR` says where to connect.
    #[error("no connection URI: pass -c URI, or set VIREO_STATE_DIR to vireod's state directory")]
    NoUri,
    /// The daemon refused a call, or the connection failed; a refusal's message is
    /// libvirt's.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// An input file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Writing the output failed (other than a closed pipe, which ends quietly).
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// The connection ended while waiting for events.
    #[error("the connection to the daemon was lost")]
    ConnectionLost,
}

impl CliError {
    /// Whether this is a write to a closed pipe (`vireo events | head -1`), which
    /// ends the command quietly and successfully.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// The connection URI: `-c` if given, else the vireod in `state_dir`
/// (`$VIREO_STATE_DIR`).
pub fn resolve_uri(connect: Option<&str>, state_dir: Option<&str>) -> Result<String, CliError> {
    match (connect, state_dir) {
        (Some(uri), _) => Ok(uri.to_string()),
        (None, Some(dir)) if !dir.is_empty() => Ok(format!(
            "test+unix:///default?socket={}/run/libvirt-sock",
            dir.trim_end_matches('/')
        )),
        _ => Err(CliError::NoUri),
    }
}

/// Runs `cli`, writing the command's output to `out`.
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<(), CliError> {
    let state_dir = std::env::var("VIREO_STATE_DIR").ok();
    let uri = resolve_uri(cli.connect.as_deref(), state_dir.as_deref())?;
    let client = Client::connect_uri(&uri, false).await?;
    let r = dispatch(&client, cli.command, out).await;
    // Closing politely is a courtesy; the command's own result is what counts.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), client.close()).await;
    r
}

async fn dispatch(client: &Client, cmd: Command, out: &mut dyn Write) -> Result<(), CliError> {
    use domain::Action;
    match cmd {
        Command::List { all, out: o } => domain::list(client, all, o.json, out).await,
        Command::Info { name, out: o } => domain::info(client, &name, o.json, out).await,
        Command::Xml { name } => domain::xml(client, &name, out).await,
        Command::Define { file } => domain::define(client, &file, out).await,
        Command::Undefine { name } => domain::act(client, &name, Action::Undefine, out).await,
        Command::Start { name, paused } => {
            domain::act(client, &name, Action::Start { paused }, out).await
        }
        Command::Stop { name } => domain::act(client, &name, Action::Shutdown, out).await,
        Command::Destroy { name } => domain::act(client, &name, Action::Destroy, out).await,
        Command::Suspend { name } => domain::act(client, &name, Action::Suspend, out).await,
        Command::Resume { name } => domain::act(client, &name, Action::Resume, out).await,
        Command::Reboot { name } => domain::act(client, &name, Action::Reboot, out).await,
        Command::Events(a) => events::watch(client, &a, out).await,
        Command::Version { out: o } => version::show(client, o.json, out).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn uri_from_flag_or_state_dir() {
        assert_eq!(
            resolve_uri(Some("test:///x"), Some("/s")).unwrap(),
            "test:///x"
        );
        assert_eq!(
            resolve_uri(None, Some("/var/lib/vireo/")).unwrap(),
            "test+unix:///default?socket=/var/lib/vireo/run/libvirt-sock"
        );
        assert!(matches!(resolve_uri(None, None), Err(CliError::NoUri)));
        assert!(matches!(resolve_uri(None, Some("")), Err(CliError::NoUri)));
    }

    #[test]
    fn parses_the_documented_forms() {
        let c = Cli::try_parse_from(["vireo", "-c", "u", "list", "--all", "--json"]).unwrap();
        assert_eq!(c.connect.as_deref(), Some("u"));
        assert!(matches!(
            c.command,
            Command::List {
                all: true,
                out: Output { json: true }
            }
        ));
        let c = Cli::try_parse_from(["vireo", "start", "vm", "--paused", "-c", "u"]).unwrap();
        assert!(matches!(c.command, Command::Start { paused: true, .. }));
        assert_eq!(c.connect.as_deref(), Some("u"));
        let c = Cli::try_parse_from([
            "vireo",
            "events",
            "--domain",
            "vm",
            "--count",
            "3",
            "--timeout",
            "1.5",
        ])
        .unwrap();
        match c.command {
            Command::Events(a) => {
                assert_eq!(a.domain.as_deref(), Some("vm"));
                assert_eq!(a.count, Some(3));
                assert_eq!(a.timeout, Some(1.5));
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["vireo", "xml", "vm", "--json"]).is_err());
    }

    #[test]
    fn help_documents_the_formats() {
        let help = Cli::command().render_help().to_string();
        assert!(help.contains("TIME DOMAIN EVENT DETAIL"), "{help}");
        assert!(help.contains("VIREO_STATE_DIR"), "{help}");
    }

    #[test]
    fn broken_pipe_is_recognised() {
        let e = CliError::Output(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(e.is_broken_pipe());
        assert!(!CliError::NoUri.is_broken_pipe());
    }
}

//! Configuration: `vireod`'s command-line flags and the optional TOML file that may set
//! the same keys. Flags win over the file; the file wins over the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;

/// Command-line flags of `vireod`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "vireod",
    about = "Vireo daemon speaking libvirt's remote protocol"
)]
pub struct Args {
    /// State directory (persistent state, and the sockets under DIR/run).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Also listen on this TCP address (read-write, no authentication).
    #[arg(long)]
    pub listen_tcp: Option<SocketAddr>,
    /// Log filter (tracing's env-filter syntax, e.g. `info` or `vireo_daemon=debug`).
    #[arg(long)]
    pub log_level: Option<String>,
    /// TOML configuration file with the keys `state_dir`, `listen_tcp`, `log_level`,
    /// `keepalive_interval`, `keepalive_count`, `max_clients`, `max_client_requests`,
    /// `qemu` ("auto", "on", "off"), `qemu_emulator`, `worker_threads`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Seconds of silence from a client (that asked for keepalive) before the daemon
    /// sends it a PING; 0 or less disables the daemon's pings (libvirtd default 5).
    #[arg(long, allow_hyphen_values = true)]
    pub keepalive_interval: Option<i32>,
    /// Unanswered PINGs after which the client is dropped (libvirtd default 5).
    #[arg(long)]
    pub keepalive_count: Option<u32>,
    /// Most clients connected at once; further connections wait in the listen backlog
    /// until one leaves (libvirtd default 5000).
    #[arg(long)]
    pub max_clients: Option<usize>,
    /// Most calls of one client in flight at once; the daemon stops reading from a
    /// client that reaches it until a reply goes out (libvirtd default 5).
    #[arg(long)]
    pub max_client_requests: Option<usize>,
    /// The qemu driver (`qemu:///system`): `auto` enables it when the emulator exists,
    /// `on` requires it, `off` disables it.
    #[arg(long, value_enum)]
    pub qemu: Option<QemuMode>,
    /// The QEMU binary for domains whose XML names no `<emulator>`
    /// (default: qemu-system-x86_64 from PATH).
    #[arg(long)]
    pub qemu_emulator: Option<PathBuf>,
    /// Threads running sessions and actors: 1 runs everything on one thread (the
    /// least CPU per call: no hand-offs between threads), N > 1 a work-stealing pool of
    /// N threads, 0 one thread per CPU. Default 1.
    #[arg(long)]
    pub worker_threads: Option<usize>,
}

/// Whether vireod runs the qemu driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum QemuMode {
    /// When the emulator binary exists.
    #[default]
    Auto,
    /// Always; vireod refuses to start without the emulator.
    On,
    /// Never: `qemu:///` URIs get "no connection driver available".
    Off,
}

/// The keys a configuration file may set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// State directory.
    pub state_dir: Option<PathBuf>,
    /// TCP listen address.
    pub listen_tcp: Option<SocketAddr>,
    /// Log filter.
    pub log_level: Option<String>,
    /// Keepalive interval in seconds.
    pub keepalive_interval: Option<i32>,
    /// Keepalive count.
    pub keepalive_count: Option<u32>,
    /// Client limit.
    pub max_clients: Option<usize>,
    /// In-flight calls per client.
    pub max_client_requests: Option<usize>,
    /// `auto`, `on` or `off`.
    pub qemu: Option<QemuMode>,
    /// The default QEMU binary.
    pub qemu_emulator: Option<PathBuf>,
    /// Runtime threads (see `--worker-threads`).
    pub worker_threads: Option<usize>,
}

/// libvirtd's default keepalive interval (seconds).
pub const DEFAULT_KEEPALIVE_INTERVAL: i32 = 5;
/// libvirtd's default keepalive count.
pub const DEFAULT_KEEPALIVE_COUNT: u32 = 5;
/// libvirtd's default `max_clients`.
pub const DEFAULT_MAX_CLIENTS: usize = 5000;
/// The default `worker_threads`: one thread (see `Args::worker_threads`).
pub const DEFAULT_WORKER_THREADS: usize = 1;
/// libvirtd's default `max_client_requests`.
pub const DEFAULT_MAX_CLIENT_REQUESTS: usize = 5;

/// Per-client limits and keepalive settings, as libvirtd's `libvirtd.conf` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Seconds of client silence before a PING; `<= 0` disables the daemon's pings.
    pub keepalive_interval: i32,
    /// Unanswered PINGs before the client is dropped.
    pub keepalive_count: u32,
    /// Clients connected at once.
    pub max_clients: usize,
    /// Calls in flight per client.
    pub max_client_requests: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_count: DEFAULT_KEEPALIVE_COUNT,
            max_clients: DEFAULT_MAX_CLIENTS,
            max_client_requests: DEFAULT_MAX_CLIENT_REQUESTS,
        }
    }
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// State directory.
    pub state_dir: PathBuf,
    /// TCP listen address, if any.
    pub listen_tcp: Option<SocketAddr>,
    /// Log filter, if set by a flag or the file (otherwise `RUST_LOG`, then `info`).
    pub log_level: Option<String>,
    /// Limits and keepalive.
    pub limits: Limits,
    /// Whether to run the qemu driver.
    pub qemu: QemuMode,
    /// The default QEMU binary, if set.
    pub qemu_emulator: Option<PathBuf>,
    /// Runtime threads: 1 = one thread, 0 = one per CPU.
    pub worker_threads: usize,
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("invalid configuration file {path}: {source}")]
    Parse {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: toml::de::Error,
    },
    /// A limit that must be at least 1 is 0.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// No state directory anywhere.
    #[error("no state directory: pass --state-dir DIR or set state_dir in the configuration file")]
    NoStateDir,
}

impl FileConfig {
    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }
}

impl Config {
    /// Merges flags over the file (if any).
    pub fn from_args(args: &Args) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        let d = Limits::default();
        let limits = Limits {
            keepalive_interval: args
                .keepalive_interval
                .or(file.keepalive_interval)
                .unwrap_or(d.keepalive_interval),
            keepalive_count: args
                .keepalive_count
                .or(file.keepalive_count)
                .unwrap_or(d.keepalive_count),
            max_clients: args
                .max_clients
                .or(file.max_clients)
                .unwrap_or(d.max_clients),
            max_client_requests: args
                .max_client_requests
                .or(file.max_client_requests)
                .unwrap_or(d.max_client_requests),
        };
        if limits.max_clients == 0 {
            return Err(ConfigError::Zero("max_clients"));
        }
        if limits.max_client_requests == 0 {
            return Err(ConfigError::Zero("max_client_requests"));
        }
        Ok(Config {
            limits,
            state_dir: args
                .state_dir
                .clone()
                .or(file.state_dir)
                .ok_or(ConfigError::NoStateDir)?,
            listen_tcp: args.listen_tcp.or(file.listen_tcp),
            log_level: args.log_level.clone().or(file.log_level),
            qemu: args.qemu.or(file.qemu).unwrap_or_default(),
            qemu_emulator: args.qemu_emulator.clone().or(file.qemu_emulator),
            worker_threads: args
                .worker_threads
                .or(file.worker_threads)
                .unwrap_or(DEFAULT_WORKER_THREADS),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("v.toml");
        std::fs::write(
            &f,
            "state_dir = \"/from/file\"\nlog_level = \"debug\"\nlisten_tcp = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let args = Args::parse_from([
            "vireod",
            "--config",
            f.to_str().unwrap(),
            "--log-level",
            "warn",
        ]);
        let c = Config::from_args(&args).unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/from/file"));
        assert_eq!(c.log_level.as_deref(), Some("warn"));
        assert_eq!(c.listen_tcp, Some("127.0.0.1:1".parse().unwrap()));
        let args = Args::parse_from([
            "vireod",
            "--config",
            f.to_str().unwrap(),
            "--state-dir",
            "/x",
        ]);
        assert_eq!(
            Config::from_args(&args).unwrap().state_dir,
            PathBuf::from("/x")
        );
    }

    #[test]
    fn qemu_mode_from_file_and_flags() {
        let c = Config::from_args(&Args::parse_from(["vireod", "--state-dir", "/x"])).unwrap();
        assert_eq!(c.qemu, QemuMode::Auto);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("v.toml");
        std::fs::write(
            &f,
            "state_dir = \"/s\"\nqemu = \"off\"\nqemu_emulator = \"/q\"\n",
        )
        .unwrap();
        let c = Config::from_args(&Args::parse_from([
            "vireod",
            "--config",
            f.to_str().unwrap(),
        ]))
        .unwrap();
        assert_eq!(c.qemu, QemuMode::Off);
        assert_eq!(c.qemu_emulator, Some(PathBuf::from("/q")));
        let c = Config::from_args(&Args::parse_from([
            "vireod",
            "--config",
            f.to_str().unwrap(),
            "--qemu",
            "on",
        ]))
        .unwrap();
        assert_eq!(c.qemu, QemuMode::On);
    }

    #[test]
    fn limits_default_to_libvirtd_and_merge() {
        let c = Config::from_args(&Args::parse_from(["vireod", "--state-dir", "/x"])).unwrap();
        assert_eq!(
            c.limits,
            Limits {
                keepalive_interval: 5,
                keepalive_count: 5,
                max_clients: 5000,
                max_client_requests: 5
            }
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("v.toml");
        std::fs::write(
            &f,
            "state_dir = \"/s\"\nkeepalive_interval = 2\nkeepalive_count = 3\nmax_clients = 7\nmax_client_requests = 9\n",
        )
        .unwrap();
        let args = Args::parse_from([
            "vireod",
            "--config",
            f.to_str().unwrap(),
            "--keepalive-interval",
            "-1",
            "--max-clients",
            "2",
        ]);
        let c = Config::from_args(&args).unwrap();
        assert_eq!(
            c.limits,
            Limits {
                keepalive_interval: -1,
                keepalive_count: 3,
                max_clients: 2,
                max_client_requests: 9
            }
        );
        let args = Args::parse_from(["vireod", "--state-dir", "/x", "--max-client-requests", "0"]);
        assert!(matches!(
            Config::from_args(&args),
            Err(ConfigError::Zero("max_client_requests"))
        ));
    }

    #[test]
    fn unknown_keys_and_missing_state_dir_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("v.toml");
        std::fs::write(&f, "bogus = 1\n").unwrap();
        let args = Args::parse_from(["vireod", "--config", f.to_str().unwrap()]);
        assert!(matches!(
            Config::from_args(&args),
            Err(ConfigError::Parse { .. })
        ));
        let args = Args::parse_from(["vireod"]);
        assert!(matches!(
            Config::from_args(&args),
            Err(ConfigError::NoStateDir)
        ));
    }
}

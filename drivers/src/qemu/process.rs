//! Spawning QEMU so the guest outlives the daemon, and knowing when it is gone.
//!
//! A guest must survive a daemon restart, so QEMU is started detached from us: in its
//! own process group (a Ctrl-C or a signal to the daemon's group does not reach it),
//! stdin from /dev/null, stdout and stderr appended to a per-domain log file (never a
//! pipe to the daemon, which would SIGPIPE QEMU once the daemon is gone), and no
//! kill-on-drop. The log is also where start errors come from: when QEMU exits before
//! its monitor socket accepts, the error carries its exit status and the last lines it
//! wrote, as libvirt puts QEMU's stderr into start errors.
//!
//! A [`QemuProcess`] is either our own child (exit is awaited with `waitpid` through
//! tokio) or a process adopted from a status record after a daemon restart, which is not
//! our child: its exit is noticed by polling `/proc/PID` briefly (callers normally wait
//! for the QMP stream's end first, so the poll only confirms). An adopted pid is only
//! trusted when `/proc/PID/cmdline` still names our QMP socket, which defeats pid reuse.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::net::UnixStream;

use crate::hypervisor::{GuestUsage, VcpuUsage};

/// How many lines of QEMU's log a start error quotes.
pub const LOG_TAIL_LINES: usize = 6;

/// How long [`QemuProcess::connect_monitor`] polls the socket every millisecond
/// before it slows down to every 20 ms.
pub const FAST_POLL_FOR: Duration = Duration::from_secs(2);

/// What can go wrong spawning or watching QEMU.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The per-domain log file could not be opened or written.
    #[error("cannot open QEMU's log file {path}: {source}")]
    Log {
        /// The log file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The emulator could not be executed at all.
    #[error("cannot execute {program}: {source}")]
    Spawn {
        /// The emulator binary.
        program: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// QEMU exited before its monitor accepted a connection.
    #[error("QEMU exited while connecting to its monitor ({status}): {log_tail}")]
    ExitedEarly {
        /// The exit status, as text.
        status: String,
        /// The last lines QEMU wrote to its log.
        log_tail: String,
    },
    /// The monitor socket did not accept in time.
    #[error("QEMU's monitor socket {socket} did not accept within {timeout:?}")]
    MonitorTimeout {
        /// The socket.
        socket: PathBuf,
        /// How long we waited.
        timeout: Duration,
    },
    /// A signal could not be sent.
    #[error("cannot send {signal} to QEMU (pid {pid}): {errno}")]
    Signal {
        /// The signal.
        signal: Signal,
        /// The process.
        pid: u32,
        /// Why.
        errno: nix::errno::Errno,
    },
    /// Waiting for the process failed.
    #[error("cannot wait for QEMU (pid {pid}): {source}")]
    Wait {
        /// The process.
        pid: u32,
        /// Why.
        source: std::io::Error,
    },
}

/// A running (or exited) QEMU process.
#[derive(Debug)]
pub struct QemuProcess {
    pid: u32,
    child: Option<tokio::process::Child>,
    qmp_socket: PathBuf,
    log: PathBuf,
    /// Where this run's output starts in the log (earlier runs are not quoted).
    log_offset: u64,
    exited: Option<Option<ExitStatus>>,
}

impl QemuProcess {
    /// Starts `program args`, detached as described in the module doc, appending its
    /// output to `log` (created if missing, with a header line naming the command).
    /// `qmp_socket` is the monitor socket the arguments name; it is what identifies the
    /// process later. Returns once the process exists; see [`QemuProcess::connect_monitor`].
    pub fn spawn(
        program: &Path,
        args: &[String],
        qmp_socket: &Path,
        log: &Path,
    ) -> Result<QemuProcess, ProcessError> {
        let log_err = |source| ProcessError::Log {
            path: log.to_path_buf(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(log_err)?;
        let log_offset = file.seek(SeekFrom::End(0)).map_err(log_err)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut header = format!("{now}: starting up\nLC_ALL=C {}", program.display());
        for a in args {
            header.push(' ');
            header.push_str(a);
        }
        header.push('\n');
        file.write_all(header.as_bytes()).map_err(log_err)?;
        let log_offset = log_offset + header.len() as u64;
        let stderr = file.try_clone().map_err(log_err)?;

        let child = tokio::process::Command::new(program)
            .args(args)
            .env("LC_ALL", "C")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(stderr))
            .kill_on_drop(false)
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                program: program.to_path_buf(),
                source,
            })?;
        let pid = child.id().unwrap_or(0);
        Ok(QemuProcess {
            pid,
            child: Some(child),
            qmp_socket: qmp_socket.to_path_buf(),
            log: log.to_path_buf(),
            log_offset,
            exited: None,
        })
    }

    /// Adopts a QEMU left by an earlier daemon: `Some` only if `pid` is alive and its
    /// command line names `qmp_socket` (so a reused pid is not mistaken for our guest).
    pub fn adopt(pid: u32, qmp_socket: &Path, log: &Path) -> Option<QemuProcess> {
        if !verify_pid(pid, qmp_socket) {
            return None;
        }
        let log_offset = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
        Some(QemuProcess {
            pid,
            child: None,
            qmp_socket: qmp_socket.to_path_buf(),
            log: log.to_path_buf(),
            log_offset,
            exited: None,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether we spawned it (rather than adopted it after a restart).
    pub fn is_child(&self) -> bool {
        self.child.is_some()
    }

    /// The monitor socket.
    pub fn qmp_socket(&self) -> &Path {
        &self.qmp_socket
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Connects to the monitor socket, retrying until it accepts. Fails at once with
    /// [`ProcessError::ExitedEarly`] if QEMU exits first, and with
    /// [`ProcessError::MonitorTimeout`] after `timeout`.
    ///
    /// The socket appears some 20–70 ms after the spawn; a failed connect to a missing
    /// path costs microseconds, so the first [`FAST_POLL_FOR`] polls every millisecond
    /// (an exponential backoff wasted up to half the wait: connected at 38 or 72 ms
    /// instead of 20 or 40), and only a QEMU that is slow to come up is polled less often.
    pub async fn connect_monitor(&mut self, timeout: Duration) -> Result<UnixStream, ProcessError> {
        let socket = self.qmp_socket.clone();
        let connect = async {
            let start = tokio::time::Instant::now();
            loop {
                if let Ok(s) = UnixStream::connect(&socket).await {
                    return s;
                }
                let delay = if start.elapsed() < FAST_POLL_FOR {
                    Duration::from_millis(1)
                } else {
                    Duration::from_millis(20)
                };
                tokio::time::sleep(delay).await;
            }
        };
        let deadline = tokio::time::sleep(timeout);
        match self.child.as_mut() {
            Some(child) => {
                tokio::select! {
                    s = connect => Ok(s),
                    st = child.wait() => {
                        let st = st.map_err(|source| ProcessError::Wait { pid: self.pid, source })?;
                        self.exited = Some(Some(st));
                        Err(ProcessError::ExitedEarly {
                            status: describe_status(Some(st)),
                            log_tail: self.log_tail(LOG_TAIL_LINES),
                        })
                    }
                    _ = deadline => Err(ProcessError::MonitorTimeout { socket: socket.clone(), timeout }),
                }
            }
            None => tokio::select! {
                s = connect => Ok(s),
                _ = deadline => Err(ProcessError::MonitorTimeout { socket: socket.clone(), timeout }),
            },
        }
    }

    /// The last `n` non-empty lines QEMU wrote during this run, joined by newlines.
    pub fn log_tail(&self, n: usize) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log)
            && f.seek(SeekFrom::Start(self.log_offset)).is_ok()
        {
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Sends `signal`. For an adopted process the pid is re-verified first; if it is no
    /// longer our QEMU nothing is sent. A process that is already gone is not an error.
    pub fn signal(&self, signal: Signal) -> Result<(), ProcessError> {
        if self.exited.is_some() {
            return Ok(());
        }
        if self.child.is_none() && !verify_pid(self.pid, &self.qmp_socket) {
            return Ok(());
        }
        match kill(Pid::from_raw(self.pid as i32), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(errno) => Err(ProcessError::Signal {
                signal,
                pid: self.pid,
                errno,
            }),
        }
    }

    /// SIGTERM: QEMU exits cleanly.
    pub fn terminate(&self) -> Result<(), ProcessError> {
        self.signal(Signal::SIGTERM)
    }

    /// SIGKILL.
    pub fn kill(&self) -> Result<(), ProcessError> {
        self.signal(Signal::SIGKILL)
    }

    /// Whether the process has exited (non-blocking; reaps our own child).
    pub fn has_exited(&mut self) -> bool {
        if self.exited.is_some() {
            return true;
        }
        match self.child.as_mut() {
            Some(c) => match c.try_wait() {
                Ok(Some(st)) => {
                    self.exited = Some(Some(st));
                    true
                }
                Ok(None) => false,
                Err(_) => false,
            },
            None => {
                if pid_gone(self.pid) {
                    self.exited = Some(None);
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Waits until the process has exited. Returns its status when it was our child,
    /// `None` for an adopted process (whose status only its real parent sees).
    pub async fn wait(&mut self) -> Result<Option<ExitStatus>, ProcessError> {
        if let Some(st) = self.exited {
            return Ok(st);
        }
        let st = match self.child.as_mut() {
            Some(c) => Some(c.wait().await.map_err(|source| ProcessError::Wait {
                pid: self.pid,
                source,
            })?),
            None => {
                let mut delay = Duration::from_millis(1);
                while !pid_gone(self.pid) {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(50));
                }
                None
            }
        };
        self.exited = Some(st);
        Ok(st)
    }

    /// [`QemuProcess::wait`] bounded by `timeout`: `None` if still running then.
    pub async fn wait_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Option<ExitStatus>>, ProcessError> {
        match tokio::time::timeout(timeout, self.wait()).await {
            Ok(r) => r.map(Some),
            Err(_) => Ok(None),
        }
    }
}

/// Text for an exit status as libvirt-like messages show it.
pub fn describe_status(st: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match st {
        Some(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => "unknown exit status".to_string(),
        },
        None => "exit status unknown".to_string(),
    }
}

/// CPU time (user + system, all threads, in nanoseconds) used so far by the live
/// process `pid`, from `/proc/PID/stat` — what libvirt's qemu driver reports as a
/// domain's cpuTime when it has no cgroup accounting. `None` if the process is gone.
pub fn cpu_time_ns(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After "PID (comm) ": state is field 3, utime 14, stime 15.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&h| h > 0)
        .unwrap_or(100) as u64;
    Some((utime + stime).saturating_mul(1_000_000_000 / hz))
}

/// The fields of a `/proc/.../stat` file after "PID (comm)": index 0 is the state
/// (field 3), so field N of proc(5) is at index N - 3.
fn stat_fields(path: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(path).ok()?;
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn ns_per_tick() -> u64 {
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&h| h > 0)
        .unwrap_or(100) as u64;
    1_000_000_000 / hz
}

/// (utime, stime) in nanoseconds from a stat file's fields.
fn cpu_split(fields: &[String]) -> Option<(u64, u64)> {
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let tick = ns_per_tick();
    Some((utime.saturating_mul(tick), stime.saturating_mul(tick)))
}

/// The vCPU index of a QEMU thread named by `debug-threads=on` ("CPU 0/KVM",
/// "CPU 1/TCG").
fn vcpu_index(comm: &str) -> Option<usize> {
    let rest = comm.trim().strip_prefix("CPU ")?;
    let (n, accel) = rest.split_once('/')?;
    (!accel.is_empty()).then_some(())?;
    n.parse().ok()
}

/// The figures of one vCPU thread `tid` of `pid`: CPU time from its stat file, the
/// run delay from `schedstat` (second field) and the wait time from `sched`
/// (`wait_sum`, milliseconds; 0 when the kernel keeps no schedstats).
fn vcpu_usage(pid: u32, tid: &str) -> VcpuUsage {
    let base = format!("/proc/{pid}/task/{tid}");
    let time_ns = stat_fields(&format!("{base}/stat"))
        .and_then(|f| cpu_split(&f))
        .map(|(u, s)| u + s)
        .unwrap_or(0);
    let delay_ns = std::fs::read_to_string(format!("{base}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0);
    let wait_ns = std::fs::read_to_string(format!("{base}/sched"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| {
                    l.trim_start()
                        .split(':')
                        .next()
                        .is_some_and(|k| k.trim().ends_with("wait_sum"))
                })
                .and_then(|l| l.split(':').nth(1))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .map(|ms| (ms * 1_000_000.0) as u64)
        .unwrap_or(0);
    VcpuUsage {
        time_ns,
        wait_ns,
        delay_ns,
    }
}

/// What the live QEMU process `pid` has used: user and system CPU time, resident set
/// size and, when its threads carry `debug-threads=on` names, each vCPU thread's
/// figures (what libvirt's qemu driver reports in `cpu.*`, `balloon.rss` and
/// `vcpu.N.*`). `None` if the process is gone.
pub fn usage(pid: u32) -> Option<GuestUsage> {
    let fields = stat_fields(&format!("/proc/{pid}/stat"))?;
    let (cpu_user_ns, cpu_system_ns) = cpu_split(&fields)?;
    let page_kib = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .filter(|&p| p > 0)
        .unwrap_or(4096) as u64
        / 1024;
    let rss_kib = fields
        .get(21)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        .saturating_mul(page_kib);
    let mut vcpus: Vec<(usize, VcpuUsage)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for ent in dir.flatten() {
            let tid = ent.file_name().to_string_lossy().into_owned();
            let Ok(comm) = std::fs::read_to_string(ent.path().join("comm")) else {
                continue;
            };
            if let Some(n) = vcpu_index(&comm) {
                vcpus.push((n, vcpu_usage(pid, &tid)));
            }
        }
    }
    vcpus.sort_by_key(|(n, _)| *n);
    Some(GuestUsage {
        cpu_user_ns,
        cpu_system_ns,
        rss_kib,
        vcpus: vcpus.into_iter().map(|(_, v)| v).collect(),
    })
}

/// Whether `pid` no longer names a live process (missing, or a zombie waiting to be
/// reaped by its parent).
pub fn pid_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // "PID (comm) S ...": the state follows the last ')'.
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].trim_start().chars().next());
            matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => true,
    }
}

/// Whether `pid` is alive and is the QEMU that serves `qmp_socket` (its command line
/// names the socket path).
pub fn verify_pid(pid: u32, qmp_socket: &Path) -> bool {
    if pid == 0 || pid_gone(pid) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let raw = qmp_socket.as_os_str().as_encoded_bytes();
    if raw.is_empty() {
        return false;
    }
    // QEMU option syntax doubles commas inside values (`path=a,,b`).
    let escaped: Vec<u8> = raw
        .iter()
        .flat_map(|&b| if b == b',' { vec![b',', b','] } else { vec![b] })
        .collect();
    [raw, &escaped[..]]
        .iter()
        .any(|needle| cmdline.windows(needle.len()).any(|w| w == *needle))
}

/// Sends `signal` to `pid` only if it is still the QEMU serving `qmp_socket`
/// ([`verify_pid`]); returns whether it was sent. A process that vanished meanwhile is
/// not an error.
pub fn signal_verified(pid: u32, qmp_socket: &Path, signal: Signal) -> Result<bool, ProcessError> {
    if !verify_pid(pid, qmp_socket) {
        return Ok(false);
    }
    match kill(Pid::from_raw(pid as i32), signal) {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::ESRCH) => Ok(false),
        Err(errno) => Err(ProcessError::Signal { signal, pid, errno }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcpu_threads_are_recognised_by_their_debug_threads_name() {
        assert_eq!(vcpu_index("CPU 0/KVM\n"), Some(0));
        assert_eq!(vcpu_index("CPU 12/TCG"), Some(12));
        assert_eq!(vcpu_index("CPU 1/"), None);
        assert_eq!(vcpu_index("IO mon_iothread"), None);
        assert_eq!(vcpu_index("qemu-system-x86"), None);
    }

    #[test]
    fn usage_of_this_process_splits_cpu_time_and_has_an_rss() {
        let me = std::process::id();
        // Burn a little CPU so user time is measurable.
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let u = usage(me).unwrap();
        assert!(x > 0);
        assert!(u.rss_kib > 0, "{u:?}");
        assert!(u.cpu_time_ns() > 0, "{u:?}");
        assert!(
            u.vcpus.is_empty(),
            "a test binary has no vCPU threads: {u:?}"
        );
        assert!(usage(u32::MAX - 1).is_none());
    }

    fn sh(script: &str) -> Vec<String> {
        vec!["-c".into(), script.into()]
    }

    #[tokio::test]
    async fn early_exit_reports_status_and_log_tail() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let log = dir.path().join("g.log");
        std::fs::write(&log, "old run: not quoted\n").unwrap();
        let mut p = QemuProcess::spawn(
            Path::new("/bin/sh"),
            &sh("echo first line; echo 'qemu: could not open disk' >&2; exit 3"),
            &sock,
            &log,
        )
        .unwrap();
        assert!(p.is_child());
        let err = p.connect_monitor(Duration::from_secs(5)).await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ProcessError::ExitedEarly { .. }), "{msg}");
        assert!(msg.contains("exit status 3"), "{msg}");
        assert!(msg.contains("could not open disk"), "{msg}");
        assert!(msg.contains("first line"), "{msg}");
        assert!(!msg.contains("old run"), "{msg}");
        let all = std::fs::read_to_string(&log).unwrap();
        assert!(all.contains("starting up"), "{all}");
    }

    #[tokio::test]
    async fn connects_once_the_socket_listens() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let log = dir.path().join("g.log");
        // A child that stays; the "monitor" appears a little later, from the test.
        let mut p =
            QemuProcess::spawn(Path::new("/bin/sh"), &sh("exec sleep 30"), &sock, &log).unwrap();
        let s2 = sock.clone();
        let listener = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let l = tokio::net::UnixListener::bind(&s2).unwrap();
            let _ = l.accept().await;
        });
        p.connect_monitor(Duration::from_secs(5)).await.unwrap();
        listener.await.unwrap();
        assert!(!p.has_exited());
        p.kill().unwrap();
        let st = p.wait().await.unwrap().unwrap();
        assert_eq!(describe_status(Some(st)), "killed by signal 9");
        assert!(p.has_exited());
        // Signalling an exited process is harmless.
        p.terminate().unwrap();
    }

    #[tokio::test]
    async fn monitor_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let log = dir.path().join("g.log");
        let mut p =
            QemuProcess::spawn(Path::new("/bin/sh"), &sh("exec sleep 30"), &sock, &log).unwrap();
        let err = p
            .connect_monitor(Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(err, ProcessError::MonitorTimeout { .. }), "{err}");
        p.kill().unwrap();
        p.wait().await.unwrap();
    }

    #[tokio::test]
    async fn own_process_group_and_adoption_checks_cmdline() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("unique-qmp.sock");
        let log = dir.path().join("g.log");
        // The socket path appears in the command line, as in QEMU's `-qmp unix:PATH`.
        let mut child = QemuProcess::spawn(
            Path::new("python3"),
            &[
                "-c".into(),
                "import time; time.sleep(30)".into(),
                format!("unix:{},server=on,wait=off", sock.display()),
            ],
            &sock,
            &log,
        )
        .unwrap();
        let pid = child.pid();
        // Its own process group: pgid == pid.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let pgrp: u32 = after.split(' ').nth(2).unwrap().parse().unwrap();
        assert_eq!(pgrp, pid);

        // Right after fork the child still shows our command line, until it execs.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !verify_pid(pid, &sock) {
            assert!(std::time::Instant::now() < deadline, "child never exec'd");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!verify_pid(pid, &dir.path().join("other.sock")));
        assert!(QemuProcess::adopt(pid, &dir.path().join("other.sock"), &log).is_none());
        let mut adopted = QemuProcess::adopt(pid, &sock, &log).unwrap();
        assert!(!adopted.is_child());
        assert!(!adopted.has_exited());
        adopted.terminate().unwrap();
        // Our child (the test's) becomes a zombie until reaped; the adopted view must
        // see it gone either way.
        tokio::time::timeout(Duration::from_secs(5), adopted.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(adopted.has_exited());
        let st = child.wait().await.unwrap().unwrap();
        assert_eq!(describe_status(Some(st)), "killed by signal 15");
        assert!(!verify_pid(pid, &sock));
    }

    #[test]
    fn cpu_time_of_a_busy_process_grows() {
        let me = std::process::id();
        let before = cpu_time_ns(me).unwrap();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(60) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let after = cpu_time_ns(me).unwrap();
        assert!(after > before, "{before} -> {after}");
        assert!(cpu_time_ns(u32::MAX - 1).is_none());
    }

    #[test]
    fn missing_pid_is_gone() {
        assert!(pid_gone(u32::MAX - 1));
        assert!(!pid_gone(std::process::id()));
        assert!(!verify_pid(0, Path::new("/x")));
    }

    #[tokio::test]
    async fn spawn_failure_names_the_program() {
        let dir = tempfile::tempdir().unwrap();
        let err = QemuProcess::spawn(
            Path::new("/nonexistent/qemu-system-x86_64"),
            &[],
            &dir.path().join("s"),
            &dir.path().join("l"),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/qemu-system-x86_64"),
            "{err}"
        );
    }
}

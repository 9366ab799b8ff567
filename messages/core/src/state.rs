//! Domain states and the reasons libvirt gives for them (`virDomainState` and the
//! per-state reason enums), with libvirt's numbers.

/// libvirt's `virDomainState`. The discriminant is the wire value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum DomainState {
    /// No state.
    NoState = 0,
    /// The domain is running.
    Running = 1,
    /// The domain is blocked on a resource.
    Blocked = 2,
    /// Paused by a user or by the hypervisor.
    Paused = 3,
    /// Being shut down.
    Shutdown = 4,
    /// Not running.
    Shutoff = 5,
    /// Crashed (only when the crash action is preserve).
    Crashed = 6,
    /// Suspended by guest power management.
    PmSuspended = 7,
}

impl DomainState {
    /// Whether libvirt calls this state "active" (has an id, counts in active lists).
    pub fn is_active(self) -> bool {
        !matches!(self, DomainState::Shutoff)
    }

    /// Converts the wire value; unknown values become `NoState`.
    pub fn from_i32(v: i32) -> DomainState {
        match v {
            1 => DomainState::Running,
            2 => DomainState::Blocked,
            3 => DomainState::Paused,
            4 => DomainState::Shutdown,
            5 => DomainState::Shutoff,
            6 => DomainState::Crashed,
            7 => DomainState::PmSuspended,
            _ => DomainState::NoState,
        }
    }

    /// The word virsh prints for the state (`virsh domstate`).
    pub fn virsh_name(self) -> &'static str {
        match self {
            DomainState::NoState => "no state",
            DomainState::Running => "running",
            DomainState::Blocked => "idle",
            DomainState::Paused => "paused",
            DomainState::Shutdown => "in shutdown",
            DomainState::Shutoff => "shut off",
            DomainState::Crashed => "crashed",
            DomainState::PmSuspended => "pmsuspended",
        }
    }
}

/// A state together with its reason; the reason's meaning depends on the state
/// (`VIR_DOMAIN_RUNNING_*`, `VIR_DOMAIN_PAUSED_*`, `VIR_DOMAIN_SHUTOFF_*`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateReason {
    /// The state.
    pub state: DomainState,
    /// The reason, as libvirt numbers it for that state.
    pub reason: i32,
}

/// `VIR_DOMAIN_RUNNING_*` reasons.
#[allow(missing_docs)]
pub mod running {
    pub const UNKNOWN: i32 = 0;
    pub const BOOTED: i32 = 1;
    pub const MIGRATED: i32 = 2;
    pub const RESTORED: i32 = 3;
    pub const FROM_SNAPSHOT: i32 = 4;
    pub const UNPAUSED: i32 = 5;
    pub const MIGRATION_CANCELED: i32 = 6;
    pub const SAVE_CANCELED: i32 = 7;
    pub const WAKEUP: i32 = 8;
    pub const CRASHED: i32 = 9;
}

/// `VIR_DOMAIN_PAUSED_*` reasons.
#[allow(missing_docs)]
pub mod paused {
    pub const UNKNOWN: i32 = 0;
    pub const USER: i32 = 1;
    pub const MIGRATION: i32 = 2;
    pub const SAVE: i32 = 3;
    pub const DUMP: i32 = 4;
    pub const IOERROR: i32 = 5;
    pub const WATCHDOG: i32 = 6;
    pub const FROM_SNAPSHOT: i32 = 7;
    pub const SHUTTING_DOWN: i32 = 8;
    pub const SNAPSHOT: i32 = 9;
    pub const CRASHED: i32 = 10;
    pub const STARTING_UP: i32 = 11;
}

/// `VIR_DOMAIN_SHUTOFF_*` reasons.
#[allow(missing_docs)]
pub mod shutoff {
    pub const UNKNOWN: i32 = 0;
    pub const SHUTDOWN: i32 = 1;
    pub const DESTROYED: i32 = 2;
    pub const CRASHED: i32 = 3;
    pub const MIGRATED: i32 = 4;
    pub const SAVED: i32 = 5;
    pub const FAILED: i32 = 6;
    pub const FROM_SNAPSHOT: i32 = 7;
    pub const DAEMON: i32 = 8;
}

/// `VIR_DOMAIN_CRASHED_*` reasons.
#[allow(missing_docs)]
pub mod crashed {
    pub const UNKNOWN: i32 = 0;
    pub const PANICKED: i32 = 1;
}

impl StateReason {
    /// A state with a reason.
    pub fn new(state: DomainState, reason: i32) -> StateReason {
        StateReason { state, reason }
    }

    /// The word virsh prints for the reason (`virsh domstate --reason`).
    pub fn reason_name(&self) -> &'static str {
        let r = self.reason;
        match self.state {
            DomainState::Running => match r {
                1 => "booted",
                2 => "migrated",
                3 => "restored",
                4 => "from snapshot",
                5 => "unpaused",
                6 => "migration canceled",
                7 => "save canceled",
                8 => "event wakeup",
                9 => "crashed",
                10 => "post-copy",
                11 => "post-copy failed",
                _ => "unknown",
            },
            DomainState::Paused => match r {
                1 => "user",
                2 => "migrating",
                3 => "saving",
                4 => "dumping",
                5 => "I/O error",
                6 => "watchdog",
                7 => "from snapshot",
                8 => "shutting down",
                9 => "creating snapshot",
                10 => "crashed",
                11 => "starting up",
                12 => "post-copy",
                13 => "post-copy failed",
                _ => "unknown",
            },
            DomainState::Shutdown => match r {
                1 => "user",
                _ => "unknown",
            },
            DomainState::Shutoff => match r {
                1 => "shutdown",
                2 => "destroyed",
                3 => "crashed",
                4 => "migrated",
                5 => "saved",
                6 => "failed",
                7 => "from snapshot",
                8 => "daemon",
                _ => "unknown",
            },
            DomainState::Crashed => match r {
                1 => "panicked",
                _ => "unknown",
            },
            _ => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(DomainState::Shutoff as i32, 5);
        assert_eq!(DomainState::from_i32(3), DomainState::Paused);
        assert_eq!(
            StateReason::new(DomainState::Shutoff, shutoff::SAVED).reason_name(),
            "saved"
        );
        assert!(!DomainState::Shutoff.is_active());
        assert!(DomainState::Paused.is_active());
    }
}

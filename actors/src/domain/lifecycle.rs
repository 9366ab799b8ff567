//! Which operation is legal in which state, and the error libvirt gives otherwise.
//!
//! The rules are the same for every driver; the *errors* differ: libvirt's test driver
//! answers some wrong-state calls with code 1 (internal error) under its own error
//! domain where the QEMU driver answers code 55 (operation invalid). [`check`] returns
//! the error the driver's [`Flavour`] would.

use vireo_drivers::hypervisor::Flavour;
use vireo_messages::{DomainState, ErrorDomain, VirError, VirResult};

/// The state-changing operations a domain accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Boot a defined domain.
    Start,
    /// Pause the vCPUs.
    Suspend,
    /// Unpause.
    Resume,
    /// Ask the guest to power off.
    Shutdown,
    /// Ask the guest to reboot.
    Reboot,
    /// Hard reset.
    Reset,
    /// Pull the plug.
    Destroy,
    /// Save state to a file and stop.
    Save,
    /// Save state to the managed image and stop.
    ManagedSave,
    /// Rename (inactive persistent domains only).
    Rename,
}

impl Op {
    /// The job name shown when another job waits for this one.
    pub fn job_name(self) -> &'static str {
        match self {
            Op::Start => "start",
            Op::Suspend => "suspend",
            Op::Resume => "resume",
            Op::Shutdown => "shutdown",
            Op::Reboot => "reboot",
            Op::Reset => "reset",
            Op::Destroy => "destroy",
            Op::Save => "save",
            Op::ManagedSave => "managedsave",
            Op::Rename => "rename",
        }
    }
}

/// Checks that `op` is legal for domain `name` in `state`; otherwise returns the error
/// the driver's flavour reports.
pub fn check(flavour: Flavour, op: Op, name: &str, state: DomainState) -> VirResult<()> {
    let active = state.is_active();
    let test = flavour == Flavour::Test;
    let drv = if test {
        ErrorDomain::Test
    } else {
        ErrorDomain::Qemu
    };
    let not_running = || {
        if test {
            VirError::internal(ErrorDomain::Test, format!("domain '{name}' not running"))
        } else {
            VirError::operation_invalid(ErrorDomain::Domain, "domain is not running")
        }
    };
    match op {
        Op::Start if active => Err(if test {
            VirError::internal(
                ErrorDomain::Test,
                format!("Domain '{name}' is already running"),
            )
        } else {
            VirError::operation_invalid(ErrorDomain::Domain, "domain is already running")
        }),
        Op::Start => Ok(()),
        Op::Suspend if state == DomainState::Running => Ok(()),
        Op::Suspend if state == DomainState::Paused && !test => Ok(()),
        Op::Suspend => Err(not_running()),
        Op::Resume if state == DomainState::Paused => Ok(()),
        Op::Resume if test => Err(VirError::internal(
            ErrorDomain::Test,
            format!("domain '{name}' not paused"),
        )),
        Op::Resume if !active => Err(not_running()),
        Op::Resume => Err(VirError::operation_invalid(
            ErrorDomain::Domain,
            "domain is not paused",
        )),
        Op::Shutdown if active => Ok(()),
        Op::Shutdown => Err(not_running()),
        Op::Reboot | Op::Reset | Op::Destroy | Op::Save | Op::ManagedSave if active => Ok(()),
        Op::Reboot | Op::Reset | Op::Destroy | Op::Save | Op::ManagedSave => Err(
            VirError::operation_invalid(ErrorDomain::Domain, "domain is not running"),
        ),
        Op::Rename if active => Err(VirError::operation_invalid(
            drv,
            "cannot rename active domain",
        )),
        Op::Rename => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vireo_messages::ErrorCode;

    #[test]
    fn test_flavour_quirks() {
        let e = check(Flavour::Test, Op::Suspend, "d", DomainState::Shutoff).unwrap_err();
        assert_eq!(e.code, ErrorCode::InternalError);
        assert_eq!(e.message, "internal error: domain 'd' not running");
        let e = check(Flavour::Test, Op::Start, "d", DomainState::Running).unwrap_err();
        assert_eq!(e.message, "internal error: Domain 'd' is already running");
        let e = check(Flavour::Test, Op::Destroy, "d", DomainState::Shutoff).unwrap_err();
        assert_eq!(e.code, ErrorCode::OperationInvalid);
        assert_eq!(e.domain, ErrorDomain::Domain);
        let e = check(Flavour::Test, Op::Resume, "d", DomainState::Running).unwrap_err();
        assert_eq!(e.message, "internal error: domain 'd' not paused");
        assert!(check(Flavour::Test, Op::Shutdown, "d", DomainState::Paused).is_ok());
    }

    #[test]
    fn qemu_flavour() {
        let e = check(Flavour::Qemu, Op::Start, "d", DomainState::Paused).unwrap_err();
        assert_eq!(e.code, ErrorCode::OperationInvalid);
        assert_eq!(
            e.message,
            "Requested operation is not valid: domain is already running"
        );
        let e = check(Flavour::Qemu, Op::Resume, "d", DomainState::Running).unwrap_err();
        assert_eq!(
            e.message,
            "Requested operation is not valid: domain is not paused"
        );
    }
}

//! network procedures.

use std::sync::Arc;

use vireo_wire::RemoteProc as P;

use super::Handled;
use crate::session::Session;

/// Handles this family's procedures.
pub async fn handle(_s: &Arc<Session>, _p: P, _payload: &[u8]) -> Handled {
    None
}

//! One host of a name per machine: the host's cgroups and leftovers are found by its name, so
//! a second host of the same name on the machine (even of another deployment) would kill the
//! first one's workers as leftovers. The lock is a bound abstract Unix socket: unique on the
//! machine (its network namespace), released by the kernel when the process ends however it
//! ends, and nothing on disk to clean up.

use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::{SocketAddr, UnixListener};

/// Held while the host runs.
#[derive(Debug)]
pub(crate) struct MachineLock {
    _socket: UnixListener,
}

impl MachineLock {
    /// Takes the lock of the host `name` on this machine.
    ///
    /// # Errors
    /// Why not: another process holds it, or the socket cannot be made.
    pub(crate) fn take(name: &str) -> Result<Self, String> {
        match Self::try_take(&format!("switchyard-host/{name}")) {
            Ok(Some(lock)) => Ok(lock),
            Ok(None) => Err(format!(
                "another host named `{name}` runs on this machine; give this one another --name"
            )),
            Err(error) => Err(format!("cannot take the host's lock: {error}")),
        }
    }

    /// Takes the lock of the worker user id `uid` on this machine: every host of the machine
    /// gives each id to one instance at a time.
    ///
    /// # Errors
    /// When the socket cannot be made; `Ok(None)` when another process holds it.
    pub(crate) fn take_uid(uid: u32) -> std::io::Result<Option<Self>> {
        Self::try_take(&format!("switchyard-uid/{uid}"))
    }

    fn try_take(name: &str) -> std::io::Result<Option<Self>> {
        let address = SocketAddr::from_abstract_name(name)?;
        match UnixListener::bind_addr(&address) {
            Ok(socket) => Ok(Some(Self { _socket: socket })),
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => Ok(None),
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_held_once_per_machine_until_released() {
        let name = format!("lock-test-{}", std::process::id());
        let held = MachineLock::take(&name).unwrap();
        let refused = MachineLock::take(&name).unwrap_err();
        assert!(refused.contains("another host"), "{refused}");
        drop(held);
        MachineLock::take(&name).unwrap();
    }
}

//! The values callers exchange with the store.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One network attachment of a container: what CNI keys every operation on.
///
/// Serialises as `{"containerID": …, "ifname": …}`, the shape of the
/// entries of CNI GC's `cni.dev/valid-attachments`, so that list can be
/// deserialised straight into attachments.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Attachment {
    /// `CNI_CONTAINERID`.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// `CNI_IFNAME`, the interface name inside the container.
    pub ifname: String,
}

impl Attachment {
    /// Builds an attachment from its two parts.
    pub fn new(container_id: impl Into<String>, ifname: impl Into<String>) -> Attachment {
        Attachment {
            container_id: container_id.into(),
            ifname: ifname.into(),
        }
    }

    /// Checks the CNI rules: the container ID matches
    /// `^[A-Za-z0-9][A-Za-z0-9_.-]*$`; the interface name is 1–15 bytes,
    /// not `.` or `..`, without `/`, `:` or whitespace (libcni's
    /// `pkg/utils`). Enforced before anything is written so that a bad
    /// request can never leave a reservation nobody can release.
    pub fn validate(&self) -> Result<()> {
        if !is_cni_name(&self.container_id) {
            return Err(Error::InvalidAttachment(format!(
                "container ID {:?} must match ^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                self.container_id
            )));
        }
        let ifname = &self.ifname;
        if ifname.is_empty() || ifname.len() > 15 {
            return Err(Error::InvalidAttachment(format!(
                "interface name {ifname:?} must be 1 to 15 bytes long"
            )));
        }
        if ifname == "." || ifname == ".." {
            return Err(Error::InvalidAttachment(format!(
                "interface name {ifname:?} is not allowed"
            )));
        }
        if ifname
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
        {
            return Err(Error::InvalidAttachment(format!(
                "interface name {ifname:?} must not contain '/', ':' or whitespace"
            )));
        }
        Ok(())
    }
}

/// True when `name` matches `^[A-Za-z0-9][A-Za-z0-9_.-]*$`, the CNI rule
/// for container IDs and network names.
pub(crate) fn is_cni_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The addresses held by one attachment.
///
/// Serialises in the same shape as a record of the state file:
/// `{"containerID", "ifname", "ips", "bootID", "created"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// Who holds the addresses.
    #[serde(flatten)]
    pub attachment: Attachment,
    /// One address per family of the pool at allocation time, IPv4 first.
    pub ips: Vec<IpAddr>,
    /// The kernel boot ID when the reservation was made; a sweep can tell
    /// reservations from before the last reboot. `None` when
    /// `/proc/sys/kernel/random/boot_id` was unreadable.
    #[serde(rename = "bootID", default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// When the reservation was made, in seconds since the Unix epoch.
    pub created: u64,
}

/// The answer to [`Store::allocate`](crate::Store::allocate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// One address per family of the pool, IPv4 first, then IPv6.
    pub ips: Vec<IpAddr>,
    /// False when the attachment already held exactly these addresses (a
    /// repeated ADD) and nothing was written; true when this call wrote the
    /// reservation.
    pub created: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_names_follow_the_spec_pattern() {
        for ok in ["a", "0", "abc-DEF_1.2", "9f86d081884c7d65"] {
            assert!(is_cni_name(ok), "{ok}");
        }
        for bad in ["", "-a", ".a", "_a", "a/b", "a b", "a:b", "ä"] {
            assert!(!is_cni_name(bad), "{bad}");
        }
    }

    #[test]
    fn interface_names_follow_libcni() {
        let ok = |ifname: &str| Attachment::new("c1", ifname).validate().is_ok();
        assert!(ok("eth0"));
        assert!(ok("a23456789012345"));
        assert!(!ok(""));
        assert!(!ok("a234567890123456"));
        assert!(!ok("."));
        assert!(!ok(".."));
        assert!(!ok("a/b"));
        assert!(!ok("a:b"));
        assert!(!ok("a b"));
        assert!(Attachment::new("-c", "eth0").validate().is_err());
    }

    #[test]
    fn attachment_reads_gc_valid_attachments() {
        let list: Vec<Attachment> =
            serde_json::from_str(r#"[{"containerID":"abc","ifname":"eth0"}]"#).unwrap();
        assert_eq!(list, vec![Attachment::new("abc", "eth0")]);
    }
}

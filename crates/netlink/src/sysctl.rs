//! Per-namespace `net.*` sysctls under /proc/sys/net.
//!
//! /proc/sys/net shows the network namespace of the task that *opens* the
//! file, so these functions act on the calling thread's namespace; for
//! another one use [`sysctl_set_in`] / [`sysctl_get_in`], which enter it with
//! a [`crate::NetnsGuard`] around the open.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::ns::{Netns, in_netns};

/// Maps a sysctl key to its file under /proc/sys. Only `net.*` keys are
/// accepted. Two spellings:
///
/// - slash form, `net/ipv4/conf/eth0.100/forwarding`: taken as is. Use it
///   whenever an interface name may contain a dot.
/// - dotted form, `net.ipv4.conf.all.forwarding`: dots separate components;
///   as in sysctl(8), a `/` stands for a dot inside a component, so
///   `net.ipv4.conf.eth0/100.forwarding` also names the file above.
///
/// The form is chosen by the separator after `net`.
pub fn sysctl_path(key: &str) -> Result<PathBuf> {
    let rel: String = if key.starts_with("net/") {
        key.to_string()
    } else if key.starts_with("net.") {
        key.chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect()
    } else {
        return Err(Error::Invalid(format!(
            "sysctl {key:?}: only net.* keys may be set"
        )));
    };
    let bad = rel
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == ".." || c.contains('\0'));
    if bad {
        return Err(Error::Invalid(format!("sysctl {key:?}: malformed key")));
    }
    Ok(PathBuf::from("/proc/sys").join(rel))
}

/// Reads a sysctl of the calling thread's namespace, without the trailing
/// newline.
pub fn sysctl_get(key: &str) -> Result<String> {
    let path = sysctl_path(key)?;
    let mut value = fs::read_to_string(&path)
        .map_err(|e| Error::io(format!("read sysctl {}", path.display()), e))?;
    while value.ends_with('\n') {
        value.pop();
    }
    Ok(value)
}

/// Sets a sysctl of the calling thread's namespace. Reads first and skips
/// the write when the value already matches (whitespace-insensitive, for
/// multi-value keys like `ip_local_port_range`): a write can have side
/// effects even when it changes nothing, and a read is cheaper.
pub fn sysctl_set(key: &str, value: &str) -> Result<()> {
    let current = sysctl_get(key)?;
    if same_value(&current, value) {
        return Ok(());
    }
    let path = sysctl_path(key)?;
    let op = || format!("write sysctl {}={value}", path.display());
    let mut file = fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(op(), e))?;
    file.write_all(value.as_bytes())
        .map_err(|e| Error::io(op(), e))
}

/// [`sysctl_set`] inside `ns`: enters it on this thread for the write only.
pub fn sysctl_set_in(ns: &Netns, key: &str, value: &str) -> Result<()> {
    in_netns(ns, || sysctl_set(key, value))
}

/// [`sysctl_get`] inside `ns`.
pub fn sysctl_get_in(ns: &Netns, key: &str) -> Result<String> {
    in_netns(ns, || sysctl_get(key))
}

fn same_value(a: &str, b: &str) -> bool {
    a.split_whitespace().eq(b.split_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_and_slash_forms() {
        let want = PathBuf::from("/proc/sys/net/ipv4/ip_forward");
        assert_eq!(sysctl_path("net.ipv4.ip_forward").unwrap(), want);
        assert_eq!(sysctl_path("net/ipv4/ip_forward").unwrap(), want);
    }

    #[test]
    fn interface_names_with_dots() {
        let want = PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/forwarding");
        assert_eq!(
            sysctl_path("net/ipv4/conf/eth0.100/forwarding").unwrap(),
            want
        );
        assert_eq!(
            sysctl_path("net.ipv4.conf.eth0/100.forwarding").unwrap(),
            want
        );
    }

    #[test]
    fn refuses_everything_outside_net() {
        for key in [
            "kernel.pid_max",
            "kernel/pid_max",
            "vm.swappiness",
            "net",
            "netfilter.x",
            "/proc/sys/net/ipv4/ip_forward",
            "net/../kernel/pid_max",
            "net.ipv4..ip_forward",
            "net/ipv4/",
            "net/./ipv4",
        ] {
            assert!(
                matches!(sysctl_path(key), Err(Error::Invalid(_))),
                "{key:?} accepted"
            );
        }
    }

    #[test]
    fn comparison_ignores_whitespace_layout() {
        assert!(same_value("32768\t60999", "32768 60999"));
        assert!(same_value("1", "1"));
        assert!(!same_value("1", "0"));
    }
}

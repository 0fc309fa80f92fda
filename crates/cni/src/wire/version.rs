//! CNI specification versions.

use super::error::{CniError, INCOMPATIBLE_VERSION};

/// Every version weft speaks, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// The newest version weft speaks.
pub const CURRENT_VERSION: &str = "1.1.0";

/// A parsed CNI version (major, minor, patch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u16, pub u16, pub u16);

impl Version {
    /// The version that introduced CHECK.
    pub const CHECK: Version = Version(0, 4, 0);
    /// The version that introduced STATUS and GC.
    pub const STATUS_GC: Version = Version(1, 1, 0);
    /// The first version with the `interfaces`/`ips` result layout.
    pub const V030: Version = Version(0, 3, 0);
    /// The first version without `ips[].version`.
    pub const V100: Version = Version(1, 0, 0);

    /// Parses a version a request names; it must be one weft supports (error code 1).
    pub fn supported(s: &str) -> Result<Version, CniError> {
        if !SUPPORTED_VERSIONS.contains(&s) {
            return Err(CniError::new(
                INCOMPATIBLE_VERSION,
                format!(
                    "incompatible CNI versions: config is \"{s}\", plugin supports {SUPPORTED_VERSIONS:?}"
                ),
            ));
        }
        Ok(Version::parse(s).expect("supported versions parse"))
    }

    /// Parses `a.b.c`.
    pub fn parse(s: &str) -> Option<Version> {
        let mut it = s.split('.').map(|p| p.parse::<u16>().ok());
        let v = Version(it.next()??, it.next()??, it.next()??);
        it.next().is_none().then_some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders() {
        assert!(Version::parse("0.4.0").unwrap() < Version::parse("1.0.0").unwrap());
        assert_eq!(Version::parse("1.1"), None);
        assert_eq!(Version::parse("1.1.0.0"), None);
        assert_eq!(Version::supported("0.3.1").unwrap(), Version(0, 3, 1));
        assert_eq!(Version::supported("9.9.9").unwrap_err().code, 1);
    }
}

//! The CNI error object and the codes weft uses.

use serde::Serialize;

/// Incompatible CNI version.
pub const INCOMPATIBLE_VERSION: u32 = 1;
/// Unsupported field in the network configuration.
pub const UNSUPPORTED_FIELD: u32 = 2;
/// Container unknown or does not exist.
pub const UNKNOWN_CONTAINER: u32 = 3;
/// Invalid or missing environment variable.
pub const INVALID_ENVIRONMENT: u32 = 4;
/// I/O failure (e.g. the address store).
pub const IO_FAILURE: u32 = 5;
/// Failed to decode content (stdin is not the JSON it should be).
pub const DECODING_FAILURE: u32 = 6;
/// Invalid network configuration.
pub const INVALID_CONFIG: u32 = 7;
/// `CNI_NETNS` names the plugin's own network namespace (libcni's ErrInvalidNetNS).
pub const INVALID_NETNS: u32 = 8;
/// Try again later (e.g. the node agent has not written the node state yet).
pub const TRY_AGAIN_LATER: u32 = 11;
/// STATUS: the plugin cannot serve ADD requests.
pub const NOT_AVAILABLE: u32 = 50;
/// STATUS: cannot serve ADD, and existing containers are degraded.
pub const NOT_AVAILABLE_DEGRADED: u32 = 51;
/// weft: a kernel operation (netlink, sysctl) failed.
pub const KERNEL_FAILURE: u32 = 100;
/// weft: CHECK found the attachment damaged or incomplete.
pub const CHECK_FAILED: u32 = 101;
/// weft: no free address left in the node's pod CIDRs.
pub const POOL_EXHAUSTED: u32 = 102;

/// A CNI error, printed on stdout as `{cniVersion, code, msg, details}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}{}", if details.is_empty() { String::new() } else { format!(": {details}") })]
pub struct CniError {
    /// The CNI error code (0-99 reserved by the spec, 100+ weft's own).
    pub code: u32,
    /// A short message.
    pub msg: String,
    /// Longer details, possibly empty.
    pub details: String,
}

#[derive(Serialize)]
struct Wire<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'a str,
    code: u32,
    msg: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    details: &'a str,
}

impl CniError {
    /// An error with a code and a message.
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// Adds details.
    pub fn with_details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    /// The error object as JSON for a request in `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> String {
        serde_json::to_string(&Wire {
            cni_version,
            code: self.code,
            msg: &self.msg,
            details: &self.details,
        })
        .expect("error object serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_the_spec_fields() {
        let e = CniError::new(INVALID_CONFIG, "bad podCIDRs").with_details("x is not a CIDR");
        assert_eq!(
            e.to_json("1.1.0"),
            r#"{"cniVersion":"1.1.0","code":7,"msg":"bad podCIDRs","details":"x is not a CIDR"}"#
        );
        assert_eq!(
            CniError::new(11, "later").to_json("0.4.0"),
            r#"{"cniVersion":"0.4.0","code":11,"msg":"later"}"#
        );
    }
}

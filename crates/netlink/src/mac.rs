//! MAC address text form.

use std::fmt::Write;

/// `aa:bb:cc:dd:ee:ff`, lower case, as `ip link` prints it.
pub fn format_mac(mac: &[u8; 6]) -> String {
    let mut s = String::with_capacity(17);
    for (i, b) in mac.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Parses six colon-separated hex bytes (either case, one or two digits
/// each, as the CNI `mac` argument may be written); `None` otherwise.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mac = [0x02, 0xab, 0x00, 0x10, 0xff, 0x7e];
        assert_eq!(format_mac(&mac), "02:ab:00:10:ff:7e");
        assert_eq!(parse_mac("02:ab:00:10:ff:7e"), Some(mac));
        assert_eq!(parse_mac("02:AB:0:10:FF:7E"), Some(mac));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "02:ab:00:10:ff",
            "02:ab:00:10:ff:7e:01",
            "02:ab:00:10:ff:7g",
            "02-ab-00-10-ff-7e",
            "02:ab:00:10:ff:",
            "002:ab:00:10:ff:7e",
            "+2:ab:00:10:ff:7e",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad:?}");
        }
    }
}

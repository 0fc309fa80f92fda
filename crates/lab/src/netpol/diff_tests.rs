use super::*;

fn expect(from: &str, to: &str, address: &str, allowed: bool) -> Expectation {
    Expectation {
        from: from.into(),
        to: to.into(),
        address: address.parse().unwrap(),
        port: 80,
        protocol: Protocol::Tcp,
        allowed,
    }
}

fn record(from: &str, to: &str, address: &str, connected: bool) -> ProbeRecord {
    ProbeRecord {
        from: from.into(),
        to: to.into(),
        address: address.parse().unwrap(),
        port: 80,
        protocol: Protocol::Tcp,
        connected,
        unsupported: false,
    }
}

/// x/a and x/b, IPv4: a -> b denied by policy, every other cell allowed.
fn predicted() -> Vec<Expectation> {
    vec![
        expect("x/a", "x/a", "10.0.0.1", true),
        expect("x/a", "x/b", "10.0.0.2", false),
        expect("x/b", "x/a", "10.0.0.1", true),
        expect("x/b", "x/b", "10.0.0.2", true),
    ]
}

#[test]
fn agreement_is_clean() {
    let probed: Vec<_> = predicted()
        .iter()
        .rev()
        .map(|e| record(&e.from, &e.to, &e.address.to_string(), e.allowed))
        .collect();
    let m = compare(&probed, &predicted());
    assert!(m.is_clean(), "{m}");
    assert_eq!(m.compared, 4);
    assert!(m.self_cells.is_empty());
}

#[test]
fn mismatches_are_marked_and_self_cells_reported_apart() {
    let probed = vec![
        record("x/a", "x/a", "10.0.0.1", true),
        record("x/a", "x/b", "10.0.0.2", true),
        record("x/b", "x/a", "10.0.0.1", true),
        record("x/b", "x/b", "10.0.0.2", false),
    ];
    let m = compare(&probed, &predicted());
    assert!(!m.is_clean());
    assert_eq!(m.cells.len(), 1);
    assert_eq!(
        m.cells[0].to_string(),
        "x/a -> x/b IPv4 TCP/80: predicted denied, probed connected"
    );
    assert_eq!(m.self_cells.len(), 1);
    assert_eq!(m.self_cells[0].from, "x/b");
    assert_eq!(
        m.report,
        format!(
            "PREDICTED | PROBED  {}\n\nIPv4 TCP/80\n\
             FROM\\TO  x/a  x/b  |  x/a  x/b\n\
             x/a      .    X    |  .    .!\n\
             x/b      .    .    |  .    X*\n",
            diff_report::LEGEND
        )
    );
    let text = m.to_string();
    assert!(text.starts_with(
        "4 cells compared: 1 mismatches, 1 pod-to-itself mismatches, 0 unprobed, \
         0 unpredicted, 0 unsupported\n  mismatch: x/a -> x/b"
    ));
    assert!(text.contains("  pod-to-itself mismatch: x/b -> x/b"));
}

#[test]
fn self_mismatches_alone_leave_it_clean() {
    let mut probed: Vec<_> = predicted()
        .iter()
        .map(|e| record(&e.from, &e.to, &e.address.to_string(), e.allowed))
        .collect();
    probed[3].connected = false;
    let m = compare(&probed, &predicted());
    assert!(m.is_clean());
    assert_eq!(m.self_cells.len(), 1);
}

#[test]
fn missing_extra_and_unsupported_cells_are_counted() {
    let mut probed = vec![
        record("x/a", "x/a", "10.0.0.1", true),
        record("x/b", "x/a", "10.0.0.1", true),
        record("x/b", "x/b", "10.0.0.2", true),
        record("x/b", "x/b", "fd00::2", true),
    ];
    probed[1].unsupported = true;
    let m = compare(&probed, &predicted());
    assert_eq!(m.compared, 2);
    assert_eq!(m.unsupported, 1);
    assert_eq!(m.unprobed.len(), 1);
    assert_eq!(m.unprobed[0].to, "x/b");
    assert_eq!(m.unpredicted.len(), 1);
    assert!(!m.is_clean());
    assert!(m.report.contains("\nIPv6 TCP/80\n"));
    assert!(
        m.report.contains("x/b      .    .    |  ?    .\n"),
        "{}",
        m.report
    );
}

//! The kernel accepts the fast path's programs (the verifier's log is in
//! the error if not). Kernel tier: needs root.

use weft_bpf::FastPath;

#[test]
fn programs_pass_the_verifier() {
    if !weft_testkit::privileged("programs_pass_the_verifier") {
        return;
    }
    let fp = FastPath::new().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fp.flow_count().unwrap(), 0);
}

/// Versions before the IPv6 fast path attached their filter for IPv4 only
/// (`protocol ip`, one priority ahead). Attaching now puts weft's filter
/// for every frame in place and then removes that one: the kernel cannot
/// change a filter's protocol, and a node being upgraded must not be left
/// with both or neither.
#[test]
fn attaching_replaces_the_ipv4_only_filter_of_earlier_versions() {
    if !weft_testkit::privileged("attaching_replaces_the_ipv4_only_filter_of_earlier_versions") {
        return;
    }
    let ns = weft_testkit::NetNs::new("fpup").unwrap();
    let sh = |cmd: &str| {
        let out = ns.exec("sh", &["-c", cmd]).unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Where the old filter sat (a classic BPF stand-in: only its place
    // matters).
    sh(
        "ip link add d0 type veth peer name d1 && ip link set d0 up && tc qdisc add dev d0 clsact && \
        tc filter add dev d0 ingress prio 3072 protocol ip handle 1 bpf bytecode '1,6 0 0 0,'",
    );
    assert!(sh("tc filter show dev d0 ingress").contains("protocol ip pref 3072"));

    let fp = FastPath::new().unwrap();
    let netns = weft_netlink::Netns::open(ns.path()).unwrap();
    let mut h = weft_netlink::Handle::in_netns(&netns).unwrap();
    let index = h.link("d0").unwrap().unwrap().index;
    h.attach_bpf_ingress(index, fp.to_pod().raw_fd(), "weft_to_pod")
        .unwrap();
    let filters = sh("tc filter show dev d0 ingress");
    assert!(!filters.contains("pref 3072"), "{filters}");
    assert!(
        filters.contains("protocol all pref 3073") && filters.contains("weft_to_pod"),
        "{filters}"
    );
    let (_, name) = h.bpf_ingress_program(index).unwrap().unwrap();
    assert_eq!(name, "weft_to_pod");
    h.detach_bpf_ingress(index).unwrap();
    assert_eq!(sh("tc filter show dev d0 ingress").trim(), "");
}

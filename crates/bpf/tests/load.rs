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

//! `weft`: the CNI plugin. Runtimes call it with CNI environment variables and
//! the network configuration on stdin; it prints the result or error JSON.

fn main() {
    std::process::exit(weft_cni::plugin::run());
}

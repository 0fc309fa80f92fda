//! CNI for weft: the wire types runtimes speak ([`wire`]) and the plugin's
//! commands ([`plugin`]). No async runtime: the plugin starts, does a handful
//! of netlink round trips and one fsync'd write, and exits.

pub mod install;
pub mod plugin;
pub mod wire;

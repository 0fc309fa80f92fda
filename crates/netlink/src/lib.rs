//! Synchronous netlink and network-namespace operations for the short-lived
//! CNI plugin: no async runtime, one NETLINK_ROUTE socket per namespace, one
//! request in flight, replies read until the ACK or the end of the dump.
//! Changes that only need an ACK can also go out together in a [`Batch`]:
//! one datagram, one round trip ([`Handle::apply`]).
//!
//! Objects are created where they belong: a veth peer is created directly
//! inside the pod's namespace ([`Handle::create_veth`]), never moved. Work
//! inside another namespace goes through a [`Handle`] opened there
//! ([`Handle::in_netns`]) or, for /proc/sys, a short [`NetnsGuard`].
//!
//! For the node agent's overlay, the same handle creates VXLAN devices
//! without learning ([`Handle::create_vxlan`]), reads them back to decide
//! whether to adopt them ([`Handle::vxlan`]), and keeps their static FDB
//! entries ([`Handle::add_fdb`], [`Handle::fdb`]).
//!
//! Errors keep the errno ([`Error::is_exists`], [`Error::is_not_found`]) so
//! callers can make ADD and DEL idempotent, and always name the operation.

mod addr;
mod batch;
mod conntrack;
mod error;
mod fdb;
mod link;
mod mac;
mod neigh;
mod nftables;
mod ns;
mod route;
mod socket;
mod sysctl;
mod tc;
mod vxlan;

pub use batch::Batch;
pub use conntrack::{ConntrackSocket, CtEntry, CtTuple};
pub use error::{Error, Result};
pub use fdb::FdbEntry;
pub use link::{IFNAMSIZ_MAX, Link, VethEnd};
pub use mac::{format_mac, parse_mac};
pub use neigh::Neighbour;
pub use nftables::{
    NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6, NftBatch, NftCmpOp, NftData, NftElement, NftExpr,
    NftMetaKey, NftPayloadBase, NftSocket, NftVerdict,
};
pub use ns::{Netns, NetnsGuard, in_netns};
pub use route::{Family, RT_TABLE_MAIN, RTPROT_BOOT, Route, RouteScope};
pub use socket::Handle;
pub use sysctl::{sysctl_get, sysctl_get_in, sysctl_path, sysctl_set, sysctl_set_in};
pub use vxlan::{VxlanInfo, VxlanSpec};

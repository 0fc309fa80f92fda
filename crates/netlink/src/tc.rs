//! tc: the `clsact` qdisc and a direct-action BPF classifier on a link's
//! ingress — how the agent hangs its datapath programs on interfaces.
//!
//! Filters outlive the process that attached them (the kernel keeps the
//! program, and its maps, referenced), so an agent restart leaves the
//! datapath running; attaching again replaces the filter in one request.

use std::os::fd::RawFd;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::tc::{
    TcAttribute, TcBpfFlags, TcFilterBpfOption, TcHandle, TcMessage, TcOption,
};

use crate::error::Result;
use crate::socket::Handle;

/// The priority, handle and protocol of weft's filter on a link: one per
/// link, so attaching again replaces it. `ETH_P_ALL` (network byte order
/// in the low 16 bits of tcm_info, as the kernel compares it): the
/// classifier sees every frame, IPv4 and IPv6.
const FILTER: Filter = Filter {
    priority: 0xc01,
    protocol: 0x0003,
};
/// What weft attached before its programs handled IPv6: IPv4 only
/// (`ETH_P_IP`), one priority ahead. The kernel cannot change a filter's
/// protocol in place, so an attach adds the new filter, which takes over,
/// and then removes this one.
const LEGACY_FILTER: Filter = Filter {
    priority: 0xc00,
    protocol: 0x0800,
};
const HANDLE: u32 = 1;

#[derive(Clone, Copy)]
struct Filter {
    priority: u16,
    protocol: u16,
}

impl Handle {
    /// Adds the `clsact` qdisc to link `index` if it has none.
    pub fn ensure_clsact(&mut self, index: u32) -> Result<()> {
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.handle = TcHandle {
            major: 0xffff,
            minor: 0,
        };
        msg.header.parent = TcHandle::CLSACT;
        msg.attributes.push(TcAttribute::Kind("clsact".into()));
        match self.ack(
            RouteNetlinkMessage::NewQueueDiscipline(msg),
            NLM_F_CREATE,
            || format!("add clsact qdisc to link {index}"),
        ) {
            Err(e) if e.is_exists() => Ok(()),
            other => other,
        }
    }

    /// Attaches program `prog_fd` (named `name`) as the direct-action
    /// classifier on link `index`'s ingress, replacing weft's previous one.
    /// The link needs a `clsact` qdisc ([`Handle::ensure_clsact`]).
    pub fn attach_bpf_ingress(&mut self, index: u32, prog_fd: RawFd, name: &str) -> Result<()> {
        let mut msg = filter_message(index, FILTER);
        msg.attributes.push(TcAttribute::Kind("bpf".into()));
        msg.attributes.push(TcAttribute::Options(vec![
            TcOption::Bpf(TcFilterBpfOption::ProgFd(prog_fd as u32)),
            TcOption::Bpf(TcFilterBpfOption::ProgName(name.into())),
            TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::DirectAction)),
        ]));
        self.ack(
            RouteNetlinkMessage::NewTrafficFilter(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
            || format!("attach BPF program {name} to link {index} ingress"),
        )?;
        self.delete_filter(index, LEGACY_FILTER)
    }

    /// The ID and name of the BPF program weft's classifier on link
    /// `index`'s ingress runs, if there is one (an agent restarting over a
    /// running datapath takes over its maps through it).
    pub fn bpf_ingress_program(&mut self, index: u32) -> Result<Option<(u32, String)>> {
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.parent = TcHandle {
            major: 0xffff,
            minor: TcHandle::MIN_INGRESS,
        };
        let found = self.dump(
            RouteNetlinkMessage::GetTrafficFilter(msg),
            || format!("list filters of link {index} ingress"),
            |m| {
                let RouteNetlinkMessage::NewTrafficFilter(m) = m else {
                    return None;
                };
                let priority = m.header.info >> 16;
                if m.header.index != index as i32
                    || ![FILTER, LEGACY_FILTER]
                        .iter()
                        .any(|f| u32::from(f.priority) == priority)
                {
                    return None;
                }
                let mut id = None;
                let mut name = String::new();
                for attr in &m.attributes {
                    let TcAttribute::Options(options) = attr else {
                        continue;
                    };
                    for o in options {
                        match o {
                            TcOption::Bpf(TcFilterBpfOption::ProgId(i)) => id = Some(*i),
                            TcOption::Bpf(TcFilterBpfOption::ProgName(n)) => name = n.clone(),
                            _ => {}
                        }
                    }
                }
                id.map(|i| (i, name))
            },
        );
        match found {
            Ok(v) => Ok(v.into_iter().next()),
            // No clsact qdisc: no filter either.
            Err(e) if e.is_not_found() || e.errno() == Some(libc::EINVAL) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes weft's classifier from link `index`'s ingress; absent is fine.
    pub fn detach_bpf_ingress(&mut self, index: u32) -> Result<()> {
        self.delete_filter(index, FILTER)?;
        self.delete_filter(index, LEGACY_FILTER)
    }

    fn delete_filter(&mut self, index: u32, filter: Filter) -> Result<()> {
        let msg = filter_message(index, filter);
        match self.ack(RouteNetlinkMessage::DelTrafficFilter(msg), 0, || {
            format!("detach BPF program from link {index} ingress")
        }) {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }
}

fn filter_message(index: u32, filter: Filter) -> TcMessage {
    let mut msg = TcMessage::with_index(index as i32);
    msg.header.parent = TcHandle {
        major: 0xffff,
        minor: TcHandle::MIN_INGRESS,
    };
    msg.header.handle = TcHandle::from(HANDLE);
    msg.header.info = (u32::from(filter.priority) << 16) | u32::from(filter.protocol.to_be());
    msg
}

//! The lab: a multi-node weft cluster in network namespaces on one machine

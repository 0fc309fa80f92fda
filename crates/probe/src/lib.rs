//! Connectivity probes and the pods' echo server: real TCP and UDP connections between network namespaces

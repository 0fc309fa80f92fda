//! The command lines of etcd, kube-apiserver and kube-controller-manager:
//! pure functions of the lab's paths and address families, so that what
//! the control plane runs with is reviewed (and tested) in one place.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::certs::{Pki, San};
use crate::layout::ControlPlanePaths;
use crate::services::alloc::{SERVICE_CIDR_V4, SERVICE_CIDR_V6};
use crate::underlay::{self, POD_PREFIX_V4, POD_PREFIX_V6};

/// The API server's port.
pub const API_PORT: u16 = 6443;

/// etcd's client port.
pub const ETCD_CLIENT_PORT: u16 = 2379;

/// etcd's client URL, on the loopback of the control plane's namespace:
/// only the API server talks to it.
pub const ETCD_CLIENT_URL: &str = "http://127.0.0.1:2379";

/// kube-controller-manager's HTTPS port (`/healthz`; its default, set
/// explicitly because the lab's readiness check looks for it).
pub const CONTROLLER_MANAGER_PORT: u16 = 10257;

/// etcd's peer URL (a one-member cluster; set so etcd binds no other
/// address).
const ETCD_PEER_URL: &str = "http://127.0.0.1:2380";

/// The ServiceAccount token issuer (what kubeadm uses).
pub const SA_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The controllers a lab needs, by their v1.37 names
/// (`kube-controller-manager --help`, `--controllers`): node IPAM (pod
/// CIDRs), EndpointSlices, ServiceAccounts and their tokens, namespace
/// deletion and garbage collection. Not node-lifecycle: the lab's kubelet
/// sends no heartbeats, and its pods must not be evicted. Not the
/// DaemonSet controller: nobody runs DaemonSet pods in the lab.
pub const CONTROLLERS: [&str; 6] = [
    "node-ipam-controller",
    "endpointslice-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "namespace-controller",
    "garbage-collector-controller",
];

/// The Service CIDRs of a lab with `families`, primary family first.
pub fn service_cidrs(families: &[u8]) -> Vec<&'static str> {
    families
        .iter()
        .filter_map(|f| match f {
            4 => Some(SERVICE_CIDR_V4),
            6 => Some(SERVICE_CIDR_V6),
            _ => None,
        })
        .collect()
}

/// The first address of each Service CIDR: the `kubernetes` Service's
/// ClusterIP, which in-cluster clients reach the API server at.
pub fn first_service_ips(families: &[u8]) -> Vec<IpAddr> {
    service_cidrs(families)
        .into_iter()
        .map(|c| {
            let net: IpNet = c.parse().expect("the lab's Service CIDRs parse");
            match net.network() {
                IpAddr::V4(a) => IpAddr::V4((u32::from(a) + 1).into()),
                IpAddr::V6(a) => IpAddr::V6((u128::from(a) + 1).into()),
            }
        })
        .collect()
}

/// The API server's address in `family`'s primary family: the
/// `kubernetes` Service's endpoint must be of the Service CIDR's family.
pub fn advertise_address(families: &[u8]) -> IpAddr {
    let want = families.first().copied().unwrap_or(4);
    let addresses = underlay::control_plane_addresses();
    addresses
        .iter()
        .map(IpNet::addr)
        .find(|a| crate::state::family_of(*a) == want)
        .unwrap_or_else(|| addresses[0].addr())
}

/// The API server certificate's names: every address it is reached at
/// (underlay, loopback, `kubernetes` Service) and the Service's DNS names.
pub fn apiserver_sans(families: &[u8]) -> Vec<San> {
    let mut sans: Vec<San> = underlay::control_plane_addresses()
        .iter()
        .map(|a| San::Ip(a.addr()))
        .collect();
    sans.push(San::Ip(IpAddr::from([127, 0, 0, 1])));
    sans.push(San::Ip(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)));
    sans.extend(first_service_ips(families).into_iter().map(San::Ip));
    for name in [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ] {
        sans.push(San::Dns(name.into()));
    }
    sans
}

fn path(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

/// etcd: one member, data under the control plane's directory, clients
/// only on loopback.
pub fn etcd(paths: &ControlPlanePaths) -> Vec<String> {
    vec![
        "--name=weft-lab".into(),
        format!("--data-dir={}", path(&paths.etcd_data)),
        format!("--listen-client-urls={ETCD_CLIENT_URL}"),
        format!("--advertise-client-urls={ETCD_CLIENT_URL}"),
        format!("--listen-peer-urls={ETCD_PEER_URL}"),
        format!("--initial-advertise-peer-urls={ETCD_PEER_URL}"),
        format!("--initial-cluster=weft-lab={ETCD_PEER_URL}"),
        "--initial-cluster-state=new".into(),
        "--log-level=warn".into(),
    ]
}

/// kube-apiserver: TLS with the lab's CA, client certificates and
/// ServiceAccount tokens, Node and RBAC authorization.
pub fn apiserver(paths: &ControlPlanePaths, pki: &Pki, families: &[u8]) -> Vec<String> {
    let serving = pki.apiserver();
    vec![
        format!("--advertise-address={}", advertise_address(families)),
        // Every address of the control plane's namespace (both families):
        // nothing outside the lab's namespaces can reach them.
        "--bind-address=::".into(),
        format!("--secure-port={API_PORT}"),
        format!("--tls-cert-file={}", path(&serving.cert)),
        format!("--tls-private-key-file={}", path(&serving.key)),
        format!("--client-ca-file={}", path(&pki.ca().cert)),
        format!("--etcd-servers={ETCD_CLIENT_URL}"),
        format!(
            "--service-cluster-ip-range={}",
            service_cidrs(families).join(",")
        ),
        format!(
            "--service-account-key-file={}",
            path(&pki.service_account_pub())
        ),
        format!(
            "--service-account-signing-key-file={}",
            path(&pki.service_account_key())
        ),
        format!("--service-account-issuer={SA_ISSUER}"),
        "--authorization-mode=Node,RBAC".into(),
        // In addition to the defaults (NamespaceLifecycle, LimitRanger,
        // ServiceAccount, Priority, PodSecurity, ...), as kubeadm does.
        "--enable-admission-plugins=NodeRestriction".into(),
        "--allow-privileged=true".into(),
        "--profiling=false".into(),
        // Unused while the serving pair is given; keeps any default
        // writes inside the lab's directory instead of /var/run.
        format!("--cert-dir={}", path(&paths.dir.join("apiserver-certs"))),
    ]
}

/// kube-controller-manager: node IPAM over the lab's cluster CIDRs with
/// the file mode's per-node prefix lengths, and the other controllers of
/// [`CONTROLLERS`], each with its own ServiceAccount's credentials.
pub fn controller_manager(paths: &ControlPlanePaths, pki: &Pki, families: &[u8]) -> Vec<String> {
    let kubeconfig = path(&paths.controller_manager_kubeconfig);
    let cluster: Vec<String> = underlay::cluster_cidrs(families)
        .iter()
        .map(IpNet::to_string)
        .collect();
    let mut args = vec![
        format!("--kubeconfig={kubeconfig}"),
        // Its own HTTPS endpoint serves /healthz on loopback only; no
        // --authentication-kubeconfig: delegated authentication would
        // want the API server's front-proxy CA, which a lab has no use
        // for.
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={CONTROLLER_MANAGER_PORT}"),
        format!(
            "--cert-dir={}",
            path(&paths.dir.join("controller-manager-certs"))
        ),
        // One instance: a lease would only delay a restart.
        "--leader-elect=false".into(),
        format!("--controllers={}", CONTROLLERS.join(",")),
        "--allocate-node-cidrs=true".into(),
        format!("--cluster-cidr={}", cluster.join(",")),
        format!(
            "--service-cluster-ip-range={}",
            service_cidrs(families).join(",")
        ),
        format!(
            "--service-account-private-key-file={}",
            path(&pki.service_account_key())
        ),
        format!("--root-ca-file={}", path(&pki.ca().cert)),
        "--use-service-account-credentials=true".into(),
        "--profiling=false".into(),
    ];
    if families.contains(&4) {
        args.push(format!("--node-cidr-mask-size-ipv4={POD_PREFIX_V4}"));
    }
    if families.contains(&6) {
        args.push(format!("--node-cidr-mask-size-ipv6={POD_PREFIX_V6}"));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Layout;

    fn fixture() -> (ControlPlanePaths, Pki) {
        let paths = ControlPlanePaths::new(&Layout::new("/run/weft/lab"));
        let pki = Pki::new(paths.pki.clone());
        (paths, pki)
    }

    fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
        let prefix = format!("--{name}=");
        args.iter().find_map(|a| a.strip_prefix(prefix.as_str()))
    }

    #[test]
    fn dual_stack_is_dual_stack_everywhere() {
        let (paths, pki) = fixture();
        let api = apiserver(&paths, &pki, &[4, 6]);
        assert_eq!(
            flag(&api, "service-cluster-ip-range"),
            Some("10.96.0.0/16,fd00:10:96::/108")
        );
        assert_eq!(flag(&api, "advertise-address"), Some("172.30.0.5"));
        let kcm = controller_manager(&paths, &pki, &[4, 6]);
        assert_eq!(
            flag(&kcm, "cluster-cidr"),
            Some("10.244.0.0/16,fd00:10:244::/56")
        );
        assert_eq!(flag(&kcm, "node-cidr-mask-size-ipv4"), Some("24"));
        assert_eq!(flag(&kcm, "node-cidr-mask-size-ipv6"), Some("64"));
        assert_eq!(
            flag(&kcm, "service-cluster-ip-range"),
            flag(&api, "service-cluster-ip-range")
        );
    }

    #[test]
    fn single_stack_v6_advertises_v6() {
        let (paths, pki) = fixture();
        let api = apiserver(&paths, &pki, &[6]);
        assert_eq!(flag(&api, "advertise-address"), Some("fd00:30::5"));
        assert_eq!(
            flag(&api, "service-cluster-ip-range"),
            Some("fd00:10:96::/108")
        );
        let kcm = controller_manager(&paths, &pki, &[6]);
        assert_eq!(flag(&kcm, "node-cidr-mask-size-ipv4"), None);
        assert_eq!(flag(&kcm, "cluster-cidr"), Some("fd00:10:244::/56"));
    }

    #[test]
    fn serving_certificate_names_the_kubernetes_service() {
        let sans = apiserver_sans(&[4, 6]);
        for ip in [
            "172.30.0.5",
            "fd00:30::5",
            "127.0.0.1",
            "10.96.0.1",
            "fd00:10:96::1",
        ] {
            assert!(sans.contains(&San::Ip(ip.parse().unwrap())), "{ip}");
        }
        assert!(sans.contains(&San::Dns("kubernetes.default.svc.cluster.local".into())));
    }

    #[test]
    fn the_ports_checked_for_readiness_are_the_ones_served() {
        let (paths, pki) = fixture();
        assert!(ETCD_CLIENT_URL.ends_with(&format!(":{ETCD_CLIENT_PORT}")));
        let kcm = controller_manager(&paths, &pki, &[4]);
        let port = CONTROLLER_MANAGER_PORT.to_string();
        assert_eq!(flag(&kcm, "secure-port"), Some(port.as_str()));
    }

    #[test]
    fn etcd_keeps_to_loopback_and_the_lab_dir() {
        let (paths, _) = fixture();
        let args = etcd(&paths);
        assert_eq!(
            flag(&args, "data-dir"),
            Some("/run/weft/lab/control-plane/etcd")
        );
        assert!(args.iter().all(|a| !a.contains("0.0.0.0")));
    }
}

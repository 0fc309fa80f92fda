use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    lab: LabArgs,
}

#[test]
fn lab_commands_parse() {
    let cli = Cli::try_parse_from([
        "lab",
        "--state-dir",
        "/tmp/l",
        "up",
        "--nodes",
        "2",
        "--dual-stack",
        "--model",
        "netpol",
        "--no-agent",
        "--segments",
        "2",
    ])
    .unwrap();
    assert_eq!(cli.lab.state_dir.as_deref(), Some(Path::new("/tmp/l")));
    let LabCmd::Up(up) = cli.lab.cmd else {
        panic!()
    };
    assert!(up.dual_stack && up.no_agent && up.nodes == 2 && up.model == ModelKind::Netpol);
    assert_eq!(up.segments, 2);
    let cli = Cli::try_parse_from(["lab", "agent", "restart", "node1", "--kill"]).unwrap();
    let LabCmd::Agent(AgentCmd::Restart { node, kill, .. }) = cli.lab.cmd else {
        panic!()
    };
    assert!(kill && node == "node1");
    assert!(Cli::try_parse_from(["lab", "up", "--ipv6", "--dual-stack"]).is_err());
    assert!(Cli::try_parse_from(["lab", "up", "--backend", "geneve"]).is_err());
    let cli = Cli::try_parse_from(["lab", "exec", "x/a", "--", "ip", "-br", "addr"]).unwrap();
    let LabCmd::Exec { command, .. } = cli.lab.cmd else {
        panic!()
    };
    assert_eq!(command, ["ip", "-br", "addr"]);
    let cli = Cli::try_parse_from([
        "lab",
        "probe",
        "--from",
        "x/a",
        "--from",
        "x/b",
        "--protocol",
        "udp",
        "--family",
        "6",
    ])
    .unwrap();
    let LabCmd::Probe(p) = cli.lab.cmd else {
        panic!()
    };
    assert_eq!(p.from.len(), 2);
    assert_eq!(p.protocol, Protocol::Udp);
    assert!(Cli::try_parse_from(["lab", "probe", "--family", "7"]).is_err());
}

#[test]
fn datastore_and_kubectl_parse() {
    let cli = Cli::try_parse_from(["lab", "up"]).unwrap();
    let LabCmd::Up(up) = cli.lab.cmd else {
        panic!()
    };
    assert_eq!(up.datastore, Datastore::File);
    let cli =
        Cli::try_parse_from(["lab", "up", "--datastore", "kube", "--kube-bin-dir", "/k"]).unwrap();
    let LabCmd::Up(up) = cli.lab.cmd else {
        panic!()
    };
    assert_eq!(up.datastore, Datastore::Kube);
    assert_eq!(up.kube_bin_dir.as_deref(), Some(Path::new("/k")));
    assert!(Cli::try_parse_from(["lab", "up", "--datastore", "etcd"]).is_err());
    let cli = Cli::try_parse_from(["lab", "kubectl", "--", "get", "nodes", "-o", "wide"]).unwrap();
    let LabCmd::Kubectl { args } = cli.lab.cmd else {
        panic!()
    };
    assert_eq!(args, ["get", "nodes", "-o", "wide"]);
    assert!(Cli::try_parse_from(["lab", "kubectl"]).is_err());
}

#[test]
fn control_plane_restart_parses() {
    let cli =
        Cli::try_parse_from(["lab", "control-plane", "restart", "apiserver", "--kill"]).unwrap();
    let LabCmd::ControlPlane(ControlPlaneCmd::Restart {
        component,
        kill,
        down_ms,
    }) = cli.lab.cmd
    else {
        panic!()
    };
    assert!(component == Component::ApiServer && kill && down_ms == 0);
    let args = [
        "lab",
        "control-plane",
        "restart",
        "etcd",
        "--down-ms",
        "8000",
    ];
    let LabCmd::ControlPlane(ControlPlaneCmd::Restart {
        component,
        kill,
        down_ms,
    }) = Cli::try_parse_from(args).unwrap().lab.cmd
    else {
        panic!()
    };
    assert!(component == Component::Etcd && !kill && down_ms == 8000);
    let args = ["lab", "control-plane", "restart", "controller-manager"];
    assert!(Cli::try_parse_from(args).is_ok());
    for bad in ["kube-apiserver", "scheduler"] {
        let args = ["lab", "control-plane", "restart", bad];
        assert!(Cli::try_parse_from(args).is_err(), "{bad}");
    }
    assert!(Cli::try_parse_from(["lab", "control-plane", "restart"]).is_err());
}

#[test]
fn pod_keys_need_a_namespace() {
    assert_eq!(split_pod("x/a").unwrap(), ("x".into(), "a".into()));
    for bad in ["a", "/a", "x/", "x/a/b"] {
        assert!(split_pod(bad).is_err(), "{bad}");
    }
}

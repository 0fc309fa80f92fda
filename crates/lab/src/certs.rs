//! The control plane's PKI: a CA, the API server's serving certificate,
//! client certificates for the admin and kube-controller-manager, and the
//! ServiceAccount token signing key pair.
//!
//! Made with the `openssl` command (one config file per certificate, no
//! dependence on the system's openssl.cnf), so every step can be repeated
//! by hand and inspected with `openssl x509 -text`. Keys are ECDSA P-256:
//! quick to generate on every `lab up`, and accepted by every component
//! (TLS, client certificates, ES256 ServiceAccount tokens).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{LabError, Result};
use crate::netns;

/// How long the lab's CA is valid, in days.
const CA_DAYS: u32 = 3650;

/// How long the lab's leaf certificates are valid, in days (a lab lives
/// for hours; a year keeps a forgotten one usable).
const LEAF_DAYS: u32 = 365;

/// A subject alternative name of a serving certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    /// An IP address.
    Ip(IpAddr),
    /// A DNS name.
    Dns(String),
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Usage {
    /// The signing CA.
    Ca,
    /// A TLS server.
    Server,
    /// A TLS client.
    Client,
}

/// What one certificate says: its subject and what it is for.
#[derive(Debug, Clone, Copy)]
struct Spec<'a> {
    /// The subject's common name (a client's user name).
    cn: &'a str,
    /// The subject's organization (a client's group), if any.
    org: Option<&'a str>,
    usage: Usage,
    /// Alternative names (serving certificates).
    sans: &'a [San],
}

/// The paths of the PKI's files inside one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pki {
    /// The directory (mode 0700).
    pub dir: PathBuf,
}

/// One key pair and certificate of the PKI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    /// The PEM certificate.
    pub cert: PathBuf,
    /// The PEM private key (PKCS#8).
    pub key: PathBuf,
}

impl Pki {
    /// The PKI kept in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Pki {
        Pki { dir: dir.into() }
    }

    fn pair(&self, name: &str) -> CertPair {
        CertPair {
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
        }
    }

    /// The CA every component trusts and that signs every certificate.
    pub fn ca(&self) -> CertPair {
        self.pair("ca")
    }

    /// The API server's serving certificate.
    pub fn apiserver(&self) -> CertPair {
        self.pair("apiserver")
    }

    /// The cluster admin's client certificate (`O=system:masters`).
    pub fn admin(&self) -> CertPair {
        self.pair("admin")
    }

    /// kube-controller-manager's client certificate
    /// (`CN=system:kube-controller-manager`).
    pub fn controller_manager(&self) -> CertPair {
        self.pair("kube-controller-manager")
    }

    /// The ServiceAccount token signing key (private).
    pub fn service_account_key(&self) -> PathBuf {
        self.dir.join("sa.key")
    }

    /// The ServiceAccount token verification key (public).
    pub fn service_account_pub(&self) -> PathBuf {
        self.dir.join("sa.pub")
    }

    /// Creates the directory (0700) and every key and certificate in it;
    /// `apiserver_sans` are the API server certificate's alternative names.
    pub fn generate(&self, apiserver_sans: &[San]) -> Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(LabError::io(format!("create {}", self.dir.display())))?;
        // An existing directory keeps its mode; the CA key must not be
        // readable by others.
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(LabError::io(format!("restrict {}", self.dir.display())))?;

        let ca = self.ca();
        new_key(&ca.key)?;
        let ca_spec = Spec {
            cn: "weft-lab-ca",
            org: None,
            usage: Usage::Ca,
            sans: &[],
        };
        let config = self.write_config("ca", ca_spec)?;
        openssl(
            &[
                "req",
                "-x509",
                "-new",
                "-sha256",
                "-key",
                &s(&ca.key),
                "-config",
                &s(&config),
                "-extensions",
                "ext",
                "-days",
                &CA_DAYS.to_string(),
                "-out",
                &s(&ca.cert),
            ],
            "create the lab's CA",
        )?;

        let leaves = [
            (
                "apiserver",
                "kube-apiserver",
                None,
                Usage::Server,
                apiserver_sans,
            ),
            (
                "admin",
                "weft-lab-admin",
                Some("system:masters"),
                Usage::Client,
                &[][..],
            ),
            (
                "kube-controller-manager",
                "system:kube-controller-manager",
                None,
                Usage::Client,
                &[][..],
            ),
        ];
        for (name, cn, org, usage, sans) in leaves {
            self.leaf(
                name,
                Spec {
                    cn,
                    org,
                    usage,
                    sans,
                },
            )?;
        }

        new_key(&self.service_account_key())?;
        openssl(
            &[
                "pkey",
                "-in",
                &s(&self.service_account_key()),
                "-pubout",
                "-out",
                &s(&self.service_account_pub()),
            ],
            "derive the ServiceAccount verification key",
        )?;
        Ok(())
    }

    /// A key and a certificate signed by the CA.
    fn leaf(&self, name: &str, spec: Spec<'_>) -> Result<()> {
        let pair = self.pair(name);
        let ca = self.ca();
        new_key(&pair.key)?;
        let config = self.write_config(name, spec)?;
        let csr = self.dir.join(format!("{name}.csr"));
        let what = format!("issue the {name} certificate");
        openssl(
            &[
                "req",
                "-new",
                "-sha256",
                "-key",
                &s(&pair.key),
                "-config",
                &s(&config),
                "-out",
                &s(&csr),
            ],
            &what,
        )?;
        openssl(
            &[
                "x509",
                "-req",
                "-sha256",
                "-in",
                &s(&csr),
                "-CA",
                &s(&ca.cert),
                "-CAkey",
                &s(&ca.key),
                "-CAcreateserial",
                "-CAserial",
                &s(&self.dir.join("ca.srl")),
                "-days",
                &LEAF_DAYS.to_string(),
                "-extfile",
                &s(&config),
                "-extensions",
                "ext",
                "-out",
                &s(&pair.cert),
            ],
            &what,
        )?;
        std::fs::remove_file(&csr).map_err(LabError::io(format!("remove {}", csr.display())))
    }

    fn write_config(&self, name: &str, spec: Spec<'_>) -> Result<PathBuf> {
        let path = self.dir.join(format!("{name}.cnf"));
        std::fs::write(&path, openssl_config(spec))
            .map_err(LabError::io(format!("write {}", path.display())))?;
        Ok(path)
    }
}

/// A new ECDSA P-256 private key at `path`, readable by its owner only.
fn new_key(path: &Path) -> Result<()> {
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &s(path),
        ],
        &format!("generate the key {}", path.display()),
    )?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(LabError::io(format!("restrict {}", path.display())))
}

/// Runs `openssl args`; `what` names the step in errors.
fn openssl(args: &[&str], what: &str) -> Result<()> {
    netns::run(
        Command::new("openssl").args(args),
        &format!("{what} (openssl)"),
    )
    .map(drop)
}

fn s(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The openssl config of one certificate: its subject (`[dn]`, used by
/// `req`) and its extensions (`[ext]`, used by `req -x509` and `x509
/// -extfile`), self-contained so the system's openssl.cnf plays no part.
fn openssl_config(spec: Spec<'_>) -> String {
    let Spec {
        cn,
        org,
        usage,
        sans,
    } = spec;
    let mut c = String::from("[req]\ndistinguished_name = dn\nprompt = no\n\n[dn]\n");
    if let Some(o) = org {
        let _ = writeln!(c, "O = {o}");
    }
    let _ = writeln!(c, "CN = {cn}\n\n[ext]");
    match usage {
        Usage::Ca => {
            c.push_str("basicConstraints = critical, CA:TRUE\n");
            c.push_str("keyUsage = critical, digitalSignature, keyCertSign, cRLSign\n");
            c.push_str("subjectKeyIdentifier = hash\n");
        }
        Usage::Server | Usage::Client => {
            c.push_str("basicConstraints = critical, CA:FALSE\n");
            c.push_str("keyUsage = critical, digitalSignature, keyEncipherment\n");
            let eku = if usage == Usage::Server {
                "serverAuth"
            } else {
                "clientAuth"
            };
            let _ = writeln!(c, "extendedKeyUsage = {eku}");
            c.push_str("authorityKeyIdentifier = keyid\n");
        }
    }
    if !sans.is_empty() {
        let list: Vec<String> = sans
            .iter()
            .map(|san| match san {
                San::Ip(ip) => format!("IP:{ip}"),
                San::Dns(name) => format!("DNS:{name}"),
            })
            .collect();
        let _ = writeln!(c, "subjectAltName = {}", list.join(", "));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_config_names_every_san() {
        let sans = [
            San::Ip("172.30.0.5".parse().unwrap()),
            San::Ip("fd00:30::5".parse().unwrap()),
            San::Dns("kubernetes.default".into()),
        ];
        let c = openssl_config(Spec {
            cn: "kube-apiserver",
            org: None,
            usage: Usage::Server,
            sans: &sans,
        });
        assert!(c.contains("[dn]\nCN = kube-apiserver\n"), "{c}");
        assert!(c.contains("extendedKeyUsage = serverAuth\n"), "{c}");
        assert!(
            c.contains("subjectAltName = IP:172.30.0.5, IP:fd00:30::5, DNS:kubernetes.default\n"),
            "{c}"
        );
        assert!(c.contains("CA:FALSE"), "{c}");
    }

    #[test]
    fn client_config_carries_the_group_and_no_sans() {
        let c = openssl_config(Spec {
            cn: "admin",
            org: Some("system:masters"),
            usage: Usage::Client,
            sans: &[],
        });
        assert!(c.contains("O = system:masters\nCN = admin\n"), "{c}");
        assert!(c.contains("extendedKeyUsage = clientAuth\n"), "{c}");
        assert!(!c.contains("subjectAltName"), "{c}");
    }

    #[test]
    fn ca_config_may_sign() {
        let c = openssl_config(Spec {
            cn: "ca",
            org: None,
            usage: Usage::Ca,
            sans: &[],
        });
        assert!(c.contains("CA:TRUE"), "{c}");
        assert!(c.contains("keyCertSign"), "{c}");
    }

    /// The whole PKI with the real openssl: the chain verifies and the
    /// serving certificate carries its names (no root needed).
    #[test]
    fn generated_pki_verifies() {
        if Command::new("openssl").arg("version").output().is_err() {
            let why = "generated_pki_verifies: no openssl on PATH (scripts/install-deps)";
            if std::env::var_os(weft_testkit::REQUIRE_PRIVILEGED_ENV).is_some() {
                panic!("{why}");
            }
            eprintln!("\n*** SKIPPED {why} ***\n");
            return;
        }
        let tmp = weft_testkit::TempDir::new("lab-pki").unwrap();
        let pki = Pki::new(tmp.path().join("pki"));
        pki.generate(&[
            San::Ip("172.30.0.5".parse().unwrap()),
            San::Dns("kubernetes".into()),
        ])
        .unwrap();
        for pair in [pki.apiserver(), pki.admin(), pki.controller_manager()] {
            let out = Command::new("openssl")
                .args(["verify", "-CAfile", &s(&pki.ca().cert), &s(&pair.cert)])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
        let text = Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in", &s(&pki.apiserver().cert)])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains("IP Address:172.30.0.5"), "{text}");
        assert!(text.contains("DNS:kubernetes"), "{text}");
        let subject = Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-in", &s(&pki.admin().cert)])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&subject.stdout).contains("O = system:masters"));
        let mode = std::fs::metadata(pki.ca().key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the CA key is private");
        assert!(pki.service_account_pub().is_file());
    }
}

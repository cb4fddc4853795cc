//! A throwaway PKI for TLS tests and `make certs`: a peer CA that signs node certificates
//! (SAN DNS `node-<ID>`, `localhost`, IP 127.0.0.1; usable as server and client certificate),
//! a client CA that signs client certificates, and a rogue CA nobody trusts.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

pub struct Pki {
    pub dir: PathBuf,
    peer_ca: CertifiedIssuer<'static, KeyPair>,
    client_ca: CertifiedIssuer<'static, KeyPair>,
    rogue_ca: CertifiedIssuer<'static, KeyPair>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ca {
    Peer,
    Client,
    Rogue,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("self-sign CA")
}

impl Pki {
    /// Creates the CAs in `dir` (`peer-ca.pem`, `client-ca.pem`, `rogue-ca.pem`).
    pub fn new(dir: &Path) -> Pki {
        fs::create_dir_all(dir).expect("create cert dir");
        let pki = Pki {
            dir: dir.to_path_buf(),
            peer_ca: ca("keyval peer CA"),
            client_ca: ca("keyval client CA"),
            rogue_ca: ca("rogue CA"),
        };
        for (name, c) in [
            ("peer-ca", &pki.peer_ca),
            ("client-ca", &pki.client_ca),
            ("rogue-ca", &pki.rogue_ca),
        ] {
            fs::write(dir.join(format!("{name}.pem")), c.pem()).expect("write CA");
        }
        pki
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Issues `<stem>.pem` and `<stem>.key` from `ca` with these DNS names (and 127.0.0.1);
    /// returns the certificate's DER.
    pub fn issue(&self, ca: Ca, stem: &str, dns: &[&str]) -> Vec<u8> {
        let mut params =
            CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        params.distinguished_name.push(DnType::CommonName, stem);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("key");
        let issuer = match ca {
            Ca::Peer => &self.peer_ca,
            Ca::Client => &self.client_ca,
            Ca::Rogue => &self.rogue_ca,
        };
        let cert = params.signed_by(&key, issuer).expect("sign");
        // Key first, then certificate, each replaced by rename: a reload never sees a new
        // certificate beside an old key for longer than the two renames.
        write_atomic(&self.dir.join(format!("{stem}.key")), &key.serialize_pem());
        write_atomic(&self.dir.join(format!("{stem}.pem")), &cert.pem());
        cert.der().to_vec()
    }

    /// `node-<id>.pem/.key` from the peer CA.
    pub fn node(&self, id: u64) -> Vec<u8> {
        let name = format!("node-{id}");
        self.issue(Ca::Peer, &name, &[&name, "localhost"])
    }

    /// `keyval` flags for node `id` (peer TLS only; clients then use the node certificate's
    /// CA, the peer CA).
    pub fn node_args(&self, id: u64) -> Vec<String> {
        let p = |f: String| self.dir.join(f).to_string_lossy().to_string();
        vec![
            "--peer-cert-file".into(),
            p(format!("node-{id}.pem")),
            "--peer-key-file".into(),
            p(format!("node-{id}.key")),
            "--peer-trusted-ca-file".into(),
            p("peer-ca.pem".into()),
        ]
    }

    /// `kvctl` flags that trust the nodes.
    pub fn kvctl_args(&self) -> Vec<String> {
        vec![
            "--cacert".into(),
            self.path("peer-ca.pem").to_string_lossy().to_string(),
        ]
    }
}

fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).expect("write");
    fs::rename(&tmp, path).expect("rename");
}

//! `make certs`: a throwaway CA and node certificates for the local cluster, in `data/certs`
//! (or the directory given): `peer-ca.pem`, `node-<ID>.pem/.key` (SAN `node-<ID>`, localhost,
//! 127.0.0.1), and `client-ca.pem` + `client.pem/.key` for client certificate authentication.
//! For tests and local use only: the CA keys are not even written to disk.

#[path = "../tests/common/pki.rs"]
mod pki;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "data/certs".into()));
    let ids: Vec<u64> = args.filter_map(|a| a.parse().ok()).collect();
    let ids = if ids.is_empty() { vec![1, 2, 3] } else { ids };
    let pki = pki::Pki::new(&dir);
    for &id in &ids {
        pki.node(id);
    }
    pki.issue(pki::Ca::Client, "client", &["kvctl-client"]);
    let _ = std::fs::remove_file(dir.join("rogue-ca.pem"));
    println!(
        "wrote a throwaway peer CA, client CA and certificates for nodes {ids:?} to {}",
        dir.display()
    );
}

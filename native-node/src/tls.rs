//! Transport security: mutual TLS between nodes, TLS (optionally with client certificates) for
//! clients, on the node's one port.
//!
//! One port serves both audiences, told apart by the TLS server name (SNI) a connection asks
//! for: a peer dials node N with the name `node-N`, and gets the peer configuration (the peer
//! certificate, and a client certificate from the peer CA is *required*); any other name gets
//! the client configuration (the client-facing certificate; a client certificate from the
//! client CA is required only with `--client-cert-auth`). A connection that completed the peer
//! handshake is a [`Access::Peer`]: only those reach `/raft` and `/events`. The transport then
//! checks that the peer certificate names (SAN DNS `node-<ID>`) the node id its `Hello` claims
//! ([`Access::authorizes_node`]), so a certificate from the right CA cannot speak for another
//! node (Consul's "verify the role name, not only the CA").
//!
//! Certificates and keys are PEM files read with `rustls-pki-types`; they are re-read when any
//! file's modification time changes or on SIGHUP ([`TlsStore::watch`]). A reload that fails
//! keeps the previous configuration and logs why, so a half-written file never takes a node off
//! the network. Only the `ring` provider is used (no C build).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::RootCertStore;
use rustls::client::ClientConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use tokio::sync::watch;

use keyval_core::NodeId;

/// How often certificate files are checked for a new modification time.
const RELOAD_POLL: Duration = Duration::from_secs(2);

/// The DNS name (SAN) a node's peer certificate carries, and the SNI peers dial it with.
pub fn node_name(id: NodeId) -> String {
    format!("node-{id}")
}

/// Where the PEM files are, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub peer_cert: PathBuf,
    pub peer_key: PathBuf,
    pub peer_ca: PathBuf,
    /// Client-facing certificate and key; the peer ones when not given.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// CA for client certificates.
    pub client_ca: Option<PathBuf>,
    /// Require a client certificate from `client_ca` on client connections.
    pub client_cert_auth: bool,
}

impl TlsFiles {
    fn all(&self) -> Vec<&Path> {
        let mut v = vec![
            self.peer_cert.as_path(),
            self.peer_key.as_path(),
            self.peer_ca.as_path(),
        ];
        v.extend(
            [&self.cert, &self.key, &self.client_ca]
                .into_iter()
                .flatten()
                .map(PathBuf::as_path),
        );
        v
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {}: {reason}", path.display())]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{what} {} holds no certificate", path.display())]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("invalid TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("invalid CA {}: {reason}", path.display())]
    BadCa { path: PathBuf, reason: String },
    #[error("the peer certificate {} is not this node's: {reason}", path.display())]
    WrongName { path: PathBuf, reason: String },
}

/// What a connection proved about itself in its handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// TLS is off: everything is reachable, as before TLS existed.
    Plain,
    /// Completed the peer handshake with a certificate from the peer CA (DER of the leaf).
    Peer(CertificateDer<'static>),
    /// A client connection (with or without a client certificate).
    Client,
}

impl Access {
    /// Whether this connection may use the peer-only routes (`/raft`, `/events`).
    pub fn is_peer_or_plain(&self) -> bool {
        matches!(self, Access::Plain | Access::Peer(_))
    }

    /// Whether this connection may speak for node `id`: always without TLS (the cluster id is
    /// then the only check), otherwise only when its peer certificate names `node-<id>`.
    pub fn authorizes_node(&self, id: NodeId) -> Result<(), String> {
        match self {
            Access::Plain => Ok(()),
            Access::Client => Err("not a peer connection (no peer certificate)".into()),
            Access::Peer(der) => cert_names(der, id),
        }
    }
}

fn cert_names(der: &CertificateDer<'_>, id: NodeId) -> Result<(), String> {
    let name = node_name(id);
    let server_name =
        ServerName::try_from(name.as_str()).map_err(|e| format!("bad node name {name}: {e}"))?;
    let cert =
        webpki::EndEntityCert::try_from(der).map_err(|e| format!("unparsable certificate: {e}"))?;
    cert.verify_is_valid_for_subject_name(&server_name)
        .map_err(|_| format!("certificate does not name {name}"))
}

/// The TLS server name a node started with `--join` dials with: it does not know the ids of
/// the endpoints it was given. Listeners answer it with the peer configuration (a client
/// certificate from the peer CA is required), like `node-<ID>`.
pub const JOIN_NAME: &str = "keyval-join";

/// The rustls configurations built from one reading of the files.
pub struct TlsConfigs {
    /// For connections that ask for `node-<our id>` or [`JOIN_NAME`]: mutual TLS with the
    /// peer CA.
    pub peer_server: Arc<ServerConfig>,
    /// For every other connection.
    pub client_server: Arc<ServerConfig>,
    /// For dialing peers: trusts the peer CA, presents the peer certificate.
    pub dialer: Arc<ClientConfig>,
    /// For `--join`: presents the peer certificate, and accepts any server certificate from
    /// the peer CA whatever node it names (the joiner does not know the endpoints' ids; the
    /// peer CA signs only nodes of the cluster).
    pub join_dialer: Arc<ClientConfig>,
}

/// Verifies a server's chain against the peer CA without checking which node it names.
#[derive(Debug)]
struct AnyPeerVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl rustls::client::danger::ServerCertVerifier for AnyPeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        // The chain, validity and usage are checked before the name, so a name mismatch
        // means everything else passed.
        let probe =
            ServerName::try_from(JOIN_NAME).map_err(|e| rustls::Error::General(e.to_string()))?;
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, &probe, ocsp_response, now)
        {
            Ok(v) => Ok(v),
            Err(rustls::Error::InvalidCertificate(
                NotValidForName | NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |reason: String| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        what: "private key",
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn read_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs("CA file", path)? {
        roots.add(cert).map_err(|e| TlsError::BadCa {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(Arc::new(roots))
}

/// Reads every file and builds the three configurations; checks that the peer certificate
/// names this node, so a node started with another node's files stops with one line.
pub fn build(files: &TlsFiles, me: NodeId) -> Result<TlsConfigs, TlsError> {
    let p = provider();
    let peer_certs = read_certs("peer certificate", &files.peer_cert)?;
    let peer_key = read_key(&files.peer_key)?;
    let peer_roots = read_roots(&files.peer_ca)?;
    cert_names(&peer_certs[0], me).map_err(|reason| TlsError::WrongName {
        path: files.peer_cert.clone(),
        reason,
    })?;

    let peer_verifier = WebPkiClientVerifier::builder_with_provider(peer_roots.clone(), p.clone())
        .build()
        .map_err(|e| TlsError::BadCa {
            path: files.peer_ca.clone(),
            reason: e.to_string(),
        })?;
    let mut peer_server = ServerConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(peer_verifier)
        .with_single_cert(peer_certs.clone(), peer_key.clone_key())?;
    peer_server.alpn_protocols = vec![b"http/1.1".to_vec()];

    let (client_certs, client_key) = match (&files.cert, &files.key) {
        (Some(c), Some(k)) => (read_certs("certificate", c)?, read_key(k)?),
        _ => (peer_certs.clone(), peer_key.clone_key()),
    };
    let client_builder =
        ServerConfig::builder_with_provider(p.clone()).with_safe_default_protocol_versions()?;
    let mut client_server = match &files.client_ca {
        Some(ca) => {
            let builder = WebPkiClientVerifier::builder_with_provider(read_roots(ca)?, p.clone());
            let builder = if files.client_cert_auth {
                builder
            } else {
                builder.allow_unauthenticated()
            };
            let verifier = builder.build().map_err(|e| TlsError::BadCa {
                path: ca.clone(),
                reason: e.to_string(),
            })?;
            client_builder
                .with_client_cert_verifier(verifier)
                .with_single_cert(client_certs, client_key)?
        }
        None => client_builder
            .with_no_client_auth()
            .with_single_cert(client_certs, client_key)?,
    };
    client_server.alpn_protocols = vec![b"http/1.1".to_vec()];

    let any_peer = AnyPeerVerifier {
        inner: rustls::client::WebPkiServerVerifier::builder_with_provider(
            peer_roots.clone(),
            p.clone(),
        )
        .build()
        .map_err(|e| TlsError::BadCa {
            path: files.peer_ca.clone(),
            reason: e.to_string(),
        })?,
    };
    let join_dialer = ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(any_peer))
        .with_client_auth_cert(peer_certs.clone(), peer_key.clone_key())?;
    let dialer = ClientConfig::builder_with_provider(p)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(peer_roots)
        .with_client_auth_cert(peer_certs, peer_key)?;
    Ok(TlsConfigs {
        peer_server: Arc::new(peer_server),
        client_server: Arc::new(client_server),
        dialer: Arc::new(dialer),
        join_dialer: Arc::new(join_dialer),
    })
}

/// The current configurations, replaced whole on reload.
pub struct TlsStore {
    files: TlsFiles,
    me: NodeId,
    current: RwLock<Arc<TlsConfigs>>,
}

impl TlsStore {
    pub fn load(files: TlsFiles, me: NodeId) -> Result<Arc<TlsStore>, TlsError> {
        let configs = build(&files, me)?;
        Ok(Arc::new(TlsStore {
            files,
            me,
            current: RwLock::new(Arc::new(configs)),
        }))
    }

    pub fn me(&self) -> NodeId {
        self.me
    }

    pub fn current(&self) -> Arc<TlsConfigs> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the files; on failure the previous configuration stays in force.
    pub fn reload(&self) -> Result<(), TlsError> {
        let configs = Arc::new(build(&self.files, self.me)?);
        match self.current.write() {
            Ok(mut g) => *g = configs,
            Err(poisoned) => *poisoned.into_inner() = configs,
        }
        Ok(())
    }

    fn mtimes(&self) -> Vec<Option<SystemTime>> {
        self.files
            .all()
            .into_iter()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    }

    /// Reloads when a file's modification time changes or SIGHUP arrives, until shutdown.
    pub async fn watch(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut seen = self.mtimes();
        let mut poll = tokio::time::interval(RELOAD_POLL);
        loop {
            #[cfg(unix)]
            let hup_signal = async {
                match hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hup_signal = std::future::pending::<()>();
            let why = tokio::select! {
                _ = shutdown.changed() => return,
                _ = hup_signal => "SIGHUP",
                _ = poll.tick() => {
                    let now = self.mtimes();
                    if now == seen {
                        continue;
                    }
                    seen = now;
                    "a certificate file changed"
                }
            };
            match self.reload() {
                Ok(()) => tracing::info!(reason = why, "reloaded TLS certificates"),
                Err(e) => tracing::warn!(
                    reason = why,
                    error = %e,
                    "cannot reload TLS certificates; keeping the previous ones"
                ),
            }
        }
    }
}

/// What `kvctl` (or any client) needs to talk TLS to a node: the CA that signed the nodes'
/// client-facing certificates, and optionally a client certificate and key.
pub fn client_config(
    ca: &Path,
    cert_and_key: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(read_roots(ca)?);
    let config = match cert_and_key {
        Some((c, k)) => {
            builder.with_client_auth_cert(read_certs("client certificate", c)?, read_key(k)?)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

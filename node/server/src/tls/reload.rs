//! A node's certificates, reread when their files change: the hub CA (`ca.pem`, which may hold
//! several CA certificates while a CA is being replaced) and the node's certificate and key.
//!
//! Every new connection — accepted or dialled — takes the configuration of the moment, so a
//! rotation needs no restart; connections already established go on with what they were
//! opened with. Files caught half-written (a certificate whose key has not been replaced yet)
//! do not replace good material: the node keeps the previous one and tries again at the next
//! check.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use super::TlsError;
use crate::config::{NodeConfig, TlsSection};

/// The files a node's TLS is built from.
#[derive(Debug, Clone)]
struct Files {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// Their contents, as last read.
#[derive(PartialEq, Eq)]
struct Source {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

/// The configurations built from one [`Source`].
struct Configs {
    source: Source,
    /// Node↔node listener: a client certificate from the hub CA is required.
    raft: Arc<ServerConfig>,
    /// Public API listener: server TLS only (clients sign in instead).
    api: Arc<ServerConfig>,
    /// Dialling a peer: trusts the hub CA, presents this node's certificate.
    client: Arc<ClientConfig>,
}

/// A node's TLS configurations, rebuilt when their files change (see [`NodeTls::watch`]).
pub struct NodeTls {
    files: Files,
    check_every: Duration,
    current: RwLock<Arc<Configs>>,
    /// The last reload failure, so a lasting one is logged once, not at every check.
    last_failure: Mutex<Option<String>>,
}

impl NodeTls {
    /// Loads `node`'s material from the `[tls]` directory; fails when it is unusable.
    pub fn load(section: &TlsSection, node: &NodeConfig) -> Result<Self, TlsError> {
        let (cert, key) = super::node_files(&section.dir, node);
        let files = Files { ca: section.dir.join("ca.pem"), cert, key };
        let configs = build(read_source(&files)?, &files)?;
        Ok(Self {
            files,
            check_every: Duration::from_millis(section.reload_check_ms),
            current: RwLock::new(Arc::new(configs)),
            last_failure: Mutex::default(),
        })
    }

    fn current(&self) -> Arc<Configs> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// For the next connection to the node↔node listener.
    pub fn raft_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current().raft.clone())
    }

    /// For the next connection to the public API listener.
    pub fn api_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current().api.clone())
    }

    /// For the next connection to a peer node.
    pub fn client(&self) -> Arc<ClientConfig> {
        self.current().client.clone()
    }

    /// Rereads the files. `Ok(true)`: they changed and new connections use them from now on;
    /// `Ok(false)`: unchanged; `Err`: changed but unusable, the previous material stays.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let source = read_source(&self.files)?;
        if source == self.current().source {
            return Ok(false);
        }
        let configs = build(source, &self.files)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(configs);
        Ok(true)
    }

    /// Checks the files every `[tls] reload_check_ms` until `stopped`, reloading on change.
    pub async fn watch(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = stopped.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(self.check_every) => {}
            }
            let this = self.clone();
            let outcome = tokio::task::spawn_blocking(move || this.reload()).await;
            let outcome =
                outcome.unwrap_or_else(|e| Err(TlsError::Invalid { what: "reload".into(), reason: e.to_string() }));
            self.report(outcome);
        }
    }

    fn report(&self, outcome: Result<bool, TlsError>) {
        let mut last_failure = self.last_failure.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(true) => {
                info!(cert = %self.files.cert.display(), ca = %self.files.ca.display(), "TLS certificates reloaded");
                *last_failure = None;
            }
            Ok(false) => {}
            Err(e) => {
                let failure = e.to_string();
                if last_failure.as_deref() != Some(failure.as_str()) {
                    warn!(%failure, "changed TLS files are not usable yet; the previous certificates stay in use");
                }
                *last_failure = Some(failure);
            }
        }
    }
}

fn read_source(files: &Files) -> Result<Source, TlsError> {
    let read = |path: &Path| std::fs::read(path).map_err(|source| TlsError::Io { path: path.to_owned(), source });
    Ok(Source { ca: read(&files.ca)?, cert: read(&files.cert)?, key: read(&files.key)? })
}

fn build(source: Source, files: &Files) -> Result<Configs, TlsError> {
    let invalid = |path: &Path, reason: String| TlsError::Invalid { what: path.display().to_string(), reason };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = Arc::new(roots_of(&source.ca).map_err(|reason| invalid(&files.ca, reason))?);
    let certs = CertificateDer::pem_slice_iter(&source.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(&files.cert, e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(&source.key).map_err(|e| invalid(&files.key, e.to_string()))?;
    let mismatch = |e: rustls::Error| invalid(&files.cert, format!("{e} (does the key belong to this certificate?)"));

    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| invalid(&files.ca, e.to_string()))?;
    let mut raft = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(mismatch)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs.clone(), key.clone_key())
        .map_err(mismatch)?;
    raft.alpn_protocols = vec![b"h2".to_vec()];

    let mut api = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(mismatch)?
        .with_no_client_auth()
        .with_single_cert(certs.clone(), key.clone_key())
        .map_err(mismatch)?;
    // gRPC over HTTP/2; the browser client's files and gRPC-Web also over HTTP/1.1.
    api.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    let mut client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(mismatch)?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(mismatch)?;
    client.alpn_protocols = vec![b"h2".to_vec()];

    Ok(Configs { source, raft: Arc::new(raft), api: Arc::new(api), client: Arc::new(client) })
}

/// Every CA certificate in `pem` (several while a CA is being replaced).
fn roots_of(pem: &[u8]) -> Result<RootCertStore, String> {
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err("no usable CA certificate in the file".into());
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HubConfig;

    fn hub() -> HubConfig {
        HubConfig::parse(
            r#"
            [hub]
            name = "t"
            allow_unsafe_placement = true
            [[node]]
            id = 1
            name = "a"
            region = "r1"
            raft_addr = "127.0.0.1:7101"
            api_addr = "127.0.0.1:7001"
            data_dir = "data/a"
            "#,
        )
        .expect("a valid topology")
    }

    #[test]
    fn changed_files_are_taken_up_and_a_mismatched_pair_is_not() {
        let hub = hub();
        let (dir, other) = (tempfile::tempdir().expect("temp dir"), tempfile::tempdir().expect("temp dir"));
        super::super::generate(&hub, dir.path()).expect("certificates");
        super::super::generate(&hub, other.path()).expect("other certificates");
        let tls = NodeTls::load(&TlsSection::in_dir(dir.path().to_owned()), &hub.nodes[0]).expect("loads");
        assert!(!tls.reload().expect("unchanged files"), "nothing changed");
        let before = tls.client();

        // A certificate of another CA next to the old key: refused, the old pair stays.
        let copy = |name: &str| std::fs::copy(other.path().join(name), dir.path().join(name)).expect("copy");
        copy("a.pem");
        let error = tls.reload().expect_err("a certificate without its key").to_string();
        assert!(error.contains("a.pem"), "{error}");
        assert!(Arc::ptr_eq(&before, &tls.client()), "half-replaced files were taken up");

        // With its key, the pair is taken up; once.
        copy("a.key");
        assert!(tls.reload().expect("a matching pair"));
        assert!(!Arc::ptr_eq(&before, &tls.client()), "the new pair is not in use");
        assert!(!tls.reload().expect("unchanged again"));

        // A CA file without a certificate is refused.
        std::fs::write(dir.path().join("ca.pem"), "not a certificate").expect("write");
        let error = tls.reload().expect_err("no CA").to_string();
        assert!(error.contains("no usable CA certificate"), "{error}");
    }
}

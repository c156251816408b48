//! TLS material reread when its files change: a node's certificates — the hub CA (`ca.pem`,
//! which may hold several CA certificates while a CA is being replaced), the node's certificate
//! and key — and, for federation, the same certificate with the peers' CAs.
//!
//! Every new connection — accepted or dialled — takes the configuration of the moment, so a
//! rotation needs no restart; connections already established go on with what they were
//! opened with. Files caught half-written (a certificate whose key has not been replaced yet)
//! do not replace good material: the previous one stays, and the next check tries again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use super::TlsError;
use crate::config::{NodeConfig, TlsSection};

/// Builds the material from the files' contents (in the order of [`Reloading::load`]'s paths).
type Build<T> = Box<dyn Fn(&[Vec<u8>]) -> Result<T, TlsError> + Send + Sync>;

/// Material built from files, rebuilt when their contents change (see [`Reloading::watch`]).
pub struct Reloading<T> {
    /// What it is, for the logs.
    what: &'static str,
    /// Empty for fixed material, which never reloads.
    files: Vec<PathBuf>,
    build: Build<T>,
    check_every: Duration,
    /// The files' contents as last taken up, and what was built from them.
    current: RwLock<(Vec<Vec<u8>>, Arc<T>)>,
    /// The last reload failure, so a lasting one is logged once, not at every check.
    last_failure: Mutex<Option<String>>,
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// Reads `files` and builds the material from them; fails when it is unusable.
    pub fn load(
        what: &'static str,
        files: Vec<PathBuf>,
        check_every: Duration,
        build: impl Fn(&[Vec<u8>]) -> Result<T, TlsError> + Send + Sync + 'static,
    ) -> Result<Self, TlsError> {
        let source = read_all(&files)?;
        let built = Arc::new(build(&source)?);
        let (current, last_failure) = (RwLock::new((source, built)), Mutex::default());
        Ok(Self { what, files, build: Box::new(build), check_every, current, last_failure })
    }

    /// Material that is not read from files and never changes (tests, one-shot CLI calls).
    pub fn fixed(what: &'static str, material: T) -> Self {
        let current = RwLock::new((Vec::new(), Arc::new(material)));
        let refuse: Build<T> = Box::new(|_| Err(TlsError::Invalid { what: "fixed".into(), reason: "".into() }));
        Self {
            what,
            files: Vec::new(),
            build: refuse,
            check_every: Duration::MAX,
            current,
            last_failure: Mutex::default(),
        }
    }

    /// The material of the moment.
    pub fn current(&self) -> Arc<T> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).1.clone()
    }

    /// Rereads the files. `Ok(true)`: they changed and new connections use them from now on;
    /// `Ok(false)`: unchanged (or fixed material); `Err`: changed but unusable, the previous
    /// material stays.
    pub fn reload(&self) -> Result<bool, TlsError> {
        if self.files.is_empty() {
            return Ok(false);
        }
        let source = read_all(&self.files)?;
        if source == self.current.read().unwrap_or_else(|p| p.into_inner()).0 {
            return Ok(false);
        }
        let built = Arc::new((self.build)(&source)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = (source, built);
        Ok(true)
    }

    /// Checks the files every interval until `stopped`, reloading on change.
    pub async fn watch(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        if self.files.is_empty() {
            return;
        }
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
        let files = || self.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
        match outcome {
            Ok(true) => {
                info!(what = self.what, files = %files(), "TLS certificates reloaded");
                *last_failure = None;
            }
            Ok(false) => {}
            Err(e) => {
                let failure = e.to_string();
                if last_failure.as_deref() != Some(failure.as_str()) {
                    warn!(what = self.what, %failure, "changed TLS files are not usable yet; the previous certificates stay in use");
                }
                *last_failure = Some(failure);
            }
        }
    }
}

fn read_all(files: &[PathBuf]) -> Result<Vec<Vec<u8>>, TlsError> {
    let read = |path: &PathBuf| std::fs::read(path).map_err(|source| TlsError::Io { path: path.clone(), source });
    files.iter().map(read).collect()
}

/// A node's own TLS: its listeners' and its dialler's configurations.
pub type NodeTls = Reloading<NodeConfigs>;

/// The configurations built from a node's CA bundle, certificate and key.
pub struct NodeConfigs {
    /// Node↔node listener: a client certificate from the hub CA is required.
    raft: Arc<ServerConfig>,
    /// Public API listener: server TLS only (clients sign in instead).
    api: Arc<ServerConfig>,
    /// Dialling a peer: trusts the hub CA, presents this node's certificate.
    client: Arc<ClientConfig>,
}

impl Reloading<NodeConfigs> {
    /// Loads `node`'s material from the `[tls]` directory, checked every `reload_check_ms`.
    pub fn of_node(section: &TlsSection, node: &NodeConfig) -> Result<Self, TlsError> {
        let (cert, key) = super::node_files(&section.dir, node);
        let files = vec![section.dir.join("ca.pem"), cert, key];
        let names = files.clone();
        let every = Duration::from_millis(section.reload_check_ms);
        Self::load("node", files, every, move |source| build(source, &names))
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
}

/// `source` and `files`: the CA bundle, the certificate and the key (see `of_node`).
fn build(source: &[Vec<u8>], files: &[PathBuf]) -> Result<NodeConfigs, TlsError> {
    let wrong = || TlsError::Invalid { what: "node TLS".into(), reason: "a CA bundle, a certificate and a key".into() };
    let ([ca, cert, key], [ca_file, cert_file, _]) = (source, files) else { return Err(wrong()) };
    let roots = Arc::new(roots_of(ca).map_err(|reason| invalid(ca_file, reason))?);
    let (certs, key) = certified_key(cert, key, files)?;
    let provider = super::crypto_provider();
    let mismatch = |e: rustls::Error| invalid(cert_file, format!("{e} (does the key belong to this certificate?)"));

    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| invalid(ca_file, e.to_string()))?;
    // The node's own certificate must chain to the bundle it trusts: files caught between a
    // new CA bundle and the new certificate would otherwise make it refuse its own peers.
    let (leaf, intermediates) = certs.split_first().ok_or_else(|| invalid(cert_file, "no certificate".into()))?;
    verifier
        .verify_client_cert(leaf, intermediates, UnixTime::now())
        .map_err(|e| invalid(cert_file, format!("not issued by a CA of {} ({e})", ca_file.display())))?;
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

    Ok(NodeConfigs { raft: Arc::new(raft), api: Arc::new(api), client: Arc::new(client) })
}

fn invalid(path: &Path, reason: String) -> TlsError {
    TlsError::Invalid { what: path.display().to_string(), reason }
}

/// A certificate chain and its key from PEM; `files`' second and third name them in errors.
pub(crate) fn certified_key(
    cert: &[u8],
    key: &[u8],
    files: &[PathBuf],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let name = |i: usize| files.get(i).map_or_else(|| Path::new("?").to_owned(), Clone::clone);
    let certs = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(&name(1), e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| invalid(&name(2), e.to_string()))?;
    Ok((certs, key))
}

/// Every CA certificate in `pem` (several while a CA is being replaced).
pub(crate) fn roots_of(pem: &[u8]) -> Result<RootCertStore, String> {
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

    #[test]
    fn changed_files_are_taken_up_and_a_mismatched_pair_is_not() {
        let hub = super::super::tests::two_nodes();
        let (dir, other) = (tempfile::tempdir().expect("temp dir"), tempfile::tempdir().expect("temp dir"));
        super::super::generate(&hub, dir.path()).expect("certificates");
        super::super::generate(&hub, other.path()).expect("other certificates");
        let tls = NodeTls::of_node(&TlsSection::in_dir(dir.path().to_owned()), &hub.nodes[0]).expect("loads");
        assert!(!tls.reload().expect("unchanged files"), "nothing changed");
        let before = tls.client();

        // A certificate of another CA next to the old key: refused, the old pair stays.
        let copy = |name: &str| std::fs::copy(other.path().join(name), dir.path().join(name)).expect("copy");
        copy("a.pem");
        let error = tls.reload().expect_err("a certificate without its key").to_string();
        assert!(error.contains("a.pem"), "{error}");
        assert!(Arc::ptr_eq(&before, &tls.client()), "half-replaced files were taken up");

        // With its key, but not issued by a CA the node trusts: refused too.
        copy("a.key");
        let error = tls.reload().expect_err("a certificate of an untrusted CA").to_string();
        assert!(error.contains("not issued by a CA"), "{error}");

        // Once the bundle holds its CA, the pair is taken up; once.
        let bundle =
            [std::fs::read(dir.path().join("ca.pem")).unwrap(), std::fs::read(other.path().join("ca.pem")).unwrap()];
        std::fs::write(dir.path().join("ca.pem"), bundle.concat()).expect("write");
        assert!(tls.reload().expect("a trusted, matching pair"));
        assert!(!Arc::ptr_eq(&before, &tls.client()), "the new pair is not in use");
        assert!(!tls.reload().expect("unchanged again"));

        // A CA file without a certificate is refused.
        std::fs::write(dir.path().join("ca.pem"), "not a certificate").expect("write");
        let error = tls.reload().expect_err("no CA").to_string();
        assert!(error.contains("no usable CA certificate"), "{error}");
    }
}

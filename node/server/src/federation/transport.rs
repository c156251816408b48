//! TLS of the hub↔hub transport: mutual TLS with the configured peers' CAs, on a port of its
//! own.
//!
//! The TLS handshake admits only client certificates that chain to one of the configured peers'
//! CAs (never the web PKI, never this hub's own node CA). [`Issuers`] then tells which peer's
//! CA issued a certificate, so the service can require that it is the peer the request's
//! signature names: a listed peer cannot speak for another one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use kizuna_domain::federation::HubName;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use super::{Refusal, Trust};
use crate::tls::{Reloading, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("{path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("CA certificate of peer {peer}: {reason}")]
    BadCa { peer: HubName, reason: String },
    #[error("no federation peers are configured")]
    NoPeers,
    #[error("this node's federation certificate or key: {0}")]
    OwnCertificate(String),
    #[error("peer {0} is not configured")]
    UnknownPeer(HubName),
    #[error("endpoint {endpoint:?}: {source}")]
    Endpoint { endpoint: String, source: tonic::transport::Error },
    #[error("federation listener: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// A node's TLS material for federation: its certificate from its own hub's CA (peers list
/// that CA as this hub's `ca_cert`) and each peer's CA, with the configurations built from
/// them. Reread when the files change: see [`FederationTls::watched`].
pub struct FederationTls {
    /// The listener's: client certificates required, chaining to one of the peers' CAs;
    /// `None` without peers.
    server: Option<Arc<rustls::ServerConfig>>,
    /// Towards each peer: trusts only that peer's CA, presents this node's certificate.
    clients: BTreeMap<HubName, Arc<rustls::ClientConfig>>,
    issuers: Arc<Issuers>,
}

/// Federation TLS as of now, for every new connection (see `crate::tls::reload`).
pub type WatchedFederationTls = Arc<Reloading<FederationTls>>;

impl FederationTls {
    /// `cert_pem` / `key_pem`: this node's certificate and key; the peers' CAs are read from
    /// their configured `ca_cert` files.
    pub fn load(trust: &Trust, cert_pem: &str, key_pem: &str) -> Result<Self, TransportError> {
        let mut peer_cas = BTreeMap::new();
        for peer in trust.peers() {
            let pem = std::fs::read_to_string(&peer.ca_cert)
                .map_err(|source| TransportError::Io { path: peer.ca_cert.clone(), source })?;
            peer_cas.insert(peer.name.clone(), pem);
        }
        Self::from_pems(cert_pem, key_pem, peer_cas)
    }

    /// The material of `trust`'s peers and this node's certificate and key files, reread every
    /// `check_every` by [`Reloading::watch`] when they change: a renewed certificate, or a
    /// peer's new CA, is taken up without a restart.
    pub fn watched(
        trust: &Trust,
        cert: PathBuf,
        key: PathBuf,
        check_every: std::time::Duration,
    ) -> Result<WatchedFederationTls, TlsError> {
        let peers: Vec<HubName> = trust.peers().map(|p| p.name.clone()).collect();
        let files = [cert, key].into_iter().chain(trust.peers().map(|p| p.ca_cert.clone())).collect();
        let build = move |source: &[Vec<u8>]| {
            let text = |bytes: &Vec<u8>| String::from_utf8_lossy(bytes).into_owned();
            let (cert, key, cas) = match source {
                [cert, key, cas @ ..] => (text(cert), text(key), cas),
                _ => return Err(TlsError::Invalid { what: "federation TLS".into(), reason: "no certificate".into() }),
            };
            let peer_cas = peers.iter().cloned().zip(cas.iter().map(text)).collect();
            Self::from_pems(&cert, &key, peer_cas)
                .map_err(|e| TlsError::Invalid { what: "federation TLS".into(), reason: e.to_string() })
        };
        Ok(Arc::new(Reloading::load("federation", files, check_every, build)?))
    }

    pub fn from_pems(
        cert_pem: &str,
        key_pem: &str,
        peer_cas: BTreeMap<HubName, String>,
    ) -> Result<Self, TransportError> {
        let provider = crate::tls::crypto_provider();
        let own = |reason: String| TransportError::OwnCertificate(reason);
        let (certs, key) = crate::tls::reload::certified_key(cert_pem.as_bytes(), key_pem.as_bytes(), &[])
            .map_err(|e| own(e.to_string()))?;
        let mut clients = BTreeMap::new();
        let mut all_roots = RootCertStore::empty();
        for (peer, pem) in &peer_cas {
            let roots = roots_of(peer, pem)?;
            all_roots.roots.extend(roots.roots.iter().cloned());
            let mut client = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| own(e.to_string()))?
                .with_root_certificates(roots)
                .with_client_auth_cert(certs.clone(), key.clone_key())
                .map_err(|e| own(e.to_string()))?;
            client.alpn_protocols = vec![b"h2".to_vec()];
            clients.insert(peer.clone(), Arc::new(client));
        }
        let server = if peer_cas.is_empty() { None } else { Some(server_config(all_roots, certs, key)?) };
        let issuers = Arc::new(issuers_of(&peer_cas)?);
        Ok(Self { server, clients, issuers })
    }

    /// The listener's rustls configuration: client certificates required, chaining to one of
    /// the peers' CAs, HTTP/2 only. The listener accepts TLS itself (not through tonic) so that
    /// a refused handshake — a certificate of an unlisted CA — can be audited, and so that it
    /// takes up reloaded certificates.
    pub fn server_rustls(&self) -> Result<Arc<rustls::ServerConfig>, TransportError> {
        self.server.clone().ok_or(TransportError::NoPeers)
    }

    /// Client TLS towards `peer`: trusts only that peer's CA and presents this node's certificate.
    pub fn client_config(&self, peer: &HubName) -> Result<Arc<rustls::ClientConfig>, TransportError> {
        self.clients.get(peer).cloned().ok_or_else(|| TransportError::UnknownPeer(peer.clone()))
    }

    /// Which peer's CA issued a client certificate.
    pub fn issuers(&self) -> Arc<Issuers> {
        self.issuers.clone()
    }

    /// This material for good, never reread (a one-shot CLI call, a test).
    pub fn fixed(self) -> WatchedFederationTls {
        Arc::new(Reloading::fixed("federation", self))
    }
}

fn server_config(
    roots: RootCertStore,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, TransportError> {
    let provider = crate::tls::crypto_provider();
    let own = |reason: String| TransportError::OwnCertificate(reason);
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| own(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| own(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| own(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// One verifier per peer, holding only that peer's CA, to tell which peer a client
/// certificate belongs to.
fn issuers_of(peer_cas: &BTreeMap<HubName, String>) -> Result<Issuers, TransportError> {
    let provider = crate::tls::crypto_provider();
    let mut verifiers = BTreeMap::new();
    for (peer, pem) in peer_cas {
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots_of(peer, pem)?), provider.clone())
            .build()
            .map_err(|e| TransportError::BadCa { peer: peer.clone(), reason: e.to_string() })?;
        verifiers.insert(peer.clone(), verifier);
    }
    Ok(Issuers(verifiers))
}

fn roots_of(peer: &HubName, pem: &str) -> Result<RootCertStore, TransportError> {
    crate::tls::reload::roots_of(pem.as_bytes()).map_err(|reason| TransportError::BadCa { peer: peer.clone(), reason })
}

/// Which peer's CA issued a client certificate.
pub struct Issuers(BTreeMap<HubName, Arc<dyn ClientCertVerifier>>);

impl Issuers {
    /// `chain`: the client's certificates, leaf first, as the TLS layer received them.
    pub fn check(&self, hub: &HubName, chain: Option<&[CertificateDer<'static>]>) -> Result<(), Refusal> {
        let wrong = || Refusal::WrongCa { hub: hub.clone() };
        let verifier = self.0.get(hub).ok_or_else(wrong)?;
        let (leaf, intermediates) = chain.and_then(<[_]>::split_first).ok_or_else(wrong)?;
        verifier.verify_client_cert(leaf, intermediates, UnixTime::now()).map_err(|_| wrong())?;
        Ok(())
    }
}

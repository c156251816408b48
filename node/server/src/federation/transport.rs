//! TLS of the hub↔hub transport: mutual TLS with the configured peers' CAs, on a port of its
//! own.
//!
//! The TLS handshake admits only client certificates that chain to one of the configured peers'
//! CAs (never the web PKI, never this hub's own node CA). [`Issuers`] then tells which peer's
//! CA issued a certificate, so the service can require that it is the peer the request's
//! signature names: a listed peer cannot speak for another one.

use std::collections::BTreeMap;
use std::sync::Arc;

use kizuna_domain::federation::HubName;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use super::{Refusal, Trust};

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
/// that CA as this hub's `ca_cert`) and each peer's CA certificate (PEM).
#[derive(Clone)]
pub struct FederationTls {
    identity: Identity,
    /// The same certificate and key, for the listener's own TLS (see [`Self::server_rustls`]).
    cert_pem: String,
    key_pem: String,
    peer_cas: BTreeMap<HubName, String>,
}

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

    pub fn from_pems(
        cert_pem: &str,
        key_pem: &str,
        peer_cas: BTreeMap<HubName, String>,
    ) -> Result<Self, TransportError> {
        for (peer, pem) in &peer_cas {
            roots_of(peer, pem)?;
        }
        let identity = Identity::from_pem(cert_pem, key_pem);
        Ok(Self { identity, cert_pem: cert_pem.to_owned(), key_pem: key_pem.to_owned(), peer_cas })
    }

    /// The listener's rustls configuration: client certificates required, chaining to one of
    /// the peers' CAs, HTTP/2 only. The listener accepts TLS itself (not through tonic) so that
    /// a refused handshake — a certificate of an unlisted CA — can be audited.
    pub fn server_rustls(&self) -> Result<rustls::ServerConfig, TransportError> {
        if self.peer_cas.is_empty() {
            return Err(TransportError::NoPeers);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for (peer, pem) in &self.peer_cas {
            for root in roots_of(peer, pem)?.roots {
                roots.roots.push(root);
            }
        }
        let own = |reason: String| TransportError::OwnCertificate(reason);
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| own(e.to_string()))?;
        let certs = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| own(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|e| own(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| own(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .map_err(|e| own(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }

    /// Client TLS towards `peer`: trusts only that peer's CA and presents this node's certificate.
    pub fn client_config(&self, peer: &HubName) -> Result<ClientTlsConfig, TransportError> {
        let ca = self.peer_cas.get(peer).ok_or_else(|| TransportError::UnknownPeer(peer.clone()))?;
        Ok(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).identity(self.identity.clone()))
    }

    /// One verifier per peer, holding only that peer's CA, to tell which peer a client
    /// certificate belongs to.
    pub fn issuers(&self) -> Result<Issuers, TransportError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut verifiers = BTreeMap::new();
        for (peer, pem) in &self.peer_cas {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots_of(peer, pem)?), provider.clone())
                    .build()
                    .map_err(|e| TransportError::BadCa { peer: peer.clone(), reason: e.to_string() })?;
            verifiers.insert(peer.clone(), verifier);
        }
        Ok(Issuers(verifiers))
    }
}

fn roots_of(peer: &HubName, pem: &str) -> Result<RootCertStore, TransportError> {
    let bad = |reason: String| TransportError::BadCa { peer: peer.clone(), reason };
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(bad("no usable certificate in the file".into()));
    }
    Ok(roots)
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

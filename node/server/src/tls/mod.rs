//! TLS for a hub: a hub CA, one certificate per node, server TLS on the public API and mutual
//! TLS between nodes (a peer must present a certificate from the hub's CA).
//!
//! Files in a hub's certificate directory: `ca.pem`, `ca.key`, and `<node name>.pem` /
//! `<node name>.key` for every node. Keys are written with mode 0600. A running node rereads
//! them when they change ([`reload`]).

pub mod accept;
pub mod reload;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Uri};

pub use self::reload::{NodeTls, Reloading};
use crate::config::{HubConfig, NodeConfig, TlsSection};
use crate::raft::network::{Connector, TcpConnector};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io { path: path.to_owned(), source })
}

fn write(path: &Path, contents: &str, secret: bool) -> Result<(), TlsError> {
    let io = |source| TlsError::Io { path: path.to_owned(), source };
    std::fs::write(path, contents).map_err(io)?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    Ok(())
}

/// The current calendar year (UTC), close enough for certificate validity windows.
fn this_year() -> i32 {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    1970 + (secs / 31_556_952) as i32
}

/// Creates the hub CA (unless `ca.pem` and `ca.key` already exist: then they are reused, so new
/// node certificates stay trusted by running nodes) and a certificate for every node.
///
/// Node certificates are valid from the start of this year for two years and name the node,
/// `localhost`, the IP addresses of its raft, API and federation sockets and the host of its
/// `public_url` (the name browsers use); they serve both as server and as client certificates
/// (mutual TLS between nodes). The CA is valid for ten years.
pub fn generate(hub: &HubConfig, dir: &Path) -> Result<Vec<PathBuf>, TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Io { path: dir.to_owned(), source })?;
    let year = this_year();
    let (ca_pem, ca_key_pem) = (dir.join("ca.pem"), dir.join("ca.key"));
    let issuer = if ca_pem.exists() && ca_key_pem.exists() {
        let key = KeyPair::from_pem(&read(&ca_key_pem)?)?;
        Issuer::from_ca_cert_pem(&read(&ca_pem)?, key)?
    } else {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Kizuna");
        dn.push(DnType::CommonName, format!("Kizuna hub CA {}", hub.hub.name));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = rcgen::date_time_ymd(year, 1, 1);
        params.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        write(&ca_pem, &cert.pem(), false)?;
        write(&ca_key_pem, &key.serialize_pem(), true)?;
        Issuer::new(params, key)
    };
    let mut written = vec![ca_pem];
    for node in &hub.nodes {
        let public = node.public_host();
        let public_ip = public.as_deref().and_then(|host| host.parse::<std::net::IpAddr>().ok());
        let public_name = public.filter(|_| public_ip.is_none());
        let names = [node.name.clone(), "localhost".to_owned()].into_iter().chain(public_name);
        let mut params = CertificateParams::new(names.collect::<Vec<_>>())?;
        let federation = node.federation_addr.map(|a| a.ip());
        for ip in [node.raft_addr.ip(), node.api_addr.ip()].into_iter().chain(federation).chain(public_ip) {
            let san = SanType::IpAddress(ip);
            if !params.subject_alt_names.contains(&san) {
                params.subject_alt_names.push(san);
            }
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, format!("Kizuna hub {}", hub.hub.name));
        dn.push(DnType::OrganizationalUnitName, node.region().to_owned());
        dn.push(DnType::CommonName, node.name.clone());
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = rcgen::date_time_ymd(year, 1, 1);
        params.not_after = rcgen::date_time_ymd(year + 2, 1, 1);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        let (cert_path, key_path) = node_files(dir, node);
        write(&cert_path, &cert.pem(), false)?;
        write(&key_path, &key.serialize_pem(), true)?;
        written.push(cert_path);
    }
    Ok(written)
}

pub(crate) fn node_files(dir: &Path, node: &NodeConfig) -> (PathBuf, PathBuf) {
    (dir.join(format!("{}.pem", node.name)), dir.join(format!("{}.key", node.name)))
}

/// The TLS profile of every listener and every connection a node opens (docs/security.md,
/// "TLS"): with `with_safe_default_protocol_versions`, TLS 1.3 and 1.2 only; key exchange by
/// ECDHE only (forward secrecy) and AEAD ciphers only — AES-GCM and ChaCha20-Poly1305, within
/// CRYPTREC's high-security profile. Named here, not taken from the library's defaults, so an
/// upgrade of rustls cannot widen it unnoticed.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::cipher_suite as suite;
    Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            suite::TLS13_AES_256_GCM_SHA384,
            suite::TLS13_AES_128_GCM_SHA256,
            suite::TLS13_CHACHA20_POLY1305_SHA256,
            suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..rustls::crypto::ring::default_provider()
    })
}

/// How a node talks and listens: TLS material, or plaintext when explicitly insecure.
#[derive(Clone)]
pub struct Security {
    pub connector: Arc<dyn Connector>,
    /// Mutual TLS between nodes and server TLS on the public API; `None` when insecure.
    pub tls: Option<Arc<NodeTls>>,
}

impl Security {
    /// Plaintext everywhere. Only for an explicit `--insecure`.
    pub fn insecure() -> Self {
        Self { connector: Arc::new(TcpConnector::default()), tls: None }
    }

    /// Loads the node's certificate and the hub CA from the `[tls]` directory.
    pub fn load(section: &TlsSection, node: &NodeConfig) -> Result<Self, TlsError> {
        let tls = Arc::new(NodeTls::of_node(section, node)?);
        let connector = TlsConnector { tls: tls.clone(), connect_timeout: Duration::from_secs(2) };
        Ok(Self { connector: Arc::new(connector), tls: Some(tls) })
    }
}

/// Mutual-TLS channels to peers: verifies the peer against the hub CA and presents this node's
/// certificate, as they are when the connection is made (see [`reload`]).
pub struct TlsConnector {
    tls: Arc<NodeTls>,
    connect_timeout: Duration,
}

impl Connector for TlsConnector {
    fn connect(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let tls = self.tls.clone();
        dialled_channel(addr, Arc::new(move || Ok(tls.client())), self.connect_timeout)
    }
}

/// The client TLS configuration for the next connection.
pub type ClientTls = Arc<dyn Fn() -> Result<Arc<ClientConfig>, std::io::Error> + Send + Sync>;

/// A lazily connected channel to `addr` (`host:port`) over TLS with the configuration `client`
/// gives at each (re)connection: TCP without Nagle, then rustls, then HTTP/2 (tonic's own TLS
/// would fix the configuration once).
pub fn dialled_channel(
    addr: &str,
    client: ClientTls,
    connect_timeout: Duration,
) -> Result<Channel, tonic::transport::Error> {
    // `http`: the TLS is the dialler's own, tonic speaks HTTP/2 over the stream it is given.
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .connect_with_connector_lazy(Dial { client, timeout: connect_timeout }))
}

#[derive(Clone)]
struct Dial {
    client: ClientTls,
    timeout: Duration,
}

type Dialled = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

impl tower_service::Service<Uri> for Dial {
    type Response = Dialled;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Dialled, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (client, timeout) = (self.client.clone(), self.timeout);
        Box::pin(async move {
            let timed_out =
                || std::io::Error::new(std::io::ErrorKind::TimedOut, format!("connecting to {uri} timed out"));
            tokio::time::timeout(timeout, dial(client()?, &uri)).await.map_err(|_| timed_out())?
        })
    }
}

async fn dial(client: Arc<ClientConfig>, uri: &Uri) -> Result<Dialled, std::io::Error> {
    let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
    let host = uri.host().ok_or_else(|| invalid(format!("{uri}: no host")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().ok_or_else(|| invalid(format!("{uri}: no port")))?;
    let name = ServerName::try_from(host.to_owned()).map_err(|e| invalid(format!("{host}: {e}")))?;
    let tcp = TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    let stream = tokio_rustls::TlsConnector::from(client).connect(name, tcp).await?;
    // gRPC needs HTTP/2; a server that did not agree to it is not a Kizuna node.
    if stream.get_ref().1.alpn_protocol() != Some(b"h2".as_slice()) {
        let refused = format!("{host}:{port} did not agree to HTTP/2 (ALPN h2)");
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, refused));
    }
    Ok(TokioIo::new(stream))
}

/// A client config for the CLI: trusts the hub CA.
pub fn client_config(ca_file: &Path) -> Result<ClientTlsConfig, TlsError> {
    Ok(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca_file)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two nodes, one with a DNS name and one with an IP address as its public URL.
    pub(super) fn two_nodes() -> HubConfig {
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
            api_addr = "0.0.0.0:7001"
            public_url = "https://Kizuna-A.example.jp:7001"
            data_dir = "data/a"
            [[node]]
            id = 2
            name = "b"
            region = "r2"
            raft_addr = "127.0.0.1:7102"
            api_addr = "0.0.0.0:7002"
            public_url = "https://192.168.1.20:7002"
            data_dir = "data/b"
            "#,
        )
        .expect("a valid topology")
    }

    #[test]
    fn node_certificates_name_the_host_of_their_public_url() {
        let hub = two_nodes();
        let dir = tempfile::tempdir().expect("temp dir");
        generate(&hub, dir.path()).expect("certificates");
        // The certificate's DNS names and IP addresses, as text.
        let sans = |node: &str| -> Vec<String> {
            use x509_parser::extensions::GeneralName;
            let pem = read(&dir.path().join(format!("{node}.pem"))).expect("the node's certificate");
            let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM");
            let cert = pem.parse_x509().expect("a certificate");
            let san = cert.subject_alternative_name().expect("well-formed").expect("a SAN extension");
            let name = |n: &GeneralName| match n {
                GeneralName::DNSName(dns) => format!("dns:{dns}"),
                GeneralName::IPAddress(ip) => format!("ip:{ip:?}"),
                other => format!("{other:?}"),
            };
            san.value.general_names.iter().map(name).collect()
        };
        assert_eq!(
            sans("a"),
            ["dns:a", "dns:localhost", "dns:kizuna-a.example.jp", "ip:[127, 0, 0, 1]", "ip:[0, 0, 0, 0]"]
        );
        assert_eq!(
            sans("b"),
            ["dns:b", "dns:localhost", "ip:[127, 0, 0, 1]", "ip:[0, 0, 0, 0]", "ip:[192, 168, 1, 20]"]
        );
    }
}

//! The Web Push side of the notifier: the hub's VAPID key (RFC 8292) and one encrypted
//! (RFC 8291, aes128gcm) POST to a browser's push service.
//!
//! `web-push-native` builds the request (encryption and the VAPID `Authorization` header);
//! it is sent here over hyper, one connection per push (a few pushes a minute at most): TLS
//! with rustls and the Web PKI roots (push services are public HTTPS), HTTP/2 when the
//! service offers it, else HTTP/1.1. Plain HTTP is only for an endpoint on 127.0.0.1 or
//! [::1], and only when `[notifications] push_allow_loopback_http` is set (tests, a relay on
//! the same machine): the domain allows such endpoints, the API and this sender refuse them
//! otherwise, so a user cannot make the hub POST to its own machine.
//!
//! Endpoints identify a browser: logs never show one.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kizuna_domain::push::PushSubscription;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use web_push_native::jwt_simple::algorithms::{ECDSAP256PublicKeyLike, ES256KeyPair};
use web_push_native::{Auth, WebPushBuilder, p256};

/// How long one push (connect, TLS, request, answer) may take.
const PUSH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a push service keeps a message for a browser that is offline.
const TTL: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("VAPID key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("[notifications] {0}")]
    Config(String),
}

/// What a push service answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 2xx: the service took the message.
    Accepted,
    /// 404/410: the subscription no longer exists; remove it.
    Gone,
    /// Never worth repeating (the subscription's keys do not work, the service refuses our
    /// request: 400, 401, 403, 413...).
    Refused(String),
    /// Worth trying again later (5xx, 429, no connection, a timeout).
    Retry(String),
}

/// The hub's VAPID identity and how it reaches push services.
pub struct Pusher {
    key: ES256KeyPair,
    /// The application server key browsers subscribe with (base64url, uncompressed point).
    public_key: String,
    subject: String,
    allow_loopback_http: bool,
    tls: tokio_rustls::TlsConnector,
}

impl Pusher {
    /// The pusher of a `[notifications]` section, or None when it names no VAPID key.
    pub fn of_section(
        key_file: Option<&Path>,
        subject: Option<&str>,
        allow_loopback_http: bool,
    ) -> Result<Option<Self>, PushError> {
        let Some(path) = key_file else { return Ok(None) };
        let subject = subject.ok_or_else(|| PushError::Config("vapid_private_key_file needs vapid_subject".into()))?;
        if !(subject.starts_with("mailto:") || subject.starts_with("https://")) {
            return Err(PushError::Config("vapid_subject must be a mailto: or https: URL".into()));
        }
        let key = load_key(path)?;
        Ok(Some(Self {
            public_key: public_key_of(&key),
            key,
            subject: subject.to_owned(),
            allow_loopback_http,
            tls: tls_connector(),
        }))
    }

    /// The application server key browsers subscribe with.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// Sends `payload` to one browser.
    pub async fn send(&self, sub: &PushSubscription, payload: &[u8]) -> Answer {
        let request = match self.request(sub, payload) {
            Ok(r) => r,
            Err(reason) => return Answer::Refused(reason),
        };
        match tokio::time::timeout(PUSH_TIMEOUT, self.post(request)).await {
            Ok(Ok(status)) => classify(status),
            Ok(Err(reason)) => Answer::Retry(reason),
            Err(_) => Answer::Retry("timed out".into()),
        }
    }

    /// The encrypted, VAPID-signed request for `sub`.
    fn request(&self, sub: &PushSubscription, payload: &[u8]) -> Result<http::Request<Vec<u8>>, String> {
        let endpoint: http::Uri = sub.endpoint.parse().map_err(|_| "the endpoint is not a URL".to_owned())?;
        if endpoint.scheme_str() == Some("http") && !self.allow_loopback_http {
            return Err("plain http endpoints are not allowed on this hub".into());
        }
        let decode = |v: &str| URL_SAFE_NO_PAD.decode(v.trim_end_matches('='));
        let p256dh = decode(&sub.p256dh).map_err(|_| "p256dh is not base64url".to_owned())?;
        let ua_public = p256::PublicKey::from_sec1_bytes(&p256dh).map_err(|_| "p256dh is no P-256 key".to_owned())?;
        let auth = decode(&sub.auth).ok().filter(|a| a.len() == 16).ok_or("auth is not 16 bytes")?;
        WebPushBuilder::new(endpoint, ua_public, Auth::clone_from_slice(&auth))
            .with_valid_duration(TTL)
            .with_vapid(&self.key, &self.subject)
            .build(payload.to_vec())
            .map_err(|e| format!("the push could not be built: {e}"))
    }

    /// POSTs `request` and answers the status.
    async fn post(&self, request: http::Request<Vec<u8>>) -> Result<http::StatusCode, String> {
        let uri = request.uri().clone();
        let host = uri.host().ok_or("no host")?.trim_start_matches('[').trim_end_matches(']').to_owned();
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(|e| format!("connect: {e}"))?;
        let request = request.map(|body| Full::new(Bytes::from(body)));
        if !https {
            return exchange(TokioIo::new(tcp), false, request).await;
        }
        let name = ServerName::try_from(host).map_err(|e| format!("host name: {e}"))?;
        let tls = self.tls.connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        exchange(TokioIo::new(tls), h2, request).await
    }
}

/// One request on a fresh connection (HTTP/2 or HTTP/1.1), the answer's status.
async fn exchange<S>(io: TokioIo<S>, h2: bool, request: http::Request<Full<Bytes>>) -> Result<http::StatusCode, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let failed = |e: hyper::Error| format!("HTTP: {e}");
    let response = if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.map_err(failed)?;
        tokio::spawn(conn);
        sender.send_request(request).await.map_err(failed)?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(failed)?;
        tokio::spawn(conn);
        sender.send_request(origin_form(request)).await.map_err(failed)?
    };
    let status = response.status();
    // Read the (short) answer so the connection ends cleanly; its text is not logged.
    let _ = response.into_body().collect().await;
    Ok(status)
}

/// An HTTP/1.1 request as a server expects it: the path in the request line, the authority in
/// the Host header (HTTP/2 takes both from the URI).
fn origin_form(mut request: http::Request<Full<Bytes>>) -> http::Request<Full<Bytes>> {
    if let Some(authority) = request.uri().authority().cloned()
        && let Ok(value) = http::HeaderValue::from_str(authority.as_str())
    {
        request.headers_mut().insert(http::header::HOST, value);
    }
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    if let Ok(uri) = path.parse() {
        *request.uri_mut() = uri;
    }
    request
}

fn classify(status: http::StatusCode) -> Answer {
    match status.as_u16() {
        200..=299 => Answer::Accepted,
        404 | 410 => Answer::Gone,
        429 | 500..=599 => Answer::Retry(format!("status {status}")),
        _ => Answer::Refused(format!("status {status}")),
    }
}

/// rustls (ring) with the Web PKI roots, offering HTTP/2 and HTTP/1.1.
fn tls_connector() -> tokio_rustls::TlsConnector {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions");
    let mut config = builder.with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A VAPID private key file: PEM (PKCS#8 or SEC1, as `openssl ecparam -genkey` writes) or the
/// raw 32-byte P-256 scalar in base64url (as `kizuna admin vapid-key` writes).
pub fn load_key(path: &Path) -> Result<ES256KeyPair, PushError> {
    let failed = |reason: String| PushError::Key { path: path.display().to_string(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        return ES256KeyPair::from_pem(text).map_err(|e| failed(format!("not a P-256 PEM key: {e}")));
    }
    let raw = URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).map_err(|_| failed("not base64url".into()))?;
    ES256KeyPair::from_bytes(&raw).map_err(|e| failed(format!("not a P-256 private key: {e}")))
}

/// The application server key of `key`: its uncompressed public point, base64url.
pub fn public_key_of(key: &ES256KeyPair) -> String {
    URL_SAFE_NO_PAD.encode(key.public_key().public_key().to_bytes_uncompressed())
}

/// A new VAPID key: (private key for the file, public key) in base64url.
pub fn generate_key() -> (String, String) {
    let key = ES256KeyPair::generate();
    (URL_SAFE_NO_PAD.encode(key.to_bytes()), public_key_of(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_loads_back_with_the_same_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = generate_key();
        let path = dir.path().join("vapid.key");
        std::fs::write(&path, format!("{private}\n")).unwrap();
        assert_eq!(public_key_of(&load_key(&path).unwrap()), public);
        assert_eq!(URL_SAFE_NO_PAD.decode(&public).unwrap().len(), 65, "an uncompressed point");
        let pem = load_key(&path).unwrap().to_pem().unwrap();
        std::fs::write(&path, pem).unwrap();
        assert_eq!(public_key_of(&load_key(&path).unwrap()), public, "PEM too");
        std::fs::write(&path, "not a key").unwrap();
        assert!(load_key(&path).is_err());
    }

    #[test]
    fn answers_are_classified() {
        assert_eq!(classify(http::StatusCode::CREATED), Answer::Accepted);
        assert_eq!(classify(http::StatusCode::GONE), Answer::Gone);
        assert_eq!(classify(http::StatusCode::NOT_FOUND), Answer::Gone);
        assert!(matches!(classify(http::StatusCode::SERVICE_UNAVAILABLE), Answer::Retry(_)));
        assert!(matches!(classify(http::StatusCode::TOO_MANY_REQUESTS), Answer::Retry(_)));
        assert!(matches!(classify(http::StatusCode::FORBIDDEN), Answer::Refused(_)));
    }

    #[test]
    fn the_subject_is_required_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vapid.key");
        std::fs::write(&path, generate_key().0).unwrap();
        assert!(Pusher::of_section(None, None, false).unwrap().is_none(), "no key: no push");
        assert!(Pusher::of_section(Some(&path), None, false).is_err());
        assert!(Pusher::of_section(Some(&path), Some("kizuna@example.jp"), false).is_err());
        let pusher = Pusher::of_section(Some(&path), Some("mailto:ops@example.jp"), false).unwrap().unwrap();
        assert_eq!(pusher.public_key().len(), 87);
    }
}

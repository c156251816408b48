//! The browser client on the public port, next to gRPC and gRPC-Web: its files (embedded at
//! build time from node/web/dist, see build.rs), the headers that lock the page down, and CORS
//! so that a page loaded from one node of a hub can carry on against another when its own node
//! is down or cut off.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::handler::HandlerWithoutStateExt;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_layer::Layer;

use crate::config::{PublicEndpoint, url_host};

mod bundle {
    include!(concat!(env!("OUT_DIR"), "/web_bundle.rs"));
}

/// The page itself; `/` serves it too.
const INDEX: &str = "/index.html";

/// Why the web side could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("public URL {0:?} cannot be sent in an HTTP header")]
pub struct WebError(String);

/// `grpc` (the gRPC services, already behind gRPC-Web) with the browser client's files added:
/// `GET`/`HEAD` of `/` and of every bundle file; any other `GET` is a plain 404, any other
/// request still reaches gRPC's "unimplemented". CORS admits exactly `endpoints`' origins.
pub(super) fn with_browser_client(grpc: Router, endpoints: &[PublicEndpoint], tls: bool) -> Result<Router, WebError> {
    let origins = allowed_origins(endpoints).iter().map(|o| header_value(o)).collect::<Result<Vec<_>, _>>()?;
    let headers = Arc::new(page_headers(endpoints, tls)?);
    let mut router = grpc;
    for &(path, content_type, bytes) in bundle::BUNDLE {
        let file = file_route(headers.clone(), content_type, bytes);
        if path == INDEX {
            router = router.route("/", file.clone());
        }
        router = router.route(path, file);
    }
    let unknown =
        not_found_route(headers).fallback_service(tonic_web::GrpcWebLayer::new().layer(unimplemented.into_service()));
    Ok(router
        .fallback_service(unknown)
        .layer(cors(origins))
        .layer(axum::middleware::map_response(refused_gets_nothing)))
}

/// `native` (the gRPC services alone) for calls of a gRPC client, `browser` (the same behind
/// gRPC-Web, with the page's files and CORS) for everything else. A gRPC client sends
/// `application/grpc` and no `Origin` (browsers send one with every cross-origin or POST
/// request, and speak gRPC-Web): such a call skips the routing of the page's files, the
/// gRPC-Web translation and CORS, ~3 % of a busy leader's CPU (docs/benchmarks.md, session 19).
pub(super) fn native_grpc_first(native: Router, browser: Router) -> Router {
    Router::new().fallback_service(NativeFirst { native, browser })
}

#[derive(Clone)]
struct NativeFirst {
    native: Router,
    browser: Router,
}

impl tower_service::Service<http::Request<axum::body::Body>> for NativeFirst {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = axum::routing::future::RouteFuture<std::convert::Infallible>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        // Both routers are always ready (axum's `Router` is).
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<axum::body::Body>) -> Self::Future {
        let router = if is_native_grpc(req.version(), req.headers()) { &mut self.native } else { &mut self.browser };
        tower_service::Service::call(router, req)
    }
}

/// A call of a gRPC client: HTTP/2, `application/grpc` (with or without `+proto`), not
/// gRPC-Web, and no `Origin`. (Over HTTP/1.1 such a request gets gRPC-Web's 400, as before: a
/// client there could not receive the trailers that carry a call's status.)
fn is_native_grpc(version: http::Version, headers: &HeaderMap) -> bool {
    let grpc = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|content_type| {
        content_type.starts_with("application/grpc") && !content_type.starts_with("application/grpc-web")
    });
    version == http::Version::HTTP_2 && grpc && !headers.contains_key(header::ORIGIN)
}

/// Every node's public origin and, for a node published on a loopback address, the same with
/// `localhost`, which its certificate names too: a page opened at https://localhost:7001/
/// carries on against the other nodes like one opened at https://127.0.0.1:7001/.
fn allowed_origins(endpoints: &[PublicEndpoint]) -> Vec<String> {
    let aliases = endpoints.iter().filter_map(|e| loopback_alias(&e.url));
    endpoints.iter().map(|e| e.url.clone()).chain(aliases).collect()
}

/// `origin` with `localhost` for its host, when that host is a loopback address.
fn loopback_alias(origin: &str) -> Option<String> {
    let ip: IpAddr = url_host(origin)?.parse().ok()?;
    let uri: http::Uri = origin.parse().ok()?;
    let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    let scheme = uri.scheme_str()?;
    ip.is_loopback().then(|| format!("{scheme}://localhost{port}"))
}

fn header_value(text: &str) -> Result<HeaderValue, WebError> {
    HeaderValue::from_str(text).map_err(|_| WebError(text.to_owned()))
}

/// The headers of every page answer. The Content-Security-Policy lets the page load only its
/// own files and call only the hub's nodes: an injected script could neither load code from
/// elsewhere nor send patient data anywhere else.
fn page_headers(endpoints: &[PublicEndpoint], tls: bool) -> Result<HeaderMap, WebError> {
    let nodes: Vec<&str> = endpoints.iter().map(|e| e.url.as_str()).collect();
    let csp = format!(
        "default-src 'self'; connect-src 'self' {}; img-src 'self' data:; style-src 'self'; script-src 'self'; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        nodes.join(" ")
    );
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_SECURITY_POLICY, header_value(&csp)?);
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if tls {
        // No includeSubDomains: other names under the hub's domain need not be the hub's.
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
    Ok(headers)
}

/// `GET` (and `HEAD`, which axum answers from the same handler without the body) of one file.
fn file_route(headers: Arc<HeaderMap>, content_type: &'static str, bytes: &'static [u8]) -> MethodRouter {
    get(move || async move {
        let mut response = bytes.into_response();
        response.headers_mut().extend((*headers).clone());
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        // Revalidate every file, index.html first of all: the bundle's file names carry no
        // content hash, so a cached app.js could otherwise outlive its release.
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    })
}

/// A plain-text 404 for a `GET` of anything else: a browser shows it, where gRPC's answer
/// would be an empty page.
fn not_found_route(headers: Arc<HeaderMap>) -> MethodRouter {
    get(move || async move {
        let mut response = (StatusCode::NOT_FOUND, "404 not found\n").into_response();
        response.headers_mut().extend((*headers).clone());
        response
    })
}

/// What tonic answers a call of an unknown service.
async fn unimplemented() -> Response {
    tonic::Status::unimplemented("").into_http()
}

/// Cross-origin calls from the hub's own pages, nobody else's. The request headers are those
/// the browser client's gRPC-Web transport (connect-web) sends; the exposed ones carry a
/// call's outcome, which a browser hides from a cross-origin caller otherwise.
fn cors(origins: Vec<HeaderValue>) -> CorsLayer {
    let names = |names: &[&'static str]| names.iter().map(|n| HeaderName::from_static(n)).collect::<Vec<_>>();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::POST, Method::GET, Method::OPTIONS])
        .allow_headers(names(&[
            "content-type",
            "x-grpc-web",
            "x-user-agent",
            "authorization",
            "grpc-timeout",
            "connect-protocol-version",
        ]))
        .expose_headers(names(&["grpc-status", "grpc-message", "grpc-status-details-bin"]))
        // Fewer preflights: a browser may reuse one for ten minutes.
        .max_age(Duration::from_secs(600))
}

/// tower-http answers every preflight with the allowed methods and headers, whatever its
/// origin; one from an origin it did not allow gets none of them, so a refusal says nothing.
async fn refused_gets_nothing(mut response: Response) -> Response {
    if !response.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        for name in
            [header::ACCESS_CONTROL_ALLOW_METHODS, header::ACCESS_CONTROL_ALLOW_HEADERS, header::ACCESS_CONTROL_MAX_AGE]
        {
            response.headers_mut().remove(name);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(HeaderName, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(name, value)| (name.clone(), HeaderValue::from_static(value))).collect()
    }

    #[test]
    fn only_a_grpc_client_without_an_origin_takes_the_native_path() {
        let h2 = |pairs: &[(HeaderName, &'static str)]| is_native_grpc(http::Version::HTTP_2, &headers(pairs));
        assert!(h2(&[(header::CONTENT_TYPE, "application/grpc")]));
        assert!(h2(&[(header::CONTENT_TYPE, "application/grpc+proto")]));
        assert!(!h2(&[(header::CONTENT_TYPE, "application/grpc-web+proto")]), "gRPC-Web");
        let from_page = [(header::CONTENT_TYPE, "application/grpc"), (header::ORIGIN, "https://127.0.0.1:7001")];
        assert!(!h2(&from_page), "a page's call keeps CORS");
        assert!(!h2(&[]), "a GET of the page");
        let http1 = headers(&[(header::CONTENT_TYPE, "application/grpc")]);
        assert!(!is_native_grpc(http::Version::HTTP_11, &http1), "HTTP/1.1 cannot carry the status");
    }
}

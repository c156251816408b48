//! gRPC metrics of the public port, by method and status code, under the names Prometheus'
//! gRPC exporters use (`grpc_server_started_total`, `grpc_server_handled_total`,
//! `grpc_server_handling_seconds`): a tower layer around the gRPC routes (inside the gRPC-Web
//! translation, so browsers' calls count as the same methods).
//!
//! A call's code is its `grpc-status`: in the response headers for an answer without a body
//! (an error before any message), else in the trailers at the end of the body; a call whose
//! body is dropped before its end (the client went away) counts as `Cancelled`. The duration
//! runs until the body ends, so a server stream counts its whole life.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame};
use metrics::{Counter, Histogram, counter, histogram};
use tonic::Code;
use tower_layer::Layer;
use tower_service::Service;

/// Measures every gRPC call of one node.
#[derive(Clone)]
pub struct GrpcMetrics {
    methods: Methods,
}

/// Each served method's metrics by `package.Service/Method`, and the one all other paths share.
#[derive(Clone)]
struct Methods {
    known: Arc<HashMap<String, Arc<MethodMetrics>>>,
    unknown: Arc<MethodMetrics>,
}

impl Methods {
    fn of(&self, path: &str) -> Arc<MethodMetrics> {
        self.known.get(path).unwrap_or(&self.unknown).clone()
    }
}

/// One method's series. Each is looked up in the registry once, at its first call (a lookup
/// hashes and copies the labels: per call it was a measurable share of a write's CPU), and
/// only then appears on /metrics.
struct MethodMetrics {
    labels: [(&'static str, String); 3],
    started: OnceLock<Counter>,
    seconds: OnceLock<Histogram>,
    /// By `Code as usize` (0..=16).
    handled: [OnceLock<Counter>; 17],
}

impl MethodMetrics {
    fn new(service: &str, method: &str, node: &str) -> Self {
        Self {
            labels: [
                ("grpc_service", service.to_owned()),
                ("grpc_method", method.to_owned()),
                ("node", node.to_owned()),
            ],
            started: OnceLock::new(),
            seconds: OnceLock::new(),
            handled: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    fn started(&self) -> &Counter {
        self.started.get_or_init(|| counter!("grpc_server_started_total", &self.labels))
    }

    fn seconds(&self) -> &Histogram {
        self.seconds.get_or_init(|| histogram!("grpc_server_handling_seconds", &self.labels))
    }

    fn handled(&self, code: Code) -> &Counter {
        self.handled[(code as usize).min(16)].get_or_init(|| {
            let [service, method, node] = self.labels.clone();
            counter!("grpc_server_handled_total", &[service, method, node, ("grpc_code", code_name(code).to_owned())])
        })
    }
}

impl GrpcMetrics {
    /// `known`: every `package.Service/Method` the port serves. Any other path is counted as
    /// `unknown`, so a client cannot grow the registry by calling made-up methods.
    pub fn new(node: u64, known: HashSet<String>) -> Self {
        super::registry();
        let node = node.to_string();
        let known = known
            .into_iter()
            .filter_map(|path| {
                let (service, method) = path.split_once('/')?;
                let measured = Arc::new(MethodMetrics::new(service, method, &node));
                Some((path, measured))
            })
            .collect();
        let unknown = Arc::new(MethodMetrics::new("unknown", "unknown", &node));
        Self { methods: Methods { known: Arc::new(known), unknown } }
    }
}

/// Every `package.Service/Method` of the services in the encoded descriptor sets `sets`.
pub fn methods_of(sets: &[&[u8]]) -> HashSet<String> {
    use prost::Message;
    let mut methods = HashSet::new();
    for set in sets {
        let Ok(set) = prost_types::FileDescriptorSet::decode(*set) else { continue };
        for file in set.file {
            for service in &file.service {
                let name = format!("{}.{}", file.package(), service.name());
                methods.extend(service.method.iter().map(|m| format!("{name}/{}", m.name())));
            }
        }
    }
    methods
}

impl<S> Layer<S> for GrpcMetrics {
    type Service = Measured<S>;

    fn layer(&self, inner: S) -> Measured<S> {
        Measured { inner, methods: self.methods.clone() }
    }
}

#[derive(Clone)]
pub struct Measured<S> {
    inner: S,
    methods: Methods,
}

/// One gRPC call being measured.
pub struct Call {
    method: Arc<MethodMetrics>,
    started: Instant,
}

impl Call {
    /// A gRPC request (`/package.Service/Method`, content type `application/grpc…`); None for
    /// anything else on the port (the browser client's files).
    fn of<B>(request: &http::Request<B>, methods: &Methods) -> Option<Self> {
        let grpc = request.headers().get(http::header::CONTENT_TYPE)?.as_bytes().starts_with(b"application/grpc");
        if !grpc {
            return None;
        }
        let method = methods.of(request.uri().path().strip_prefix('/').unwrap_or_default());
        method.started().increment(1);
        Some(Self { method, started: Instant::now() })
    }

    fn finish(self, code: Code) {
        self.method.seconds().record(self.started.elapsed().as_secs_f64());
        self.method.handled(code).increment(1);
    }
}

/// The names the gRPC exporters of other languages use.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

fn status_in(headers: &http::HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    Some(Code::from_i32(value))
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Measured<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<MeasuredBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let call = Call::of(&request, &self.methods);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let (parts, body) = answer.await?.into_parts();
            let mut body = MeasuredBody { inner: body, call, code: None };
            if let Some(code) = status_in(&parts.headers) {
                // Trailers-only: the status is the whole answer.
                body.code = Some(code);
            }
            Ok(http::Response::from_parts(parts, body))
        })
    }
}

/// A response body that records its call when it ends.
pub struct MeasuredBody<B> {
    inner: B,
    call: Option<Call>,
    code: Option<Code>,
}

impl<B> MeasuredBody<B> {
    fn finish(&mut self, fallback: Code) {
        if let Some(call) = self.call.take() {
            call.finish(self.code.unwrap_or(fallback));
        }
    }
}

impl<B> Drop for MeasuredBody<B> {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

impl<B: Body + Unpin> Body for MeasuredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_in) {
                    self.code = Some(code);
                }
            }
            Poll::Ready(Some(Err(_))) => self.finish(Code::Internal),
            // A body that ends without a status (not gRPC after all) counts as answered.
            Poll::Ready(None) => self.finish(Code::Ok),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_known_methods_come_from_the_descriptors() {
        let known = methods_of(&[kizuna_proto::PUBLIC_FILE_DESCRIPTOR_SET]);
        assert!(known.contains("kizuna.posts.v1.PostService/CreatePost"), "{known:?}");
        assert!(known.contains("kizuna.admin.v1.ClusterAdminService/CreateBackup"));
        assert!(!known.iter().any(|m| m.starts_with("kizuna.raft.")), "the internal port's services are not public");
    }

    #[test]
    fn a_made_up_method_counts_as_unknown() {
        let metrics = GrpcMetrics::new(1, methods_of(&[kizuna_proto::PUBLIC_FILE_DESCRIPTOR_SET]));
        let call = |path: &str| {
            let request = http::Request::builder()
                .uri(path)
                .header(http::header::CONTENT_TYPE, "application/grpc")
                .body(())
                .expect("a request");
            Call::of(&request, &metrics.methods).map(|c| (c.method.labels[0].1.clone(), c.method.labels[1].1.clone()))
        };
        let posts = ("kizuna.posts.v1.PostService".to_owned(), "CreatePost".to_owned());
        assert_eq!(call("/kizuna.posts.v1.PostService/CreatePost"), Some(posts));
        let unknown = Some(("unknown".to_owned(), "unknown".to_owned()));
        assert_eq!(call("/kizuna.posts.v1.PostService/Made-up-42"), unknown);
        assert_eq!(call("/anything/at/all"), unknown);
    }
}

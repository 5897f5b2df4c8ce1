//! A minimal HTTP/1.1 server answering every request with one fixed body: the
//! benchmark's upstream (so every proxy is measured against the same, nearly free,
//! backend) and the JWKS endpoint.

use std::convert::Infallible;

use anyhow::Context as _;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Serves `body` with `content_type` on `127.0.0.1:port` until the process is killed.
///
/// One task per connection on the multi-threaded runtime; keep-alive is hyper's
/// default. `TCP_NODELAY` is set as `nginx` and `haproxy` set it on their sockets, so small
/// responses are not held back by Nagle's algorithm.
pub(crate) async fn serve(
    port: u16,
    content_type: &'static str,
    body: Vec<u8>,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    let body = Bytes::from(body);
    let content_type = HeaderValue::from_static(content_type);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Running out of file descriptors under load is transient: keep serving.
            Err(error) => {
                eprintln!("accept: {error}");
                continue;
            }
        };
        stream.set_nodelay(true)?;
        let (body, content_type) = (body.clone(), content_type.clone());
        tokio::spawn(async move {
            let service = service_fn(move |_request: Request<Incoming>| {
                let mut response = Response::new(Full::new(body.clone()));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, content_type.clone());
                async move { Ok::<_, Infallible>(response) }
            });
            // A client closing mid-request is normal at the end of a wrk run.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

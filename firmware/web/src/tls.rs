//! HTTPS listeners and the plain-HTTP redirect.
//!
//! TLS handshakes run in their own tasks (bounded in time), so a client
//! that opens a connection and says nothing holds up no one else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// Longest a TLS handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Connections handshaken but not yet served.
const BACKLOG: usize = 64;

/// The addresses bound (a port 0 asked for gets its real port here).
#[derive(Debug, Clone, Default)]
pub struct Bound {
    /// HTTPS.
    pub https: Vec<SocketAddr>,
    /// Plain HTTP answering only with a redirect to HTTPS.
    pub http: Vec<SocketAddr>,
}

/// The peer's address (`ConnectInfo<Peer>`), for login limits and audit
/// logs.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Connections that finished their TLS handshake, for `axum::serve`.
struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The acceptor has stopped (shutdown): serve nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// A TLS server config (HTTP/1.1) from a PEM certificate chain and key;
/// `what` names them in errors ("the console certificate").
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    what: &str,
) -> anyhow::Result<rustls::ServerConfig> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{what} is not PEM"))?;
    anyhow::ensure!(!chain.is_empty(), "{what} file holds no certificate");
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .with_context(|| format!("the key of {what} is not a PEM private key"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| format!("{what} does not go with its key"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Binds every address (`https` at least one), then serves `app` over TLS
/// on the first kind and a redirect to the first HTTPS port on the second,
/// until `shutdown`. `name` prefixes the log lines.
pub async fn serve(
    name: &'static str,
    https: &[SocketAddr],
    redirect: &[SocketAddr],
    tls: rustls::ServerConfig,
    app: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<Bound> {
    anyhow::ensure!(!https.is_empty(), "{name}: no HTTPS address to listen on");
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let mut bound = Bound::default();
    let mut secure = Vec::new();
    for a in https {
        let l = TcpListener::bind(a)
            .await
            .with_context(|| format!("{name}: cannot listen on {a}"))?;
        bound.https.push(l.local_addr()?);
        secure.push(l);
    }
    let mut plain = Vec::new();
    for a in redirect {
        let l = TcpListener::bind(a)
            .await
            .with_context(|| format!("{name}: cannot listen on {a}"))?;
        bound.http.push(l.local_addr()?);
        plain.push(l);
    }
    let https_port = bound.https[0].port();
    for l in secure {
        let local = l.local_addr()?;
        let (tx, rx) = mpsc::channel(BACKLOG);
        tokio::spawn(accept_tls(name, l, acceptor.clone(), tx, shutdown.clone()));
        let serve = axum::serve(
            TlsListener { rx, local },
            app.clone().into_make_service_with_connect_info::<Peer>(),
        )
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!("{name} on {local} stopped: {e}");
            }
        });
    }
    for l in plain {
        let redirect = Router::new().fallback(move |req: axum::extract::Request| async move {
            redirect_to_https(&req, https_port)
        });
        let serve = axum::serve(l, redirect.into_make_service_with_connect_info::<Peer>())
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!("{name} redirect stopped: {e}");
            }
        });
    }
    Ok(bound)
}

async fn accept_tls(
    name: &'static str,
    l: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    shutdown: CancellationToken,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            r = l.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors and the like: wait, do not spin.
                    tracing::warn!("{name}: accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, "{name}: TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(%peer, "{name}: TLS handshake timed out"),
            }
        });
    }
}

/// `308` to the same path on HTTPS, on the host the browser asked for.
fn redirect_to_https(req: &axum::extract::Request, port: u16) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse as _;
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(host_only)
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        });
    let Some(host) = host else {
        return (StatusCode::BAD_REQUEST, "a Host header is needed\n").into_response();
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let port = if port == 443 {
        String::new()
    } else {
        format!(":{port}")
    };
    (
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, format!("https://{host}{port}{path}"))],
    )
        .into_response()
}

/// `host` without its port (`[::1]:80` → `[::1]`).
fn host_only(h: &str) -> &str {
    if let Some(end) = h.find(']') {
        return &h[..=end];
    }
    h.split(':').next().unwrap_or(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_their_port() {
        assert_eq!(host_only("box.local:8080"), "box.local");
        assert_eq!(host_only("[::1]:80"), "[::1]");
        assert_eq!(host_only("10.0.0.2"), "10.0.0.2");
    }
}

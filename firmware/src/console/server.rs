//! The console's listeners: HTTPS on each `listen` address, and plain HTTP
//! on each `redirect` address answering only with a redirect to HTTPS
//! (the web crate's [`callbox_web::tls`]), with the box's certificate.

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

use super::ConsoleDeps;

pub(super) use callbox_web::tls::Peer;

/// The console as it came up.
#[derive(Debug, Clone)]
pub struct Started {
    /// The HTTPS addresses bound (a port 0 in the config gets its real port
    /// here).
    pub https: Vec<SocketAddr>,
    /// The redirecting HTTP addresses bound.
    pub http: Vec<SocketAddr>,
    /// The SHA-256 fingerprint of the certificate served.
    pub fingerprint: String,
}

/// Binds every address, then serves until `shutdown`.
pub(super) async fn start(
    deps: ConsoleDeps,
    shutdown: CancellationToken,
) -> anyhow::Result<Started> {
    let id = super::identity(&deps.config, &deps.data_dir)?;
    let fingerprint = crate::certs::fingerprint(&id.cert_pem).unwrap_or_default();
    let tls =
        callbox_web::tls::server_config(&id.cert_pem, &id.key_pem, "the console certificate")?;
    let (listen, redirect) = (deps.config.listen.clone(), deps.config.redirect.clone());
    let app = super::api::router(deps, shutdown.clone());
    let bound = callbox_web::tls::serve("console", &listen, &redirect, tls, app, shutdown).await?;
    Ok(Started {
        https: bound.https,
        http: bound.http,
        fingerprint,
    })
}

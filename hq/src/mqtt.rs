//! The broker connection shared by every fleet command: the `--broker`,
//! `--root` and TLS options, the rustls client config (fleet CA and
//! headquarters' client certificate), client ids, topic parsing, and the
//! task that owns the connection.
//!
//! One task owns the rumqttc event loop ([`spawn`]); it (re)subscribes on
//! every connection, reconnects with a doubling backoff, and reports what
//! happens as [`Note`]s on a channel. Commands never poll the event loop
//! themselves, so a signal or a deadline can never cancel it half-way
//! through writing a packet; they stop it with `client.disconnect()` and
//! [`Connection::close`].

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, Publish, QoS,
    SubscribeFilter, SubscribeReasonCode, TlsConfiguration, Transport,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// MQTT's own limit on a packet (remaining length 268,435,455 plus the
/// fixed header). rumqttc drops the connection on a bigger incoming packet,
/// and a persistent session would redeliver it forever, so the client takes
/// anything the broker sends and the commands apply their own limits.
const MQTT_MAX_PACKET: usize = 268_435_455 + 5;

/// Where the broker is and how to reach it; flattened into every fleet
/// command.
#[derive(Args, Debug, Clone)]
pub struct BrokerArgs {
    /// Broker URL: mqtts://HOST[:PORT] (default port 8883) or
    /// mqtt://HOST[:PORT] (1883, needs --allow-plain).
    #[arg(long, value_name = "URL")]
    pub broker: String,
    /// Topic root, the boxes' `[uplink] root`.
    #[arg(long, default_value = "callbox", value_name = "ROOT")]
    pub root: String,
    /// Fleet CA certificate(s), PEM: the broker's certificate must chain to it.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Headquarters' client certificate (chain), PEM.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key, PEM.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Allow an unencrypted mqtt:// broker (tests, a broker on loopback).
    #[arg(long)]
    pub allow_plain: bool,
}

/// A checked broker address and transport.
#[derive(Clone)]
pub struct Broker {
    /// The URL as given (for messages).
    pub url: String,
    host: String,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Topic root.
    pub root: String,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("url", &self.url)
            .field("tls", &self.tls.is_some())
            .field("root", &self.root)
            .finish()
    }
}

impl BrokerArgs {
    /// Checks the URL and reads the TLS files; errors name the option and
    /// file at fault.
    pub fn resolve(&self) -> Result<Broker> {
        let (tls, host, port) = parse_broker(&self.broker)?;
        if self.root.is_empty()
            || self.root.starts_with('/')
            || self.root.ends_with('/')
            || self.root.contains(['+', '#', '\0'])
        {
            bail!(
                "--root `{}`: a topic prefix without wildcards or leading/trailing `/`",
                self.root
            );
        }
        let tls = if tls {
            let Some(ca) = &self.ca else {
                bail!(
                    "--broker {}: mqtts:// needs --ca (the fleet CA)",
                    self.broker
                );
            };
            let identity = match (&self.cert, &self.key) {
                (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
                _ => None,
            };
            Some(Arc::new(tls_config(ca, identity)?))
        } else {
            if !self.allow_plain {
                bail!(
                    "--broker {}: mqtt:// is unencrypted; use mqtts:// or pass --allow-plain",
                    self.broker
                );
            }
            if self.ca.is_some() || self.cert.is_some() {
                bail!(
                    "--broker {}: --ca, --cert and --key are for mqtts:// brokers",
                    self.broker
                );
            }
            None
        };
        Ok(Broker {
            url: self.broker.clone(),
            host,
            port,
            tls,
            root: self.root.clone(),
        })
    }
}

impl Broker {
    /// MQTT options for one connection of this process.
    pub fn options(&self, client_id: &str, clean_session: bool) -> MqttOptions {
        let mut o = MqttOptions::new(client_id, self.host.clone(), self.port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_clean_session(clean_session);
        o.set_max_packet_size(MQTT_MAX_PACKET, 16 << 20);
        if let Some(cfg) = &self.tls {
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                cfg.clone(),
            )));
        }
        o
    }

    /// `{root}/{site}/{box}`.
    pub fn base(&self, site: &str, box_id: &str) -> String {
        format!("{}/{site}/{box_id}", self.root)
    }
}

/// Splits `{root}/{site}/{box}/{rest}` into its parts; `None` for a topic
/// outside the root or without a rest.
pub fn split<'t>(root: &str, topic: &'t str) -> Option<BoxTopic<'t>> {
    let tail = topic.strip_prefix(root)?.strip_prefix('/')?;
    let mut parts = tail.splitn(3, '/');
    let site = parts.next()?;
    let box_id = parts.next()?;
    let rest = parts.next()?;
    if site.is_empty() || box_id.is_empty() || rest.is_empty() {
        return None;
    }
    Some(BoxTopic { site, box_id, rest })
}

/// A topic under `{root}/{site}/{box}/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxTopic<'t> {
    /// Site id.
    pub site: &'t str,
    /// Box id.
    pub box_id: &'t str,
    /// What follows the box: `status`, `records/cdr`, `events/agent`…
    pub rest: &'t str,
}

/// `mqtts://host:port` → (tls, host, port).
fn parse_broker(url: &str) -> Result<(bool, String, u16)> {
    let bad = |why: &str| {
        anyhow::anyhow!("--broker `{url}`: {why}; write e.g. mqtts://mqtt.example.com:8883")
    };
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else {
        return Err(bad("the scheme must be mqtts:// or mqtt://"));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        // `[::1]` without a port: the colon is the address's.
        Some((h, p)) if !p.ends_with(']') => (
            h,
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
        ),
        _ => (rest, if tls { 8883 } else { 1883 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(['/', '@', ' ', '?']) {
        return Err(bad("no host name"));
    }
    Ok((tls, host.to_string(), port))
}

/// The rustls client config: the fleet CA as the only root, and
/// headquarters' client certificate when one is given.
fn tls_config(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<rustls::ClientConfig> {
    let read = |opt: &str, p: &Path| {
        std::fs::read(p).with_context(|| format!("{opt} {}: cannot read it", p.display()))
    };
    let certs = |opt: &str, p: &Path| -> Result<Vec<CertificateDer<'static>>> {
        let pem = read(opt, p)?;
        let list = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("{opt} {}: not a PEM certificate ({e})", p.display()))?;
        if list.is_empty() {
            bail!("{opt} {}: no certificate in the file", p.display());
        }
        Ok(list)
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in certs("--ca", ca)? {
        roots
            .add(c)
            .map_err(|e| anyhow::anyhow!("--ca {}: unusable certificate ({e})", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS set-up")?
        .with_root_certificates(roots);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = certs("--cert", cert)?;
            let pem = read("--key", key)?;
            let key_der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
                anyhow::anyhow!("--key {}: not a PEM private key ({e})", key.display())
            })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .with_context(|| {
                    format!(
                        "--cert {} with --key {}: unusable client identity",
                        cert.display(),
                        key.display()
                    )
                })
        }
    }
}

/// A random number, seeded by the OS through std's hasher keys (enough for
/// ids that must not collide between processes).
pub fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// A client id unique to this process: `callbox-hq-<cmd>-<pid>-<random>`.
pub fn client_id(cmd: &str) -> String {
    format!(
        "callbox-hq-{cmd}-{}-{:08x}",
        std::process::id(),
        random_u64() as u32
    )
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Now, as the boxes write times: `2026-11-23T10:00:00.000Z`.
pub fn now_text() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

/// Writes one line to stdout and flushes it (readers follow through a
/// pipe). `false` when stdout is gone (the reader closed the pipe).
pub fn out_line(line: &str) -> bool {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}

/// Resolves on SIGINT or SIGTERM. Registered when called, so call it
/// before connecting.
pub fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// What the connection task reports.
#[derive(Debug)]
pub enum Note {
    /// Connected (`session_present`: the broker resumed our session).
    Connected {
        /// The broker kept our session (subscriptions, queued messages).
        session_present: bool,
    },
    /// The subscriptions were answered; `refused` lists the filters the
    /// broker refused.
    Subscribed {
        /// Filters refused by the broker (ACLs, shared subscriptions off).
        refused: Vec<String>,
    },
    /// A message.
    Message(Publish),
    /// The connection failed or dropped; the task retries after `retry_in`.
    Lost {
        /// What went wrong.
        error: String,
        /// The wait before the next attempt.
        retry_in: Duration,
    },
}

/// The running connection task.
#[derive(Debug)]
pub struct Connection {
    /// Publishes, acks, disconnects.
    pub client: AsyncClient,
    /// What the task reports.
    pub notes: mpsc::UnboundedReceiver<Note>,
    task: JoinHandle<()>,
}

impl Connection {
    /// Disconnects cleanly (what was queued before is written first) and
    /// waits up to `grace` for the task to end.
    pub async fn close(self, grace: Duration) {
        let Connection { client, task, .. } = self;
        // Fails only if the task is gone already.
        let _ = client.disconnect().await;
        let abort = task.abort_handle();
        if tokio::time::timeout(grace, task).await.is_err() {
            abort.abort();
        }
    }
}

/// Starts the task that owns the connection: it subscribes to `subs` on
/// every connection (a resumed session keeps them; subscribing again does
/// no harm) and reconnects after a failure, waiting 1 s doubling to 30 s.
pub fn spawn(options: MqttOptions, subs: Vec<(String, QoS)>) -> Connection {
    let (client, eventloop) = AsyncClient::new(options, 1024);
    let (tx, notes) = mpsc::unbounded_channel();
    let task = tokio::spawn(drive(eventloop, client.clone(), subs, tx));
    Connection {
        client,
        notes,
        task,
    }
}

async fn drive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    subs: Vec<(String, QoS)>,
    tx: mpsc::UnboundedSender<Note>,
) {
    const MIN: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(30);
    let mut step = MIN;
    let mut sub_pkid: Option<u16> = None;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                step = MIN;
                let _ = tx.send(Note::Connected {
                    session_present: ack.session_present,
                });
                if !subs.is_empty() {
                    let filters = subs
                        .iter()
                        .map(|(t, q)| SubscribeFilter::new(t.clone(), *q));
                    if let Err(e) = client.try_subscribe_many(filters) {
                        let _ = tx.send(Note::Lost {
                            error: format!("cannot subscribe: {e}"),
                            retry_in: MIN,
                        });
                    }
                }
            }
            Ok(Event::Outgoing(Outgoing::Subscribe(pkid))) => sub_pkid = Some(pkid),
            Ok(Event::Incoming(Packet::SubAck(ack))) if Some(ack.pkid) == sub_pkid => {
                let refused = ack
                    .return_codes
                    .iter()
                    .zip(&subs)
                    .filter(|(c, _)| matches!(c, SubscribeReasonCode::Failure))
                    .map(|(_, (t, _))| t.clone())
                    .collect();
                let _ = tx.send(Note::Subscribed { refused });
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let _ = tx.send(Note::Message(p));
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(ConnectionError::RequestsDone) => return,
            Err(e) => {
                let _ = tx.send(Note::Lost {
                    error: describe(&e),
                    retry_in: step,
                });
                tokio::time::sleep(step).await;
                step = (step * 2).min(MAX);
            }
        }
    }
}

/// A connection error in words an operator can act on.
fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => {
            format!("the broker refused the connection ({code:?})")
        }
        ConnectionError::Io(io) => format!("network: {io}"),
        e => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse_with_default_ports() {
        assert_eq!(
            parse_broker("mqtts://hq.example:9000").unwrap(),
            (true, "hq.example".into(), 9000)
        );
        assert_eq!(
            parse_broker("mqtt://127.0.0.1").unwrap(),
            (false, "127.0.0.1".into(), 1883)
        );
        assert_eq!(
            parse_broker("mqtts://[::1]").unwrap(),
            (true, "::1".into(), 8883)
        );
        assert_eq!(
            parse_broker("mqtts://[::1]:8884").unwrap(),
            (true, "::1".into(), 8884)
        );
        assert!(
            parse_broker("http://x")
                .unwrap_err()
                .to_string()
                .contains("scheme")
        );
        assert!(
            parse_broker("mqtt://x:0")
                .unwrap_err()
                .to_string()
                .contains("port")
        );
        assert!(
            parse_broker("mqtts://:8883")
                .unwrap_err()
                .to_string()
                .contains("host")
        );
    }

    #[test]
    fn plain_broker_needs_allow_plain() {
        let mut a = BrokerArgs {
            broker: "mqtt://127.0.0.1:1883".into(),
            root: "callbox".into(),
            ca: None,
            cert: None,
            key: None,
            allow_plain: false,
        };
        let e = a.resolve().unwrap_err().to_string();
        assert!(e.contains("--allow-plain"), "{e}");
        a.allow_plain = true;
        assert!(a.resolve().is_ok());
        a.broker = "mqtts://127.0.0.1".into();
        let e = a.resolve().unwrap_err().to_string();
        assert!(e.contains("--ca"), "{e}");
    }

    #[test]
    fn topics_split_under_the_root_only() {
        let split = |t| split("fleet/eu", t);
        assert_eq!(
            split("fleet/eu/branch-1/box-1/records/cdr"),
            Some(BoxTopic {
                site: "branch-1",
                box_id: "box-1",
                rest: "records/cdr"
            })
        );
        assert_eq!(split("fleet/eux/a/b/status"), None);
        assert_eq!(split("fleet/eu/a/b"), None);
        assert_eq!(split("other/a/b/status"), None);
    }

    #[test]
    fn client_ids_differ_between_calls() {
        assert_ne!(client_id("fleet"), client_id("fleet"));
        assert!(client_id("cmd").starts_with("callbox-hq-cmd-"));
    }
}

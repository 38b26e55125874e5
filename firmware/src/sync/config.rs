//! The `[uplink]` part of the site config: how the box reaches headquarters'
//! broker. Without it the box runs alone and its outbox only grows.
//!
//! ```toml
//! [uplink]
//! broker = "mqtts://mqtt.hq.example:8883"   # mqtt://… needs allow_plain = true
//! box = "box-0001"                          # this box's id in topics
//! ca = "/data/identity/ca.pem"              # the fleet CA
//! cert = "/data/identity/box.pem"           # the box's client certificate
//! key = "/data/identity/box.key"            # its private key, mode 0600
//! ```
//!
//! Every other key has a default (see docs/config.md, "Fleet link").

use std::path::{Path, PathBuf};
use std::time::Duration;

use callbox_hal::diag::parse_duration;
use serde::Deserialize;

use crate::recorder::config::parse_size;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUplink {
    broker: String,
    #[serde(rename = "box")]
    box_id: String,
    #[serde(default)]
    root: Option<String>,
    #[serde(default)]
    ca: Option<PathBuf>,
    #[serde(default)]
    cert: Option<PathBuf>,
    #[serde(default)]
    key: Option<PathBuf>,
    #[serde(default)]
    allow_plain: bool,
    #[serde(default)]
    keep_alive: Option<String>,
    #[serde(default)]
    backoff_min: Option<String>,
    #[serde(default)]
    backoff_max: Option<String>,
    #[serde(default)]
    telemetry_every: Option<String>,
    #[serde(default)]
    chunk_size: Option<String>,
    #[serde(default)]
    max_message: Option<String>,
    #[serde(default)]
    batch: Option<usize>,
    #[serde(default)]
    inflight: Option<u16>,
    #[serde(default)]
    e2e_ack: bool,
    #[serde(default)]
    ack_timeout: Option<String>,
}

/// TLS material, read and checked when the config is loaded.
#[derive(Clone)]
pub struct Tls {
    /// The fleet CA, PEM.
    pub ca: Vec<u8>,
    /// The box's certificate (chain), PEM.
    pub cert: Vec<u8>,
    /// The box's private key, PEM.
    pub key: Vec<u8>,
    /// Where the key came from (for messages; never its content).
    pub key_path: PathBuf,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

/// A checked `[uplink]`.
#[derive(Debug, Clone)]
pub struct UplinkConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// TLS material; `None` only for `mqtt://` with `allow_plain = true`.
    pub tls: Option<Tls>,
    /// Box id.
    pub box_id: String,
    /// Topic root.
    pub root: String,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// First reconnect wait.
    pub backoff_min: Duration,
    /// Longest reconnect wait.
    pub backoff_max: Duration,
    /// Telemetry period.
    pub telemetry_every: Duration,
    /// Recording chunk size in bytes (before base64).
    pub chunk_size: usize,
    /// Largest message the box publishes, in bytes.
    pub max_message: usize,
    /// Most records in one message.
    pub batch: usize,
    /// Most messages awaiting the broker's acknowledgement.
    pub inflight: u16,
    /// Keep records until the collector acknowledges them.
    pub e2e_ack: bool,
    /// Resend what was not acknowledged end to end after this.
    pub ack_timeout: Duration,
}

impl UplinkConfig {
    /// `{root}/{site}/{box}`, the prefix of every topic of this box.
    pub fn base_topic(&self, site: &str) -> String {
        format!("{}/{}/{}", self.root, site, self.box_id)
    }
}

/// Ids that appear in topics: the rule shared with provisioning and
/// headquarters, under the name the sync actor checks request ids with.
pub use callbox_contract::valid_id as valid_topic_id;

/// Checks the section; problems come back as `(key path, message)` pairs.
/// Relative paths are taken from `base` (the config file's directory).
pub(crate) fn check(raw: &RawUplink, base: &Path) -> Result<UplinkConfig, Vec<(String, String)>> {
    let mut errs: Vec<(String, String)> = Vec::new();
    let mut err = |k: &str, m: String| errs.push((format!("uplink.{k}"), m));
    let (tls_wanted, host, port) = match parse_broker(&raw.broker) {
        Ok(v) => v,
        Err(e) => {
            err("broker", e);
            // Only the URL is wrong: do not pile up complaints about TLS
            // files a plain link would not need.
            (!raw.allow_plain, String::new(), 0)
        }
    };
    if !tls_wanted && !raw.allow_plain {
        err(
            "broker",
            format!(
                "`{}` is plain MQTT: records and commands would cross the network unencrypted; use mqtts:// or set allow_plain = true",
                raw.broker
            ),
        );
    }
    if !callbox_contract::valid_id(&raw.box_id) {
        err(
            "box",
            format!(
                "box id `{}` must be {}",
                raw.box_id,
                callbox_contract::ID_RULE
            ),
        );
    }
    let root = raw.root.clone().unwrap_or_else(|| "callbox".into());
    if root.is_empty()
        || root.starts_with('/')
        || root.ends_with('/')
        || root.contains(['+', '#', '$'])
        || root.split('/').any(str::is_empty)
    {
        err(
            "root",
            format!(
                "topic root `{root}` must be topic levels without wildcards, `$` or empty levels"
            ),
        );
    }
    let mut tls = None;
    if tls_wanted {
        let mut read = |k: &str, p: &Option<PathBuf>| -> Option<(PathBuf, Vec<u8>)> {
            let Some(p) = p else {
                err(k, format!("`{k}` is needed for mqtts://"));
                return None;
            };
            let path = base.join(p);
            match std::fs::read(&path) {
                Ok(b) if b.is_empty() => {
                    err(k, format!("{} is empty", path.display()));
                    None
                }
                Ok(b) => Some((path, b)),
                Err(e) => {
                    err(k, format!("cannot read {}: {e}", path.display()));
                    None
                }
            }
        };
        let ca = read("ca", &raw.ca);
        let cert = read("cert", &raw.cert);
        let key = read("key", &raw.key);
        if let Some((path, _)) = &key {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = std::fs::metadata(path)
                && m.permissions().mode() & 0o077 != 0
            {
                err(
                    "key",
                    format!(
                        "private key {} is readable by others (mode {:04o}); chmod 600 it",
                        path.display(),
                        m.permissions().mode() & 0o7777
                    ),
                );
            }
        }
        if let (Some((_, ca)), Some((_, cert)), Some((key_path, key))) = (ca, cert, key) {
            let t = Tls {
                ca,
                cert,
                key,
                key_path,
            };
            match super::link::tls_config(&t) {
                Ok(_) => tls = Some(t),
                Err(e) => err("cert", e),
            }
        }
    }
    let mut dur = |k: &str, v: &Option<String>, def: Duration, min: Duration| -> Duration {
        let Some(s) = v else { return def };
        match parse_duration(s) {
            Ok(d) if d < min => {
                err(k, format!("`{s}` is shorter than the {min:?} allowed"));
                def
            }
            Ok(d) => d,
            Err(e) => {
                err(k, e);
                def
            }
        }
    };
    let keep_alive = dur(
        "keep_alive",
        &raw.keep_alive,
        Duration::from_secs(30),
        Duration::from_secs(5),
    );
    let backoff_min = dur(
        "backoff_min",
        &raw.backoff_min,
        Duration::from_secs(1),
        Duration::from_millis(100),
    );
    let backoff_max = dur(
        "backoff_max",
        &raw.backoff_max,
        Duration::from_secs(60),
        Duration::from_millis(100),
    );
    let telemetry_every = dur(
        "telemetry_every",
        &raw.telemetry_every,
        Duration::from_secs(30),
        Duration::from_secs(1),
    );
    let ack_timeout = dur(
        "ack_timeout",
        &raw.ack_timeout,
        Duration::from_secs(60),
        Duration::from_secs(1),
    );
    if backoff_max < backoff_min {
        err(
            "backoff_max",
            "backoff_max is shorter than backoff_min".into(),
        );
    }
    let mut size = |k: &str, v: &Option<String>, def: usize, lo: usize, hi: usize| -> usize {
        let Some(s) = v else { return def };
        match parse_size(s) {
            Ok(n) if (lo as u64..=hi as u64).contains(&n) => n as usize,
            Ok(_) => {
                err(k, format!("`{s}` must be between {lo} and {hi} bytes"));
                def
            }
            Err(e) => {
                err(k, e);
                def
            }
        }
    };
    let max_message = size(
        "max_message",
        &raw.max_message,
        120 << 10,
        4 << 10,
        256 << 20,
    );
    let chunk_size = size("chunk_size", &raw.chunk_size, 64 << 10, 1 << 10, 64 << 20);
    // Base64 makes a chunk a third bigger, and the envelope needs room.
    if chunk_size.div_ceil(3) * 4 + 1024 > max_message {
        err(
            "chunk_size",
            format!(
                "a chunk of {chunk_size} bytes is {} bytes once base64-encoded, more than max_message ({max_message}) allows",
                chunk_size.div_ceil(3) * 4 + 1024
            ),
        );
    }
    let batch = raw.batch.unwrap_or(100);
    if !(1..=10_000).contains(&batch) {
        err("batch", format!("batch = {batch}: use 1 to 10000"));
    }
    let inflight = raw.inflight.unwrap_or(32);
    if !(1..=1000).contains(&inflight) {
        err("inflight", format!("inflight = {inflight}: use 1 to 1000"));
    }
    if errs.is_empty() {
        Ok(UplinkConfig {
            host,
            port,
            tls,
            box_id: raw.box_id.clone(),
            root,
            keep_alive,
            backoff_min,
            backoff_max,
            telemetry_every,
            chunk_size,
            max_message,
            batch,
            inflight,
            e2e_ack: raw.e2e_ack,
            ack_timeout,
        })
    } else {
        Err(errs)
    }
}

/// `mqtts://host:port` → (tls, host, port).
fn parse_broker(url: &str) -> Result<(bool, String, u16), String> {
    let bad =
        |why: &str| format!("broker `{url}`: {why}; write e.g. \"mqtts://mqtt.example.com:8883\"");
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else {
        return Err(bad("the scheme must be mqtts:// or mqtt://"));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
        ),
        None => (rest, if tls { 8883 } else { 1883 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(bad("no host name"));
    }
    Ok((tls, host.to_string(), port))
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
            parse_broker("mqtts://[::1]:8883").unwrap(),
            (true, "::1".into(), 8883)
        );
        assert!(parse_broker("http://x").unwrap_err().contains("scheme"));
        assert!(parse_broker("mqtt://x:0").unwrap_err().contains("port"));
        assert!(parse_broker("mqtts://:8883").unwrap_err().contains("host"));
    }
}

//! The MQTT connection itself: TLS set-up with the box's identity, MQTT
//! options (persistent session, keep-alive, last will) and the reconnect
//! backoff.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{LastWill, MqttOptions, QoS, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::config::{Tls, UplinkConfig};

/// Builds the rustls client config from the box's identity and the fleet
/// CA; the error names what is wrong with which file.
pub fn tls_config(t: &Tls) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&t.ca)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("fleet CA: not a PEM certificate ({e})"))?;
    if cas.is_empty() {
        return Err("fleet CA: no certificate in the file".into());
    }
    for c in cas {
        roots
            .add(c)
            .map_err(|e| format!("fleet CA: unusable certificate ({e})"))?;
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&t.cert)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("box certificate: not a PEM certificate ({e})"))?;
    if chain.is_empty() {
        return Err("box certificate: no certificate in the file".into());
    }
    let key = PrivateKeyDer::from_pem_slice(&t.key).map_err(|e| {
        format!(
            "private key {}: not a PEM private key ({e})",
            t.key_path.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| {
            format!(
                "box certificate and private key {} do not go together: {e}",
                t.key_path.display()
            )
        })
}

/// MQTT options for this box: persistent session, keep-alive, and the
/// offline last will of this session.
pub fn options(
    up: &UplinkConfig,
    client_id: &str,
    will_topic: String,
    will: Vec<u8>,
) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, up.host.clone(), up.port);
    o.set_keep_alive(up.keep_alive);
    o.set_clean_session(false);
    // Room for the largest message either way, plus MQTT's own header.
    o.set_max_packet_size(up.max_message.max(256 << 10) + 1024, up.max_message + 1024);
    o.set_inflight(up.inflight.saturating_add(32));
    o.set_last_will(LastWill::new(will_topic, will, QoS::AtLeastOnce, true));
    if let Some(t) = &up.tls {
        // Checked when the config was loaded.
        if let Ok(cfg) = tls_config(t) {
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(cfg),
            )));
        }
    }
    o
}

/// Reconnect waits: exponential from `min` to `max`, each drawn from
/// [½, 1] of the current step so a fleet does not reconnect in step.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
    seed: u64,
}

impl Backoff {
    /// Starts at `min`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()) << 32;
        Backoff {
            min,
            max,
            step: min,
            seed: seed | 1,
        }
    }

    /// The next wait; doubles the step up to the cap.
    pub fn next_wait(&mut self) -> Duration {
        // xorshift64: jitter needs no cryptography.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let frac = 0.5 + (self.seed % 1_000_000) as f64 / 2_000_000.0;
        let wait = self.step.mul_f64(frac);
        self.step = (self.step * 2).min(self.max);
        wait
    }

    /// Back to the first step (after a connection that lasted).
    pub fn reset(&mut self) {
        self.step = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_inside_the_step() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let steps = [1, 2, 4, 8, 8, 8];
        for s in steps {
            let w = b.next_wait();
            let s = Duration::from_secs(s);
            assert!(
                w >= s / 2 && w <= s,
                "{w:?} not within [{:?}, {s:?}]",
                s / 2
            );
        }
        b.reset();
        assert!(b.next_wait() <= Duration::from_secs(1));
    }

    #[test]
    fn two_boxes_do_not_wait_the_same() {
        let mut a = Backoff::new(Duration::from_secs(10), Duration::from_secs(60));
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(60));
        b.seed ^= 0x9e37_79b9_7f4a_7c15;
        let wa: Vec<_> = (0..5).map(|_| a.next_wait()).collect();
        let wb: Vec<_> = (0..5).map(|_| b.next_wait()).collect();
        assert_ne!(wa, wb);
    }
}

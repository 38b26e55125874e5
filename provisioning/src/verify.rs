//! `verify`: everything a box will rely on, checked before it leaves the
//! bench — chain, validity, key, manifest, site config and, with
//! `--connect`, the broker's own answer.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use x509_parser::prelude::*;

use crate::bundle::{self, Manifest};

/// The outcome of the offline checks.
#[derive(Debug, Default)]
pub struct Report {
    /// `(where, what)` problems: the bundle must not be used.
    pub problems: Vec<(String, String)>,
    /// `(where, what)` warnings.
    pub warnings: Vec<(String, String)>,
    /// Informational notes.
    pub notes: Vec<String>,
    /// The manifest, if it could be read.
    pub manifest: Option<Manifest>,
}

impl Report {
    fn problem(&mut self, at: impl Into<String>, what: impl Into<String>) {
        self.problems.push((at.into(), what.into()));
    }
    fn warn(&mut self, at: impl Into<String>, what: impl Into<String>) {
        self.warnings.push((at.into(), what.into()));
    }
}

/// The DER of the first certificate in a PEM file.
pub fn pem_cert(pem: &[u8]) -> Result<Vec<u8>> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| anyhow!("{e}"))?;
    if p.label != "CERTIFICATE" {
        return Err(anyhow!("PEM block is `{}`, not CERTIFICATE", p.label));
    }
    Ok(p.contents)
}

const DAY: i64 = 86_400;

/// Runs every offline check on the bundle in `dir`; `site` is the site the
/// technician expects it to be for.
pub fn check(dir: &Path, site: Option<&str>) -> Report {
    let mut r = Report::default();
    let at = |f: &str| dir.join(f).display().to_string();
    let read = |r: &mut Report, f: &str| match fs::read(dir.join(f)) {
        Ok(b) if b.is_empty() => {
            r.problem(at(f), "empty file");
            None
        }
        Ok(b) => Some(b),
        Err(e) => {
            r.problem(at(f), format!("cannot read: {e}"));
            None
        }
    };
    let manifest = read(&mut r, "bundle.json");
    let ca = read(&mut r, "ca.pem");
    let cert = read(&mut r, "box.pem");
    let key = read(&mut r, "box.key");
    let site_toml = read(&mut r, "site.toml");

    let m: Option<Manifest> = manifest.and_then(|b| match serde_json::from_slice(&b) {
        Ok(m) => Some(m),
        Err(e) => {
            r.problem(at("bundle.json"), format!("not a bundle manifest: {e}"));
            None
        }
    });
    if let Some(m) = &m {
        if m.v != 1 {
            r.problem(
                at("bundle.json"),
                format!("version {} (this tool knows 1)", m.v),
            );
        }
        if let Some(s) = site
            && s != m.site
        {
            r.problem(
                at("bundle.json"),
                format!("bundle for another site: `{}`, expected `{s}`", m.site),
            );
        }
        for (f, want, got) in [
            ("ca.pem", &m.ca_sha256, &ca),
            ("box.pem", &m.cert_sha256, &cert),
        ] {
            if let Some(b) = got {
                let have = bundle::sha256_hex(b);
                if !have.eq_ignore_ascii_case(want) {
                    r.problem(
                        at(f),
                        format!("sha256 {have} does not match bundle.json ({want}): file changed or from another bundle"),
                    );
                }
            }
        }
        if let Err(e) = bundle::parse_broker(&m.broker) {
            r.problem(at("bundle.json"), e.to_string());
        }
    }
    check_pki(
        &mut r,
        dir,
        m.as_ref(),
        ca.as_deref(),
        cert.as_deref(),
        key.as_deref(),
    );
    if let (Some(m), Some(t)) = (&m, &site_toml) {
        check_site(&mut r, dir, m, t);
    }
    r.manifest = m;
    r
}

fn check_pki(
    r: &mut Report,
    dir: &Path,
    m: Option<&Manifest>,
    ca: Option<&[u8]>,
    cert: Option<&[u8]>,
    key: Option<&[u8]>,
) {
    let at = |f: &str| dir.join(f).display().to_string();
    let now = jiff::Timestamp::now().as_second();
    let ca_der = ca.and_then(|b| match pem_cert(b) {
        Ok(d) => Some(d),
        Err(e) => {
            r.problem(at("ca.pem"), format!("not a PEM certificate: {e}"));
            None
        }
    });
    let cert_der = cert.and_then(|b| match pem_cert(b) {
        Ok(d) => Some(d),
        Err(e) => {
            r.problem(at("box.pem"), format!("not a PEM certificate: {e}"));
            None
        }
    });
    let ca_x = ca_der
        .as_deref()
        .and_then(|d| match parse_x509_certificate(d) {
            Ok((_, x)) => Some(x),
            Err(e) => {
                r.problem(at("ca.pem"), format!("bad certificate: {e}"));
                None
            }
        });
    let cert_x = cert_der
        .as_deref()
        .and_then(|d| match parse_x509_certificate(d) {
            Ok((_, x)) => Some(x),
            Err(e) => {
                r.problem(at("box.pem"), format!("bad certificate: {e}"));
                None
            }
        });
    let validity = |r: &mut Report, f: &str, x: &X509Certificate| {
        let (nb, na) = (
            x.validity().not_before.timestamp(),
            x.validity().not_after.timestamp(),
        );
        if now < nb {
            r.problem(
                at(f),
                format!("not yet valid: valid from {}", x.validity().not_before),
            );
        } else if now > na {
            r.problem(at(f), format!("expired on {}", x.validity().not_after));
        } else if na - now < 30 * DAY {
            r.warn(
                at(f),
                format!("expires within 30 days, on {}", x.validity().not_after),
            );
        }
    };
    if let Some(c) = &ca_x {
        if !c.is_ca() {
            r.problem(at("ca.pem"), "not a CA certificate");
        }
        validity(r, "ca.pem", c);
    }
    if let Some(x) = &cert_x {
        validity(r, "box.pem", x);
        if let Some(c) = &ca_x {
            if x.issuer() != c.subject() {
                r.problem(
                    at("box.pem"),
                    format!(
                        "issued by `{}`, not by the bundle's CA `{}`: certificate from another CA",
                        x.issuer(),
                        c.subject()
                    ),
                );
            } else if let Err(e) = x.verify_signature(Some(c.public_key())) {
                r.problem(
                    at("box.pem"),
                    format!("signature does not verify with the bundle's CA ({e}): tampered or from another CA"),
                );
            }
        }
        if let Some(c) = &ca_x
            && x.validity().not_after.timestamp() > c.validity().not_after.timestamp()
        {
            r.warn(
                at("box.pem"),
                format!(
                    "valid until {}, after its CA expires ({}): the box stops being accepted then",
                    x.validity().not_after,
                    c.validity().not_after
                ),
            );
        }
        let cn = x
            .subject()
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or("");
        let o = x
            .subject()
            .iter_organization()
            .next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or("");
        if let Some(m) = m {
            if cn != m.box_id {
                r.problem(
                    at("box.pem"),
                    format!(
                        "certificate is for box `{cn}`, bundle.json says `{}`",
                        m.box_id
                    ),
                );
            }
            if o != m.site {
                r.problem(
                    at("box.pem"),
                    format!(
                        "certificate is for site `{o}`, bundle.json says `{}`",
                        m.site
                    ),
                );
            }
        }
        match x.extended_key_usage() {
            Ok(Some(e)) if e.value.client_auth => {}
            _ => r.problem(at("box.pem"), "no clientAuth extended key usage"),
        }
        if let Some(k) = key {
            match std::str::from_utf8(k)
                .map_err(|e| e.to_string())
                .and_then(|s| rcgen::KeyPair::from_pem(s).map_err(|e| e.to_string()))
            {
                Ok(kp) => {
                    if kp.public_key_raw() != x.public_key().subject_public_key.data.as_ref() {
                        r.problem(
                            at("box.key"),
                            "private key does not match box.pem (wrong key)",
                        );
                    }
                }
                Err(e) => r.problem(at("box.key"), format!("not a PEM private key: {e}")),
            }
        }
    }
    if key.is_some() {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(md) = fs::metadata(dir.join("box.key")) {
            let mode = md.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                r.warn(
                    at("box.key"),
                    format!("mode {mode:o}: readable by others (should be 600)"),
                );
            }
        }
    }
}

fn check_site(r: &mut Report, dir: &Path, m: &Manifest, text: &[u8]) {
    let at = dir.join("site.toml").display().to_string();
    let v: toml::Table = match std::str::from_utf8(text)
        .map_err(|e| e.to_string())
        .and_then(|s| s.parse().map_err(|e: toml::de::Error| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => return r.problem(at, format!("not valid TOML: {e}")),
    };
    let get = |sec: &str, k: &str| {
        v.get(sec)
            .and_then(|s| s.get(k))
            .and_then(|x| x.as_str())
            .map(str::to_string)
    };
    for (sec, k, want) in [
        ("site", "id", m.site.as_str()),
        ("uplink", "box", m.box_id.as_str()),
        ("uplink", "broker", m.broker.as_str()),
        ("uplink", "ca", "identity/ca.pem"),
        ("uplink", "cert", "identity/box.pem"),
        ("uplink", "key", "identity/box.key"),
    ] {
        match get(sec, k) {
            Some(have) if have == want => {}
            Some(have) => r.problem(
                &at,
                format!("[{sec}] {k} = \"{have}\", but the bundle needs \"{want}\""),
            ),
            None => r.problem(&at, format!("[{sec}] {k} missing (must be \"{want}\")")),
        }
    }
    match check_config(dir) {
        Ok(None) => r
            .notes
            .push("callboxd not on PATH: full `callboxd check-config` not run".into()),
        Ok(Some(out)) if out.is_empty() => r.notes.push("callboxd check-config: ok".into()),
        Ok(Some(out)) => r.problem(&at, format!("callboxd check-config:\n{out}")),
        Err(e) => r.warn(&at, format!("could not run callboxd check-config: {e:#}")),
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs `callboxd check-config` on the bundle laid out as on the box
/// (`site.toml` beside `identity/`). `None` without callboxd; `Some("")`
/// when it passed, else its output.
fn check_config(dir: &Path) -> Result<Option<String>> {
    let Some(bin) = find_on_path("callboxd") else {
        return Ok(None);
    };
    let tmp = std::env::temp_dir().join(format!("callbox-verify-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let res = (|| -> Result<Option<String>> {
        fs::create_dir_all(tmp.join("identity"))?;
        fs::copy(dir.join("site.toml"), tmp.join("site.toml"))?;
        for (f, mode) in [("ca.pem", 0o644), ("box.pem", 0o644), ("box.key", 0o600)] {
            let b = fs::read(dir.join(f))?;
            crate::pki::write_file(&tmp.join("identity").join(f), &b, mode)?;
        }
        let out = Command::new(&bin)
            .arg("check-config")
            .arg(tmp.join("site.toml"))
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        if out.status.success() {
            return Ok(Some(String::new()));
        }
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        s.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok(Some(s.trim_end().to_string()))
    })();
    let _ = fs::remove_dir_all(&tmp);
    res
}

/// `--connect`: opens an MQTT session with the box's identity; `Ok` with
/// the broker's acceptance, `Err` with why it did not.
pub fn connect(dir: &Path, m: &Manifest) -> Result<()> {
    let (host, port) = bundle::parse_broker(&m.broker)?;
    let ca = fs::read(dir.join("ca.pem"))?;
    let cert = fs::read(dir.join("box.pem"))?;
    let key = fs::read(dir.join("box.key"))?;
    let cfg = tls_config(&ca, &cert, &key)?;
    let mut opts = rumqttc::MqttOptions::new(format!("provision-verify-{}", m.box_id), host, port);
    opts.set_keep_alive(Duration::from_secs(10));
    opts.set_clean_session(true);
    opts.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(Arc::new(cfg)),
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (client, mut ev) = rumqttc::AsyncClient::new(opts, 4);
        let res = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match ev.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))) => {
                        return if a.code == rumqttc::ConnectReturnCode::Success {
                            Ok(())
                        } else {
                            Err(anyhow!("broker refused the connection: {:?}", a.code))
                        };
                    }
                    Ok(_) => {}
                    Err(e) => return Err(anyhow!("connection failed: {e}")),
                }
            }
        })
        .await
        .unwrap_or_else(|_| Err(anyhow!("no CONNACK from the broker within 10 s")));
        let _ = client.try_disconnect();
        res
    })
}

/// The rustls client config, built like the firmware's (ring provider).
fn tls_config(ca: &[u8], cert: &[u8], key: &[u8]) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca) {
        roots.add(c.context("ca.pem")?).context("ca.pem")?;
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .context("box.pem")?;
    let key = PrivateKeyDer::from_pem_slice(key).context("box.key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .context("box.pem and box.key do not go together")
}

//! Sending: e-mail over SMTP (lettre, TLS through rustls) and SMS as one
//! HTTPS request to a gateway (a small HTTP/1.1 client over rustls: one
//! request, the status line and the body back).
//!
//! A failure says whether trying again could help: an SMTP 5xx or an HTTP
//! 4xx other than 408 and 429 is the message's or the config's fault, the
//! rest (a timeout, a refused connection, a 4xx SMTP answer, an HTTP 5xx)
//! may pass. Both are retried with backoff (the operator may fix the
//! config meanwhile); the reason is kept with the message.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use lettre::Transport as _;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

use super::config::{Sms, Smtp, SmtpTls};

/// Why a message could not be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What the server or the connection said.
    pub error: String,
    /// Trying again as it is will fail again.
    pub permanent: bool,
}

impl Failure {
    pub fn transient(error: impl Into<String>) -> Failure {
        Failure {
            error: error.into(),
            permanent: false,
        }
    }
    pub fn permanent(error: impl Into<String>) -> Failure {
        Failure {
            error: error.into(),
            permanent: true,
        }
    }
}

/// A file to attach.
#[derive(Debug, Clone)]
pub struct File {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// The content type of an attachment, by its name.
fn content_type(name: &str) -> ContentType {
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    let t = match ext.as_str() {
        "pdf" => "application/pdf",
        "txt" => "text/plain; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "wav" => "audio/wav",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    };
    ContentType::parse(t).unwrap_or(ContentType::TEXT_PLAIN)
}

/// Sends an e-mail; the server's answer to the message.
#[allow(clippy::too_many_arguments)]
pub fn email(
    smtp: &Smtp,
    message_id: &str,
    to: &str,
    subject: &str,
    text: &str,
    files: &[File],
) -> Result<String, Failure> {
    let from: Mailbox = smtp
        .from
        .parse()
        .map_err(|e| Failure::permanent(format!("[smtp] from: {e}")))?;
    let to: Mailbox = to
        .parse()
        .map_err(|e| Failure::permanent(format!("`{to}` is not an e-mail address: {e}")))?;
    let mut body = MultiPart::mixed().singlepart(SinglePart::plain(text.to_string()));
    for f in files {
        body = body.singlepart(
            Attachment::new(f.name.clone()).body(f.bytes.clone(), content_type(&f.name)),
        );
    }
    let message = lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        // The same id however often it is sent: a copy sent again after a
        // crash is recognisable as one.
        .message_id(Some(format!("<{message_id}@callbox-hq>")))
        .multipart(body)
        .map_err(|e| Failure::permanent(format!("building the message: {e}")))?;
    let tls = |server: &str| -> Result<TlsParameters, Failure> {
        let mut b = TlsParameters::builder(server.to_string());
        if let Some(ca) = &smtp.ca {
            for der in CertificateDer::pem_slice_iter(ca) {
                let der = der.map_err(|e| Failure::permanent(format!("[smtp] ca: {e}")))?;
                let pem = pem_of(&der);
                let cert = Certificate::from_pem(pem.as_bytes())
                    .map_err(|e| Failure::permanent(format!("[smtp] ca: {e}")))?;
                b = b.add_root_certificate(cert);
            }
        }
        b.build_rustls()
            .map_err(|e| Failure::permanent(format!("[smtp] TLS: {e}")))
    };
    let mut t = lettre::SmtpTransport::builder_dangerous(&smtp.server)
        .port(smtp.port)
        .timeout(Some(smtp.timeout))
        .tls(match smtp.tls {
            SmtpTls::Implicit => Tls::Wrapper(tls(&smtp.server)?),
            SmtpTls::Starttls => Tls::Required(tls(&smtp.server)?),
            SmtpTls::None => Tls::None,
        });
    if let Some((u, p)) = &smtp.credentials {
        t = t.credentials(lettre::transport::smtp::authentication::Credentials::new(
            u.clone(),
            p.clone(),
        ));
    }
    match t.build().send(&message) {
        Ok(r) => Ok(format!(
            "{} {}",
            r.code(),
            r.message().collect::<Vec<_>>().join(" ")
        )),
        Err(e) => Err(Failure {
            permanent: e.is_permanent(),
            error: format!("{}: {e}", smtp.server),
        }),
    }
}

fn pem_of(der: &CertificateDer<'_>) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    s
}

/// An `http(s)://host[:port]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Url {
    pub fn parse(s: &str) -> Result<Url, String> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("`{s}` is not an http(s):// URL"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse::<u16>()
                    .map_err(|_| format!("`{p}` is not a port"))?,
            ),
            _ => (authority, if tls { 443 } else { 80 }),
        };
        if host.is_empty() || authority.contains('@') {
            return Err(format!(
                "`{s}`: no host, or a user in the URL (use headers)"
            ));
        }
        Ok(Url {
            tls,
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }
}

/// The roots a gateway's certificate may chain to: the system's bundle
/// and the configured CA.
fn roots(extra: Option<&[u8]>) -> rustls::RootCertStore {
    let mut store = rustls::RootCertStore::empty();
    let system = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    for pem in [Some(&system[..]), extra].into_iter().flatten() {
        for der in CertificateDer::pem_slice_iter(pem).flatten() {
            let _ = store.add(der);
        }
    }
    store
}

/// Sends one SMS request; the gateway's answer (status and body start).
pub fn sms(g: &Sms, headers: &[(String, String)], body: &str) -> Result<String, Failure> {
    let url = Url::parse(&g.url).map_err(Failure::permanent)?;
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(url.host.as_str(), url.port))
        .map_err(|e| Failure::transient(format!("{}: {e}", url.host)))?
        .next()
        .ok_or_else(|| Failure::transient(format!("{}: no address", url.host)))?;
    let tcp = TcpStream::connect_timeout(&addr, g.timeout)
        .map_err(|e| Failure::transient(format!("{}: {e}", g.url)))?;
    tcp.set_read_timeout(Some(g.timeout)).ok();
    tcp.set_write_timeout(Some(g.timeout)).ok();
    let mut req = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: callbox-hq\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        g.method,
        url.path,
        url.host,
        g.content_type,
        body.len()
    );
    for (k, v) in headers {
        if k.contains(['\r', '\n', ':']) || v.contains(['\r', '\n']) {
            return Err(Failure::permanent(format!(
                "[sms] header `{k}` has a line break"
            )));
        }
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let answer = if url.tls {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Failure::permanent(e.to_string()))?
            .with_root_certificates(roots(g.ca.as_deref()))
            .with_no_client_auth();
        let name = ServerName::try_from(url.host.clone())
            .map_err(|e| Failure::permanent(format!("{}: {e}", url.host)))?;
        let conn = rustls::ClientConnection::new(Arc::new(cfg), name)
            .map_err(|e| Failure::permanent(e.to_string()))?;
        exchange(rustls::StreamOwned::new(conn, tcp), &req)
    } else {
        exchange(tcp, &req)
    }
    .map_err(|e| Failure::transient(format!("{}: {e}", g.url)))?;
    let head = answer.lines().next().unwrap_or("");
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Failure::transient(format!("{}: not an HTTP answer: {head:.80}", g.url)))?;
    let body_start: String = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .chars()
        .take(200)
        .collect();
    match status {
        200..=299 => Ok(format!("{status} {}", body_start.trim())),
        408 | 429 | 500..=599 => Err(Failure::transient(format!(
            "{}: HTTP {status} {}",
            g.url,
            body_start.trim()
        ))),
        _ => Err(Failure::permanent(format!(
            "{}: HTTP {status} {}",
            g.url,
            body_start.trim()
        ))),
    }
}

/// Writes the request and reads the answer (at most 64 KiB).
fn exchange(mut s: impl Read + Write, req: &str) -> std::io::Result<String> {
    s.write_all(req.as_bytes())?;
    s.flush()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > 65_536 {
                    break;
                }
            }
            // A server that closes without TLS close_notify: what came is
            // the answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// A value for a JSON string (without its quotes).
pub fn json_escape(s: &str) -> String {
    let q = serde_json::to_string(s).unwrap_or_default();
    q[1..q.len().saturating_sub(1)].to_string()
}

/// A value for a form (`application/x-www-form-urlencoded`).
pub fn form_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The wait after failed attempt `attempts`: `first` doubling, at most an
/// hour.
pub fn backoff(attempts: u32, first: Duration) -> Duration {
    first
        .saturating_mul(1 << attempts.saturating_sub(1).min(12))
        .min(Duration::from_secs(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_escapes_and_backoff() {
        assert_eq!(
            Url::parse("https://sms.example.cn:8443/v1/send?x=1").unwrap(),
            Url {
                tls: true,
                host: "sms.example.cn".into(),
                port: 8443,
                path: "/v1/send?x=1".into()
            }
        );
        assert_eq!(Url::parse("http://127.0.0.1").unwrap().port, 80);
        assert!(Url::parse("ftp://x").is_err());
        assert!(Url::parse("https://u:p@x/").is_err());
        assert_eq!(json_escape("a\"b\n"), "a\\\"b\\n");
        assert_eq!(form_escape("+86 138/价"), "%2B86+138%2F%E4%BB%B7");
        let s30 = Duration::from_secs(30);
        assert_eq!(backoff(1, s30), s30);
        assert_eq!(backoff(3, s30), Duration::from_secs(120));
        assert_eq!(backoff(20, s30), Duration::from_secs(3600));
    }
}

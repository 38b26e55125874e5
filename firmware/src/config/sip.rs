//! The SIP part of the site config: the box-wide `[sip]` table and the
//! `sip = { … }` table of a `[[line]]` (docs/sip.md). Checked here into the
//! HAL's [`SipArgs`]; every mistake is named with its place.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use callbox_hal::LineKind;
use callbox_hal::diag::parse_duration;
use callbox_hal::sip::sdp::Codec;
use callbox_hal::sip::{
    Peer, SipArgs, SipLineSettings, SipSettings, StationSettings, TlsSettings, TrunkSettings,
};
use serde::Deserialize;

/// `[sip]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSip {
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    advertise: Option<String>,
    #[serde(default)]
    rtp_ports: Option<String>,
    #[serde(default)]
    codecs: Option<Vec<String>>,
    #[serde(default)]
    rtp_timeout: Option<String>,
    #[serde(default)]
    tls_listen: Option<String>,
    #[serde(default)]
    tls_cert: Option<String>,
    #[serde(default)]
    tls_key: Option<String>,
    #[serde(default)]
    tls_ca: Option<String>,
}

/// A line's `sip = { … }`: trunk keys and station keys in one table; the
/// line's kind says which apply.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLineSip {
    #[serde(default)]
    peer: Option<String>,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    register: Option<bool>,
    #[serde(default)]
    expires: Option<String>,
    #[serde(default)]
    caller_id: Option<String>,
    #[serde(default)]
    keepalive: Option<String>,
    /// Calls the trunk carries at once: the line stands for this many
    /// lines, `ID-1`…`ID-N`.
    #[serde(default)]
    channels: Option<u32>,
    /// `"udp"` (the default) or `"tls"`.
    #[serde(default)]
    transport: Option<String>,
}

/// Most channels one trunk line may have.
pub(super) const MAX_CHANNELS: u32 = 480;

/// The line ids a `[[line]]` stands for: its own id, or `ID-1`…`ID-N` for
/// a trunk with `channels = N` (N > 1). An out-of-range count is reported
/// by [`check`] and counts as one.
pub(super) fn channel_ids(id: &str, sip: Option<&RawLineSip>) -> Vec<String> {
    match sip.and_then(|s| s.channels) {
        Some(n) if (2..=MAX_CHANNELS).contains(&n) => {
            (1..=n).map(|k| format!("{id}-{k}")).collect()
        }
        _ => vec![id.to_string()],
    }
}

/// `[sip] tls_listen`, `tls_cert`, `tls_key`, `tls_ca`: `None` when TLS is
/// not asked for. Without `tls_cert` the certificate is left empty, for the
/// daemon to make a self-signed one when it starts.
fn check_tls(
    base: &Path,
    raw: &RawSip,
    s: &SipSettings,
    err: &mut dyn FnMut(&str, String),
) -> Option<TlsSettings> {
    let Some(text) = &raw.tls_listen else {
        for (key, set) in [
            ("sip.tls_cert", raw.tls_cert.is_some()),
            ("sip.tls_key", raw.tls_key.is_some()),
            ("sip.tls_ca", raw.tls_ca.is_some()),
        ] {
            if set {
                err(key, "TLS is off: set `tls_listen` to use it".into());
            }
        }
        return None;
    };
    let listen = match text.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            err(
                "sip.tls_listen",
                format!("`{text}` is not an address and port (e.g. \"0.0.0.0:5061\")"),
            );
            return None;
        }
    };
    if s.rtp_ports.contains(&listen.port()) {
        err(
            "sip.tls_listen",
            format!(
                "the RTP ports {}-{} include the TLS port {}",
                s.rtp_ports.start(),
                s.rtp_ports.end(),
                listen.port()
            ),
        );
    }
    let mut read = |key: &str, path: &Option<String>| -> Option<Vec<u8>> {
        let written = path.as_ref()?;
        match std::fs::read(base.join(written)) {
            Ok(b) if b.windows(10).any(|w| w == b"-----BEGIN") => Some(b),
            Ok(_) => {
                err(key, format!("`{written}` is not a PEM file"));
                None
            }
            Err(e) => {
                err(key, format!("cannot read `{written}`: {e}"));
                None
            }
        }
    };
    let cert = read("sip.tls_cert", &raw.tls_cert);
    let key = read("sip.tls_key", &raw.tls_key);
    let ca_pem = read("sip.tls_ca", &raw.tls_ca);
    if raw.tls_cert.is_some() != raw.tls_key.is_some() {
        err(
            "sip.tls_listen",
            "`tls_cert` and `tls_key` go together (or neither, for a self-signed certificate made on first start)".into(),
        );
    }
    Some(TlsSettings {
        listen,
        cert_pem: cert.unwrap_or_default(),
        key_pem: key.unwrap_or_default(),
        ca_pem,
    })
}

/// Where SIP listens when `[sip]` does not say.
const DEFAULT_LISTEN: &str = "0.0.0.0:5060";

/// Checks `[sip]` and the lines' `sip` tables. `lines`: `(index in the
/// file, id, kind, its sip table)` for every line with one. `None` when no
/// line speaks SIP and there is no `[sip]`.
pub(super) fn check(
    base: &Path,
    raw: Option<&RawSip>,
    lines: &[(usize, String, LineKind, &RawLineSip)],
    err: &mut dyn FnMut(&str, String),
) -> Option<SipArgs> {
    if raw.is_none() && lines.is_empty() {
        return None;
    }
    let empty = RawSip::default();
    let raw = raw.unwrap_or(&empty);
    let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = match listen_text.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            err(
                "sip.listen",
                format!("`{listen_text}` is not an address and port (e.g. \"0.0.0.0:5060\")"),
            );
            return None;
        }
    };
    let mut s = SipSettings::new(listen);
    if let Some(a) = &raw.advertise {
        match a.parse::<IpAddr>() {
            Ok(ip) => s.advertise = Some(ip),
            Err(_) => err(
                "sip.advertise",
                format!(
                    "`{a}` is not an IP address (the box's address as phones and carriers see it)"
                ),
            ),
        }
    }
    if listen.ip().is_unspecified() && s.advertise.is_none() {
        // Phones and carriers must be told one address to send to.
        s.advertise = Some(local_ip().unwrap_or(IpAddr::from([127, 0, 0, 1])));
    }
    if let Some(r) = &raw.rtp_ports {
        match parse_range(r) {
            Some((a, b)) if a < b && a >= 1024 => s.rtp_ports = a..=b,
            _ => err(
                "sip.rtp_ports",
                format!("`{r}` is not a port range like \"20000-20999\" (above 1023, low-high)"),
            ),
        }
    }
    if s.rtp_ports.contains(&listen.port()) {
        err(
            "sip.rtp_ports",
            format!(
                "the RTP ports {}-{} include SIP's own port {}",
                s.rtp_ports.start(),
                s.rtp_ports.end(),
                listen.port()
            ),
        );
    }
    if let Some(list) = &raw.codecs {
        let mut codecs = Vec::new();
        for (i, c) in list.iter().enumerate() {
            match c.to_ascii_uppercase().as_str() {
                "PCMA" => codecs.push(Codec::Pcma),
                "PCMU" => codecs.push(Codec::Pcmu),
                _ => err(
                    &format!("sip.codecs[{i}]"),
                    format!("unknown codec `{c}`; the box speaks PCMA and PCMU"),
                ),
            }
        }
        if codecs.is_empty() {
            err(
                "sip.codecs",
                "the codec list needs PCMA or PCMU (G.711)".into(),
            );
        } else {
            s.codecs = codecs;
        }
    }
    if let Some(t) = &raw.rtp_timeout {
        match parse_duration(t) {
            Ok(d) if d >= Duration::from_secs(5) => s.rtp_timeout = d,
            Ok(_) => err(
                "sip.rtp_timeout",
                format!("`{t}` is too short; at least 5s"),
            ),
            Err(e) => err("sip.rtp_timeout", e),
        }
    }

    s.tls = check_tls(base, raw, &s, err);

    let mut out = Vec::new();
    let mut users: HashMap<String, usize> = HashMap::new();
    for (i, id, kind, l) in lines {
        let at = |key: &str| format!("line[{i}].sip.{key}");
        match kind {
            LineKind::Trunk => {
                for (key, set) in [("username", l.username.is_some() && l.peer.is_none())] {
                    if set {
                        err(
                            &at(key),
                            "a trunk's account needs the carrier's `peer` address".into(),
                        );
                    }
                }
                let Some(peer_text) = &l.peer else {
                    err(
                        &format!("line[{i}].sip"),
                        format!("trunk `{id}` needs `peer`: the carrier's address and port"),
                    );
                    continue;
                };
                let peer = match Peer::parse(peer_text) {
                    Ok(p) => p,
                    Err(e) => {
                        err(&at("peer"), e);
                        continue;
                    }
                };
                if let Some(n) = l.channels
                    && !(1..=MAX_CHANNELS).contains(&n)
                {
                    err(
                        &at("channels"),
                        format!(
                            "`{n}` channels: a trunk carries 1 to {MAX_CHANNELS} calls at once"
                        ),
                    );
                }
                let tls = match l.transport.as_deref() {
                    None | Some("udp") => false,
                    Some("tls") => {
                        if s.tls.is_none() {
                            err(
                                &at("transport"),
                                "a trunk over TLS needs `[sip] tls_listen` (the box's TLS side)"
                                    .into(),
                            );
                        }
                        true
                    }
                    Some(other) => {
                        err(
                            &at("transport"),
                            format!("unknown transport `{other}`; use \"udp\" or \"tls\""),
                        );
                        false
                    }
                };
                let register = l.register.unwrap_or(false);
                if register && (l.username.is_none() || l.password.is_none()) {
                    err(
                        &at("register"),
                        "registering at the carrier needs `username` and `password`".into(),
                    );
                }
                if l.password.as_deref() == Some("") {
                    err(&at("password"), "the password is empty".into());
                }
                let expires = match &l.expires {
                    None => Duration::from_secs(3600),
                    Some(e) => match parse_duration(e) {
                        Ok(d) if d >= Duration::from_secs(60) => d,
                        Ok(_) => {
                            err(&at("expires"), format!("`{e}` is too short; at least 60s"));
                            Duration::from_secs(3600)
                        }
                        Err(m) => {
                            err(&at("expires"), m);
                            Duration::from_secs(3600)
                        }
                    },
                };
                let keepalive = match l.keepalive.as_deref() {
                    None => (!register).then_some(Duration::from_secs(30)),
                    Some("off") => None,
                    Some(k) => match parse_duration(k) {
                        Ok(d) if d >= Duration::from_secs(5) => Some(d),
                        Ok(_) => {
                            err(
                                &at("keepalive"),
                                format!("`{k}` is too short; at least 5s, or \"off\""),
                            );
                            None
                        }
                        Err(m) => {
                            err(&at("keepalive"), m);
                            None
                        }
                    },
                };
                for (key, v) in [("domain", &l.domain), ("caller_id", &l.caller_id)] {
                    if let Some(v) = v
                        && (v.is_empty()
                            || v.contains(|c: char| c.is_whitespace() || "<>\"@;".contains(c)))
                    {
                        err(&at(key), format!("`{v}` cannot go in a SIP URI"));
                    }
                }
                out.push((
                    id.clone(),
                    SipLineSettings::Trunk(TrunkSettings {
                        peer,
                        domain: l.domain.clone(),
                        username: l.username.clone(),
                        password: l.password.clone(),
                        register,
                        expires,
                        caller_id: l.caller_id.clone(),
                        keepalive,
                        tls,
                    }),
                ));
            }
            LineKind::Station => {
                for (key, set) in [
                    ("peer", l.peer.is_some()),
                    ("domain", l.domain.is_some()),
                    ("register", l.register.is_some()),
                    ("expires", l.expires.is_some()),
                    ("caller_id", l.caller_id.is_some()),
                    ("keepalive", l.keepalive.is_some()),
                    ("channels", l.channels.is_some()),
                    ("transport", l.transport.is_some()),
                ] {
                    if set {
                        err(
                            &at(key),
                            format!(
                                "`{key}` is a trunk's key; station `{id}` is a phone that registers to the box"
                            ),
                        );
                    }
                }
                let (Some(user), Some(pass)) = (&l.username, &l.password) else {
                    err(
                        &format!("line[{i}].sip"),
                        format!(
                            "station `{id}` needs `username` and `password` for its phone (there is no default password)"
                        ),
                    );
                    continue;
                };
                if user.is_empty()
                    || !user
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                {
                    err(
                        &at("username"),
                        format!("`{user}` must be letters, digits, `-`, `_` or `.`"),
                    );
                }
                if pass.len() < 8 {
                    err(
                        &at("password"),
                        "a phone's password needs at least 8 characters".into(),
                    );
                }
                if let Some(first) = users.insert(user.clone(), *i) {
                    err(
                        &at("username"),
                        format!("phone account `{user}` is used by line[{first}] too"),
                    );
                }
                out.push((
                    id.clone(),
                    SipLineSettings::Station(StationSettings {
                        username: user.clone(),
                        password: pass.clone(),
                    }),
                ));
            }
        }
    }
    Some(SipArgs {
        settings: s,
        lines: out,
    })
}

fn parse_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// The address the box's default route leaves from (no packet is sent).
fn local_ip() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    Some(s.local_addr().ok()?.ip())
}

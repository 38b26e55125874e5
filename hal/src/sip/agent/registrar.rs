//! The box as its phones' registrar: their REGISTERs, and the digest
//! check (with lock-out after wrong passwords) that their INVITEs pass too.

use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rsipstack::dialog::authenticate::verify_digest;
use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::typed::Authorization;
use rsipstack::sip::{Header, StatusCode};
use rsipstack::transaction::transaction::Transaction;

use super::{
    AUTH_FAILURES, AUTH_LOCKOUT, Agent, Binding, MAX_DEVICES, MAX_EXPIRES, MIN_EXPIRES, NONCE_LIFE,
    REALM, lock, over_tls, source_addr,
};
use crate::line::{LineEvent, LineFault};
use crate::sip::config::{SipLineSettings, StationSettings};
use crate::sip::line::LineShared;

/// A request's digest answer, as the box reads it (username, nonce).
pub(crate) fn read_authorization(raw: &str) -> Option<(String, String)> {
    Authorization::parse(raw)
        .ok()
        .map(|a| (a.username, a.nonce))
}

impl Agent {
    /// Checks a phone's digest credentials; `false` when it was answered
    /// with a challenge or a refusal.
    pub(super) async fn authenticate(
        &self,
        tx: &mut Transaction,
        line: &LineShared,
        st: &StationSettings,
        source: Option<SocketAddr>,
    ) -> Result<bool, String> {
        let ip = source.map(|s| s.ip());
        let locked_out = ip.is_some_and(|ip| {
            lock(&self.failures).get(&ip).is_some_and(|fl| {
                fl.count >= AUTH_FAILURES && fl.since.is_some_and(|s| s.elapsed() < AUTH_LOCKOUT)
            })
        });
        if locked_out {
            tx.reply(StatusCode::Forbidden)
                .await
                .map_err(|e| e.to_string())?;
            return Ok(false);
        }
        let raw = tx.original.header_value("Authorization");
        let verdict = raw.as_deref().map(|raw| {
            let Ok(auth) = Authorization::parse(raw) else {
                return false;
            };
            auth.username == st.username
                && self.nonce_fresh(&auth.nonce)
                && verify_digest(&auth, &st.password, &tx.original.method, raw)
        });
        match verdict {
            Some(true) => {
                let alarmed = ip
                    .and_then(|ip| lock(&self.failures).remove(&ip))
                    .is_some_and(|f| f.count >= AUTH_FAILURES);
                if alarmed {
                    let _ = line.events.send(LineEvent::Fault(LineFault {
                        code: "auth_failures",
                        detail: format!("{} authenticated again", st.username),
                        active: false,
                    }));
                }
                Ok(true)
            }
            Some(false) => {
                let count = ip.map_or(1, |ip| {
                    let mut f = lock(&self.failures);
                    let e = f.entry(ip).or_default();
                    if e.since.is_none_or(|s| s.elapsed() >= AUTH_LOCKOUT) {
                        e.count = 0;
                        e.since = Some(Instant::now());
                    }
                    e.count += 1;
                    e.count
                });
                tracing::warn!(line = %line.info.id, ?source, "wrong SIP password for {} ({count} in a row)", st.username);
                if count == AUTH_FAILURES {
                    let _ = line.events.send(LineEvent::Fault(LineFault {
                        code: "auth_failures",
                        detail: format!(
                            "{count} wrong passwords for {} from {}",
                            st.username,
                            ip.map_or("?".into(), |i| i.to_string())
                        ),
                        active: true,
                    }));
                }
                tx.reply(StatusCode::Forbidden)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(false)
            }
            None => {
                let challenge = format!(
                    "Digest realm=\"{REALM}\", nonce=\"{}\", qop=\"auth\", algorithm=MD5",
                    self.nonce()
                );
                tx.reply_with(
                    StatusCode::Unauthorized,
                    vec![Header::WwwAuthenticate(challenge.into())],
                    None,
                )
                .await
                .map_err(|e| e.to_string())?;
                Ok(false)
            }
        }
    }

    /// A nonce that proves when the box made it: seconds, then a keyed hash
    /// of them.
    fn nonce(&self) -> String {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        format!("{secs:x}.{:016x}", self.nonce_key.hash_one(secs))
    }

    fn nonce_fresh(&self, nonce: &str) -> bool {
        let Some((secs, mac)) = nonce.split_once('.') else {
            return false;
        };
        let (Ok(secs), Ok(mac)) = (u64::from_str_radix(secs, 16), u64::from_str_radix(mac, 16))
        else {
            return false;
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        mac == self.nonce_key.hash_one(secs) && now.saturating_sub(secs) <= NONCE_LIFE.as_secs()
    }

    /// A phone's REGISTER: the box is its registrar.
    pub(super) async fn on_register(self: &Arc<Self>, mut tx: Transaction) -> Result<(), String> {
        let user = tx
            .original
            .to_header()
            .ok()
            .and_then(|t| t.uri().ok())
            .and_then(|u| u.user().map(str::to_string));
        let lines = self.lines();
        let Some(line) = lines.iter().find(|l| {
            matches!(&l.settings, SipLineSettings::Station(s) if Some(&s.username) == user.as_ref())
        }) else {
            tracing::warn!(user = ?user, "REGISTER for an unknown phone refused");
            return tx.reply(StatusCode::NotFound).await.map_err(|e| e.to_string());
        };
        let SipLineSettings::Station(st) = &line.settings else {
            unreachable!("matched a station")
        };
        let source = source_addr(&tx.original);
        if !self.authenticate(&mut tx, line, st, source).await? {
            return Ok(());
        }
        let contact = tx.original.contact_header().ok().cloned();
        let header_expires = tx
            .original
            .header_value("Expires")
            .and_then(|v| v.trim().parse::<u32>().ok());
        // `Contact: *` with `Expires: 0`: every device of the account leaves.
        if contact.as_ref().is_some_and(|c| c.value().trim() == "*") {
            if header_expires != Some(0) {
                return tx
                    .reply(StatusCode::BadRequest)
                    .await
                    .map_err(|e| e.to_string());
            }
            lock(&self.bindings).remove(&st.username);
            tracing::info!(line = %line.info.id, "phone unregistered (all devices)");
            return tx.reply(StatusCode::OK).await.map_err(|e| e.to_string());
        }
        let (Some(contact), Some(source)) = (contact, source) else {
            return tx
                .reply(StatusCode::BadRequest)
                .await
                .map_err(|e| e.to_string());
        };
        let Ok(typed) = contact.typed() else {
            return tx
                .reply(StatusCode::BadRequest)
                .await
                .map_err(|e| e.to_string());
        };
        let asked = typed.expires().or(header_expires).unwrap_or(MAX_EXPIRES);
        let now = Instant::now();
        // One binding per device: its contact as seen from where it sends.
        let same = |b: &Binding| b.contact == typed.uri && b.source == source;
        if asked == 0 {
            let left = {
                let mut all = lock(&self.bindings);
                let left = all.get_mut(&st.username).map_or(0, |v| {
                    v.retain(|b| !same(b) && b.until > now);
                    v.len()
                });
                if left == 0 {
                    all.remove(&st.username);
                }
                left
            };
            tracing::info!(line = %line.info.id, %source, devices = left, "phone unregistered");
            return tx.reply(StatusCode::OK).await.map_err(|e| e.to_string());
        }
        if asked < MIN_EXPIRES {
            return tx
                .reply_with(
                    StatusCode::IntervalTooBrief,
                    vec![Header::MinExpires(MIN_EXPIRES.to_string().into())],
                    None,
                )
                .await
                .map_err(|e| e.to_string());
        }
        let granted = asked.min(MAX_EXPIRES);
        let binding = Binding {
            contact: typed.uri.clone(),
            source,
            tls: over_tls(&tx.original),
            until: now + Duration::from_secs(u64::from(granted)),
        };
        // `None`: the account has all the devices it may have.
        let registered = {
            let mut all = lock(&self.bindings);
            let devices = all.entry(st.username.clone()).or_default();
            devices.retain(|b| b.until > now);
            let known = devices.iter().position(same);
            match known {
                Some(i) => {
                    devices[i] = binding.clone();
                    Some(false)
                }
                None if devices.len() >= MAX_DEVICES => None,
                None => {
                    devices.push(binding.clone());
                    Some(true)
                }
            }
            .map(|fresh| {
                // The 200 lists every device of the account (RFC 3261 §10.3).
                let contacts: Vec<Header> = devices
                    .iter()
                    .map(|b| {
                        let left = b.until.saturating_duration_since(now).as_secs();
                        Header::Contact(format!("<{}>;expires={left}", b.contact).into())
                    })
                    .collect();
                (fresh, contacts)
            })
        };
        let Some((fresh, contacts)) = registered else {
            tracing::warn!(line = %line.info.id, %source, "phone refused: {MAX_DEVICES} devices already registered for {}", st.username);
            return tx
                .reply(StatusCode::Forbidden)
                .await
                .map_err(|e| e.to_string());
        };
        let count = contacts.len();
        if fresh {
            tracing::info!(line = %line.info.id, %source, devices = count, "phone registered");
            self.on_fresh_device(&st.username, binding);
        }
        let mut headers = contacts;
        headers.push(Header::Expires(granted.to_string().into()));
        tx.reply_with(StatusCode::OK, headers, None)
            .await
            .map_err(|e| e.to_string())
    }

    /// The live registrations of a phone account, one per device.
    pub(super) fn devices(&self, username: &str) -> Vec<Binding> {
        let now = Instant::now();
        lock(&self.bindings)
            .get(username)
            .map(|v| v.iter().filter(|b| b.until > now).cloned().collect())
            .unwrap_or_default()
    }
}

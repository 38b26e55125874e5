//! Session timers (RFC 4028): a call whose far end vanished without a BYE
//! (a carrier's SBC restarted, a phone lost power) is found and ended,
//! because one side refreshes the session every interval and the other
//! hangs up when no refresh comes.
//!
//! This module reads and writes the `Session-Expires` / `Min-SE` headers
//! and says when a refresh is due; the call task sends the refreshes
//! (UPDATE, or a re-INVITE to a peer that does not allow UPDATE).

use std::time::Duration;

use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Request, Response};

/// The shortest session interval the box accepts (RFC 4028's floor):
/// shorter asks get 422 with this as `Min-SE`.
pub(crate) const MIN_SE: u32 = 90;

/// Which end of the dialog sends the refreshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refresher {
    Uac,
    Uas,
}

impl Refresher {
    fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// A session timer agreed for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionTimer {
    /// The session interval.
    pub(crate) interval: u32,
    /// Who refreshes, as written in the header.
    pub(crate) refresher: Refresher,
    /// The box is the dialog's UAS (it answered the INVITE).
    pub(crate) box_is_uas: bool,
}

impl SessionTimer {
    /// The box sends the refreshes.
    pub(crate) fn box_refreshes(&self) -> bool {
        (self.refresher == Refresher::Uas) == self.box_is_uas
    }

    /// How long after the last refresh the box acts: refreshes at half the
    /// interval, or, when the far end refreshes, gives up at the interval
    /// less a third (at most 32 s, RFC 4028 §10).
    pub(crate) fn due(&self) -> Duration {
        let i = u64::from(self.interval);
        Duration::from_secs(if self.box_refreshes() {
            i / 2
        } else {
            i - (i / 3).min(32)
        })
    }

    /// The headers of a 2xx (or a refresh request) that state this timer.
    pub(crate) fn headers(&self) -> Vec<Header> {
        vec![
            Header::SessionExpires(
                format!("{};refresher={}", self.interval, self.refresher.as_str()).into(),
            ),
            Header::Require("timer".into()),
        ]
    }
}

/// The headers of the box's own refresh: it keeps refreshing.
pub(crate) fn refresh_headers(t: &SessionTimer) -> Vec<Header> {
    vec![
        Header::SessionExpires(format!("{};refresher=uac", t.interval).into()),
        Header::Supported("timer".into()),
    ]
}

/// `1800;refresher=uac` → (1800, Some(Uac)).
fn parse(value: &str) -> Option<(u32, Option<Refresher>)> {
    let mut parts = value.split(';');
    let interval = parts.next()?.trim().parse().ok()?;
    let mut refresher = None;
    for p in parts {
        if let Some((k, v)) = p.split_once('=')
            && k.trim().eq_ignore_ascii_case("refresher")
        {
            refresher = match v.trim().to_ascii_lowercase().as_str() {
                "uac" => Some(Refresher::Uac),
                "uas" => Some(Refresher::Uas),
                _ => None,
            };
        }
    }
    Some((interval, refresher))
}

fn session_expires(headers_value: Option<String>) -> Option<(u32, Option<Refresher>)> {
    headers_value.as_deref().and_then(parse)
}

/// Whether a message's `Supported` names `timer`.
fn supports_timer(req: &Request) -> bool {
    req.header_contains_token("Supported", "timer") || req.header_contains_token("Require", "timer")
}

/// What the box as UAS makes of an INVITE: no timer, a timer, or `Err`
/// with the `Min-SE` of the 422 it must answer (the interval asked is too
/// short). A header the box cannot read counts as none.
pub(crate) fn as_uas(req: &Request) -> Result<Option<SessionTimer>, u32> {
    // The compact form `x` is read as Session-Expires by the parser.
    let Some((interval, refresher)) = session_expires(req.header_value("Session-Expires")) else {
        return Ok(None);
    };
    if interval < MIN_SE {
        return Err(MIN_SE);
    }
    // Left to the box, the caller refreshes when it can (it asked for the
    // timer); a caller that cannot leaves it to the box.
    let refresher = refresher.unwrap_or(if supports_timer(req) {
        Refresher::Uac
    } else {
        Refresher::Uas
    });
    Ok(Some(SessionTimer {
        interval,
        refresher,
        box_is_uas: true,
    }))
}

/// The timer a 2xx to the box's INVITE or refresh sets, if any.
pub(crate) fn as_uac(resp: &Response) -> Option<SessionTimer> {
    let (interval, refresher) = session_expires(resp.header_value("Session-Expires"))?;
    Some(SessionTimer {
        interval: interval.max(MIN_SE),
        // A 2xx must name the refresher; one that does not leaves it to the
        // box (the UAC), which is always safe.
        refresher: refresher.unwrap_or(Refresher::Uac),
        box_is_uas: false,
    })
}

/// The `Min-SE` a 422 sends back.
pub(crate) fn min_se_header() -> Header {
    Header::MinSE(MIN_SE.to_string().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(extra: &str) -> Request {
        let text = format!(
            "INVITE sip:100@box SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n\
             From: <sip:a@x>;tag=1\r\nTo: <sip:100@box>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n\
             Max-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Request::try_from(text.as_str()).expect("test INVITE parses")
    }

    #[test]
    fn the_caller_refreshes_when_it_asks_and_supports_timers() {
        let t = as_uas(&invite("Supported: timer\r\nSession-Expires: 1800\r\n"))
            .unwrap()
            .unwrap();
        assert_eq!(t.refresher, Refresher::Uac);
        assert!(!t.box_refreshes());
        // The box waits the interval less 32 s before giving up.
        assert_eq!(t.due(), Duration::from_secs(1768));
    }

    #[test]
    fn the_box_refreshes_when_the_caller_cannot_or_says_so() {
        let t = as_uas(&invite("Session-Expires: 600\r\n"))
            .unwrap()
            .unwrap();
        assert!(t.box_refreshes());
        assert_eq!(t.due(), Duration::from_secs(300));
        let t = as_uas(&invite(
            "Supported: timer\r\nSession-Expires: 90;refresher=uas\r\n",
        ))
        .unwrap()
        .unwrap();
        assert!(t.box_refreshes());
        // The compact form `x` counts too.
        let t = as_uas(&invite("x: 120;refresher=uac\r\n"))
            .unwrap()
            .unwrap();
        assert_eq!((t.interval, t.refresher), (120, Refresher::Uac));
    }

    #[test]
    fn too_short_an_interval_is_refused_with_the_minimum_and_junk_is_no_timer() {
        assert_eq!(as_uas(&invite("Session-Expires: 30\r\n")), Err(MIN_SE));
        assert_eq!(as_uas(&invite("Session-Expires: soon\r\n")), Ok(None));
        assert_eq!(as_uas(&invite("")), Ok(None));
    }

    #[test]
    fn the_headers_name_the_interval_and_the_refresher() {
        let t = SessionTimer {
            interval: 90,
            refresher: Refresher::Uas,
            box_is_uas: true,
        };
        let h: Vec<String> = t.headers().iter().map(|h| h.to_string()).collect();
        assert_eq!(h, ["Session-Expires: 90;refresher=uas", "Require: timer"]);
    }
}

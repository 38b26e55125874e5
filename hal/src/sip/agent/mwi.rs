//! Message waiting on the agents' SIP phones: an unsolicited NOTIFY of the
//! `message-summary` event (RFC 3842) to every registered device of a
//! station's account when its count changes, and to a device that
//! registers afresh, so a phone that rebooted lights its lamp again. Phones
//! take these without a subscription (Asterisk and FreeSWITCH send them the
//! same way); one that refuses is logged and left alone.

use std::sync::Arc;

use rsipstack::sip::{Header, Method};

use super::{Agent, Binding, parse_uri, sip_addr};
use crate::sip::config::SipLineSettings;
use crate::sip::line::LineShared;
use crate::sip::{SipError, lock};

/// The body of a `message-summary` NOTIFY for account `user` at `host`.
pub(crate) fn summary(user: &str, host: &str, new: u32, old: u32) -> String {
    format!(
        "Messages-Waiting: {}\r\nMessage-Account: sip:{user}@{host}\r\nVoice-Message: {new}/{old} (0/0)\r\n",
        if new > 0 { "yes" } else { "no" }
    )
}

impl Agent {
    /// Notes how many messages wait for the station `line`'s agent and
    /// tells each of its registered devices.
    pub(crate) fn message_waiting(
        self: &Arc<Self>,
        line: &Arc<LineShared>,
        new: u32,
        old: u32,
    ) -> Result<(), SipError> {
        let SipLineSettings::Station(st) = &line.settings else {
            return Err(SipError::Refused(format!(
                "line {} is not a station",
                line.info.id
            )));
        };
        lock(&self.waiting).insert(st.username.clone(), (new, old));
        for device in self.devices(&st.username) {
            self.spawn_notify(st.username.clone(), device, new, old);
        }
        Ok(())
    }

    /// Tells a device that just registered what waits for its account, if
    /// the box ever said anything.
    pub(super) fn on_fresh_device(self: &Arc<Self>, user: &str, device: Binding) {
        let known = lock(&self.waiting).get(user).copied();
        if let Some((new, old)) = known {
            self.spawn_notify(user.to_string(), device, new, old);
        }
    }

    fn spawn_notify(self: &Arc<Self>, user: String, device: Binding, new: u32, old: u32) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            match me.notify(&user, &device, new, old).await {
                Ok(code) if code < 300 => {
                    tracing::info!(%user, to = %device.source, new, old, "message waiting told to the phone");
                }
                Ok(code) => {
                    tracing::warn!(%user, to = %device.source, code, "phone refused the message-waiting NOTIFY");
                }
                Err(e) => {
                    tracing::warn!(%user, to = %device.source, "message-waiting NOTIFY not delivered: {e}");
                }
            }
        });
    }

    /// One NOTIFY to `device`: the final response's code, or why none came.
    async fn notify(
        &self,
        user: &str,
        device: &Binding,
        new: u32,
        old: u32,
    ) -> Result<u16, String> {
        let stack = self.stack().map_err(|e| e.to_string())?;
        let me = self
            .contact_for(user, device.tls)
            .map_err(|e| e.to_string())?;
        let host = me.host_with_port.to_string();
        let via = stack
            .endpoint
            .get_via(None, Some(rsipstack::transaction::make_via_branch()))
            .map_err(|e| e.to_string())?;
        let account = parse_uri(&format!("sip:{user}@{host}")).map_err(|e| e.to_string())?;
        let from = rsipstack::sip::typed::From {
            display_name: None,
            uri: account.clone(),
            params: vec![rsipstack::sip::Param::Tag(
                rsipstack::transaction::make_tag(),
            )],
        };
        let to = rsipstack::sip::typed::To {
            display_name: None,
            uri: account,
            params: vec![],
        };
        let mut req = stack.endpoint.make_request(
            Method::Notify,
            device.contact.clone(),
            via,
            from,
            to,
            1,
            None,
        );
        let body = summary(user, &host, new, old);
        req.headers.push(Header::Contact(format!("<{me}>").into()));
        req.headers
            .push(Header::Event("message-summary".to_string().into()));
        req.headers
            .push(Header::SubscriptionState("active".to_string().into()));
        req.headers.push(Header::ContentType(
            "application/simple-message-summary".to_string().into(),
        ));
        req.headers
            .push(Header::ContentLength(body.len().to_string().into()));
        req.body = body.into_bytes();
        self.final_answer(stack, req, sip_addr(device.source, device.tls))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_says_yes_only_for_new_messages() {
        let s = summary("alice", "10.0.0.2:5060", 2, 1);
        assert!(s.starts_with("Messages-Waiting: yes\r\n"), "{s}");
        assert!(s.contains("Message-Account: sip:alice@10.0.0.2:5060\r\n"));
        assert!(s.contains("Voice-Message: 2/1 (0/0)\r\n"));
        assert!(summary("alice", "h", 0, 3).starts_with("Messages-Waiting: no\r\n"));
    }
}

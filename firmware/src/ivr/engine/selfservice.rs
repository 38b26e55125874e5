//! Self-service: what a caller gets done without an agent. Product and
//! order lookups (each noted in the `lookups` table), voicemail, the
//! survey, notifications to headquarters and callback requests.

use std::collections::HashMap;
use std::time::Duration;

use callbox_hal::Line;
use tokio::sync::oneshot;

use super::vars::template;
use super::{FlowEnv, FlowState};
use crate::ivr::config::{Item, SayAs};
use crate::media::{Gone, Media};
use crate::store::{CheckHistory, StoreMsg};

impl<L: Line> FlowEnv<'_, L> {
    /// Notes a lookup the flow performed (what was asked, whether it was
    /// found) in the `lookups` table.
    async fn lookup(&self, source: &str, key: &str, found: bool) {
        self.store
            .send(StoreMsg::Lookup {
                call_id: self.call_id.to_string(),
                at: self.clock.now(),
                source: source.to_string(),
                key: key.to_string(),
                found,
            })
            .await;
    }

    /// Checks the product code in `var`: genuine or not, how often it was
    /// checked before, and whether it was sold for another region.
    pub(super) async fn product_check(
        &self,
        media: &mut Media<'_, L>,
        var: &str,
        st: &mut FlowState,
    ) -> Result<(), Gone> {
        let code = st.vars.get(var).cloned().unwrap_or_default();
        let product = self.ivr.lookups.product(&code);
        self.lookup("products", &code, product.is_some()).await;
        let caller_region = self.ivr.lookups.region_of(self.caller);
        let diverted = match (product, caller_region) {
            (Some(p), Some(r)) => p.region != r,
            _ => false,
        };
        let (tx, rx) = oneshot::channel();
        self.store
            .send(StoreMsg::ProductCheck {
                call_id: self.call_id.to_string(),
                code: code.clone(),
                caller: self.caller.map(str::to_string),
                found: product.is_some(),
                product_region: product.map(|p| p.region.clone()),
                caller_region: caller_region.map(str::to_string),
                diverted,
                at: self.clock.now(),
                reply: tx,
            })
            .await;
        let history = crate::store::reply(rx).await.unwrap_or(CheckHistory {
            earlier: 0,
            first_ms: None,
        });
        let (result, items) = if product.is_none() {
            ("not_found", vec![Item::Prompt("system:not-found".into())])
        } else if history.earlier == 0 {
            (
                "genuine_first",
                vec![Item::Prompt("system:genuine-first".into())],
            )
        } else {
            let first = history.first_ms.unwrap_or_else(|| self.now_ms());
            let tz = self.ivr.tz.clone();
            let date = jiff::Timestamp::from_millisecond(first)
                .map(|t| t.to_zoned(tz).date().to_string())
                .unwrap_or_default();
            st.vars
                .insert("check_count".into(), history.earlier.to_string());
            st.vars.insert("check_first".into(), date);
            (
                "genuine_repeat",
                vec![
                    Item::Prompt("system:genuine-repeat".into()),
                    Item::Say(SayAs::Number, "check_count".into()),
                    Item::Prompt("system:times".into()),
                    Item::Prompt("system:first-checked".into()),
                    Item::Say(SayAs::Date, "check_first".into()),
                ],
            )
        };
        st.path.push(format!(
            "check={result}{}",
            if diverted { ",diverted" } else { "" }
        ));
        st.vars.insert("check_result".into(), result.into());
        self.play(media, &items, st, false).await?;
        Ok(())
    }

    /// Records a message for `mailbox` (at most `max`), streamed to disk
    /// like a call recording.
    pub(super) async fn voicemail(
        &self,
        media: &mut Media<'_, L>,
        mailbox: &str,
        prompt: &[Item],
        max: Duration,
        saved: &[Item],
        st: &mut FlowState,
    ) -> Result<(), Gone> {
        self.play(media, prompt, st, false).await?;
        let (left, ended_early) = self.leave_message(media, mailbox, max).await;
        match left {
            Ok(duration_ms) => {
                st.path.push(format!("voicemail={duration_ms}ms"));
                st.outcome = Some(format!("voicemail:{mailbox}"));
            }
            Err(()) => {
                st.path.push("voicemail=failed".into());
                st.outcome = Some(format!("voicemail_failed:{mailbox}"));
            }
        }
        if let Some(g) = ended_early {
            return Err(g);
        }
        // "Message saved" only when it was.
        if left.is_ok() {
            self.play(media, saved, st, false).await?;
        }
        Ok(())
    }

    /// Records what the caller says into `mailbox` (at most `max`, or up
    /// to `#`) beside the call's own recording, notes it in the store and
    /// the box's count; the message's length, or `Err` when the box could
    /// not record (logged), and why the call ended meanwhile, if it did
    /// (the message is kept either way). Agents' calls to a colleague
    /// who does not answer end here too.
    pub async fn leave_message(
        &self,
        media: &mut Media<'_, L>,
        mailbox: &str,
        max: Duration,
    ) -> (Result<i64, ()>, Option<Gone>) {
        let at = self.clock.now();
        // The message streams to disk through the recorder like a call
        // recording: a power cut keeps what was said.
        let mut message = media.rec.sibling();
        let format = message
            .config()
            .map_or(crate::recorder::wav::Format::Pcm16, |c| c.voicemail_format);
        if !message.start("voicemail", format, 1) {
            tracing::error!(
                mailbox,
                "voicemail could not be recorded: the box cannot record now (no recording folder, or the disk is full)"
            );
            return (Err(()), None);
        }
        let id = message.id().unwrap_or_default().to_string();
        let file = message.file().unwrap_or_default().to_string();
        let (length, ended_early) = media.record(max, &mut message).await;
        let duration_ms = length.as_millis() as i64;
        self.store
            .send(StoreMsg::Voicemail {
                id,
                call_id: self.call_id.to_string(),
                mailbox: mailbox.to_string(),
                caller: self.caller.map(str::to_string),
                at,
                duration_ms,
                file,
            })
            .await;
        self.mailboxes.left(mailbox);
        (Ok(duration_ms), ended_early)
    }

    /// Says the status of the order whose number is in `var`.
    pub(super) async fn order_status(
        &self,
        media: &mut Media<'_, L>,
        var: &str,
        statuses: &HashMap<String, Vec<Item>>,
        st: &mut FlowState,
    ) -> Result<(), Gone> {
        let no = st.vars.get(var).cloned().unwrap_or_default();
        let (result, items) = match self.ivr.lookups.order(&no) {
            Some(status) => {
                let mut items = vec![Item::Prompt("system:order-status".into())];
                items.extend(statuses.get(status).cloned().unwrap_or_default());
                (status.to_string(), items)
            }
            None => (
                "not_found".to_string(),
                vec![Item::Prompt("system:order-not-found".into())],
            ),
        };
        self.lookup("orders", &no, result != "not_found").await;
        st.path.push(format!("order_status={result}"));
        st.vars.insert("order_status".into(), result);
        self.play(media, &items, st, false).await?;
        Ok(())
    }

    /// Sends `event` with its templated fields to headquarters, through
    /// the store's outbox.
    pub(super) async fn notify(&self, event: &str, fields: &[(String, String)], st: &FlowState) {
        let fields: serde_json::Map<String, serde_json::Value> = fields
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    template(v, st, self.caller, self.dialled, self.call_id).into(),
                )
            })
            .collect();
        let payload = serde_json::json!({
            "event": event,
            "call_id": self.call_id,
            "caller": self.caller,
            "fields": fields,
        });
        self.store
            .send(StoreMsg::Outbox {
                stream: "notify".into(),
                at: self.clock.now(),
                payload,
            })
            .await;
    }

    /// Asks for a score from 1 to 5, twice at most; thanks the caller who
    /// gave one.
    pub(super) async fn survey(
        &self,
        media: &mut Media<'_, L>,
        prompt: &[Item],
        thanks: &[Item],
        timeout: Duration,
        st: &mut FlowState,
    ) -> Result<(), Gone> {
        let mut score = None;
        for _ in 0..2 {
            self.play(media, prompt, st, true).await?;
            if let Some(k @ '1'..='5') = media.wait_key(timeout).await? {
                score = Some(k as u8 - b'0');
                break;
            }
        }
        st.survey = score;
        st.path.push(format!(
            "survey={}",
            score.map_or("none".into(), |s| s.to_string())
        ));
        if score.is_some() {
            self.play(media, thanks, st, false).await?;
        }
        Ok(())
    }

    /// Asks `queue` to call the caller back; a caller without a number
    /// cannot be called back.
    pub(super) async fn request_callback(
        &self,
        media: &mut Media<'_, L>,
        queue: &str,
        prompt: &[Item],
        st: &mut FlowState,
    ) -> Result<(), Gone> {
        let Some(number) = self.caller else {
            st.path.push("callback=no_number".into());
            return Ok(());
        };
        self.store
            .send(StoreMsg::Callback {
                call_id: self.call_id.to_string(),
                number: number.to_string(),
                queue: queue.to_string(),
                at: self.clock.now(),
            })
            .await;
        st.path.push("callback=requested".into());
        self.play(media, prompt, st, false).await?;
        Ok(())
    }
}

//! What the caller hears from a flow: prompt keys and values said aloud
//! (numbers, money, dates, times) turned into audio, and played.

use std::sync::Arc;

use callbox_hal::Line;

use super::{FlowEnv, FlowState};
use crate::ivr::config::{Item, SayAs};
use crate::ivr::say;
use crate::media::{Gone, Media};

impl<L: Line> FlowEnv<'_, L> {
    /// Fragments for a value said aloud; an unusable value says nothing
    /// (and is logged), it never ends the call.
    fn say_fragments(&self, how: SayAs, var: &str, st: &FlowState) -> Vec<String> {
        let value = match var {
            _ if st.vars.contains_key(var) => st.vars[var].as_str(),
            "caller" => self.caller.unwrap_or(""),
            "dialled" => self.dialled.unwrap_or(""),
            _ => "",
        };
        let lang = st.lang();
        let tz = self.ivr.tz.clone();
        let frags = match how {
            SayAs::Digits => Some(say::digits(value)),
            SayAs::Number => value.parse::<i64>().ok().map(|n| say::number(n, lang)),
            SayAs::Money => say::parse_money(value).map(|c| say::money(c, lang)),
            SayAs::Date => value
                .parse::<jiff::civil::Date>()
                .ok()
                .or_else(|| {
                    value
                        .parse::<jiff::Timestamp>()
                        .ok()
                        .map(|t| t.to_zoned(tz.clone()).date())
                })
                .map(|d| say::date(d.year() as i32, d.month() as u8, d.day() as u8, None, lang)),
            SayAs::Time => value
                .parse::<jiff::civil::Time>()
                .ok()
                .or_else(|| {
                    value
                        .parse::<jiff::Timestamp>()
                        .ok()
                        .map(|t| t.to_zoned(tz.clone()).time())
                })
                .map(|t| say::time(t.hour() as u8, t.minute() as u8, lang)),
        };
        frags.unwrap_or_else(|| {
            tracing::warn!(var, value, ?how, "value cannot be said; skipped");
            Vec::new()
        })
    }

    /// The prompt audio `items` stand for, in order.
    fn segments<'s>(&'s self, items: &[Item], st: &FlowState) -> Vec<&'s Arc<[i16]>> {
        let lang = st.lang();
        let mut out = Vec::new();
        let mut add = |key: &str| match self.ivr.prompts.get(lang, key) {
            Some(s) => out.push(s),
            None => tracing::warn!(key, lang = lang.code(), "prompt missing at run time"),
        };
        for item in items {
            match item {
                Item::Prompt(key) => add(key),
                Item::Say(how, var) => {
                    for f in self.say_fragments(*how, var, st) {
                        add(&format!("system:{f}"));
                    }
                }
            }
        }
        out
    }

    /// Plays `items`; `Ok(true)` when a key cut them short (`barge_in`).
    pub(super) async fn play(
        &self,
        media: &mut Media<'_, L>,
        items: &[Item],
        st: &FlowState,
        barge_in: bool,
    ) -> Result<bool, Gone> {
        if items.is_empty() {
            return Ok(false);
        }
        // A single prompt (a menu's greeting) plays from the loaded audio;
        // only a sentence of several is joined, per call, so its fragments
        // play without gaps.
        let segments = self.segments(items, st);
        let audio: Arc<[i16]> = match segments.as_slice() {
            [one] => Arc::clone(one),
            many => many.iter().flat_map(|s| s.iter().copied()).collect(),
        };
        let interrupted = media.play(audio, barge_in).await?;
        if !barge_in {
            media.clear_keys();
        }
        Ok(interrupted)
    }
}

//! Menus and digit collection: greeting, waiting for keys with first- and
//! inter-digit timeouts, retries after invalid entries and silence, and
//! where the caller goes when they run out of tries.

use callbox_hal::Line;

use super::{FlowEnv, FlowState};
use crate::ivr::config::{Collect, Menu, NodeId, Target};
use crate::media::{Gone, Media};

/// Invalid entries and timeouts in menus allowed per call, over all menus.
const MAX_MENU_ERRORS: u32 = 12;

impl<L: Line> FlowEnv<'_, L> {
    /// Enters menu node `id`. It goes on the stack `back` and `repeat` use;
    /// a caller who comes back to it (or asked to hear it again,
    /// `repeat`) hears the short greeting.
    pub(super) async fn enter_menu(
        &self,
        media: &mut Media<'_, L>,
        id: NodeId,
        m: &Menu,
        repeat: &mut bool,
        st: &mut FlowState,
    ) -> Result<Target, Gone> {
        let name = &self.ivr.nodes[id].name;
        self.event("menu", serde_json::json!({"node": name})).await;
        let short = std::mem::take(repeat) || st.menus.last() == Some(&id);
        if st.menus.last() != Some(&id) {
            st.menus.push(id);
        }
        self.menu(media, name, m, short, st).await
    }

    /// Plays the menu and takes the caller's choice; a key that starts a
    /// longer option waits for the next one.
    async fn menu(
        &self,
        media: &mut Media<'_, L>,
        name: &str,
        m: &Menu,
        short: bool,
        st: &mut FlowState,
    ) -> Result<Target, Gone> {
        let (mut failures, mut timeouts) = (0, 0);
        let mut greeting = if short {
            &m.short_greeting
        } else {
            &m.greeting
        };
        loop {
            self.play(media, greeting, st, m.barge_in).await?;
            greeting = &m.short_greeting;
            if st.menu_errors >= MAX_MENU_ERRORS {
                // Whatever the config says (`back` to a menu that sends the
                // caller back again), a silent or lost caller is let go.
                st.outcome = Some(format!("too_many_errors:{name}"));
                self.play(media, &m.exit, st, false).await?;
                return Ok(Target::Hangup);
            }
            let Some(first) = media.wait_key(m.first_digit_timeout).await? else {
                st.menu_errors += 1;
                timeouts += 1;
                st.path.push(format!("{name}!timeout"));
                if timeouts >= m.max_timeouts {
                    st.outcome = Some(format!("max_timeouts:{name}"));
                    self.play(media, &m.exit, st, false).await?;
                    return Ok(m.on_max_timeouts);
                }
                self.play(media, &m.no_input, st, false).await?;
                continue;
            };
            let mut entry = String::from(first);
            loop {
                let longer = m
                    .options
                    .iter()
                    .any(|(k, _)| k.len() > entry.len() && k.starts_with(&entry));
                // Stop as soon as no longer option starts with what was keyed:
                // "1" waits for a possible "12", "2" is taken at once.
                if !longer || entry.chars().count() >= m.max_len {
                    break;
                }
                match media.wait_key(m.inter_digit_timeout).await? {
                    Some(k) => entry.push(k),
                    None => break,
                }
            }
            self.event("digit", serde_json::json!({"menu": name, "keys": entry}))
                .await;
            if let Some((_, t)) = m.options.iter().find(|(k, _)| *k == entry) {
                st.path.push(format!("{name}={entry}"));
                // A new choice starts a clean slate for the next node.
                media.clear_keys();
                return Ok(*t);
            }
            failures += 1;
            st.menu_errors += 1;
            st.path.push(format!("{name}!invalid:{entry}"));
            media.clear_keys();
            if failures >= m.max_failures {
                st.outcome = Some(format!("max_failures:{name}"));
                self.play(media, &m.exit, st, false).await?;
                return Ok(m.on_max_failures);
            }
            self.play(media, &m.invalid, st, false).await?;
        }
    }

    /// Collects digits into the node's variable, with retries.
    pub(super) async fn collect(
        &self,
        media: &mut Media<'_, L>,
        name: &str,
        k: &Collect,
        st: &mut FlowState,
    ) -> Result<Target, Gone> {
        let mut attempt = 0;
        loop {
            self.play(media, &k.prompt, st, k.barge_in).await?;
            let mut digits = String::new();
            let mut timeout = k.first_digit_timeout;
            let mut terminated = false;
            while let Some(key) = media.wait_key(timeout).await? {
                if Some(key) == k.terminator {
                    terminated = true;
                    break;
                }
                digits.push(key);
                if digits.chars().count() >= k.max {
                    break;
                }
                timeout = k.inter_digit_timeout;
            }
            let _ = terminated;
            let len = digits.chars().count();
            let valid = len >= k.min
                && len <= k.max
                && k.pattern.as_ref().is_none_or(|p| p.matches(&digits));
            if valid {
                st.path.push(format!("{name}=ok"));
                st.vars.insert(k.var.clone(), digits);
                if k.recordable {
                    st.recordable.insert(k.var.clone());
                }
                media.clear_keys();
                return Ok(k.next);
            }
            attempt += 1;
            let (what, prompt) = if digits.is_empty() {
                ("timeout", &k.no_input)
            } else {
                ("invalid", &k.invalid)
            };
            st.path.push(format!("{name}!{what}"));
            media.clear_keys();
            if attempt > k.retries {
                st.outcome = Some(format!("collect_failed:{name}"));
                return Ok(k.on_failure);
            }
            self.play(media, prompt, st, false).await?;
        }
    }
}

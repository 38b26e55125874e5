//! Each SIP line's health for the firmware (`Line::status`): trunks by
//! their registration or keep-alive (set by `trunk`), phone lines by
//! whether a device of their account is registered, looked at after each
//! REGISTER and every [`PHONE_SWEEP`], since a registration runs out
//! without a word from the phone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Agent, lock};
use crate::line::{Health, LineStatus};
use crate::sip::config::SipLineSettings;
use crate::sip::line::LineShared;

/// How often phones' registrations are looked at for ones that ran out.
const PHONE_SWEEP: Duration = Duration::from_secs(10);

impl Agent {
    /// Tells every line `pick` chooses its health: lines sharing a
    /// carrier's account or address share what is known of it.
    pub(super) fn set_health(&self, pick: impl Fn(&LineShared) -> bool, now: LineStatus) {
        for l in self.lines().iter().filter(|l| pick(l)) {
            l.status.send_if_modified(|s| {
                let changed = *s != now;
                if changed {
                    *s = now.clone();
                }
                changed
            });
        }
    }

    /// Each phone line up while a device of its account is registered.
    pub(super) fn refresh_phones(&self) {
        let now = Instant::now();
        let live: HashMap<String, usize> = lock(&self.bindings)
            .iter()
            .map(|(user, b)| (user.clone(), b.iter().filter(|b| b.until > now).count()))
            .collect();
        for l in self.lines() {
            let SipLineSettings::Station(st) = &l.settings else {
                continue;
            };
            let n = live.get(&st.username).copied().unwrap_or(0);
            let status = if n == 0 {
                LineStatus::new(Health::Down, "no phone registered")
            } else {
                LineStatus::new(Health::Up, format!("{n} phone(s) registered"))
            };
            self.set_health(|x| std::ptr::eq(x, &*l), status);
        }
    }

    /// Looks at the phones' registrations every [`PHONE_SWEEP`] until the
    /// agent stops.
    pub(super) fn spawn_phone_sweep(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = me.cancel.cancelled() => return,
                    () = tokio::time::sleep(PHONE_SWEEP) => me.refresh_phones(),
                }
            }
        });
    }
}

//! The flow's variables: conditions a `branch` node tests, values a `set`
//! node assigns (the variable `language` switches the language spoken),
//! and `{name}` templates filled from them.

use callbox_hal::Line;

use super::{FlowEnv, FlowState};
use crate::ivr::config::Cond;
use crate::ivr::say::Lang;

/// `s` with every `{name}` replaced by the variable's value (empty when
/// unset); `caller`, `dialled` and `call_id` name the call's own values.
pub(super) fn template(
    s: &str,
    st: &FlowState,
    env_caller: Option<&str>,
    env_dialled: Option<&str>,
    call_id: &str,
) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let Some(j) = rest[i..].find('}') else {
            out.push_str(&rest[i..]);
            return out;
        };
        let name = &rest[i + 1..i + j];
        let v = match name {
            "caller" => env_caller.unwrap_or(""),
            "dialled" => env_dialled.unwrap_or(""),
            "call_id" => call_id,
            other => st.vars.get(other).map_or("", String::as_str),
        };
        out.push_str(v);
        rest = &rest[i + j + 1..];
    }
    out.push_str(rest);
    out
}

impl<L: Line> FlowEnv<'_, L> {
    /// Whether a branch condition holds now for this call.
    pub(super) fn holds(&self, c: &Cond, st: &FlowState) -> bool {
        let now = self.now_ms();
        match c {
            Cond::Open(h) => self.ivr.hours.get(h).is_some_and(|h| h.is_open(now)),
            Cond::Holiday(h) => self.ivr.hours.get(h).is_some_and(|h| h.is_holiday(now)),
            Cond::CallerIn(list) => self.ivr.in_list(list, self.caller),
            Cond::Dialled(ps) => self
                .dialled
                .is_some_and(|d| ps.iter().any(|p| p.matches(d))),
            Cond::VarEquals(v, want) => st.vars.get(v).is_some_and(|x| x == want),
            Cond::VarMatches(v, p) => st.vars.get(v).is_some_and(|x| p.matches(x)),
            Cond::Language(l) => st.lang() == *l,
            Cond::Night(want) => {
                let open = self.ivr.open_for_business(now);
                self.daynight.state().mode.is_night(open) == *want
            }
        }
    }

    /// Sets `var` to the template `value`; `language` changes the language
    /// spoken when the site has prompts for it.
    pub(super) fn set(&self, var: &str, value: &str, recordable: bool, st: &mut FlowState) {
        let v = template(value, st, self.caller, self.dialled, self.call_id);
        if var == "language" {
            match Lang::parse(&v) {
                Some(l) if self.ivr.prompts.get(l, "system:digit-0").is_some() => st.lang = Some(l),
                _ => tracing::warn!(value = %v, "language not available; unchanged"),
            }
        }
        st.vars.insert(var.to_string(), v);
        if recordable {
            st.recordable.insert(var.to_string());
        }
    }
}

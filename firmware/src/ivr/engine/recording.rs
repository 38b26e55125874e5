//! The recording policy at each point of a call: the consent notice
//! before anything may be recorded, and starting or stopping the
//! recording when the caller is connected to an agent or a line.

use callbox_hal::Line;

use super::{FlowEnv, FlowState};
use crate::media::{Gone, Media};
use crate::recorder::config::{CallKeys, Mode};

impl<L: Line> FlowEnv<'_, L> {
    /// Applies the recording policy for this point of the call: the
    /// caller hears the consent notice the first time a policy that may
    /// record asks for it, and with `connect` (the caller is being
    /// connected to `agent` or a line) the recording starts or stops as the
    /// policy says; on-demand calls wait for the agent's record code.
    pub(super) async fn recording_policy(
        &self,
        media: &mut Media<'_, L>,
        queue: Option<&str>,
        agent: Option<&str>,
        connect: bool,
        st: &mut FlowState,
    ) -> Result<(), Gone> {
        let Some(cfg) = media.rec.config() else {
            return Ok(());
        };
        let flow = st.start.map(|n| self.ivr.nodes[n].name.as_str());
        let d = cfg.decide(&CallKeys {
            queue,
            flow,
            agent,
            dialled: self.dialled,
        });
        if d.mode != Mode::Never
            && d.consent
            && !st.consent_played
            && let Some(p) = &cfg.consent_prompt
        {
            st.consent_played = true;
            st.path.push("recording_notice".into());
            media.play(p.samples.clone(), false).await?;
            media.clear_keys();
        }
        if connect && !media.rec.follow(d) {
            st.path.push("recording!unavailable".into());
        }
        Ok(())
    }
}

//! Answering-machine detection: tells a person who picked up ("hello?",
//! then silence while they wait) from a recorded greeting (a long stretch
//! of words), by the energy and silence pattern of the first seconds the
//! called party says — the method of Asterisk's `AMD()`, with its
//! parameters and defaults as the reference.
//!
//! [`Listener`] runs inside the media engine, on every frame the leg says,
//! so it costs no task wake per frame; its answer comes back once.

use std::time::Duration;

/// What the called party is taken for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A short greeting, then silence: somebody waiting for an answer.
    Human,
    /// A long greeting, many words, or a very long word: a recording.
    Machine,
    /// Nothing decided in the analysis time (or nothing said at all).
    Unsure,
}

impl Verdict {
    /// The word on records and results.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Human => "human",
            Verdict::Machine => "machine",
            Verdict::Unsure => "unsure",
        }
    }
}

/// The detector's parameters (Asterisk's `amd.conf` names in brackets).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AmdParams {
    /// Silence before anything is said that makes the party `unsure`
    /// [initial_silence].
    pub initial_silence: Duration,
    /// Voice in all past which the greeting is a machine's [greeting].
    pub greeting: Duration,
    /// Silence after the first words that makes the party human
    /// [after_greeting_silence].
    pub after_greeting_silence: Duration,
    /// Longest analysis before `unsure` [total_analysis_time].
    pub total: Duration,
    /// Voice shorter than this is not a word [min_word_length].
    pub min_word: Duration,
    /// Silence that ends a word [between_words_silence].
    pub between_words: Duration,
    /// Words at which the party is a machine [maximum_number_of_words].
    pub max_words: u32,
    /// One word this long is a machine's [maximum_word_length].
    pub max_word: Duration,
    /// Mean absolute sample level below which a frame is silence
    /// [silence_threshold].
    pub silence_threshold: u32,
}

impl Default for AmdParams {
    fn default() -> Self {
        AmdParams {
            initial_silence: Duration::from_millis(2500),
            greeting: Duration::from_millis(1500),
            after_greeting_silence: Duration::from_millis(800),
            total: Duration::from_millis(5000),
            min_word: Duration::from_millis(100),
            between_words: Duration::from_millis(50),
            max_words: 3,
            max_word: Duration::from_millis(5000),
            silence_threshold: 256,
        }
    }
}

/// Whether a frame is silence at `threshold` (mean absolute level).
fn silent(samples: &[i16], threshold: u32) -> bool {
    if samples.is_empty() {
        return true;
    }
    let sum: u64 = samples.iter().map(|s| u64::from(s.unsigned_abs())).sum();
    sum / (samples.len() as u64) < u64::from(threshold)
}

/// The classifier's state over the frames heard so far (all in ms).
#[derive(Debug, Clone)]
pub struct Detector {
    p: AmdParams,
    total: u64,
    silence: u64,
    voice: u64,
    word_voice: u64,
    words: u32,
    in_word: bool,
    started: bool,
}

impl Detector {
    /// A detector that has heard nothing yet.
    pub fn new(p: AmdParams) -> Detector {
        Detector {
            p,
            total: 0,
            silence: 0,
            voice: 0,
            word_voice: 0,
            words: 0,
            in_word: false,
            started: false,
        }
    }

    /// Takes one frame `ms` long; the verdict once there is one.
    pub fn feed(&mut self, samples: &[i16], ms: u64) -> Option<Verdict> {
        let ms_of = |d: Duration| d.as_millis() as u64;
        self.total += ms;
        if silent(samples, self.p.silence_threshold) {
            self.silence += ms;
            if self.silence >= ms_of(self.p.between_words) {
                self.in_word = false;
                self.word_voice = 0;
            }
            if !self.started && self.silence >= ms_of(self.p.initial_silence) {
                return Some(Verdict::Unsure);
            }
            if self.started && self.silence >= ms_of(self.p.after_greeting_silence) {
                return Some(Verdict::Human);
            }
        } else {
            self.silence = 0;
            self.voice += ms;
            self.word_voice += ms;
            if !self.in_word && self.word_voice >= ms_of(self.p.min_word) {
                self.in_word = true;
                self.started = true;
                self.words += 1;
            }
            if self.word_voice >= ms_of(self.p.max_word)
                || self.words >= self.p.max_words
                || (self.started && self.voice >= ms_of(self.p.greeting))
            {
                return Some(Verdict::Machine);
            }
        }
        (self.total >= ms_of(self.p.total)).then_some(Verdict::Unsure)
    }
}

/// What the engine listens for on a leg, and what it answers.
#[derive(Debug)]
pub enum Listener {
    /// Human or machine.
    Classify(Detector),
    /// The end of a greeting: `need` ms of silence in a row (after the
    /// beep, where a message is recorded), or `max` ms in all.
    Quiet {
        /// Silence in a row that ends the wait.
        need: u64,
        /// Longest wait.
        max: u64,
        /// Level below which a frame is silence.
        threshold: u32,
        /// Silence so far in a row.
        silent: u64,
        /// Heard so far.
        total: u64,
    },
}

/// A listener's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// The classifier's verdict.
    Verdict(Verdict),
    /// The silence waited for came (or the longest wait passed).
    Quiet,
}

impl Listener {
    /// Waits for `need` of silence in a row, at most `max`.
    pub fn quiet(need: Duration, max: Duration, threshold: u32) -> Listener {
        Listener::Quiet {
            need: need.as_millis() as u64,
            max: max.as_millis() as u64,
            threshold,
            silent: 0,
            total: 0,
        }
    }

    /// Takes one frame `ms` long; the answer once there is one.
    pub fn feed(&mut self, samples: &[i16], ms: u64) -> Option<Heard> {
        match self {
            Listener::Classify(d) => d.feed(samples, ms).map(Heard::Verdict),
            Listener::Quiet {
                need,
                max,
                threshold,
                silent: quiet,
                total,
            } => {
                *total += ms;
                if silent(samples, *threshold) {
                    *quiet += ms;
                } else {
                    *quiet = 0;
                }
                (*quiet >= *need || *total >= *max).then_some(Heard::Quiet)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 20 ms frames: `voice` ms of a loud tone then `quiet` ms of silence,
    /// repeated as given.
    fn frames(pattern: &[(u64, u64)]) -> Vec<Vec<i16>> {
        let loud: Vec<i16> = (0..160)
            .map(|i| ((i as f64 * 0.3).sin() * 4000.0) as i16)
            .collect();
        let mut out = Vec::new();
        for &(voice, quiet) in pattern {
            out.extend(std::iter::repeat_n(loud.clone(), (voice / 20) as usize));
            out.extend(std::iter::repeat_n(vec![3i16; 160], (quiet / 20) as usize));
        }
        out
    }

    fn verdict(pattern: &[(u64, u64)]) -> Option<Verdict> {
        let mut d = Detector::new(AmdParams::default());
        frames(pattern).iter().find_map(|f| d.feed(f, 20))
    }

    #[test]
    fn a_short_hello_then_waiting_is_a_person() {
        assert_eq!(verdict(&[(300, 0), (500, 2000)]), Some(Verdict::Human));
        // Two words with a breath between them.
        assert_eq!(
            verdict(&[(200, 600), (400, 0), (0, 1000)]),
            Some(Verdict::Human)
        );
    }

    #[test]
    fn a_long_greeting_is_a_machine() {
        // One long stretch of voice.
        assert_eq!(verdict(&[(2000, 100)]), Some(Verdict::Machine));
        // Many short words.
        assert_eq!(
            verdict(&[(200, 200), (200, 200), (200, 200), (200, 2000)]),
            Some(Verdict::Machine)
        );
    }

    #[test]
    fn nothing_said_is_unsure() {
        assert_eq!(verdict(&[(0, 3000)]), Some(Verdict::Unsure));
    }

    #[test]
    fn quiet_waits_for_silence_in_a_row() {
        let mut l = Listener::quiet(Duration::from_millis(1000), Duration::from_secs(20), 256);
        let f = frames(&[(600, 600), (400, 1000)]);
        let at = f.iter().position(|fr| l.feed(fr, 20).is_some());
        // 600 voice + 600 quiet + 400 voice + 1000 quiet, 20 ms frames.
        assert_eq!(at, Some(2600 / 20 - 1));
    }
}

//! Prompt loading: every prompt a flow refers to, and the fragments the
//! say functions need, decoded once per language a flow can speak.
//!
//! A site prompt is looked for in the prompts directory's folder for the
//! language, then in the directory itself; a system prompt in the prompts
//! directory's `system/<lang>` (the site's own recording) before the
//! system prompt set.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::checker::Checker;
use crate::ivr::say::{self, Lang};

/// Decoded prompts by `(language, key)`.
#[derive(Debug, Clone, Default)]
pub struct PromptSet {
    map: HashMap<(Lang, String), Arc<[i16]>>,
}

impl PromptSet {
    /// Samples of a prompt in a language.
    pub fn get(&self, lang: Lang, key: &str) -> Option<&Arc<[i16]>> {
        self.map.get(&(lang, key.to_string()))
    }

    /// Prompts `keys` joined into one sentence, played without gaps;
    /// a missing one is left out and logged.
    pub fn sentence<'k>(&self, lang: Lang, keys: impl IntoIterator<Item = &'k str>) -> Vec<i16> {
        keys.into_iter()
            .filter_map(|k| {
                let p = self.get(lang, k);
                if p.is_none() {
                    tracing::warn!(key = %k, "prompt missing at run time");
                }
                p
            })
            .flat_map(|s| s.iter().copied())
            .collect()
    }
}

/// Where the box finds its system prompts when the config names none:
/// installed images have them under /usr/share; a source checkout has them
/// in the firmware crate.
pub fn default_system_prompts() -> PathBuf {
    let installed = PathBuf::from("/usr/share/callbox/prompts/system");
    if installed.is_dir() {
        return installed;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/system")
}

/// Decodes every prompt the check found wanted, in every language of
/// [`Checker::langs`]; what is missing or not audio is an error at the
/// key that first asked for it.
pub(super) fn load(c: &mut Checker<'_>) -> PromptSet {
    let mut prompts = PromptSet::default();
    let mut langs: Vec<Lang> = c.langs.iter().copied().collect();
    langs.sort_by_key(|l| l.code());
    let mut decoded: HashMap<PathBuf, Arc<[i16]>> = HashMap::new();
    for &lang in &langs {
        let mut wanted: Vec<(String, String)> = c
            .wanted
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if c.system_dir.is_dir() {
            for f in say::required_fragments(lang) {
                wanted.push((format!("system:{f}"), "ivr".to_string()));
            }
        }
        for (key, at) in wanted {
            let candidates: Vec<PathBuf> = if let Some(name) = key.strip_prefix("system:") {
                vec![
                    c.prompt_dir
                        .join("system")
                        .join(lang.code())
                        .join(format!("{name}.wav")),
                    c.system_dir.join(lang.code()).join(format!("{name}.wav")),
                ]
            } else {
                let name = key.trim_start_matches("site:");
                vec![
                    c.prompt_dir.join(lang.code()).join(name),
                    c.prompt_dir.join(name),
                ]
            };
            let Some(path) = candidates.iter().find(|p| p.is_file()) else {
                let msg = if at == "ivr" {
                    format!(
                        "system prompt `{}` for language {} not found (looked in {}); the say functions need it",
                        key.trim_start_matches("system:"),
                        lang.code(),
                        candidates
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                } else {
                    format!(
                        "prompt `{}` for language {} not found (looked for {})",
                        key.split_once(':').map_or(key.as_str(), |(_, n)| n),
                        lang.code(),
                        candidates
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                c.err(at, msg);
                continue;
            };
            let samples = match decoded.get(path) {
                Some(s) => s.clone(),
                None => match callbox_hal::wav::load_prompt(path, 8000) {
                    Ok(s) => {
                        let s: Arc<[i16]> = s.into();
                        decoded.insert(path.clone(), s.clone());
                        s
                    }
                    Err(e) => {
                        c.err(at, format!("prompt file {}: {e}", path.display()));
                        continue;
                    }
                },
            };
            prompts.map.insert((lang, key), samples);
        }
    }
    prompts
}

#[cfg(test)]
mod tests {
    use crate::ivr::config::testing::{accepted, errors, one_node};
    use crate::ivr::say::Lang;

    #[test]
    fn missing_site_prompt_says_where_it_was_looked_for() {
        let cfg = one_node("type = \"play\"\nprompts = \"gone.wav\"\nnext = \"hangup\"");
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.prompts: prompt `gone.wav` for language en not found (looked for DIR/prompts/en/gone.wav, DIR/prompts/gone.wav)"
            ]
        );
    }

    #[test]
    fn missing_system_prompt_says_where_it_was_looked_for() {
        let cfg = one_node("type = \"play\"\nprompts = \"system:gone\"\nnext = \"hangup\"");
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.prompts: prompt `gone` for language en not found (looked for DIR/prompts/system/en/gone.wav, SYSTEM/en/gone.wav)"
            ]
        );
    }

    #[test]
    fn prompt_that_is_not_audio_is_refused() {
        let cfg = one_node("type = \"play\"\nprompts = \"noise.wav\"\nnext = \"hangup\"");
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.prompts: prompt file DIR/prompts/noise.wav: not a RIFF/WAVE file: the file is only 9 bytes long"
            ]
        );
    }

    #[test]
    fn prompts_load_in_every_language_a_flow_speaks() {
        let ivr = accepted(
            "[ivr]\nstart = \"n\"\n[[ivr.route]]\ndialled = [\"800\"]\nstart = \"n\"\nlanguage = \"zh\"\n[ivr.node.n]\ntype = \"play\"\nprompts = \"hello.wav\"\nnext = \"hangup\"",
        );
        for lang in [Lang::En, Lang::Zh] {
            assert!(
                ivr.prompts.get(lang, "site:hello.wav").is_some(),
                "{lang:?}"
            );
            assert!(
                ivr.prompts.get(lang, "system:digit-1").is_some(),
                "{lang:?}"
            );
        }
    }
}

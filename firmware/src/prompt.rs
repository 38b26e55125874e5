//! A prompt: a named piece of audio from the site's prompts directory,
//! loaded and decoded once when the config is checked.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A prompt, loaded and decoded once.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// File name as written in the config.
    pub name: String,
    /// 8 kHz 16-bit samples.
    pub samples: Arc<[i16]>,
}

impl Prompt {
    /// Length when played.
    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.samples.len() as u64 * 125)
    }

    /// Loads prompt `name` from the prompts directory `dir` (8 kHz mono).
    pub fn load(dir: &Path, name: &str) -> Result<Prompt, String> {
        if name.is_empty() || Path::new(name).is_absolute() || name.split('/').any(|p| p == "..") {
            return Err(format!(
                "prompt `{name}` must be a file name inside the prompts directory ({})",
                dir.display()
            ));
        }
        let path = dir.join(name);
        if !path.is_file() {
            return Err(format!(
                "prompt file `{name}` not found (looked for {})",
                path.display()
            ));
        }
        callbox_hal::wav::load_prompt(&path, 8000)
            .map(|s| Prompt {
                name: name.to_string(),
                samples: s.into(),
            })
            .map_err(|e| format!("prompt file {}: {e}", path.display()))
    }
}

//! A prompt: a named piece of audio from the site's prompts directory,
//! loaded and decoded once when the config is checked.

use std::path::{Path, PathBuf};

use callbox_hal::wav::WavError;
use std::sync::Arc;
use std::time::Duration;

/// Why a prompt could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// The name reaches outside the prompts directory (or is empty).
    #[error("prompt `{name}` must be a file name inside the prompts directory ({})", .dir.display())]
    Outside {
        /// The name as written.
        name: String,
        /// The prompts directory.
        dir: PathBuf,
    },
    /// No such file.
    #[error("prompt file `{name}` not found (looked for {})", .path.display())]
    NotFound {
        /// The name as written.
        name: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The file is not audio a prompt can be made of.
    #[error("prompt file {}: {source}", .path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: WavError,
    },
}

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
    pub fn load(dir: &Path, name: &str) -> Result<Prompt, PromptError> {
        if name.is_empty() || Path::new(name).is_absolute() || name.split('/').any(|p| p == "..") {
            return Err(PromptError::Outside {
                name: name.to_string(),
                dir: dir.to_path_buf(),
            });
        }
        let path = dir.join(name);
        if !path.is_file() {
            return Err(PromptError::NotFound {
                name: name.to_string(),
                path,
            });
        }
        callbox_hal::wav::load_prompt(&path, 8000)
            .map(|s| Prompt {
                name: name.to_string(),
                samples: s.into(),
            })
            .map_err(|source| PromptError::Unreadable { path, source })
    }
}

//! Reading WAV files of telephone audio (prompts, scenario sound files).
//!
//! Files are checked when they are loaded, so a wrong file is a clear error
//! at start-up rather than noise in a caller's ear.

use std::path::Path;

/// Why a WAV file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// The file could not be opened or is not a RIFF/WAVE file.
    #[error("not a readable WAV file: {0}")]
    Read(#[from] hound::Error),
    /// Valid WAV, wrong format for a phone line.
    #[error("unsupported format: {0}; prompts must be 8000 Hz mono 16-bit PCM")]
    Format(String),
    /// No audio in the file.
    #[error("the file holds no audio")]
    Empty,
}

/// Loads an 8 kHz mono 16-bit PCM WAV file into samples.
pub fn load_pcm16_mono(path: &Path, sample_rate: u32) -> Result<Vec<i16>, WavError> {
    let reader = hound::WavReader::open(path)?;
    let spec = reader.spec();
    if spec.channels != 1
        || spec.sample_rate != sample_rate
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(WavError::Format(format!(
            "{} Hz, {} channel(s), {}-bit {:?}",
            spec.sample_rate, spec.channels, spec.bits_per_sample, spec.sample_format
        )));
    }
    let samples = reader
        .into_samples::<i16>()
        .collect::<Result<Vec<_>, _>>()?;
    if samples.is_empty() {
        return Err(WavError::Empty);
    }
    Ok(samples)
}

/// Writes samples as an 8 kHz mono 16-bit PCM WAV (tests, tools).
pub fn write_pcm16_mono(path: &Path, sample_rate: u32, samples: &[i16]) -> Result<(), WavError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    for &s in samples {
        w.write_sample(s)?;
    }
    w.finalize()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_format_errors() {
        let dir = std::env::temp_dir().join(format!("callbox-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = dir.join("ok.wav");
        write_pcm16_mono(&ok, 8000, &[1, -2, 3]).unwrap();
        assert_eq!(load_pcm16_mono(&ok, 8000).unwrap(), vec![1, -2, 3]);
        let wrong_rate = dir.join("rate.wav");
        write_pcm16_mono(&wrong_rate, 16000, &[0; 10]).unwrap();
        let e = load_pcm16_mono(&wrong_rate, 8000).unwrap_err();
        assert!(e.to_string().contains("16000 Hz"), "{e}");
        let junk = dir.join("junk.wav");
        std::fs::write(&junk, b"this is not audio").unwrap();
        assert!(matches!(
            load_pcm16_mono(&junk, 8000),
            Err(WavError::Read(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

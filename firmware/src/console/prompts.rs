//! The site's prompts in the browser (admins): the list with a player for
//! each, and uploads. An upload must be a WAV file: one already in the
//! box's format (8 kHz mono, 16-bit PCM, A-law or µ-law) is kept as it is;
//! any other PCM WAV (another rate, stereo, 8/24/32-bit or float) is mixed
//! to mono and resampled to 8 kHz 16-bit. Anything else is refused and
//! nothing is stored. A new prompt is used once a config names it; a
//! replaced one once the config is applied again or the box restarts.

use std::io::Cursor;
use std::path::PathBuf;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::api::{ApiError, ApiResult, Authed, Console, St, audit};
use super::auth::Role;

/// Largest upload taken (a 3-minute CD-quality stereo file is 32 MB).
pub(super) const MAX_UPLOAD: usize = 48 * 1024 * 1024;
/// Longest prompt kept after conversion.
const MAX_SECONDS: usize = 600;
const RATE: u32 = 8000;

/// `NAME.wav` in the prompts folder, for a plain name only.
fn prompt_path(c: &Console, name: &str) -> Result<PathBuf, ApiError> {
    let stem = name.strip_suffix(".wav").unwrap_or(name);
    if stem.is_empty()
        || stem.len() > 64
        || !stem
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "a prompt name is 1 to 64 letters, digits, `-` or `_` (with or without `.wav`)",
        ));
    }
    Ok(c.deps.prompt_dir.join(format!("{stem}.wav")))
}

/// `GET /api/prompts`: `{"prompts":[{"name","bytes","ms"}]}`.
pub(super) async fn list(State(c): St, a: Authed) -> ApiResult {
    a.need(Role::Admin)?;
    let dir = c.deps.prompt_dir.clone();
    let list = c
        .blocking(move || {
            let mut out: Vec<serde_json::Value> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let stem = name.strip_suffix(".wav")?.to_string();
                    let bytes = e.metadata().ok()?.len();
                    let ms = callbox_hal::wav::load_prompt(&e.path(), RATE)
                        .ok()
                        .map(|s| s.len() as u64 * 1000 / u64::from(RATE));
                    Some(json!({"name": stem, "bytes": bytes, "ms": ms}))
                })
                .collect();
            out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            out
        })
        .await?;
    Ok(Json(json!({"prompts": list})))
}

/// `GET /api/prompts/{name}`: the WAV.
pub(super) async fn get(
    State(c): St,
    a: Authed,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    a.need(Role::Admin)?;
    let path = prompt_path(&c, &name)?;
    let bytes = c
        .blocking(move || std::fs::read(path))
        .await?
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "no such prompt"))?;
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"))],
        bytes,
    )
        .into_response())
}

/// Decodes any PCM WAV `hound` reads into 8 kHz mono 16-bit samples.
fn convert(bytes: &[u8]) -> Result<Vec<i16>, String> {
    let reader = hound::WavReader::new(Cursor::new(bytes))
        .map_err(|e| format!("not a WAV audio file ({e})"))?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels.max(1));
    if spec.sample_rate < 4000 || spec.sample_rate > 192_000 {
        return Err(format!("{} Hz is not a rate for speech", spec.sample_rate));
    }
    if u64::from(reader.duration()) > (MAX_SECONDS as u64) * u64::from(spec.sample_rate) {
        return Err(format!("longer than {MAX_SECONDS} s"));
    }
    let frames: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .into_samples::<f32>()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the audio cannot be read ({e})"))?,
        hound::SampleFormat::Int => {
            let scale = (1i64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 / scale))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("the audio cannot be read ({e})"))?
        }
    };
    let mono: Vec<f32> = frames
        .chunks(channels)
        .map(|f| f.iter().sum::<f32>() / f.len() as f32)
        .collect();
    if mono.is_empty() {
        return Err("the file holds no audio".into());
    }
    // Each output sample averages the input over its own span (a box
    // filter: enough against aliasing for speech going down to 8 kHz),
    // or interpolates when going up.
    let ratio = spec.sample_rate as f64 / f64::from(RATE);
    let n = ((mono.len() as f64) / ratio).floor().max(1.0) as usize;
    let out = (0..n)
        .map(|i| {
            let start = i as f64 * ratio;
            let v = if ratio > 1.0 {
                let (a, b) = (start as usize, ((start + ratio) as usize).min(mono.len()));
                let span = &mono[a.min(mono.len() - 1)..b.max(a + 1).min(mono.len())];
                span.iter().sum::<f32>() / span.len() as f32
            } else {
                let a = start as usize;
                let frac = (start - a as f64) as f32;
                let x0 = mono[a.min(mono.len() - 1)];
                let x1 = mono[(a + 1).min(mono.len() - 1)];
                x0 + (x1 - x0) * frac
            };
            (v.clamp(-1.0, 1.0) * 32767.0) as i16
        })
        .collect();
    Ok(out)
}

/// `POST /api/prompts/{name}` with the WAV as the body: stored as
/// `NAME.wav` in the box's format. Answers what was done.
pub(super) async fn upload(
    State(c): St,
    a: Authed,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> ApiResult {
    a.need(Role::Admin)?;
    let path = prompt_path(&c, &name)?;
    let too_big = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a prompt upload is at most {} MiB; nothing was stored",
                MAX_UPLOAD >> 20
            ),
        )
    };
    // Refused before a byte of it is read when it says its size (a client
    // waiting with `Expect: 100-continue` sends nothing).
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_UPLOAD as u64) {
        return Err(too_big());
    }
    let body: Bytes = axum::body::to_bytes(body, MAX_UPLOAD)
        .await
        .map_err(|_| too_big())?;
    let dir = c.deps.prompt_dir.clone();
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let result = c
        .blocking(move || -> Result<(bool, u64), String> {
            std::fs::create_dir_all(&dir).map_err(|e| format!("the prompts folder: {e}"))?;
            // Already in the box's format: kept byte for byte.
            let tmp = tempfile::Builder::new()
                .prefix(".upload-")
                .tempfile_in(&dir)
                .map_err(|e| format!("the prompts folder: {e}"))?;
            std::fs::write(tmp.path(), &body).map_err(|e| format!("writing: {e}"))?;
            if let Ok(s) = callbox_hal::wav::load_prompt(tmp.path(), RATE) {
                tmp.persist(&path).map_err(|e| format!("writing: {e}"))?;
                return Ok((false, s.len() as u64 * 1000 / u64::from(RATE)));
            }
            let samples = convert(&body)?;
            callbox_hal::wav::write_pcm16_mono(tmp.path(), RATE, &samples)
                .map_err(|e| format!("writing: {e}"))?;
            tmp.persist(&path).map_err(|e| format!("writing: {e}"))?;
            Ok((true, samples.len() as u64 * 1000 / u64::from(RATE)))
        })
        .await?;
    let (converted, ms) =
        result.map_err(|why| ApiError::bad(format!("{stem}: {why}; nothing was stored")))?;
    audit(
        &c,
        Some(&a.session.user),
        a.ip,
        "prompt.upload",
        json!({"name": stem, "converted": converted, "ms": ms}),
    )
    .await;
    Ok(Json(
        json!({"ok": true, "name": stem, "converted": converted, "ms": ms}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(rate: u32, channels: u16, bits: u16, n: usize) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
        for i in 0..n * usize::from(channels) {
            let v = ((i as f32 * 0.05).sin() * 10_000.0) as i32;
            w.write_sample(if bits == 8 { v >> 8 } else { v }).unwrap();
        }
        w.finalize().unwrap();
        out.into_inner()
    }

    #[test]
    fn other_rates_and_channels_become_8k_mono() {
        let s = convert(&wav(44_100, 2, 16, 44_100)).unwrap();
        assert!((7990..=8000).contains(&s.len()), "{}", s.len());
        assert!(s.iter().any(|v| v.unsigned_abs() > 5000));
        let up = convert(&wav(4000, 1, 16, 4000)).unwrap();
        assert_eq!(up.len(), 8000);
        assert!(convert(b"RIFF....WAVEjunk").is_err());
        assert!(convert(b"ID3 an mp3").unwrap_err().contains("not a WAV"));
    }
}

//! The analog backend through the real alsa-lib, on its `file` and `null`
//! plugins: an ALSA configuration written by the test puts a two-channel
//! 16 kHz "sound card" on files. Capture reads a file the test composed —
//! ringing's caller id (V.23 FSK) between the first and second ring,
//! speech, the caller's DTMF keys, then the exchange's busy tone on the
//! trunk — and playback lands in a file the test reads back: what the call
//! sent the trunk, and the caller id the box sent the ringing station.
//! `hw loopback` is measured on the same plugins, and a PCM that does not
//! exist fails at start-up with its name.
//!
//! alsa-lib reads `ALSA_CONFIG_PATH` from the environment, so this binary
//! holds one test that sets it before anything else runs.

#![cfg(feature = "alsa")]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use callbox_hal::analog::AnalogBackend;
use callbox_hal::analog::board::{Board, RawBoard};
use callbox_hal::analog::engine::MediaStats;
use callbox_hal::analog::pins::SimGpio;
use callbox_hal::analog::probe;
use callbox_hal::dsp::caller_id::{
    self, CallerId, CallerIdDecoder, CallerIdStandard, MessageFormat,
};
use callbox_hal::dsp::detect::DtmfDetector;
use callbox_hal::dsp::dtmf::ToneGen;
use callbox_hal::dsp::resample::{Decimator, Interpolator};
use callbox_hal::dsp::tones::{ProgressTone, ProgressToneGen, ToneRegion};
use callbox_hal::{AudioFormat, AudioIn, AudioOut, Frame};
use callbox_hal::{HangupCause, Line, LineCommand, LineEvent};
use tokio::time::{Instant, sleep, timeout};

mod common;
use common::{speech, two_lines as lines};

const RATE: u32 = 16_000;

fn board(capture: &str, playback: &str) -> Board {
    let raw: RawBoard = toml::from_str(&format!(
        r#"
        capture = "{capture}"
        playback = "{playback}"
        rate = {RATE}
        channels = 2
        timing = "system"
        gpio = "sim"
        caller_id = "v23"
        [[port]]
        line = "pstn-1"
        channel = 0
        ring_detect = {{ pin = 5, active_low = true }}
        hook_relay = {{ pin = 6 }}
        [[port]]
        line = "desk-1"
        channel = 1
        hook = {{ pin = 20, active_low = true }}
        ring_relay = {{ pin = 21 }}
        "#
    ))
    .unwrap();
    raw.check(&lines()).unwrap()
}

/// Places `x` (8 kHz) at `at_ms` into `track`.
fn place(track: &mut Vec<i16>, at_ms: usize, x: &[i16]) {
    let start = at_ms * 8;
    if track.len() < start + x.len() {
        track.resize(start + x.len(), 0);
    }
    for (t, s) in track[start..].iter_mut().zip(x) {
        *t = t.saturating_add(*s);
    }
}

fn dtmf(keys: &str) -> Vec<i16> {
    let mut out = Vec::new();
    for k in keys.chars() {
        let mut g = ToneGen::dtmf(k, 8000, -12.0).unwrap();
        let s = out.len();
        out.resize(s + 800, 0);
        g.fill(&mut out[s..]);
        out.resize(s + 1600, 0);
    }
    out
}

/// The trunk's 8 kHz track up-sampled and interleaved with a silent
/// station channel, as little-endian bytes.
fn capture_file(trunk: &[i16]) -> Vec<u8> {
    let mut up = Interpolator::new((RATE / 8000) as usize);
    let mut wide = vec![0i16; trunk.len() * 2];
    up.process(trunk, &mut wide);
    let mut bytes = Vec::with_capacity(wide.len() * 4);
    for s in wide {
        bytes.extend_from_slice(&s.to_le_bytes());
        bytes.extend_from_slice(&0i16.to_le_bytes());
    }
    bytes
}

/// One channel of an interleaved playback file, back at 8 kHz.
fn played(path: &Path, channel: usize) -> Vec<i16> {
    let all: Vec<i16> = std::fs::read(path)
        .unwrap()
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let ch: Vec<i16> = all.iter().skip(channel).step_by(2).copied().collect();
    let n = ch.len() / 2 * 2;
    let mut out = vec![0i16; n / 2];
    Decimator::new(2).process(&ch[..n], &mut out);
    out
}

async fn ring(hw: &SimGpio, on: Duration) {
    let end = Instant::now() + on;
    while Instant::now() < end {
        hw.drive(5, false);
        sleep(Duration::from_millis(20)).await;
        hw.drive(5, true);
        sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn the_analog_backend_through_alsa_lib() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let conf = d.join("asound.conf");
    std::fs::write(
        &conf,
        format!(
            r#"
pcm.lif_in {{ type file; slave.pcm "lif_null"; file "/dev/null"; infile "{0}/in.raw"; format "raw" }}
pcm.lif_out {{ type file; slave.pcm "lif_null"; file "{0}/out.raw"; format "raw" }}
pcm.loop_in {{ type file; slave.pcm "lif_null"; file "/dev/null"; infile "{0}/loop-in.raw"; format "raw" }}
pcm.loop_out {{ type file; slave.pcm "lif_null"; file "{0}/loop-out.raw"; format "raw" }}
pcm.lif_null {{ type null }}
"#,
            d.display()
        ),
    )
    .unwrap();
    // SAFETY: the only test of this binary sets the variable before any
    // other thread exists and before alsa-lib first reads it.
    unsafe { std::env::set_var("ALSA_CONFIG_PATH", &conf) };

    // A PCM that does not exist: a clear error naming it.
    let e = AnalogBackend::open(board("no_such_card", "lif_out"), lines()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("backend `analog`: sound card: no_such_card: cannot open"),
        "{msg}"
    );

    loopback(d);
    call(d);
}

/// `hw loopback`: the capture file holds the tone 60 ms late at -26 dBFS,
/// as a looped pair of ports would give it back.
fn loopback(d: &Path) {
    let mut back = Vec::new();
    let mut tone = vec![0i16; 8000];
    ToneGen::dual(1000.0, 1000.0, 8000, -26.0, f64::NEG_INFINITY).fill(&mut tone);
    place(&mut back, 60, &tone);
    back.resize(8000 * 3, 0);
    std::fs::write(d.join("loop-in.raw"), capture_file(&back)).unwrap();
    let b = board("loop_in", "loop_out");
    let m = probe::loopback(&b, 0, 0, 1000.0, -10.0, 1000)
        .unwrap()
        .expect("the tone is measured");
    assert!((m.level_dbfs + 26.0).abs() < 0.5, "{m:?}");
    assert!((m.delay_ms - 60.0).abs() <= 5.0, "{m:?}");
    assert!((m.frequency_hz - 1000.0).abs() < 10.0, "{m:?}");
    // What was played: the tone at -10 dBFS on channel 0 only.
    let out0 = played(&d.join("loop-out.raw"), 0);
    let level = Frame::silence(AudioFormat::NARROWBAND, 0, 0).power_dbfs();
    assert_eq!(level, f32::NEG_INFINITY);
    let m = probe::measure(&out0, 1000.0).expect("the tone went out");
    assert!((m.level_dbfs + 10.0).abs() < 0.5, "{m:?}");
    assert!(played(&d.join("loop-out.raw"), 1).iter().all(|&s| s == 0));
    // Nothing comes back on a silent file.
    std::fs::write(d.join("loop-in.raw"), capture_file(&vec![0; 8000 * 3])).unwrap();
    assert_eq!(
        probe::loopback(&b, 0, 0, 1000.0, -10.0, 1000).unwrap(),
        None
    );
}

fn call(d: &Path) {
    // The trunk's line, from the box's start: caller id at 1.5 s (after a
    // first ring of 1 s), speech from 3.5 s, the keys 4 2 # at 6.5 s, busy
    // tone from 8 s.
    let cid = CallerId {
        number: Some("13812345678".into()),
        name: Some("ZHANG WEI".into()),
        datetime: Some("11241030".into()),
        ..CallerId::default()
    };
    let mut trunk = Vec::new();
    place(
        &mut trunk,
        1500,
        &caller_id::generate(CallerIdStandard::V23, &cid, MessageFormat::Mdmf, 8000),
    );
    place(
        &mut trunk,
        3500,
        &speech(
            d,
            "Hello, I would like to know where my order is, please.",
            "en",
        ),
    );
    place(&mut trunk, 6500, &dtmf("42#"));
    let mut busy = vec![0i16; 8000 * 4];
    ProgressToneGen::new(ToneRegion::China, ProgressTone::Busy, 8000).fill(&mut busy);
    place(&mut trunk, 8000, &busy);
    trunk.resize(8000 * 14, 0);
    std::fs::write(d.join("in.raw"), capture_file(&trunk)).unwrap();

    let hw = SimGpio::new();
    hw.drive(5, true);
    hw.drive(20, true);
    let stats = Arc::new(MediaStats::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let b = board("lif_in", "lif_out");
        let pcm = callbox_hal::analog::alsa_pcm::AlsaPcm::open(&b, stats.clone()).unwrap();
        let mut backend = AnalogBackend::with_parts(
            b,
            lines(),
            Box::new(pcm),
            Box::new(hw.clone()),
            stats.clone(),
        )
        .unwrap();
        let mut ports = backend.take_ports();
        let mut station = ports.pop().unwrap();
        let mut trunk = ports.pop().unwrap();
        backend.start().unwrap();
        let t0 = Instant::now();
        // The box rings the agent's phone with the caller's number.
        station
            .line
            .command(LineCommand::Ring {
                caller_id: Some("13812345678".into()),
                caller_name: Some("ZHANG WEI".into()),
            })
            .await
            .unwrap();
        // The exchange rings the trunk once; the caller id follows.
        ring(&hw, Duration::from_secs(1)).await;
        let ev = timeout(Duration::from_secs(3), trunk.line.next_event())
            .await
            .expect("a call after one ring and the caller id")
            .unwrap();
        assert_eq!(
            ev,
            LineEvent::Incoming {
                caller: Some("13812345678".into()),
                dialled: None
            }
        );
        let announced = t0.elapsed();
        trunk.line.command(LineCommand::Answer).await.unwrap();
        sleep(Duration::from_millis(20)).await;
        assert!(hw.level(6), "off-hook relay");
        // The call: read the caller's audio, detect keys; play a prompt
        // (a 600 Hz tone) for a second.
        let mut det = DtmfDetector::new(8000);
        let mut keys = Vec::new();
        let mut prompt = ToneGen::dual(600.0, 600.0, 8000, -12.0, f64::NEG_INFINITY);
        let mut sent = 0;
        let hangup = loop {
            tokio::select! {
                f = trunk.audio_in.read_frame() => {
                    let f = f.unwrap();
                    keys.extend(det.process(f.samples()));
                }
                ev = trunk.line.next_event() => break (ev.unwrap(), t0.elapsed()),
                () = sleep(Duration::from_secs(12)) => panic!("no end of call; keys {keys:?}"),
            }
            if sent < 50 {
                let mut f = Frame::silence(AudioFormat::NARROWBAND, sent, 0);
                prompt.fill(f.samples_mut());
                if trunk.audio_out.offer_frame(f).unwrap() {
                    sent += 1;
                }
            }
        };
        assert_eq!(
            keys,
            ['4', '2', '#'],
            "the keys, and nothing from the speech"
        );
        assert_eq!(
            hangup.0,
            LineEvent::Hangup(HangupCause::Normal),
            "busy tone ends the call"
        );
        assert!(
            hangup.1 > Duration::from_millis(8500) && hangup.1 < Duration::from_millis(11_000),
            "busy from 8 s, recognised at {:?}",
            hangup.1
        );
        trunk
            .line
            .command(LineCommand::Hangup(HangupCause::Normal))
            .await
            .unwrap();
        sleep(Duration::from_millis(20)).await;
        assert!(!hw.level(6));
        eprintln!(
            "call announced after {announced:?}, ended by busy tone at {:?}; {} periods, {} xruns",
            hangup.1,
            MediaStats::get(&stats.periods),
            MediaStats::get(&stats.xruns)
        );
        drop(backend);
    });
    // Give the audio thread its last period.
    std::thread::sleep(Duration::from_millis(100));
    // Channel 0 carried the prompt; channel 1 the station's caller id,
    // between its first and second ring.
    let out0 = played(&d.join("out.raw"), 0);
    let m = probe::measure(&out0, 600.0).expect("the prompt was played");
    assert!((m.level_dbfs + 12.0).abs() < 1.0, "{m:?}");
    assert!((m.frequency_hz - 600.0).abs() < 10.0, "{m:?}");
    let out1 = played(&d.join("out.raw"), 1);
    let mut dec = CallerIdDecoder::new(CallerIdStandard::V23, 8000);
    let mut got = None;
    let mut at = 0;
    for (i, f) in out1.chunks(160).enumerate() {
        if let Some(r) = dec.process(f) {
            got = Some(r.expect("a valid message"));
            at = i * 20;
            break;
        }
    }
    let got = got.expect("caller id sent to the station");
    assert_eq!(got.number.as_deref(), Some("13812345678"));
    assert_eq!(got.name.as_deref(), Some("ZHANG WEI"));
    assert!((1600..4000).contains(&at), "between the rings: {at} ms");
}

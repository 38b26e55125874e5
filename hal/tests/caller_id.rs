//! Caller id as a trunk delivers it: FSK (Bell 202, V.23) and DTMF, from
//! the encoder through a line — white noise, level, frequency offset, an
//! arbitrary start, the first part of the seizure missed — into the
//! decoder, fed 20 ms frames as the analog backend feeds it.

use callbox_hal::dsp::caller_id::{
    self, Absence, CallerId, CallerIdDecoder, CallerIdStandard, CidError, MessageFormat,
};

mod common;
use common::Noise;

fn people() -> Vec<CallerId> {
    vec![
        CallerId {
            number: Some("13812345678".into()),
            name: Some("ZHANG WEI".into()),
            datetime: Some("11241030".into()),
            ..CallerId::default()
        },
        CallerId {
            number: Some("4155550123".into()),
            name: Some("O'BRIEN, PAT".into()),
            datetime: Some("01010001".into()),
            ..CallerId::default()
        },
        CallerId {
            number_absent: Some(Absence::Private),
            name_absent: Some(Absence::Private),
            datetime: Some("12312359".into()),
            ..CallerId::default()
        },
    ]
}

/// Modulates with a frequency offset (resampling the clean signal's time
/// axis), scales to `level_dbfs`, adds noise at `snr_db`, drops the first
/// `skip_ms` and prepends `lead` samples of noise; decodes in 160-sample
/// frames.
#[allow(clippy::too_many_arguments)] // each argument is one property of the line
fn through_line(
    std: CallerIdStandard,
    cid: &CallerId,
    format: MessageFormat,
    level_dbfs: f64,
    snr_db: f64,
    offset: f64,
    skip_ms: usize,
    lead: usize,
    seed: u64,
) -> Option<Result<CallerId, CidError>> {
    let msg = caller_id::encode_message(cid, format);
    // Generated at 0 dBFS, then scaled.
    let clean = caller_id::fsk_samples(std, &msg, 8000, 0.0);
    let gain = 10f64.powf(level_dbfs / 20.0);
    // A frequency offset of `offset` is the same waveform played faster.
    let n = (clean.len() as f64 / (1.0 + offset)) as usize;
    let sine_power = (32767.0 * gain).powi(2) / 2.0;
    let sigma = (sine_power / 10f64.powf(snr_db / 10.0)).sqrt();
    let mut noise = Noise(seed | 1);
    let mut line: Vec<i16> = (0..lead).map(|_| (noise.gauss() * sigma) as i16).collect();
    for i in (skip_ms * 8)..n {
        let t = i as f64 * (1.0 + offset);
        let k = t as usize;
        let f = t - k as f64;
        let a = f64::from(clean[k]);
        let b = f64::from(*clean.get(k + 1).unwrap_or(&0));
        let v = (a + (b - a) * f) * gain + noise.gauss() * sigma;
        line.push(v.round().clamp(-32768.0, 32767.0) as i16);
    }
    line.extend((0..1600).map(|_| (noise.gauss() * sigma) as i16));
    let mut d = CallerIdDecoder::new(std, 8000);
    line.chunks(160).find_map(|f| d.process(f))
}

#[test]
fn both_fsk_standards_survive_noise_level_offset_and_a_late_start() {
    let mut runs = 0;
    for std in [CallerIdStandard::Bell202, CallerIdStandard::V23] {
        for format in [MessageFormat::Sdmf, MessageFormat::Mdmf] {
            for (i, cid) in people().iter().enumerate() {
                for &(level, snr, offset, skip, lead) in &[
                    (-13.0, 40.0, 0.0, 0, 0),
                    (-35.0, 20.0, 0.01, 100, 37),
                    (-6.0, 20.0, -0.01, 0, 113),
                    (-25.0, 15.0, 0.005, 150, 5),
                ] {
                    runs += 1;
                    let got = through_line(
                        std,
                        cid,
                        format,
                        level,
                        snr,
                        offset,
                        skip,
                        lead,
                        7 + i as u64,
                    );
                    let mut want = cid.clone();
                    if format == MessageFormat::Sdmf {
                        want.name = None;
                        want.name_absent = None;
                    }
                    assert_eq!(
                        got,
                        Some(Ok(want)),
                        "{std} {format:?} person {i}: level {level} dBFS, SNR {snr} dB, offset {offset}, skip {skip} ms"
                    );
                }
            }
        }
    }
    assert_eq!(runs, 48);
}

#[test]
fn the_lowest_snr_that_still_decodes() {
    // Not a pass/fail threshold beyond the 15 dB above: printed for
    // docs/hardware.md, and the sweep must reach below 15 dB.
    for std in [CallerIdStandard::Bell202, CallerIdStandard::V23] {
        let mut lowest = None;
        for snr in (0..=20).rev() {
            let ok = (0..10).all(|seed| {
                through_line(
                    std,
                    &people()[0],
                    MessageFormat::Mdmf,
                    -20.0,
                    f64::from(snr),
                    0.0,
                    0,
                    0,
                    100 + seed,
                ) == Some(Ok(people()[0].clone()))
            });
            if !ok {
                break;
            }
            lowest = Some(snr);
        }
        eprintln!("{std}: 10/10 messages decode down to {lowest:?} dB SNR");
        assert!(lowest.is_some_and(|s| s < 15), "{std}: {lowest:?}");
    }
}

#[test]
fn a_corrupted_byte_is_a_checksum_error_not_a_wrong_number() {
    let cid = &people()[0];
    let mut msg = caller_id::encode_message(cid, MessageFormat::Mdmf);
    msg[8] ^= 0x01; // one bit of the number
    let audio = caller_id::fsk_samples(CallerIdStandard::V23, &msg, 8000, -13.0);
    let mut d = CallerIdDecoder::new(CallerIdStandard::V23, 8000);
    let got = audio.chunks(160).find_map(|f| d.process(f));
    assert!(
        matches!(got, Some(Err(CidError::Checksum { .. }))),
        "{got:?}"
    );
}

#[test]
fn noise_and_silence_alone_give_nothing() {
    let mut noise = Noise(99);
    for std in [
        CallerIdStandard::Bell202,
        CallerIdStandard::V23,
        CallerIdStandard::Dtmf,
    ] {
        let mut d = CallerIdDecoder::new(std, 8000);
        for _ in 0..(60 * 50) {
            let frame: Vec<i16> = (0..160).map(|_| (noise.gauss() * 3000.0) as i16).collect();
            assert_eq!(d.process(&frame), None, "{std}: noise");
        }
        for _ in 0..500 {
            assert_eq!(d.process(&[0; 160]), None, "{std}: silence");
        }
    }
}

#[test]
fn one_standard_is_not_read_as_the_other() {
    // Bell 202's mark (1200 Hz) and space (2200 Hz) sit on the same sides
    // of V.23's (1300/2100 Hz): a V.23 decoder reads Bell 202 and the other
    // way round. That is what happens, and it is harmless — the message is
    // the same; the board's `caller_id` setting picks the transmitter.
    let cid = &people()[0];
    let bell = caller_id::generate(CallerIdStandard::Bell202, cid, MessageFormat::Mdmf, 8000);
    let mut v23 = CallerIdDecoder::new(CallerIdStandard::V23, 8000);
    assert_eq!(
        bell.chunks(160).find_map(|f| v23.process(f)),
        Some(Ok(cid.clone()))
    );
}

#[test]
fn dtmf_caller_id_round_trips_with_absence_codes() {
    for cid in [
        CallerId {
            number: Some("0755123456".into()),
            ..CallerId::default()
        },
        CallerId {
            number_absent: Some(Absence::Private),
            ..CallerId::default()
        },
        CallerId {
            number_absent: Some(Absence::Unavailable),
            ..CallerId::default()
        },
    ] {
        let mut audio = vec![0i16; 800];
        audio.extend(caller_id::generate(
            CallerIdStandard::Dtmf,
            &cid,
            MessageFormat::Mdmf,
            8000,
        ));
        audio.extend(vec![0i16; 1600]);
        let mut d = CallerIdDecoder::new(CallerIdStandard::Dtmf, 8000);
        assert_eq!(
            audio.chunks(160).find_map(|f| d.process(f)),
            Some(Ok(cid.clone()))
        );
    }
}

#[test]
fn noise_framed_like_bytes_before_the_message_does_not_hide_it() {
    // A second of FSK carrying random bytes (what speech or a line
    // disturbance can look like to the demodulator), then the real
    // transmission: the caller id is still what comes out.
    let cid = &people()[0];
    for std in [CallerIdStandard::Bell202, CallerIdStandard::V23] {
        for seed in 0..20u64 {
            let mut rng = Noise(seed * 7919 + 1);
            let junk: Vec<u8> = (0..120).map(|_| (rng.uniform() * 256.0) as u8).collect();
            let mut audio = caller_id::fsk_samples(std, &junk, 8000, -15.0);
            audio.extend(vec![0i16; 1600]);
            audio.extend(caller_id::generate(std, cid, MessageFormat::Mdmf, 8000));
            audio.extend(vec![0i16; 1600]);
            let mut d = CallerIdDecoder::new(std, 8000);
            let got: Vec<_> = audio.chunks(160).filter_map(|f| d.process(f)).collect();
            assert!(got.contains(&Ok(cid.clone())), "{std} seed {seed}: {got:?}");
        }
    }
}

#[test]
fn senders_two_percent_off_decode() {
    for std in [CallerIdStandard::Bell202, CallerIdStandard::V23] {
        for offset in [-0.02, -0.015, 0.015, 0.02] {
            let got = through_line(
                std,
                &people()[1],
                MessageFormat::Mdmf,
                -20.0,
                30.0,
                offset,
                0,
                0,
                5,
            );
            assert_eq!(got, Some(Ok(people()[1].clone())), "{std} offset {offset}");
        }
    }
}

//! The sim backend through the HAL traits only, as the firmware sees it,
//! in virtual time.

use std::path::Path;
use std::time::Duration;

use callbox_hal::diag::TomlSource;
use callbox_hal::registry::{BackendArgs, open};
use callbox_hal::sim::{Scenario, SimStats};
use callbox_hal::{
    AudioIn, AudioOut, Backend, Frame, HangupCause, Line, LineCommand, LineEvent, LineInfo,
    LineKind,
};

fn lines() -> Vec<LineInfo> {
    vec![
        LineInfo {
            id: "t1".into(),
            kind: LineKind::Trunk,
        },
        LineInfo {
            id: "d1".into(),
            kind: LineKind::Station,
        },
    ]
}

fn scenario(text: &str) -> Scenario {
    Scenario::from_source(&TomlSource::new(Path::new("s.toml"), text.into()), &lines()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn caller_arrives_presses_digits_and_hangs_up() {
    let sc = scenario(
        r#"
[[call]]
at = "5s"
from = "1001"
to = "4000"
script = [{ press = "7", via = "both" }, { hangup = true }]
"#,
    );
    let mut hal = open(
        "sim",
        BackendArgs {
            lines: lines(),
            scenario: Some(sc),
            board: None,
            ..Default::default()
        },
    )
    .unwrap();
    let mut ctl = hal.sim_control().unwrap();
    let mut ports = hal.take_ports();
    hal.start().unwrap();
    let t0 = tokio::time::Instant::now();
    let trunk = &mut ports[0];
    let ev = trunk.line.next_event().await.unwrap();
    assert_eq!(
        ev,
        LineEvent::Incoming {
            caller: Some("1001".into()),
            dialled: Some("4000".into())
        }
    );
    assert_eq!(t0.elapsed().as_secs(), 5);
    trunk.line.command(LineCommand::Answer).await.unwrap();
    // The digit arrives out of band and as tone energy in the audio.
    let mut loud_frames = 0;
    let digit = loop {
        tokio::select! {
            ev = trunk.line.next_event() => break ev.unwrap(),
            f = trunk.audio_in.read_frame() => if f.unwrap().power_dbfs() > -30.0 { loud_frames += 1 },
        }
    };
    assert_eq!(digit, LineEvent::Digit('7'));
    loop {
        tokio::select! {
            ev = trunk.line.next_event() => { assert_eq!(ev.unwrap(), LineEvent::Hangup(HangupCause::Normal)); break }
            f = trunk.audio_in.read_frame() => if f.unwrap().power_dbfs() > -30.0 { loud_frames += 1 },
        }
    }
    assert_eq!(loud_frames, 5, "100 ms of tone = 5 frames");
    trunk
        .line
        .command(LineCommand::Hangup(HangupCause::Normal))
        .await
        .unwrap();
    ctl.finished().await;
    assert_eq!(SimStats::get(&ctl.stats().caller_hangups), 1);
    assert_eq!(SimStats::get(&ctl.stats().unreleased), 0);
}

#[tokio::test(start_paused = true)]
async fn writing_audio_is_paced_at_the_frame_rate_and_heard() {
    let sc = scenario("[[call]]\nat = \"0s\"\n");
    let mut hal = open(
        "sim",
        BackendArgs {
            lines: lines(),
            scenario: Some(sc),
            board: None,
            ..Default::default()
        },
    )
    .unwrap();
    let ctl = hal.sim_control().unwrap();
    let mut ports = hal.take_ports();
    hal.start().unwrap();
    let trunk = &mut ports[0];
    assert!(matches!(
        trunk.line.next_event().await.unwrap(),
        LineEvent::Incoming { .. }
    ));
    trunk.line.command(LineCommand::Answer).await.unwrap();
    let t0 = tokio::time::Instant::now();
    let mut tone = callbox_hal::dsp::dtmf::ToneGen::dual(440.0, 480.0, 8000, -12.0, -12.0);
    for seq in 0..100 {
        let mut f = Frame::silence(trunk.audio_out.format(), seq, 0);
        tone.fill(f.samples_mut());
        trunk.audio_out.write_frame(f).await.unwrap();
    }
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took <= Duration::from_millis(2100),
        "{took:?}"
    );
    trunk
        .line
        .command(LineCommand::Hangup(HangupCause::Normal))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(SimStats::get(&ctl.stats().frames_heard) >= 95);
    assert_eq!(SimStats::get(&ctl.stats().box_hangups), 1);
}

#[tokio::test(start_paused = true)]
async fn agent_answers_a_ring_and_dials_feature_codes() {
    let sc = scenario(
        r#"
[[agent]]
name = "alice"
line = "d1"
answer_after = "3s"
talk = "10s"
dial = [{ at = "100s", digits = "*71" }]
"#,
    );
    let mut hal = open(
        "sim",
        BackendArgs {
            lines: lines(),
            scenario: Some(sc),
            board: None,
            ..Default::default()
        },
    )
    .unwrap();
    let mut ctl = hal.sim_control().unwrap();
    let mut ports = hal.take_ports();
    hal.start().unwrap();
    let station = &mut ports[1];
    let t0 = tokio::time::Instant::now();
    station
        .line
        .command(LineCommand::Ring {
            caller_id: Some("1001".into()),
            caller_name: None,
        })
        .await
        .unwrap();
    assert_eq!(
        station.line.next_event().await.unwrap(),
        LineEvent::Answered
    );
    assert_eq!(t0.elapsed().as_secs(), 3);
    let ev = loop {
        tokio::select! {
            ev = station.line.next_event() => break ev.unwrap(),
            _ = station.audio_in.read_frame() => {}
        }
    };
    assert_eq!(ev, LineEvent::Hangup(HangupCause::Normal));
    assert_eq!(t0.elapsed().as_secs(), 13, "talks 10 s");
    station
        .line
        .command(LineCommand::Hangup(HangupCause::Normal))
        .await
        .unwrap();
    let mut got = Vec::new();
    loop {
        tokio::select! {
            ev = station.line.next_event() => {
                let ev = ev.unwrap();
                let end = ev == LineEvent::Hangup(HangupCause::Normal);
                got.push(ev);
                if end { break }
            }
            _ = station.audio_in.read_frame() => {}
        }
    }
    assert_eq!(t0.elapsed().as_secs(), 100 + 1);
    assert_eq!(
        got,
        vec![
            LineEvent::OffHook,
            LineEvent::Digit('*'),
            LineEvent::Digit('7'),
            LineEvent::Digit('1'),
            LineEvent::Hangup(HangupCause::Normal)
        ]
    );
    station
        .line
        .command(LineCommand::Hangup(HangupCause::Normal))
        .await
        .unwrap();
    ctl.finished().await;
}

#[tokio::test(start_paused = true)]
async fn offering_a_frame_never_waits_and_drops_it_when_the_playout_buffer_is_full() {
    let sc = scenario("[[call]]\nat = \"0s\"\nhangup_after = \"10s\"\n");
    let mut hal = open(
        "sim",
        BackendArgs {
            lines: lines(),
            scenario: Some(sc),
            board: None,
            ..Default::default()
        },
    )
    .unwrap();
    let mut ports = hal.take_ports();
    hal.start().unwrap();
    let trunk = &mut ports[0];
    assert!(matches!(
        trunk.line.next_event().await.unwrap(),
        LineEvent::Incoming { .. }
    ));
    trunk.line.command(LineCommand::Answer).await.unwrap();
    let t0 = tokio::time::Instant::now();
    let fmt = trunk.audio_out.format();
    // Ten offers at one instant: the playout buffer (three frames) takes
    // some, the rest are dropped, and no time passes.
    let taken = (0..10)
        .map(|seq| {
            trunk
                .audio_out
                .offer_frame(Frame::silence(fmt, seq, 0))
                .unwrap()
        })
        .filter(|&t| t)
        .count();
    assert_eq!(t0.elapsed(), Duration::ZERO);
    assert!((1..10).contains(&taken), "{taken} of 10 taken");
    // A frame time later the far end has taken one: there is room again.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        trunk
            .audio_out
            .offer_frame(Frame::silence(fmt, 10, 0))
            .unwrap()
    );
}

#[tokio::test(start_paused = true)]
async fn frames_the_box_reads_late_are_counted_against_their_deadline() {
    let sc = scenario("[[call]]\nat = \"0s\"\nhangup_after = \"10s\"\n");
    let mut hal = open(
        "sim",
        BackendArgs {
            lines: lines(),
            scenario: Some(sc),
            board: None,
            ..Default::default()
        },
    )
    .unwrap();
    let ctl = hal.sim_control().unwrap();
    let mut ports = hal.take_ports();
    hal.start().unwrap();
    let trunk = &mut ports[0];
    assert!(matches!(
        trunk.line.next_event().await.unwrap(),
        LineEvent::Incoming { .. }
    ));
    trunk.line.command(LineCommand::Answer).await.unwrap();
    let s = ctl.stats();
    // Read as they come: none late.
    for _ in 0..50 {
        trunk.audio_in.read_frame().await.unwrap();
    }
    assert_eq!(SimStats::get(&s.frames_to_box), 50);
    assert_eq!(SimStats::get(&s.frames_late), 0);
    // The box looks away for 100 ms: the five frames produced meanwhile
    // wait; read now, the first four are more than 5 ms behind.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..5 {
        trunk.audio_in.read_frame().await.unwrap();
    }
    assert_eq!(SimStats::get(&s.frames_to_box), 55);
    assert_eq!(SimStats::get(&s.frames_late), 4);
    assert!(SimStats::get(&s.lateness_max_us) >= 80_000);
    assert_eq!(SimStats::get(&s.frames_sent_late), 0);
}

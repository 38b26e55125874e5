//! The analog backend from the daemon's side, on a machine without the
//! hardware: `callboxd hw probe` reports what is (not) there cleanly,
//! `check-config` names a bad board description's problems at
//! FILE:LINE:COL, and `run` on a board whose sound card does not exist
//! fails at start-up naming the device. The line logic and the audio path
//! themselves are tested in hal/tests/analog_lines.rs and analog_alsa.rs.

use std::time::Duration;

use callbox_tests::mqtt::Daemon;
use callbox_tests::{Site, cmd, text};

const SITE: &str = r#"[site]
id = "branch"

[hal]
backend = "analog"

[[line]]
id = "pstn-1"
kind = "trunk"

[[line]]
id = "desk-1"
kind = "station"

[inbound]
greeting = "greeting.wav"

[board]
name = "two-port test board"
capture = "hw:CARD=callboxlif"
rate = 8000
channels = 2
status_led = { pin = 17 }

[[board.port]]
line = "pstn-1"
channel = 0
ring_detect = { pin = 5, active_low = true }
hook_relay = { pin = 6 }

[[board.port]]
line = "desk-1"
channel = 1
hook = { pin = 20, active_low = true }
ring_relay = { pin = 21 }
"#;

/// Whether this callboxd was built with ALSA (the probe says so).
fn has_alsa() -> bool {
    let out = cmd().args(["hw", "probe"]).output().unwrap();
    !String::from_utf8_lossy(&out.stdout).contains("ALSA: not in this build")
}

#[test]
fn probe_without_a_board_lists_sound_cards_and_gpio() {
    let out = cmd().args(["hw", "probe"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stdout.lines().next().unwrap_or_default();
    assert!(first.starts_with("ALSA: "), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("GPIO: ")), "{stdout}");
    if !std::path::Path::new("/dev/gpiomem").exists() {
        assert!(
            stdout.contains("GPIO unavailable (rppal)"),
            "not a Raspberry Pi: {stdout}"
        );
    }
}

#[test]
fn probe_with_a_board_names_each_port_and_fails_when_the_hardware_is_missing() {
    let site = Site::new(1, 0, 200, "");
    site.write("site.toml", SITE);
    let out = cmd()
        .args(["hw", "probe", "--config"])
        .arg(site.config())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("board \"two-port test board\": capture \"hw:CARD=callboxlif\""),
        "{}",
        text(&out)
    );
    for port in [
        "port pstn-1 (trunk, FXO, channel 0)",
        "port desk-1 (station, FXS, channel 1)",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(port))
            .unwrap_or_else(|| panic!("no `{port}` in {stdout}"));
        assert!(line.ends_with("NOT usable"), "{line}");
    }
    assert!(
        stdout.contains("audio: hw:CARD=callboxlif: cannot open")
            || stdout.contains("audio: not checked: this build has no ALSA support"),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn a_bad_board_description_is_named_at_its_place() {
    let site = Site::new(1, 0, 200, "");
    let bad = SITE
        .replace("rate = 8000", "rate = 44100")
        .replace("ring_relay = { pin = 21 }", "ring_relay = { pin = 6 }");
    site.write("site.toml", &bad);
    let out = cmd()
        .arg("check-config")
        .arg(site.config())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let at = |line: usize, col: usize, msg: &str| {
        let want = format!("{}:{line}:{col}: {msg}", site.config().display());
        assert!(stderr.contains(&want), "want `{want}` in\n{stderr}");
    };
    at(
        21,
        8,
        "unsupported sample rate 44100 Hz; the analog backend takes 8000, 16000 or 48000 (resampled to 8 kHz)",
    );
    at(
        35,
        22,
        "GPIO 6 is already used by `board.port[0].hook_relay`",
    );
}

#[test]
fn a_sound_card_that_does_not_exist_stops_the_start_with_its_name() {
    let site = Site::new(1, 0, 200, "");
    // Simulated GPIO, so that the sound card is what fails.
    site.write(
        "site.toml",
        &SITE.replace("status_led =", "gpio = \"sim\"\nstatus_led ="),
    );
    let out = cmd()
        .arg("run")
        .arg("--config")
        .arg(site.config())
        .arg("--data")
        .arg(site.data())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if has_alsa() {
        assert_eq!(out.status.code(), Some(69), "{}", text(&out));
        assert!(
            stderr.contains("backend `analog`: sound card: hw:CARD=callboxlif: cannot open"),
            "{stderr}"
        );
    } else {
        assert_eq!(out.status.code(), Some(78), "{}", text(&out));
        assert!(stderr.contains("unknown backend `analog`"), "{stderr}");
    }
}

/// An ALSA configuration that makes a two-channel 8 kHz "card" of files
/// (alsa-lib's `file` and `null` plugins): capture reads `in.raw`,
/// playback writes `out.raw`.
fn file_card(dir: &std::path::Path) -> std::path::PathBuf {
    let conf = dir.join("asound.conf");
    std::fs::write(
        &conf,
        format!(
            "pcm.lif_in {{ type file; slave.pcm \"lif_null\"; file \"/dev/null\"; infile \"{0}/in.raw\"; format \"raw\" }}\n\
             pcm.lif_out {{ type file; slave.pcm \"lif_null\"; file \"{0}/out.raw\"; format \"raw\" }}\n\
             pcm.lif_null {{ type null }}\n",
            dir.display()
        ),
    )
    .unwrap();
    conf
}

/// The test board on the file card with simulated GPIO, paced by the
/// system clock (the file plugins keep no time).
fn file_site(site: &Site) {
    site.write(
        "site.toml",
        &SITE.replace("hw:CARD=callboxlif", "lif_in").replace(
            "status_led =",
            "playback = \"lif_out\"\ntiming = \"system\"\ngpio = \"sim\"\nstatus_led =",
        ),
    );
}

#[test]
fn on_a_card_that_works_probe_loopback_and_the_daemon_run() {
    if !has_alsa() {
        eprintln!("hw: this callboxd has no ALSA (build with --features callbox-firmware/analog)");
        return;
    }
    let site = Site::new(1, 0, 200, "");
    file_site(&site);
    let dir = tempfile::tempdir().unwrap();
    let conf = file_card(dir.path());
    // Capture: a 1 kHz tone at -20 dBFS on channel 0 from 100 ms to 1.1 s,
    // then silence; 30 s in all.
    let mut raw = Vec::with_capacity(8000 * 30 * 4);
    for i in 0..8000 * 30 {
        let s = if (800..8800).contains(&i) {
            (3277.0 * (std::f64::consts::TAU * 1000.0 * f64::from(i) / 8000.0).sin()) as i16
        } else {
            0
        };
        raw.extend_from_slice(&s.to_le_bytes());
        raw.extend_from_slice(&0i16.to_le_bytes());
    }
    std::fs::write(dir.path().join("in.raw"), raw).unwrap();

    let probe = cmd()
        .env("ALSA_CONFIG_PATH", &conf)
        .args(["hw", "probe", "--config"])
        .arg(site.config())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&probe.stdout);
    assert_eq!(probe.status.code(), Some(0), "{}", text(&probe));
    assert!(stdout.contains("audio: both PCMs open"), "{stdout}");
    assert_eq!(stdout.matches("wired and alive").count(), 2, "{stdout}");

    let lb = cmd()
        .env("ALSA_CONFIG_PATH", &conf)
        .args(["hw", "loopback", "--port", "pstn-1", "--config"])
        .arg(site.config())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&lb.stdout);
    assert_eq!(lb.status.code(), Some(0), "{}", text(&lb));
    assert!(
        out.starts_with("1000 Hz at -10.0 dBFS out of pstn-1 came back on pstn-1 at -20."),
        "{out}"
    );
    assert!(out.contains("after 100 ms"), "{out}");

    // The daemon on the card: up, ready, playing silence at the card's
    // rate, and a clean stop.
    let t0 = std::time::Instant::now();
    let mut d = Daemon::start_env(&site, &[], &[("ALSA_CONFIG_PATH", conf.as_os_str())]);
    d.wait_log(Duration::from_secs(20), "the ready line", |l| {
        l.contains(" ready") && l.contains("backend=\"analog\"")
    });
    std::thread::sleep(Duration::from_secs(2));
    // The audio thread runs real-time (SCHED_FIFO) where the daemon may
    // ask for it, and says so in the log where it may not.
    let policy = sched_policy(d.pid(), "analog-pcm").expect("an analog-pcm thread");
    if d.log().contains("audio thread at normal priority") {
        assert_eq!(policy, 0, "SCHED_OTHER");
    } else {
        assert_eq!(policy, 1, "SCHED_FIFO");
    }
    let status = d.stop();
    let ran = t0.elapsed().as_secs_f64();
    assert!(status.success(), "{status}:\n{}", d.log());
    assert!(!d.log().contains("ERROR"), "{}", d.log());
    // 8000 frames of 2 channels of 16 bits a second, written ahead by two
    // periods, for no longer than the daemon ran.
    let played = std::fs::metadata(dir.path().join("out.raw")).unwrap().len() as f64 / 32_000.0;
    assert!(
        played > 1.5 && played <= ran + 0.1,
        "played {played:.2} s in a run of {ran:.2} s"
    );
}

/// The scheduling policy (`/proc/PID/task/TID/stat` field 41) of the
/// thread called `name`.
fn sched_policy(pid: u32, name: &str) -> Option<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
        .find(|stat| stat.contains(&format!("({name})")))
        .and_then(|stat| {
            // Fields after the name start at field 3.
            stat[stat.rfind(')')? + 2..]
                .split_whitespace()
                .nth(38)?
                .parse()
                .ok()
        })
}

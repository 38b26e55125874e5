//! The analog backend from the daemon's side, on a machine without the
//! hardware: `callboxd hw probe` reports what is (not) there cleanly,
//! `check-config` names a bad board description's problems at
//! FILE:LINE:COL, and `run` on a board whose sound card does not exist
//! fails at start-up naming the device. The line logic and the audio path
//! themselves are tested in hal/tests/analog_lines.rs and analog_alsa.rs.

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

//! Bad input is reported as FILE:LINE:COL and starts nothing.

use callbox_tests::{Site, cmd, text};

const GOOD: &str = r#"[site]
id = "branch"

[[line]]
id = "trunk-1"
kind = "trunk"

[[line]]
id = "desk-1"
kind = "station"

[inbound]
greeting = "greeting.wav"
"#;

/// Runs `check-config` and `run` on a config; both must fail with exit 78
/// and print `expected`; `run` must not have created a database.
fn assert_rejected(site_text: &str, expected: &str) {
    let site = Site::new(1, 0, 200, "");
    site.write("site.toml", site_text);
    let config = site.config();
    let check = cmd().arg("check-config").arg(&config).output().unwrap();
    assert_eq!(check.status.code(), Some(78), "{}", text(&check));
    let stderr = String::from_utf8_lossy(&check.stderr);
    let want = format!("{}:{expected}", config.display());
    assert!(stderr.contains(&want), "want `{want}` in\n{}", text(&check));

    let run = cmd()
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--data")
        .arg(site.data())
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(78), "{}", text(&run));
    assert!(
        String::from_utf8_lossy(&run.stderr).contains(&want),
        "{}",
        text(&run)
    );
    assert!(!site.data().exists(), "nothing started half-configured");
}

#[test]
fn a_good_config_passes() {
    let site = Site::new(1, 0, 200, "");
    site.write("site.toml", GOOD);
    let out = cmd()
        .arg("check-config")
        .arg(site.config())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok"));
}

#[test]
fn syntax_error() {
    assert_rejected(
        &GOOD.replace("id = \"desk-1\"", "id = \"desk-1"),
        "9:13: invalid basic string",
    );
}

#[test]
fn wrong_type() {
    assert_rejected(
        &GOOD.replace("kind = \"station\"", "kind = 5"),
        "10:8: invalid type: integer `5`, expected a string",
    );
}

#[test]
fn unknown_enum_value() {
    assert_rejected(
        &GOOD.replace("kind = \"station\"", "kind = \"fax\""),
        "10:8: unknown line kind `fax`",
    );
}

#[test]
fn unknown_key() {
    assert_rejected(
        &GOOD.replace("[inbound]\n", "[inbound]\ngreting = \"x.wav\"\n"),
        "13:1: unknown field `greting`",
    );
}

#[test]
fn missing_prompt_file() {
    assert_rejected(
        &GOOD.replace("greeting.wav", "nope.wav"),
        "13:12: prompt file `nope.wav` not found",
    );
}

#[test]
fn prompt_that_is_not_audio() {
    let site = Site::new(1, 0, 200, "");
    site.write("prompts/greeting.wav", "RIFF? no, just text");
    let out = cmd()
        .arg("check-config")
        .arg(site.config())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("greeting.wav: not a RIFF/WAVE file"),
        "{}",
        text(&out)
    );
}

#[test]
fn reference_to_an_undefined_line() {
    assert_rejected(
        &GOOD.replace(
            "[inbound]\n",
            "[inbound]\nlines = [\"trunk-1\", \"trunk-7\"]\n",
        ),
        "13:21: `trunk-7` is not a line defined in this file",
    );
}

#[test]
fn station_used_as_an_inbound_trunk() {
    assert_rejected(
        &GOOD.replace("[inbound]\n", "[inbound]\nlines = [\"desk-1\"]\n"),
        "13:10: `desk-1` is a station line",
    );
}

/// `..` would be a directory climb at headquarters, which refuses it: the
/// box refuses it too, before it ever reports in under that id.
#[test]
fn a_site_id_of_dot_dot_is_refused_at_its_place() {
    assert_rejected(
        &GOOD.replace("id = \"branch\"", "id = \"..\""),
        "2:6: site id `..` must be 1-64 letters, digits, `-`, `_` or `.`, starting with a letter or digit",
    );
}

#[test]
fn every_problem_is_listed_not_just_the_first() {
    let site = Site::new(1, 0, 200, "");
    site.write(
        "site.toml",
        &GOOD
            .replace("id = \"branch\"", "id = \"bad id!\"")
            .replace("greeting.wav", "nope.wav")
            .replace("id = \"desk-1\"", "id = \"trunk-1\""),
    );
    let out = cmd()
        .arg("check-config")
        .arg(site.config())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 3, "{}", text(&out));
}

#[test]
fn a_scenario_with_errors_is_reported_the_same_way() {
    let site = Site::new(1, 1, 200, "");
    let scenario = site.write(
        "calls.toml",
        "[[call]]\nat = \"soon\"\nline = \"desk-1\"\n\n[[agent]]\nname = \"a\"\nline = \"trunk-9\"\n",
    );
    let out = cmd()
        .arg("check-config")
        .arg(site.config())
        .arg("--scenario")
        .arg(&scenario)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let s = scenario.display();
    assert!(
        stderr.contains(&format!("{s}:2:6: `soon` is not a duration")),
        "{}",
        text(&out)
    );
    assert!(
        stderr.contains(&format!("{s}:3:8: `desk-1` is a station line")),
        "{}",
        text(&out)
    );
    assert!(
        stderr.contains(&format!("{s}:7:8: unknown line `trunk-9`")),
        "{}",
        text(&out)
    );

    let run = site.run_fast(&scenario);
    assert_eq!(run.status.code(), Some(78), "{}", text(&run));
    assert!(!site.data().exists());
}

#[test]
fn a_database_from_newer_firmware_is_refused_with_its_path() {
    let site = Site::new(1, 0, 200, "");
    std::fs::create_dir_all(site.data()).unwrap();
    // A valid SQLite file whose user_version (offset 60) says 99.
    let mut db = vec![0u8; 512];
    db[..16].copy_from_slice(b"SQLite format 3\0");
    db[16..18].copy_from_slice(&512u16.to_be_bytes());
    db[18] = 1;
    db[19] = 1;
    db[21] = 64;
    db[22] = 32;
    db[23] = 32;
    db[28..32].copy_from_slice(&1u32.to_be_bytes());
    db[44..48].copy_from_slice(&4u32.to_be_bytes());
    db[56..60].copy_from_slice(&1u32.to_be_bytes());
    db[60..64].copy_from_slice(&99u32.to_be_bytes());
    db[100] = 0x0d; // empty leaf table page
    db[105..107].copy_from_slice(&512u16.to_be_bytes());
    let path = site.data().join("callbox.db");
    std::fs::write(&path, &db).unwrap();
    let out = cmd()
        .arg("run")
        .arg("--config")
        .arg(site.config())
        .arg("--data")
        .arg(site.data())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(73), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("schema version 99") && stderr.contains(&path.display().to_string()),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read(&path).unwrap(), db, "left untouched");
}

/// A site with SIP lines; `trunk` and `desk` are the lines' `sip` tables,
/// `sip` the `[sip]` table's body.
fn sip_site(sip: &str, trunk: &str, desk: &str) -> String {
    format!(
        r#"[site]
id = "branch"

[hal]
backend = "sip"

[sip]
{sip}

[[line]]
id = "carrier"
kind = "trunk"
sip = {{ {trunk} }}

[[line]]
id = "desk-1"
kind = "station"
sip = {{ {desk} }}

[inbound]
greeting = "greeting.wav"
"#
    )
}

const TRUNK: &str =
    r#"peer = "203.0.113.5:5060", username = "u", password = "secret-1", register = true"#;
const DESK: &str = r#"username = "1001", password = "desk-pass-1""#;

#[test]
fn a_good_sip_config_passes() {
    let site = Site::new(1, 0, 200, "");
    site.write(
        "site.toml",
        &sip_site(r#"listen = "127.0.0.1:5060""#, TRUNK, DESK),
    );
    let out = cmd()
        .arg("check-config")
        .arg(site.config())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn sip_mistakes_are_reported_at_their_place() {
    // A bad URI part (the trunk's peer is not an address).
    assert_rejected(
        &sip_site(
            r#"listen = "127.0.0.1:5060""#,
            r#"peer = "carrier example", username = "u", password = "p""#,
            DESK,
        ),
        "13:16: `carrier example` is neither an IP address nor a host name",
    );
    // A phone without a password: never a default.
    assert_rejected(
        &sip_site(
            r#"listen = "127.0.0.1:5060""#,
            TRUNK,
            r#"username = "1001""#,
        ),
        "18:7: station `desk-1` needs `username` and `password`",
    );
    // Registering without an account.
    assert_rejected(
        &sip_site(
            r#"listen = "127.0.0.1:5060""#,
            r#"peer = "203.0.113.5", register = true"#,
            DESK,
        ),
        "13:42: registering at the carrier needs `username` and `password`",
    );
    // SIP's port inside the RTP range.
    assert_rejected(
        &sip_site(
            "listen = \"127.0.0.1:20010\"\nrtp_ports = \"20000-20999\"",
            TRUNK,
            DESK,
        ),
        "9:13: the RTP ports 20000-20999 include SIP's own port 20010",
    );
    // A codec list without G.711.
    assert_rejected(
        &sip_site("codecs = [\"G729\"]", TRUNK, DESK),
        "8:11: unknown codec `G729`",
    );
    // A key that does not exist.
    assert_rejected(
        &sip_site("listen = \"127.0.0.1:5060\"\nport = 5060", TRUNK, DESK),
        "9:1: unknown field `port`",
    );
    // TLS keys without TLS, a trunk over TLS without it, a key file that
    // is not PEM.
    assert_rejected(
        &sip_site(
            "listen = \"127.0.0.1:5060\"\ntls_cert = \"box.crt\"",
            TRUNK,
            DESK,
        ),
        "9:12: TLS is off: set `tls_listen` to use it",
    );
    assert_rejected(
        &sip_site(
            r#"listen = "127.0.0.1:5060""#,
            &format!("{TRUNK}, transport = \"tls\""),
            DESK,
        ),
        "13:104: a trunk over TLS needs `[sip] tls_listen`",
    );
    assert_rejected(
        &sip_site(
            "listen = \"127.0.0.1:5060\"\ntls_listen = \"127.0.0.1:5061\"\ntls_cert = \"site.toml\"\ntls_key = \"site.toml\"",
            TRUNK,
            DESK,
        ),
        "10:12: `site.toml` is not a PEM file",
    );
    // A trunk without channels, a phone with some.
    assert_rejected(
        &sip_site(
            r#"listen = "127.0.0.1:5060""#,
            &format!("{TRUNK}, channels = 0"),
            DESK,
        ),
        "13:103: `0` channels: a trunk carries 1 to 480 calls at once",
    );
    assert_rejected(
        &sip_site(
            r#"listen = "127.0.0.1:5060""#,
            TRUNK,
            &format!("{DESK}, channels = 2"),
        ),
        "18:65: `channels` is a trunk's key; station `desk-1` is a phone",
    );
}

#[test]
fn a_trunk_with_channels_stands_for_that_many_lines() {
    let site = Site::new(1, 0, 200, "");
    // Its channels are carrier-1…carrier-4; one of them clashes with a
    // line of that name.
    let site_text = sip_site(
        r#"listen = "127.0.0.1:5060""#,
        &format!("{TRUNK}, channels = 4"),
        DESK,
    );
    site.write("site.toml", &site_text);
    let out = cmd()
        .arg("check-config")
        .arg(site.config())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_rejected(
        &site_text.replace("id = \"desk-1\"", "id = \"carrier-3\""),
        "16:6: line `carrier-3` is defined twice",
    );
}

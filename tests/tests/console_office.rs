//! The web console for the office, end to end with the real `callboxd` on
//! the sim backend and a real Chromium: the agent's screen pop and wrap-up
//! (to a real mosquitto and a collector), call records and recordings,
//! reports checked against the records, and the config editor applying an
//! edit during a call.

use std::time::Duration;

use callbox_tests::console::{
    Api, Browser, admin_in_browser, browser_login, cell, fingerprint, listening, own_admin,
    reset_admin, site, site_with,
};
use callbox_tests::mqtt::{Broker, Collector, Daemon, add_uplink, free_port, wait_until};
use callbox_tests::{Site, text};
use serde_json::Value;

/// The IVR asks for a product code, then queues the caller to agent `a`;
/// the console has wrap-up codes (one a lead) and a script for `sales`.
const POP_SITE: &str = r#"
[ivr]
start = "product"

[ivr.lookups]
contacts = "contacts.csv"

[ivr.node.product]
type = "collect"
var = "product"
prompt = "system:enter-code"
min = 3
max = 8
recordable = true
next = "sales"

[ivr.node.sales]
type = "queue"
announce = []
on_overflow = "bye"

[ivr.node.bye]
type = "hangup"

[acd.agent.a]
station = "desk-1"
logged_in = true

[acd.queue.sales]
members = { a = 0 }

[console]
listen = ["127.0.0.1:PORT"]

[console.wrap_codes]
"1" = "Information"
"2" = { label = "Quote wanted", lead = true }

[console.scripts]
sales = "Good morning {caller_name}, this is {agent}. I see you asked about product {product}."
"#;

#[test]
fn the_agents_screen_pops_the_caller_with_history_and_ivr_keys_and_the_wrap_up_reaches_headquarters()
 {
    let broker = Broker::start();
    let collector = Collector::start(&broker);
    let port = free_port();
    let site = Site::with_config(1, 1, &POP_SITE.replace("PORT", &port.to_string()));
    site.write("contacts.csv", "number,name\n13800138000,王经理\n");
    add_uplink(&site, &broker.uplink("box-pop", ""));
    // Two earlier calls from the same number, then the one the agent sees
    // ring on their desk.
    let calls = site.write(
        "calls.toml",
        r#"
[[call]]
at = "1s"
from = "13800138000"
hangup_after = "8s"
script = [{ wait = "1s" }, { press = "111#" }]

[[call]]
at = "11s"
from = "13800138000"
hangup_after = "8s"
script = [{ wait = "1s" }, { press = "222#" }]

[[call]]
at = "30s"
from = "13800138000"
hangup_after = "14s"
script = [{ wait = "1s" }, { press = "12345#" }]

[[agent]]
name = "a"
line = "desk-1"
answer_after = "5s"
"#,
    );
    let otp = reset_admin(&site);
    let fp = fingerprint(&site);
    let d = Daemon::with_scenario(&site, &calls);
    listening(&d);
    let mut admin = Api::new(port, &fp);
    own_admin(&mut admin, &otp);
    let put = admin.send(
        "POST",
        "/api/users",
        Some(r#"{"name":"a","role":"agent","password":"2468"}"#),
    );
    assert_eq!(put.status, 200, "{:?}", put.json());

    let b = Browser::start("en-US");
    b.goto(&format!("https://127.0.0.1:{port}/"));
    b.fill("#login-name", "a");
    b.fill("#login-password", "2468");
    b.click("#login-submit");
    b.wait_until(Duration::from_secs(10), "agent a's desk", |b| {
        b.text("#my-state").is_some()
    });
    // The third call rings agent a: the screen pop fills before they answer.
    b.wait_until(
        Duration::from_secs(45),
        "the screen pop while the call rings",
        |b| {
            // The first two calls may pop too while the browser logs in.
            b.eval("return document.querySelector('#my-state').dataset.state") == "ringing"
                && b.text("#pop-vars tr[data-var=\"product\"] .value")
                    .as_deref()
                    == Some("12345")
        },
    );
    assert_eq!(cell(&b, "#pop-name"), "王经理");
    assert_eq!(cell(&b, "#pop-caller"), "13800138000");
    assert_eq!(
        cell(&b, "#pop-vars tr[data-var=\"product\"] .value"),
        "12345"
    );
    assert!(
        cell(&b, "#pop-path").contains("product=ok"),
        "{}",
        cell(&b, "#pop-path")
    );
    let earlier = b.eval("return document.querySelectorAll('#pop-history tbody tr').length");
    assert_eq!(earlier, 2, "{}", b.body());
    assert_eq!(
        cell(&b, "#pop-script"),
        "Good morning 王经理, this is a. I see you asked about product 12345."
    );
    // The call ends; the wrap-up form stays for it.
    b.wait_until(
        Duration::from_secs(40),
        "the wrap-up form after the call",
        |b| b.text("#wrap-form").is_some(),
    );
    b.click("#wrap-code option[value=\"2\"]");
    b.fill("#wrap-notes", "wants a quote for 200 units");
    b.click("#wrap-submit");
    b.wait_until(Duration::from_secs(10), "the wrap-up saved", |b| {
        cell(b, "#wrap-status") == "Saved."
    });

    let third = site
        .records()
        .into_iter()
        .find(|r| r["ivr_vars"]["product"] == "12345")
        .expect("the third call's record");
    assert_eq!(third["wrap_code"], "2", "{third:#}");
    assert_eq!(third["notes"], "wants a quote for 200 units");
    let id = third["id"].as_str().unwrap().to_string();
    wait_until(
        Duration::from_secs(30),
        "the wrap-up and the lead at headquarters",
        || {
            let cdr = collector.export("cdr");
            let lead = collector.export("lead");
            cdr.iter().any(|r| {
                r["id"] == id.as_str()
                    && r["notes"] == "wants a quote for 200 units"
                    && r["wrap_code"] == "2"
            }) && lead
                .iter()
                .any(|l| l["call_id"] == id.as_str() && l["label"] == "Quote wanted")
        },
    );

    // Another agent's call is not this agent's to see.
    let mut agent = Api::new(port, &fp);
    assert_eq!(agent.login("a", "2468").status, 200);
    let first = site
        .records()
        .into_iter()
        .find(|r| r["ivr_vars"]["product"] == "111")
        .unwrap();
    // Agent a took it, so it is theirs; an unknown call is not found.
    assert_eq!(
        agent
            .send(
                "GET",
                &format!("/api/calls/{}/pop", first["id"].as_str().unwrap()),
                None
            )
            .status,
        200
    );
    assert_eq!(agent.send("GET", "/api/calls/nope/pop", None).status, 404);
    let bad_code = agent.send(
        "POST",
        &format!("/api/calls/{id}/wrap"),
        Some(r#"{"code":"9"}"#),
    );
    assert_eq!(bad_code.status, 422);
    drop(d);
}

#[test]
fn records_are_searched_exported_as_csv_and_recordings_played_in_the_browser() {
    let port = free_port();
    let site = site(port, "");
    let plain = site.config_text() + "\n[recording]\nmode = \"always\"\nformat = \"pcm16\"\n";
    site.write("site.toml", &plain);
    let scenario = |calls: &[(&str, u32)]| {
        let mut s =
            String::from("[[agent]]\nname = \"a\"\nline = \"desk-1\"\nanswer_after = \"1s\"\n\n");
        for (from, at) in calls {
            s += &format!(
                "[[call]]\nat = \"{at}s\"\nfrom = \"{from}\"\nto = \"4001\"\nhangup_after = \"8s\"\n\n"
            );
        }
        site.write("calls.toml", &s)
    };
    let run = |path: &std::path::Path| {
        let out = site.run_fast(path);
        assert!(out.status.success(), "{}", text(&out));
    };
    run(&scenario(&[
        ("13800000001", 1),
        ("13900000002", 20),
        ("13800000001", 40),
    ]));
    // One more call, its recording encrypted to headquarters' key.
    let keys = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(callbox_tests::callboxd().with_file_name("callbox-hq"))
        .args(["keygen", "--out"])
        .arg(keys.path().join("hq.key"))
        .output()
        .unwrap();
    let public = String::from_utf8(out.stdout).unwrap().trim().to_string();
    site.write(
        "site.toml",
        &plain.replace(
            "format = \"pcm16\"\n",
            &format!("format = \"pcm16\"\nrecipients = [\"{public}\"]\n"),
        ),
    );
    run(&scenario(&[("13700000003", 1)]));
    let recs = site.records();
    assert_eq!(recs.len(), 4);

    let otp = reset_admin(&site);
    let fp = fingerprint(&site);
    let d = Daemon::start(&site, &[]);
    listening(&d);
    let mut admin = Api::new(port, &fp);
    own_admin(&mut admin, &otp);
    assert_eq!(
        admin
            .send(
                "POST",
                "/api/users",
                Some(r#"{"name":"b","role":"agent","password":"1357"}"#)
            )
            .status,
        200
    );

    let b = Browser::start("en-US");
    browser_login(&b, port);
    b.click("#nav-records");
    let rows = |b: &Browser| b.eval("return document.querySelectorAll('#records tbody tr').length");
    b.wait_until(Duration::from_secs(10), "four calls", |b| rows(b) == 4);
    b.fill("#f-number", "138");
    b.click("#records-submit");
    b.wait_until(Duration::from_secs(10), "the two calls from 138…", |b| {
        rows(b) == 2
    });

    // The CSV the link points at, fetched with the same session's cookie.
    let href = b.eval("return document.querySelector('#records-csv').getAttribute('href')");
    let csv = admin.send("GET", href.as_str().unwrap(), None);
    assert_eq!(csv.status, 200);
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    let text = String::from_utf8(csv.body.clone()).unwrap();
    let lines: Vec<&str> = text.trim_start_matches('\u{feff}').lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("id,start,direction,caller"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1..].iter().all(|l| l.contains(",13800000001,")),
        "{text}"
    );

    // Play the newest call from 138… in the browser, and seek in it.
    b.click("#records tbody tr:first-child button.play");
    b.wait_until(Duration::from_secs(15), "the recording loaded in the player", |b| {
        b.eval("const a = document.querySelector('audio'); return a ? a.readyState >= 1 && a.duration > 5 : false") == true
    });
    let seeked = b.eval(
        "const a = document.querySelector('audio'); a.pause(); a.currentTime = 4; \
         return a.seekable.length > 0 && a.seekable.end(0) > 4;",
    );
    assert_eq!(seeked, true);
    let channels =
        b.eval("const id = document.querySelector('audio').dataset.recording; return id;");
    let wav = admin.send(
        "GET",
        &format!("/api/recordings/{}", channels.as_str().unwrap()),
        None,
    );
    assert_eq!(wav.status, 200);
    assert_eq!(&wav.body[..4], b"RIFF");
    assert_eq!(
        u16::from_le_bytes([wav.body[22], wav.body[23]]),
        2,
        "stereo"
    );

    // The encrypted one says who can open it.
    b.fill("#f-number", "1370");
    b.click("#records-submit");
    b.wait_until(Duration::from_secs(10), "the encrypted call", |b| {
        rows(b) == 1
    });
    b.click("#records tbody tr:first-child button.play");
    b.wait_until(
        Duration::from_secs(10),
        "the encrypted recording refused",
        |b| {
            b.text(".recording-error")
                .is_some_and(|e| e.contains("only headquarters can open it"))
        },
    );

    // Ranges, downloads and names that are no recording.
    let id = recs[0]["recordings"][0].as_str().unwrap();
    let part = admin
        .try_send(
            "GET",
            &format!("/api/recordings/{id}"),
            None,
            &[("Range", "bytes=0-43")],
        )
        .unwrap();
    assert_eq!(part.status, 206);
    assert_eq!(part.body.len(), 44);
    assert!(
        part.header("content-range")
            .unwrap()
            .starts_with("bytes 0-43/")
    );
    let beyond = admin
        .try_send(
            "GET",
            &format!("/api/recordings/{id}"),
            None,
            &[("Range", "bytes=99999999-")],
        )
        .unwrap();
    assert_eq!(beyond.status, 416);
    let dl = admin.send("GET", &format!("/api/recordings/{id}?download=1"), None);
    assert_eq!(
        dl.header("content-disposition"),
        Some(format!("attachment; filename=\"{id}.wav\"").as_str())
    );
    for bad in ["..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "nope"] {
        assert_eq!(
            admin
                .send("GET", &format!("/api/recordings/{bad}"), None)
                .status,
            404,
            "{bad}"
        );
    }
    assert_eq!(
        admin
            .send("GET", "/api/records?from=yesterday", None)
            .status,
        422
    );

    // Agent b took none of these calls: they see none, and may not play them.
    let mut agent = Api::new(port, &fp);
    assert_eq!(agent.login("b", "1357").status, 200);
    assert_eq!(
        agent.send("GET", "/api/records", None).json()["records"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        agent
            .send("GET", &format!("/api/recordings/{id}"), None)
            .status,
        403
    );
    drop(d);
}

#[test]
fn a_report_counts_what_the_records_hold_and_draws_it() {
    let port = free_port();
    let site = site_with(4, port, "");
    // One agent, callers close together: some wait and are answered, some
    // give up waiting.
    let mut s =
        String::from("[[agent]]\nname = \"a\"\nline = \"desk-1\"\nanswer_after = \"2s\"\n\n");
    for i in 0..8 {
        // Every third caller hangs up 3 s after the box answers, while the
        // agent is still on an earlier call.
        let hangup = if i % 3 == 2 { 3 } else { 6 + i };
        s += &format!(
            "[[call]]\nat = \"{}s\"\nfrom = \"1380000000{i}\"\nto = \"400{}\"\nhangup_after = \"{hangup}s\"\n\n",
            1 + i * 2,
            1 + i % 2,
        );
    }
    let path = site.write("calls.toml", &s);
    let out = site.run_fast(&path);
    assert!(out.status.success(), "{}", text(&out));
    let recs = site.records();
    let sales: Vec<&Value> = recs.iter().filter(|r| r["queue"] == "sales").collect();
    let connected: Vec<&Value> = sales
        .iter()
        .copied()
        .filter(|r| r["queue_exit"] == "connected")
        .collect();
    let abandoned = sales
        .iter()
        .filter(|r| r["queue_exit"] == "abandoned")
        .count() as u64;
    assert!(abandoned > 0 && !connected.is_empty(), "{recs:#?}");
    let avg = |f: &str| {
        connected
            .iter()
            .map(|r| r[f].as_u64().unwrap())
            .sum::<u64>()
            / connected.len() as u64
    };
    let (asa, handle) = (avg("queue_wait_ms"), avg("talk_ms"));

    let otp = reset_admin(&site);
    let fp = fingerprint(&site);
    let d = Daemon::start(&site, &[]);
    listening(&d);
    let mut api = Api::new(port, &fp);
    let b = Browser::start("en-US");
    admin_in_browser(&b, &mut api, port, &otp);

    let report = api
        .send("GET", "/api/reports?period=month&by=queue", None)
        .json();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report:#}");
    let r = &rows[0];
    assert_eq!(r["key"], "sales");
    assert_eq!(r["offered"], sales.len() as u64);
    assert_eq!(r["answered"], connected.len() as u64);
    assert_eq!(r["abandoned"], abandoned);
    assert_eq!(r["asa_ms"], asa);
    assert_eq!(r["handle_ms"], handle);
    let in_sl = connected
        .iter()
        .filter(|r| r["queue_wait_ms"].as_u64().unwrap() <= 20_000)
        .count();
    assert_eq!(
        r["service_level"].as_f64().unwrap(),
        in_sl as f64 / connected.len() as f64
    );
    let by_dialled = api
        .send("GET", "/api/reports?period=month&by=dialled", None)
        .json();
    let dialled: u64 = by_dialled["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["key"] == "4001")
        .map(|r| r["offered"].as_u64().unwrap())
        .sum();
    assert_eq!(
        dialled,
        recs.iter().filter(|r| r["dialled"] == "4001").count() as u64
    );
    assert_eq!(
        api.send("GET", "/api/reports?period=year", None).status,
        422
    );
    assert_eq!(
        api.send("GET", "/api/reports?from=2026-12-09&to=2026-12-01", None)
            .status,
        422
    );

    // The page: the table, the chart, the CSV, in English and Chinese.
    b.click("#nav-reports");
    b.click("#r-period option[value=\"month\"]");
    b.click("#report-submit");
    b.wait_until(Duration::from_secs(10), "the report table", |b| {
        b.text("#report-table tr[data-key=\"sales\"] .offered") == Some(sales.len().to_string())
    });
    let bars = b.eval("return [...document.querySelectorAll('#report-chart rect.bar-offered')].map(r => Number(r.dataset.value))");
    assert_eq!(bars, serde_json::json!([sales.len()]));
    let href = b.eval("return document.querySelector('#report-csv').getAttribute('href')");
    let csv = String::from_utf8(api.send("GET", href.as_str().unwrap(), None).body).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].contains(&format!(
            ",sales,{},{},{},",
            sales.len(),
            connected.len(),
            abandoned
        )),
        "{csv}"
    );
    b.click("#lang");
    b.wait_until(Duration::from_secs(10), "the Chinese report", |b| {
        b.body().contains("呼入") && b.body().contains("平均应答")
    });
    drop(d);
}

#[test]
fn the_config_is_edited_in_the_browser_errors_shown_at_their_line_and_a_good_edit_applied_during_a_call()
 {
    let port = free_port();
    let site = site(port, "");
    let calls = site.write(
        "calls.toml",
        r#"
[[call]]
at = "2s"
from = "13800000009"
hangup_after = "30s"

[[agent]]
name = "a"
line = "desk-1"
answer_after = "1s"
"#,
    );
    let otp = reset_admin(&site);
    let fp = fingerprint(&site);
    let d = Daemon::with_scenario(&site, &calls);
    listening(&d);
    let mut api = Api::new(port, &fp);
    let b = Browser::start("en-US");
    admin_in_browser(&b, &mut api, port, &otp);
    let original = site.config_text();

    b.click("#nav-config");
    b.wait_until(Duration::from_secs(10), "the editor", |b| {
        b.eval("const e = document.querySelector('#config-text'); return e ? e.value : ''")
            == original.as_str()
    });
    let set_text = |text: &str| {
        b.eval(&format!(
            "document.querySelector('#config-text').value = {}; return true;",
            serde_json::to_string(text).unwrap()
        ));
    };
    // A mistake: the checker's line and column, nothing applied.
    let broken = original.replace("on_overflow = \"bye\"", "on_overflow = \"nowhere\"");
    let line = broken.lines().position(|l| l.contains("nowhere")).unwrap() + 1;
    set_text(&broken);
    b.click("#config-apply");
    b.wait_until(Duration::from_secs(10), "the error at its line", |b| {
        b.text(&format!("#config-errors li[data-line=\"{line}\"]"))
            .is_some_and(|e| e.contains("nowhere"))
    });
    assert_eq!(site.config_text(), original, "nothing applied");

    // A good edit while the caller talks to agent a.
    wait_until(Duration::from_secs(20), "the call connected", || {
        d.log().contains("CONNECT")
            || site
                .table("queue_log")
                .iter()
                .any(|e| e["event"] == "CONNECT")
    });
    let good = original.replace(
        "members = { a = 0, b = 0 }",
        "members = { a = 0, b = 0 }\nservice_level = \"30s\"",
    );
    set_text(&good);
    b.click("#config-check");
    b.wait_until(Duration::from_secs(10), "checked", |b| {
        b.text("#config-checked").is_some()
    });
    b.click("#config-apply");
    b.wait_until(Duration::from_secs(15), "applied as version 1", |b| {
        b.eval("const e = document.querySelector('#config-applied'); return e ? e.dataset.version : ''") == "1"
    });
    assert_eq!(site.config_text(), good);
    b.wait_until(Duration::from_secs(10), "version 1 in the history", |b| {
        b.text("#config-history li[data-version=\"1\"]").is_some()
    });
    set_text(&original);
    b.click("#config-history li[data-version=\"1\"] button.diff");
    b.wait_until(Duration::from_secs(10), "the diff", |b| {
        b.text("#config-diff").is_some_and(|t| {
            t.contains("+ service_level = \"30s\"") || t.contains("- service_level = \"30s\"")
        })
    });
    let audit = api.send("GET", "/api/audit", None).json();
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "config.set" && e["detail"]["version"] == 1)
    );

    // Prompts: another rate and stereo is converted; not audio, too big or
    // a path is refused and nothing is stored.
    let mut wav = std::io::Cursor::new(Vec::new());
    {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(&mut wav, spec).unwrap();
        for i in 0..88_200 {
            w.write_sample(((i as f32 * 0.06).sin() * 8000.0) as i16)
                .unwrap();
        }
        w.finalize().unwrap();
    }
    let up = api
        .try_send_bytes(
            "POST",
            "/api/prompts/welcome-2",
            &wav.into_inner(),
            &[("Content-Type", "audio/wav")],
        )
        .unwrap();
    assert_eq!(up.status, 200, "{:?}", up.json());
    assert_eq!(up.json()["converted"], true);
    let stored = hound::WavReader::open(site.dir.path().join("prompts/welcome-2.wav")).unwrap();
    assert_eq!(
        (stored.spec().sample_rate, stored.spec().channels),
        (8000, 1)
    );
    assert_eq!(stored.duration(), 8000);
    let junk = api
        .try_send("POST", "/api/prompts/junk", Some("ID3 this is an mp3"), &[])
        .unwrap();
    assert_eq!(junk.status, 422);
    assert!(
        junk.json()["error"]
            .as_str()
            .unwrap()
            .contains("nothing was stored")
    );
    assert!(!site.dir.path().join("prompts/junk.wav").exists());
    let huge = "\0".repeat(60 * 1024 * 1024);
    let big = api
        .try_send("POST", "/api/prompts/big", Some(&huge), &[])
        .unwrap();
    assert_eq!(big.status, 413);
    assert!(!site.dir.path().join("prompts/big.wav").exists());
    assert_eq!(
        api.send("POST", "/api/prompts/..%2F..%2Fsite", Some("x"))
            .status,
        404
    );
    b.goto(&format!("https://127.0.0.1:{port}/"));
    b.click("#nav-config");
    b.wait_until(Duration::from_secs(10), "the uploaded prompt with a player", |b| {
        b.text("#prompt-list li[data-prompt=\"welcome-2\"]").is_some()
            && b.eval("return !!document.querySelector('#prompt-list li[data-prompt=\"welcome-2\"] audio')") == true
    });

    // The call went on through the change and ended normally.
    let mut d = d;
    wait_until(Duration::from_secs(40), "the call recorded", || {
        site.records()
            .iter()
            .any(|r| r["disposition"] != "in_progress")
    });
    d.stop();
    let recs = site.records();
    assert_eq!(recs[0]["disposition"], "answered", "{:#}", recs[0]);
    assert!(
        recs[0]["talk_ms"].as_u64().unwrap() > 20_000,
        "{:#}",
        recs[0]
    );
}

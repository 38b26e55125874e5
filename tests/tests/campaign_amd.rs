//! Answering-machine detection end to end: the real daemon in virtual time
//! dials 100 simulated callees. Half are answering machines playing a
//! recorded greeting (speech from espeak-ng, English and Mandarin, several
//! voices and speeds, ending in a beep); half are people who say "hello?"
//! (or "喂？", "哪位？") and wait. The campaign leaves a message on each machine
//! after its greeting and runs its flow for each person; the contact
//! results say which was which, and at least 90 % must be right.

use std::path::Path;
use std::process::Command;

use callbox_tests::{Site, text, write_tone_hz};

const CONFIG: &str = r#"
[ivr]
language = "en"
start = "hello"

[ivr.node.hello]
type = "play"
prompts = ["system:beep"]
next = "bye"

[ivr.node.message]
type = "play"
prompts = ["system:beep"]
next = "left"

[ivr.node.left]
type = "hangup"
outcome = "message_left"

[ivr.node.bye]
type = "hangup"
outcome = "greeted"

[campaign.notice]
number = "4008001234"
mode = "agentless"
start = "hello"
list = "contacts.csv"
max_lines = 8
max_attempts = 1

[campaign.notice.amd]
machine = "message"
message = "message"
done_after_message = true

[campaign.notice.window]
timezone = "Asia/Shanghai"
mon = ["09:00-18:00"]
"#;

/// Monday 2026-11-23, 09:00 in Shanghai.
const OPEN: &str = "2026-11-23T09:00:00+08:00";

const GREETINGS: [&str; 10] = [
    "Hello, you have reached the Zhang family. We cannot take your call right now. Please leave a message after the tone.",
    "Hi, this is Li Wei. I am away from my phone. Leave your name and number and I will call you back.",
    "Thank you for calling. Nobody is available to answer. Please leave a message after the beep.",
    "The person you are calling is not available. Please record your message after the tone. When you are finished, hang up.",
    "You have reached the voicemail of Wang Fang. Please leave a short message.",
    "您好，您拨打的用户暂时无法接听，请在提示音后留言。",
    "你好，我是李明，现在不方便接电话，请留言，我会尽快回复。",
    "欢迎致电，现在无人接听，请在嘀声后留下您的姓名和电话。",
    "Hello. Sorry I missed your call. I will get back to you as soon as I can.",
    "This mailbox belongs to Zhao Lei. Please speak after the tone.",
];

const HELLOS: [(&str, &str); 5] = [
    ("Hello?", "en-us"),
    ("Hello?", "en-gb-x-rp"),
    ("Yes?", "en-us"),
    ("喂？", "cmn"),
    ("哪位？", "cmn"),
];

/// `text` spoken by espeak-ng's `voice` at `speed` words a minute, as an
/// 8 kHz mono WAV at `out`.
fn speak(dir: &Path, out: &Path, text: &str, voice: &str, speed: u32) {
    let raw = dir.join("espeak.wav");
    let st = Command::new("espeak-ng")
        .args(["-v", voice, "-s", &speed.to_string(), "-w"])
        .arg(&raw)
        .arg(text)
        .status()
        .expect("this test needs espeak-ng (scripts/test-all installs it)");
    assert!(st.success());
    let st = Command::new("sox")
        .arg(&raw)
        .args(["-r", "8000", "-c", "1", "-b", "16", "-e", "signed"])
        .arg(out)
        .status()
        .expect("this test needs sox");
    assert!(st.success());
}

#[test]
fn answering_machines_are_told_from_people_and_get_a_message_after_the_beep() {
    let site = Site::with_config(8, 0, CONFIG);
    let dir = site.dir.path();
    write_tone_hz(&dir.join("beep.wav"), 1000.0, 400);
    let mut list = String::from("number,kind\n");
    let mut scenario = String::new();
    for i in 0..100u32 {
        let number = format!("139{i:08}");
        let machine = i % 2 == 0;
        let speed = 140 + (i % 5) * 15;
        let wav = format!("callee{i}.wav");
        if machine {
            let text = GREETINGS[(i as usize / 2) % GREETINGS.len()];
            let voice = if text.is_ascii() {
                ["en-us", "en-gb-x-rp"][(i as usize / 2) % 2]
            } else {
                "cmn"
            };
            speak(dir, &dir.join(&wav), text, voice, speed);
            scenario += &format!(
                "[[callee]]\nnumber = \"{number}\"\nanswer_after = \"{}s\"\nhangup_after = \"40s\"\nscript = [{{ wait = \"300ms\" }}, {{ play = \"{wav}\" }}, {{ play = \"beep.wav\" }}]\n\n",
                3 + i % 4
            );
        } else {
            let (text, voice) = HELLOS[(i as usize / 2) % HELLOS.len()];
            speak(dir, &dir.join(&wav), text, voice, speed);
            // They wait, then ask again, and give up.
            scenario += &format!(
                "[[callee]]\nnumber = \"{number}\"\nanswer_after = \"{}s\"\nhangup_after = \"15s\"\nscript = [{{ wait = \"{}ms\" }}, {{ play = \"{wav}\" }}, {{ wait = \"4s\" }}, {{ play = \"{wav}\" }}]\n\n",
                2 + i % 3,
                200 + (i % 4) * 150
            );
        }
        list += &format!("{number},{}\n", if machine { "machine" } else { "person" });
    }
    site.write("contacts.csv", &list);
    let path = site.write("callees.toml", &scenario);
    let out = site.run_fast_with(&path, &["--start-at", OPEN]);
    assert!(out.status.success(), "{}", text(&out));
    let log = text(&out);

    let contacts = site.table("campaign_contacts");
    assert_eq!(contacts.len(), 100, "{log}");
    let records = site.records();
    let (mut right, mut confusion) = (0, std::collections::BTreeMap::new());
    for c in &contacts {
        let number = c["number"].as_str().unwrap();
        let machine = c["vars"]["kind"] == "machine"
            || c["vars"].as_str().is_some_and(|v| v.contains("machine"));
        let said = c["answers"]["amd"].as_str().unwrap_or("none").to_string();
        *confusion
            .entry((if machine { "machine" } else { "person" }, said.clone()))
            .or_insert(0) += 1;
        let rec = records
            .iter()
            .find(|r| r["dialled"] == number)
            .unwrap_or_else(|| panic!("{number} never called\n{log}"));
        if machine && said == "machine" {
            right += 1;
            // The message is left after the greeting, on a done contact.
            assert_eq!(c["state"], "done", "{c:#}");
            assert_eq!(c["last_outcome"], "machine", "{c:#}");
            assert_eq!(rec["outcome"], "message_left", "{rec:#}");
            assert_eq!(rec["ivr_vars"]["amd"], "machine", "{rec:#}");
        } else if !machine && said == "human" {
            right += 1;
            assert_eq!(c["state"], "done", "{c:#}");
            assert_eq!(rec["outcome"], "greeted", "{rec:#}");
        }
    }
    println!("AMD on 100 callees: {right} right; (truth, verdict) -> count: {confusion:?}");
    // `callboxd campaigns` counts the contacts by last outcome.
    let machines: u32 = confusion
        .iter()
        .filter(|((_, v), _)| v == "machine")
        .map(|(_, n)| *n)
        .sum();
    let sum = callbox_tests::export(&site.data(), &["campaigns", "--json"]);
    assert_eq!(sum[0]["outcomes"]["machine"], machines, "{sum:#?}");
    assert!(
        right >= 90,
        "AMD right on only {right} of 100: {confusion:?}\n{log}"
    );
}

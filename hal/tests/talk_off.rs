//! Talk-off: speech and music on the line must never be taken for a key.
//!
//! A caller talking while the IVR listens for keys is the normal case, so a
//! detector that hears a digit in speech misroutes real calls. This test
//! makes over ten minutes of speech with espeak-ng, in English and in
//! Mandarin Chinese (whose tones sweep the pitch through the DTMF low
//! group), with many voices, speeds and pitches, plus several minutes of
//! synthetic music made with sox (plucked and sawtooth chords, arpeggios,
//! organ-like triads, sweeps), converts everything to 8 kHz mono 16-bit,
//! passes part of it through G.711 A-law and µ-law as a phone line would,
//! and requires that the DTMF detector reports no digit at all.
//!
//! espeak-ng and sox must be installed (`scripts/test-all` installs them);
//! without them the test fails rather than passing without having listened
//! to anything.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use callbox_hal::dsp::detect::DtmfDetector;
use callbox_hal::dsp::g711;
use callbox_hal::wav::load_pcm16_mono;

const RATE: u32 = 8000;

const ENGLISH: &[&str] = &[
    "Thank you for calling the customer service line. Your call is important to us. \
     Please listen carefully, as our menu options have recently changed. For billing \
     questions, press one. To report a fault on your line, press two. To speak to an \
     agent, please stay on the line. Calls may be recorded for training purposes. The \
     current waiting time is approximately four minutes. You are number seven in the queue.",
    "Good morning, my name is Sarah, and I am calling about the invoice dated the \
     twenty-third of March. The amount on it is three hundred and forty-nine pounds and \
     fifty pence, but we agreed on two hundred and ninety. Could you please check the \
     reference, which is A B C nine eight seven six five, and call me back on zero two \
     zero, seven nine four six, one one three eight? I will be in the office until six.",
    "Tomorrow will start cloudy in the north, with patchy drizzle over the hills, but the \
     sunshine should break through by the early afternoon. Temperatures will reach \
     fourteen degrees in the cities, a little cooler along the coast, where a brisk \
     westerly wind will make it feel colder. Overnight, the skies clear, and there is a \
     risk of frost in sheltered valleys. The weekend looks dry and settled everywhere.",
    "Once upon a time, in a village at the edge of a great forest, there lived an old \
     clockmaker who never slept. Every night he sat at his bench, mending watches that \
     nobody had brought him, and every morning the watches were gone. The children said \
     he was mending time itself. One winter evening a girl knocked on his door, holding a \
     pocket watch that ran backwards, and asked whether he could make it stop.",
    "To reset the router, first unplug the power cable and wait for thirty seconds. Then \
     hold down the small button on the back, marked reset, while you plug the cable in \
     again. Keep holding it until the lights flash amber, which usually takes about ten \
     seconds. Release the button and wait for the light to turn steady green. If it \
     stays red, the firmware update has failed, and you should contact support.",
    "In the second half the home side pressed high, and after sixty-eight minutes their \
     patience paid off: a quick exchange on the left, a low cross, and the striker \
     turned it in at the near post. The visitors protested, claiming offside, but the \
     goal stood. Late on, the keeper made a remarkable double save to keep it at one \
     nil, and the crowd stayed on their feet until the final whistle.",
    "Whisk two eggs with a pinch of salt, then add one hundred grams of flour and a \
     quarter of a litre of milk, a little at a time, until the batter is smooth. Let \
     it rest for half an hour. Heat a drop of oil in a wide pan until it just starts to \
     smoke, pour in a thin layer, and tilt the pan so that it covers the bottom. After a \
     minute, flip it over, cook the other side briefly, and serve with lemon and sugar.",
    "Shall I compare thee to a summer's day? Thou art more lovely and more temperate. \
     Rough winds do shake the darling buds of May, and summer's lease hath all too short \
     a date. Sometime too hot the eye of heaven shines, and often is his gold complexion \
     dimmed; and every fair from fair sometime declines, by chance, or nature's changing \
     course, untrimmed. Hello? Hello? Can you hear me? Yes, yes, I am still here.",
];

const MANDARIN: &[&str] = &[
    "您好，欢迎致电客户服务中心。您的来电对我们非常重要。查询账单请按一，报修线路故障请按二，\
     人工服务请不要挂机。为了提高服务质量，您的通话可能会被录音。目前等待时间大约四分钟，\
     您前面还有七位客户，请耐心等候。",
    "喂，你好，我是王小明，想问一下三月二十三号的那张发票。上面写的是三百四十九块五，\
     可是我们当时说好的是二百九十块。麻烦你帮我查一下单号，是九八七六五，然后回我电话，\
     号码是一三八零零一三八零零零，我六点以前都在办公室。",
    "明天北方地区多云，山区有零星小雨，下午以后天气逐渐转晴。城市最高气温十四度左右，\
     沿海地区稍低，西风四到五级，体感比较凉。夜间天空转晴，部分山谷地区可能有霜冻。\
     周末全国大部分地区天气晴好，适合外出。",
    "很久很久以前，在一片大森林的边上，有一个小村子，村子里住着一位从来不睡觉的老钟表匠。\
     每天晚上他都坐在工作台前，修理没有人送来的手表；每天早上，那些手表又都不见了。\
     孩子们说，他修的其实是时间。",
    "重新启动路由器的时候，先拔掉电源线，等三十秒钟。然后按住背面那个写着复位的小按钮，\
     同时把电源线插回去。一直按着，直到指示灯闪黄灯，一般要十秒钟左右。松开按钮以后，\
     等指示灯变成常亮的绿灯。如果一直是红灯，说明固件升级失败了，请联系技术支持。",
    "下半场主队加强了前场逼抢，第六十八分钟终于打破僵局：左路两次快速配合之后，\
     一脚低平球传中，前锋在近门柱把球捅进了球门。客队球员围住裁判抗议越位，但是进球有效。\
     比赛最后阶段，主队门将连续两次精彩扑救，保住了一比零的胜利。",
    "先把两个鸡蛋打散，加一小撮盐，然后一点一点地加入一百克面粉和二百五十毫升牛奶，\
     搅拌到面糊没有颗粒为止，静置半个小时。锅里放一点油，烧到微微冒烟，倒入薄薄一层面糊，\
     转动锅子让它铺满锅底。一分钟以后翻面，另一面稍微煎一下就可以出锅了。",
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。春眠不觉晓，处处闻啼鸟。\
     夜来风雨声，花落知多少。喂？喂？听得见吗？听得见，听得见，我还在线上。\
     好的，那我们明天上午十点再联系，再见。",
];

/// One way of speaking: espeak-ng voice (with variant), words per minute,
/// pitch (0–99) and amplitude (0–200).
struct Voice {
    name: &'static str,
    speed: u32,
    pitch: u32,
    amplitude: u32,
}

const fn voice(name: &'static str, speed: u32, pitch: u32, amplitude: u32) -> Voice {
    Voice {
        name,
        speed,
        pitch,
        amplitude,
    }
}

const ENGLISH_VOICES: &[Voice] = &[
    voice("en", 175, 50, 100),
    voice("en+m3", 150, 35, 130),
    voice("en+f2", 195, 70, 100),
    voice("en-us+m7", 165, 25, 150),
    voice("en+f4", 220, 85, 90),
    voice("en-gb-scotland+m1", 140, 55, 120),
    voice("en-us+f3", 185, 65, 180),
    voice("en+klatt", 160, 45, 110),
    voice("en+croak", 170, 40, 120),
    voice("en-us+f5", 240, 90, 100),
    voice("en+m6", 130, 20, 160),
    voice("en+whisper", 170, 50, 150),
];

const MANDARIN_VOICES: &[Voice] = &[
    voice("cmn", 160, 50, 100),
    voice("cmn+f2", 175, 70, 130),
    voice("cmn+m3", 140, 35, 110),
    voice("cmn+f4", 200, 85, 150),
    voice("cmn+m7", 165, 25, 90),
    voice("cmn+klatt2", 150, 55, 120),
    voice("cmn+f3", 185, 65, 180),
    voice("cmn+m1", 130, 45, 140),
];

/// Speech per language, in seconds (the two together: over ten minutes).
const SPEECH_PER_LANGUAGE: f64 = 330.0;
/// Music, in seconds.
const MUSIC: f64 = 180.0;

/// A scratch directory, removed when the test ends (pass or fail).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("callbox-talkoff-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Fails the test with a clear message unless `tool` runs.
fn require(tool: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the talk-off test needs `{tool}` (apt-get install espeak-ng sox; scripts/test-all \
         installs both): without it the detector would not be tested against speech and music"
    );
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Speaks `text` with `v` and returns it as 8 kHz mono 16-bit samples.
fn speak(dir: &Path, n: usize, v: &Voice, text: &str) -> Vec<i16> {
    let text_file = dir.join(format!("{n}.txt"));
    let raw = dir.join(format!("{n}.espeak.wav"));
    let line = dir.join(format!("{n}.wav"));
    std::fs::write(&text_file, text).expect("write text");
    run(Command::new("espeak-ng")
        .args(["-v", v.name])
        .args(["-s", &v.speed.to_string()])
        .args(["-p", &v.pitch.to_string()])
        .args(["-a", &v.amplitude.to_string()])
        .arg("-w")
        .arg(&raw)
        .arg("-f")
        .arg(&text_file));
    run(Command::new("sox")
        .arg(&raw)
        .args(["-r", "8000", "-c", "1", "-b", "16"])
        .arg(&line));
    let samples = load_pcm16_mono(&line, RATE).expect("load converted speech");
    let _ = std::fs::remove_file(&raw);
    samples
}

/// Passes clip number `n` through A-law, µ-law or neither, in turn, as a
/// trunk, a SIP peer or an analogue line would deliver it.
fn over_the_line(n: usize, samples: Vec<i16>) -> (Vec<i16>, &'static str) {
    let mut codes = vec![0u8; samples.len()];
    let mut back = vec![0i16; samples.len()];
    match n % 3 {
        1 => {
            g711::encode_alaw(&samples, &mut codes);
            g711::decode_alaw(&codes, &mut back);
            (back, "A-law")
        }
        2 => {
            g711::encode_ulaw(&samples, &mut codes);
            g711::decode_ulaw(&codes, &mut back);
            (back, "µ-law")
        }
        _ => (samples, "linear"),
    }
}

/// Listens to clips through one detector, as one long call; returns every
/// digit with a description of where it was heard.
struct Listener {
    det: DtmfDetector,
    seconds: f64,
    heard: Vec<String>,
}

impl Listener {
    fn new() -> Listener {
        Listener {
            det: DtmfDetector::new(RATE),
            seconds: 0.0,
            heard: Vec::new(),
        }
    }

    fn listen(&mut self, clip: &[i16], what: &str) {
        for (i, frame) in clip.chunks(160).enumerate() {
            if let Some(d) = self.det.process(frame) {
                self.heard.push(format!(
                    "'{d}' at {:.2} s into {what}",
                    (i * 160) as f64 / f64::from(RATE)
                ));
            }
        }
        self.seconds += clip.len() as f64 / f64::from(RATE);
    }
}

#[test]
fn speech_in_english_and_mandarin_gives_no_digits() {
    require("espeak-ng");
    require("sox");
    let started = Instant::now();
    let dir = TempDir::new("speech");
    let mut listener = Listener::new();
    let mut clip = 0;
    for (language, paragraphs, voices) in [
        ("English", ENGLISH, ENGLISH_VOICES),
        ("Mandarin", MANDARIN, MANDARIN_VOICES),
    ] {
        let start = listener.seconds;
        let mut round = 0;
        // Every voice in turn reads a paragraph, continuing through the
        // text and shifting by one each time round the voices, until there
        // is enough speech in this language.
        while listener.seconds - start < SPEECH_PER_LANGUAGE {
            let v = &voices[round % voices.len()];
            let p = (round + round / voices.len()) % paragraphs.len();
            let text = paragraphs[p];
            let samples = speak(&dir.0, clip, v, text);
            let (samples, law) = over_the_line(clip, samples);
            listener.listen(
                &samples,
                &format!(
                    "{language} clip {clip} ({} -s {} -p {} -a {}, paragraph {p}, {law})",
                    v.name, v.speed, v.pitch, v.amplitude
                ),
            );
            clip += 1;
            round += 1;
            assert!(round < 500, "espeak-ng produces almost no audio");
        }
        println!(
            "{language}: {:.1} min of speech",
            (listener.seconds - start) / 60.0
        );
    }
    println!(
        "talk-off speech: {:.1} min in {clip} clips, {:.1} s, {} digit(s)",
        listener.seconds / 60.0,
        started.elapsed().as_secs_f64(),
        listener.heard.len()
    );
    assert!(listener.seconds >= 600.0, "less than 10 minutes of speech");
    assert!(
        listener.heard.is_empty(),
        "talk-off: digits heard in speech:\n{}",
        listener.heard.join("\n")
    );
}

/// Note names in sox's notation, for chords.
const CHORDS: &[&[&str]] = &[
    &["C3", "E3", "G3", "C4"],
    &["A2", "E3", "A3", "C4"],
    &["F2", "C3", "F3", "A3"],
    &["G2", "D3", "G3", "B3"],
    &["D3", "F#3", "A3", "D4"],
    &["E3", "G#3", "B3", "E4"],
    &["C4", "E4", "G4", "C5"],
    &["A3", "C4", "E4", "A4"],
    &["F4", "A4", "C5", "F5"],
    &["G4", "B4", "D5", "G5"],
    &["D5", "F#5", "A5", "D6"],
    &["E5", "G5", "B5", "E6"],
    &["Bb4", "D5", "F5", "Bb5"],
    &["Eb5", "G5", "Bb5", "Eb6"],
];

/// A step in making a music clip.
enum Part {
    /// One sox run: the effects after `-n … out.wav`, starting with
    /// `synth`; its output is appended to the clip.
    Sox(Vec<String>),
    /// An echo of the whole clip so far, 120 ms later and 6 dB down.
    Echo,
}

fn sox(args: &[&str]) -> Part {
    Part::Sox(args.iter().map(|a| a.to_string()).collect())
}

/// `synth <seconds>`, then `kind note` for each note, then `effects`.
fn chord(seconds: &str, kind: &str, notes: &[&str], effects: &[&str]) -> Part {
    let mut args = vec!["synth".to_string(), seconds.to_string()];
    for note in notes {
        args.extend([kind.to_string(), note.to_string()]);
    }
    args.extend(["remix", "-"].map(String::from));
    args.extend(effects.iter().map(|e| e.to_string()));
    Part::Sox(args)
}

/// Music clip number `n`: a description and how to make it.
fn music_clip(n: usize) -> (String, Vec<Part>) {
    let this = CHORDS[n % CHORDS.len()];
    let next = CHORDS[(n + 5) % CHORDS.len()];
    match n % 6 {
        0 => (
            format!("strummed pluck chord {this:?}"),
            vec![chord("2.5", "pluck", this, &["fade", "0", "2.5", "1"])],
        ),
        1 => (
            format!("sawtooth pad {this:?}"),
            vec![chord(
                "3",
                "sawtooth",
                this,
                &[
                    "tremolo", "6", "40", "lowpass", "2500", "fade", "0.05", "3", "0.5",
                ],
            )],
        ),
        2 => (
            format!("square-wave organ {this:?} then {next:?}"),
            vec![
                chord("1.5", "square", this, &["gain", "-6"]),
                chord("1.5", "square", next, &["gain", "-6"]),
            ],
        ),
        3 => {
            // Up and down the chord, fast, with an echo.
            let mut parts: Vec<Part> = this
                .iter()
                .chain(this.iter().rev())
                .map(|note| sox(&["synth", "0.18", "pluck", note]))
                .collect();
            parts.push(Part::Echo);
            (format!("pluck arpeggio {this:?}"), parts)
        }
        4 => (
            // Three steady tones and a sweep: never a clean two-tone pair.
            format!("sine triad {:?} over a rising sweep", &this[..3]),
            vec![
                chord(
                    "4",
                    "sine",
                    &[this[0], this[1], this[2]],
                    &["fade", "0.2", "4", "0.5"],
                )
                .with_sweep(),
            ],
        ),
        _ => {
            // Sweeps, different each round: an exponential sine chirp, a
            // linear triangle one, and sawtooth and square sirens whose
            // harmonics sweep through both groups at once.
            let k = (n / 6) as u32;
            let lo = 100 + 37 * (k % 9);
            let hi = 2800 + 113 * (k % 9);
            let saw_lo = 450 + 29 * (k % 11);
            let saw_hi = 1200 + 47 * (k % 11);
            let seconds = (2 + k % 4).to_string();
            let f = |a: u32, sep: &str, b: u32| format!("{a}{sep}{b}");
            let parts = vec![
                sox(&["synth", &seconds, "sine", &f(lo, "/", hi), "gain", "-3"]),
                sox(&["synth", "3", "triangle", &f(hi, ":", lo), "gain", "-3"]),
                sox(&[
                    "synth",
                    &seconds,
                    "sawtooth",
                    &f(saw_lo, "-", saw_hi),
                    "tremolo",
                    "4",
                    "60",
                    "gain",
                    "-6",
                ]),
                sox(&[
                    "synth",
                    "2",
                    "square",
                    &f(saw_hi, ":", saw_lo),
                    "gain",
                    "-9",
                ]),
            ];
            (
                format!("sweeps {lo}..{hi} Hz, {saw_lo}..{saw_hi} Hz"),
                parts,
            )
        }
    }
}

impl Part {
    /// Adds a 200 Hz to 2 kHz sine sweep as one more channel of a chord.
    fn with_sweep(self) -> Part {
        match self {
            Part::Sox(mut args) => {
                args.splice(2..2, ["sine", "200:2000"].map(String::from));
                Part::Sox(args)
            }
            Part::Echo => Part::Echo,
        }
    }
}

/// Makes music clip `n` at 8 kHz mono 16-bit.
fn make_music(dir: &Path, n: usize) -> (String, Vec<i16>) {
    let (name, parts) = music_clip(n);
    let mut samples: Vec<i16> = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        match part {
            Part::Sox(args) => samples.extend(render(dir, n, i, args)),
            Part::Echo => {
                let delay = 960;
                let dry = samples.clone();
                samples.resize(dry.len() + delay, 0);
                for (j, &s) in dry.iter().enumerate() {
                    let v = i32::from(samples[j + delay]) + i32::from(s) / 2;
                    samples[j + delay] = v.clamp(-32768, 32767) as i16;
                }
            }
        }
    }
    (name, samples)
}

/// One sox run. Each waveform of the synth is a channel, mixed down by
/// `remix -`; pluck only synthesises at 44.1 kHz or more, so everything is
/// made at 48 kHz and resampled to the line's 8 kHz on output.
fn render(dir: &Path, n: usize, part: usize, args: &[String]) -> Vec<i16> {
    let out = dir.join(format!("music-{n}-{part}.wav"));
    let channels = args.iter().filter(|a| is_waveform(a)).count().max(1);
    run(Command::new("sox")
        .args(["-r", "48000", "-c", &channels.to_string(), "-n"])
        .args(["-r", "8000", "-c", "1", "-b", "16"])
        .arg(&out)
        .args(args));
    load_pcm16_mono(&out, RATE).expect("load music")
}

fn is_waveform(a: &str) -> bool {
    matches!(
        a,
        "sine" | "square" | "triangle" | "sawtooth" | "trapezium" | "pluck"
    )
}

#[test]
fn synthetic_music_gives_no_digits() {
    require("sox");
    let started = Instant::now();
    let dir = TempDir::new("music");
    let mut listener = Listener::new();
    let mut n = 0;
    while listener.seconds < MUSIC {
        let (name, samples) = make_music(&dir.0, n);
        // Every kind of clip (n % 6) in turn through each law.
        let (samples, law) = over_the_line(n + n / 6, samples);
        listener.listen(&samples, &format!("music clip {n} ({name}, {law})"));
        n += 1;
        assert!(n < 1000, "sox produces almost no audio");
    }
    println!(
        "talk-off music: {:.1} min in {n} clips, {:.1} s, {} digit(s)",
        listener.seconds / 60.0,
        started.elapsed().as_secs_f64(),
        listener.heard.len()
    );
    assert!(
        listener.heard.is_empty(),
        "talk-off: digits heard in music:\n{}",
        listener.heard.join("\n")
    );
}

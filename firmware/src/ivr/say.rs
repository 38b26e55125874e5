//! Saying values aloud from prompt fragments: digits, numbers, money,
//! dates and times, in English and Mandarin Chinese.
//!
//! Each function turns a value into the names of system prompt fragments
//! (`num-7`, `hundred`, `month-3`…; the set is listed in
//! `firmware/prompts/system/README.md`), which the IVR plays back to back.
//! Grammar differs per language, not just words: Chinese groups numbers by
//! 万 (10⁴) and 亿 (10⁸), says 两 before 百/千/万, inserts 零 for skipped
//! places, reads years digit by digit and puts 上午/下午 before the hour.

/// A language the system prompt set ships in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    /// English.
    En,
    /// Mandarin Chinese.
    Zh,
}

impl Lang {
    /// Parses the config spelling (`en`, `zh`).
    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "en" => Some(Lang::En),
            "zh" => Some(Lang::Zh),
            _ => None,
        }
    }

    /// Config spelling, also the prompt subdirectory.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
        }
    }

    /// Every shipped language.
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Zh];
}

/// Largest number the box says (just under a billion / 十亿).
pub const MAX_NUMBER: i64 = 999_999_999;

/// Keys one by one (`4821` → four eight two one). Other characters are
/// skipped: a verification code is said as digits, whatever surrounds it.
pub fn digits(s: &str) -> Vec<String> {
    s.chars()
        .filter_map(|c| match c {
            '0'..='9' => Some(format!("digit-{c}")),
            '*' => Some("star".into()),
            '#' => Some("hash".into()),
            _ => None,
        })
        .collect()
}

/// A whole number. Values beyond ±[`MAX_NUMBER`] are said digit by digit.
pub fn number(n: i64, lang: Lang) -> Vec<String> {
    let mut out = Vec::new();
    if n.unsigned_abs() > MAX_NUMBER as u64 {
        return digits(&n.to_string());
    }
    if n < 0 {
        out.push("minus".to_string());
    }
    let n = n.unsigned_abs();
    match lang {
        Lang::En => en_number(n, &mut out),
        Lang::Zh => zh_number(n, &mut out),
    }
    out
}

fn en_number(n: u64, out: &mut Vec<String>) {
    if n == 0 {
        out.push("num-0".into());
        return;
    }
    let mut rest = n;
    for (unit, name) in [(1_000_000, "million"), (1000, "thousand")] {
        if rest >= unit {
            en_below_1000(rest / unit, out);
            out.push(name.into());
            rest %= unit;
        }
    }
    if rest > 0 {
        en_below_1000(rest, out);
    }
}

fn en_below_1000(n: u64, out: &mut Vec<String>) {
    if n >= 100 {
        out.push(format!("num-{}", n / 100));
        out.push("hundred".into());
    }
    let r = n % 100;
    if r == 0 {
        return;
    }
    if r < 20 {
        out.push(format!("num-{r}"));
    } else {
        out.push(format!("num-{}", r / 10 * 10));
        if !r.is_multiple_of(10) {
            out.push(format!("num-{}", r % 10));
        }
    }
}

fn zh_number(n: u64, out: &mut Vec<String>) {
    if n == 0 {
        out.push("num-0".into());
        return;
    }
    // Groups of four digits: 亿, 万, units.
    let groups = [
        (n / 100_000_000, Some("hundred-million")),
        (n / 10_000 % 10_000, Some("ten-thousand")),
        (n % 10_000, None),
    ];
    let mut said = false;
    let mut zero_pending = false;
    for (g, unit) in groups {
        if g == 0 {
            if said {
                zero_pending = true;
            }
            continue;
        }
        // A group below 1000 after something was said needs 零 (一万零五十).
        if said && (zero_pending || g < 1000) {
            out.push("num-0".into());
        }
        zero_pending = false;
        if g == 2 && unit.is_some() {
            out.push("num-2-alt".into());
        } else {
            zh_group(g, !said, out);
        }
        if let Some(u) = unit {
            out.push(u.into());
        }
        said = true;
    }
}

/// One group of up to four digits. `leading`: first group of the number,
/// where 10-19 are said 十, 十一… rather than 一十, 一十一.
fn zh_group(g: u64, leading: bool, out: &mut Vec<String>) {
    let places = [
        (1000, Some("thousand")),
        (100, Some("hundred")),
        (10, Some("ten")),
        (1, None),
    ];
    let mut started = false;
    let mut zero = false;
    for (value, unit) in places {
        let d = g / value % 10;
        if d == 0 {
            if started {
                zero = true;
            }
            continue;
        }
        if zero {
            out.push("num-0".into());
            zero = false;
        }
        let is_lone_ten = value == 10 && d == 1 && !started && leading;
        if !is_lone_ten {
            if d == 2 && (value == 1000 || value == 100) {
                out.push("num-2-alt".into());
            } else {
                out.push(format!("num-{d}"));
            }
        }
        if let Some(u) = unit {
            out.push(u.into());
        }
        started = true;
    }
}

/// An amount of money in hundredths (cents, 分).
pub fn money(cents: i64, lang: Lang) -> Vec<String> {
    let mut out = Vec::new();
    if cents < 0 {
        out.push("minus".to_string());
    }
    let cents = cents.unsigned_abs();
    let (major, minor) = ((cents / 100) as i64, cents % 100);
    match lang {
        Lang::En => {
            if major > 0 || minor == 0 {
                out.extend(number(major, lang));
                out.push(if major == 1 { "dollar" } else { "dollars" }.into());
            }
            if minor > 0 {
                if major > 0 {
                    out.push("and".into());
                }
                out.extend(number(minor as i64, lang));
                out.push(if minor == 1 { "cent" } else { "cents" }.into());
            }
        }
        Lang::Zh => {
            let (jiao, fen) = (minor / 10, minor % 10);
            if major > 0 || minor == 0 {
                out.extend(number(major, lang));
                out.push("yuan".into());
            }
            if jiao > 0 {
                out.push(format!("num-{jiao}"));
                out.push("jiao".into());
            }
            if fen > 0 {
                if jiao == 0 && major > 0 {
                    out.push("num-0".into());
                }
                out.push(format!("num-{fen}"));
                out.push("fen".into());
            }
        }
    }
    out
}

/// Parses `12`, `12.5`, `12.50` (also with a leading `-`) into hundredths.
pub fn parse_money(s: &str) -> Option<i64> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 2 {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let w: i64 = whole.parse().ok()?;
    let f: i64 = format!("{frac:0<2}").parse().ok()?;
    let v = w.checked_mul(100)?.checked_add(f)?;
    Some(if neg { -v } else { v })
}

/// A calendar date, with the weekday when `weekday` is 1 (Monday) to 7.
pub fn date(year: i32, month: u8, day: u8, weekday: Option<u8>, lang: Lang) -> Vec<String> {
    let mut out = Vec::new();
    match lang {
        Lang::En => {
            if let Some(w) = weekday {
                out.push(format!("weekday-{w}"));
            }
            out.push(format!("month-{month}"));
            out.push(format!("day-{day}"));
            en_year(year, &mut out);
        }
        Lang::Zh => {
            for c in year.to_string().chars() {
                out.push(format!("num-{c}"));
            }
            out.push("year".into());
            out.push(format!("month-{month}"));
            out.push(format!("day-{day}"));
            if let Some(w) = weekday {
                out.push(format!("weekday-{w}"));
            }
        }
    }
    out
}

fn en_year(year: i32, out: &mut Vec<String>) {
    let y = i64::from(year);
    if !(1100..=9999).contains(&y) || (2000..2010).contains(&y) {
        out.extend(number(y, Lang::En));
        return;
    }
    let (hi, lo) = (y / 100, y % 100);
    out.extend(number(hi, Lang::En));
    match lo {
        0 => out.push("hundred".into()),
        1..=9 => {
            out.push("oh".into());
            out.push(format!("num-{lo}"));
        }
        _ => out.extend(number(lo, Lang::En)),
    }
}

/// A time of day (24-hour input), said the way people say it.
pub fn time(hour: u8, minute: u8, lang: Lang) -> Vec<String> {
    let mut out = Vec::new();
    let h12 = match hour % 12 {
        0 => 12,
        h => h,
    };
    let pm = hour >= 12;
    match lang {
        Lang::En => {
            out.extend(number(i64::from(h12), lang));
            match minute {
                0 => out.push("oclock".into()),
                1..=9 => {
                    out.push("oh".into());
                    out.push(format!("num-{minute}"));
                }
                _ => out.extend(number(i64::from(minute), lang)),
            }
            out.push(if pm { "pm" } else { "am" }.into());
        }
        Lang::Zh => {
            out.push(if pm { "pm" } else { "am" }.into());
            if h12 == 2 {
                out.push("num-2-alt".into());
            } else {
                out.extend(number(i64::from(h12), lang));
            }
            out.push("hour".into());
            match minute {
                0 => out.push("whole-hour".into()),
                30 => out.push("half".into()),
                m => {
                    if m < 10 {
                        out.push("num-0".into());
                    }
                    out.extend(number(i64::from(m), lang));
                    out.push("minute".into());
                }
            }
        }
    }
    out
}

/// Every fragment a language needs for the functions above: checked when
/// the config loads, so a missing file is a config error, not silence in
/// the middle of a sentence.
pub fn required_fragments(lang: Lang) -> Vec<String> {
    let mut v: Vec<String> = (0..10).map(|d| format!("digit-{d}")).collect();
    v.extend(["star", "hash", "minus"].map(String::from));
    v.extend((1..=12).map(|m| format!("month-{m}")));
    v.extend((1..=31).map(|d| format!("day-{d}")));
    v.extend((1..=7).map(|d| format!("weekday-{d}")));
    match lang {
        Lang::En => {
            v.extend((0..20).map(|n| format!("num-{n}")));
            v.extend((2..10).map(|t| format!("num-{}", t * 10)));
            v.extend(
                [
                    "hundred", "thousand", "million", "dollar", "dollars", "cent", "cents", "and",
                    "oclock", "oh", "am", "pm",
                ]
                .map(String::from),
            );
        }
        Lang::Zh => {
            v.extend((0..10).map(|n| format!("num-{n}")));
            v.extend(
                [
                    "num-2-alt",
                    "ten",
                    "hundred",
                    "thousand",
                    "ten-thousand",
                    "hundred-million",
                    "yuan",
                    "jiao",
                    "fen",
                    "year",
                    "am",
                    "pm",
                    "hour",
                    "minute",
                    "half",
                    "whole-hour",
                ]
                .map(String::from),
            );
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fragments as readable words, to compare against how people say it.
    fn words(v: Vec<String>, lang: Lang) -> String {
        let zh = |s: &str| -> String {
            let digits = ["零", "一", "二", "三", "四", "五", "六", "七", "八", "九"];
            if let Some(d) = s.strip_prefix("num-") {
                if d == "2-alt" {
                    return "两".into();
                }
                return digits[d.parse::<usize>().unwrap()].into();
            }
            match s {
                "ten" => "十",
                "hundred" => "百",
                "thousand" => "千",
                "ten-thousand" => "万",
                "hundred-million" => "亿",
                "yuan" => "元",
                "jiao" => "角",
                "fen" => "分",
                "year" => "年",
                "am" => "上午",
                "pm" => "下午",
                "hour" => "点",
                "minute" => "分",
                "half" => "半",
                "whole-hour" => "整",
                "minus" => "负",
                other => return format!("<{other}>"),
            }
            .into()
        };
        match lang {
            Lang::En => v.join(" "),
            Lang::Zh => v.iter().map(|s| zh(s)).collect(),
        }
    }

    #[test]
    fn english_numbers() {
        let en = |n| words(number(n, Lang::En), Lang::En);
        assert_eq!(en(0), "num-0");
        assert_eq!(en(7), "num-7");
        assert_eq!(en(15), "num-15");
        assert_eq!(en(40), "num-40");
        assert_eq!(en(42), "num-40 num-2");
        assert_eq!(en(100), "num-1 hundred");
        assert_eq!(en(305), "num-3 hundred num-5");
        assert_eq!(en(1_000_019), "num-1 million num-19");
        assert_eq!(en(21_500), "num-20 num-1 thousand num-5 hundred");
        assert_eq!(en(-3), "minus num-3");
    }

    #[test]
    fn chinese_numbers() {
        let zh = |n| words(number(n, Lang::Zh), Lang::Zh);
        assert_eq!(zh(0), "零");
        assert_eq!(zh(10), "十");
        assert_eq!(zh(15), "十五");
        assert_eq!(zh(20), "二十");
        assert_eq!(zh(110), "一百一十");
        assert_eq!(zh(105), "一百零五");
        assert_eq!(zh(200), "两百");
        assert_eq!(zh(2000), "两千");
        assert_eq!(zh(1001), "一千零一");
        assert_eq!(zh(1010), "一千零一十");
        assert_eq!(zh(10_050), "一万零五十");
        assert_eq!(zh(20_000), "两万");
        assert_eq!(zh(100_000), "十万");
        assert_eq!(zh(120_000), "十二万");
        assert_eq!(zh(1_000_005), "一百万零五");
        assert_eq!(zh(100_000_005), "一亿零五");
        assert_eq!(zh(123_456_789), "一亿两千三百四十五万六千七百八十九");
        assert_eq!(zh(-12), "负十二");
    }

    #[test]
    fn money_in_both_languages() {
        assert_eq!(
            money(1250, Lang::En).join(" "),
            "num-12 dollars and num-50 cents"
        );
        assert_eq!(money(100, Lang::En).join(" "), "num-1 dollar");
        assert_eq!(money(1, Lang::En).join(" "), "num-1 cent");
        assert_eq!(words(money(1250, Lang::Zh), Lang::Zh), "十二元五角");
        assert_eq!(words(money(1205, Lang::Zh), Lang::Zh), "十二元零五分");
        assert_eq!(words(money(5, Lang::Zh), Lang::Zh), "五分");
        assert_eq!(words(money(0, Lang::Zh), Lang::Zh), "零元");
        assert_eq!(parse_money("12.5"), Some(1250));
        assert_eq!(parse_money("-0.05"), Some(-5));
        assert_eq!(parse_money("12.555"), None);
        assert_eq!(parse_money("1x"), None);
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(
            date(2026, 11, 23, Some(1), Lang::En).join(" "),
            "weekday-1 month-11 day-23 num-20 num-20 num-6"
        );
        assert_eq!(
            date(2005, 1, 2, None, Lang::En).join(" "),
            "month-1 day-2 num-2 thousand num-5"
        );
        assert_eq!(
            date(1905, 1, 2, None, Lang::En).join(" "),
            "month-1 day-2 num-19 oh num-5"
        );
        assert_eq!(
            date(2026, 11, 23, None, Lang::Zh).join(" "),
            "num-2 num-0 num-2 num-6 year month-11 day-23"
        );
        assert_eq!(time(9, 5, Lang::En).join(" "), "num-9 oh num-5 am");
        assert_eq!(time(0, 0, Lang::En).join(" "), "num-12 oclock am");
        assert_eq!(time(14, 45, Lang::En).join(" "), "num-2 num-40 num-5 pm");
        assert_eq!(words(time(14, 30, Lang::Zh), Lang::Zh), "下午两点半");
        assert_eq!(words(time(9, 5, Lang::Zh), Lang::Zh), "上午九点零五分");
        assert_eq!(words(time(20, 0, Lang::Zh), Lang::Zh), "下午八点整");
    }

    #[test]
    fn every_fragment_said_is_in_the_required_set() {
        for lang in Lang::ALL {
            let req = required_fragments(lang);
            let mut said = Vec::new();
            for n in [
                0,
                1,
                2,
                7,
                10,
                12,
                19,
                20,
                99,
                100,
                101,
                2000,
                10_050,
                999_999_999,
            ] {
                said.extend(number(n, lang));
                said.extend(number(-n, lang));
                said.extend(money(n, lang));
            }
            said.extend(digits("0123456789*#"));
            for h in 0..24 {
                for m in [0, 5, 30, 59] {
                    said.extend(time(h, m, lang));
                }
            }
            said.extend(date(1999, 12, 31, Some(7), lang));
            said.extend(date(2026, 1, 1, Some(1), lang));
            for s in said {
                assert!(req.contains(&s), "{lang:?}: {s} not in the required set");
            }
        }
    }
}

//! The rules the box (`callboxd`), provisioning (`callbox-provision`) and
//! headquarters (`callbox-hq`) share over the wire.
//!
//! Each tool used to carry its own copy of these rules, and the copies
//! drifted: a site id `..` was taken by the box and by provisioning but
//! refused by headquarters, so that box could never report in. Whatever one
//! side accepts here the others accept too. The crate has no dependencies
//! so every tool, down to the box image, can take it.

/// What [`valid_id`] accepts, worded to finish an error message:
/// "site id `x` must be …".
/// A password a person can read off a label and type: groups of four
/// from an alphabet without look-alikes (no 0/O, 1/l/I), one character per
/// random byte of `random` (four bytes a group). The box's one-time
/// console passwords (`callboxd console reset-admin`, provisioning's
/// bundles) have this form.
pub fn readable_password(random: &[u8]) -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let chars: Vec<char> = random
        .iter()
        // 256 % 31 leaves a bias under 1 %: fine for a one-time password.
        .map(|x| ALPHABET[usize::from(*x) % ALPHABET.len()] as char)
        .collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

pub const ID_RULE: &str = "1-64 letters, digits, `-`, `_` or `.`, starting with a letter or digit";

/// Longest id, in bytes (every accepted character is one byte).
pub const MAX_ID_LEN: usize = 64;

/// Whether `s` may be a site, box, line, request or recording id: 1-64 ASCII
/// letters, digits, `-`, `_` and `.`, the first a letter or digit.
///
/// An id becomes one MQTT topic level (`{root}/{site}/{box}/…`), so it must
/// not hold the separator `/` or the wildcards `+` and `#`. It also becomes
/// a file or directory name (headquarters files each box's recordings in a
/// directory named after the box, each file after its recording id), so
/// `.` and `..` would climb out of the directory and a leading dot would
/// hide the entry; a
/// leading `-` would be read as an option by the tools that take ids on
/// their command line. The length bound keeps topics and paths short.
pub fn valid_id(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.len() <= MAX_ID_LEN
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_ids_are_accepted() {
        for good in [
            "box-0001",
            "branch-7",
            "0193a1b2.c_d",
            "hq-1f2e3d4c-00000001",
            "0193a1b2-7c3d-7e4f-8a5b-6c7d8e9f0a1b",
            "t1",
            "a..b",
            "x.",
            "A",
            &"x".repeat(MAX_ID_LEN),
        ] {
            assert!(valid_id(good), "{good:?}");
        }
    }

    #[test]
    fn ids_that_could_escape_a_directory_are_refused() {
        for bad in ["", ".", "..", "...", ".hidden", "a/b", "../etc", "/"] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn topic_separators_and_wildcards_are_refused() {
        for bad in ["a/b", "+", "a+b", "#", "a#", "$SYS", "a b", "a\0b"] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn ids_that_read_as_options_or_are_not_ascii_are_refused() {
        for bad in ["-", "-rf", "--site", "_x", "é", "boxé", "a\u{200b}"] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn ids_over_64_bytes_are_refused() {
        assert!(!valid_id(&"x".repeat(MAX_ID_LEN + 1)));
    }

    #[test]
    fn the_rule_headquarters_had_still_holds() {
        // The assertions of hq's own copy, kept when it became this one.
        assert!(valid_id("box-0001"));
        assert!(valid_id("0193a1b2.c_d"));
        for bad in ["", ".", "..", "a/b", "a+b", "a b", &"x".repeat(65)] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }
}

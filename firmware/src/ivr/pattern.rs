//! Digit patterns, in the notation PBX admins already know from dial plans.
//!
//! A pattern is matched against a whole string of keys (a caller number, a
//! dialled number, digits a caller keyed in):
//!
//! | in the pattern | matches                                   |
//! |----------------|-------------------------------------------|
//! | `0`-`9` `*` `#` `+` | that character                        |
//! | `X`            | any digit `0`-`9`                         |
//! | `Z`            | any digit `1`-`9`                         |
//! | `N`            | any digit `2`-`9`                         |
//! | `[1-5]`, `[137]` | one digit from the set (ranges allowed) |
//! | `.` (last)     | one or more of anything                   |
//! | `!` (last)     | zero or more of anything                  |
//!
//! `138XXXXXXXX` is any 11-digit number starting 138; `010.` anything
//! starting 010. Patterns are compiled when the config loads, so a typo is
//! a config error, never a caller matched by surprise.

use std::fmt;

/// Why a pattern does not compile; every variant names the pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Nothing written.
    #[error("an empty pattern matches nothing")]
    Empty,
    /// `.` or `!` before the end.
    #[error("`{c}` in pattern `{text}` may only come last (it matches the rest)")]
    TailNotLast {
        /// `.` or `!`.
        c: char,
        /// The pattern.
        text: String,
    },
    /// `[` without `]`.
    #[error("`[` in pattern `{text}` has no closing `]`")]
    Unclosed {
        /// The pattern.
        text: String,
    },
    /// Not a digit inside `[...]`.
    #[error("`{c}` inside `[...]` in pattern `{text}`: only digits and ranges like 1-5")]
    NotADigit {
        /// The character.
        c: char,
        /// The pattern.
        text: String,
    },
    /// A range like `5-1` or `1-a`.
    #[error("bad range `{from}-{to}` in pattern `{text}`")]
    BadRange {
        /// Its start.
        from: char,
        /// Its end.
        to: char,
        /// The pattern.
        text: String,
    },
    /// `[]`.
    #[error("empty `[]` in pattern `{text}`")]
    EmptySet {
        /// The pattern.
        text: String,
    },
    /// A character patterns do not have.
    #[error(
        "`{c}` is not allowed in pattern `{text}`; use digits, * # +, X Z N, [1-5], and . or ! at the end"
    )]
    NotAllowed {
        /// The character.
        c: char,
        /// The pattern.
        text: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    Lit(char),
    /// Allowed digits as a bit set over `0`-`9`.
    Set(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    Exact,
    OneOrMore,
    ZeroOrMore,
}

/// A compiled digit pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    atoms: Vec<Atom>,
    tail: Tail,
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({})", self.text)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn digit_bits(lo: char, hi: char) -> u16 {
    let (lo, hi) = (lo as u32 - '0' as u32, hi as u32 - '0' as u32);
    (lo..=hi).fold(0, |b, d| b | (1 << d))
}

impl Pattern {
    /// Compiles `text`; the error says which character is wrong and why.
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        let chars: Vec<char> = text.chars().collect();
        let owned = || text.to_string();
        let mut atoms = Vec::new();
        let mut tail = Tail::Exact;
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let last = i + 1 == chars.len();
            match c {
                '0'..='9' | '*' | '#' | '+' => atoms.push(Atom::Lit(c)),
                'X' | 'x' => atoms.push(Atom::Set(digit_bits('0', '9'))),
                'Z' | 'z' => atoms.push(Atom::Set(digit_bits('1', '9'))),
                'N' | 'n' => atoms.push(Atom::Set(digit_bits('2', '9'))),
                '.' | '!' if last => {
                    tail = if c == '.' {
                        Tail::OneOrMore
                    } else {
                        Tail::ZeroOrMore
                    };
                }
                '.' | '!' => {
                    return Err(PatternError::TailNotLast { c, text: owned() });
                }
                '[' => {
                    let close = chars[i..]
                        .iter()
                        .position(|&c| c == ']')
                        .ok_or_else(|| PatternError::Unclosed { text: owned() })?
                        + i;
                    let set = &chars[i + 1..close];
                    let mut bits = 0u16;
                    let mut j = 0;
                    while j < set.len() {
                        let a = set[j];
                        if !a.is_ascii_digit() {
                            return Err(PatternError::NotADigit {
                                c: a,
                                text: owned(),
                            });
                        }
                        if j + 2 < set.len() && set[j + 1] == '-' {
                            let b = set[j + 2];
                            if !b.is_ascii_digit() || b < a {
                                return Err(PatternError::BadRange {
                                    from: a,
                                    to: b,
                                    text: owned(),
                                });
                            }
                            bits |= digit_bits(a, b);
                            j += 3;
                        } else {
                            bits |= digit_bits(a, a);
                            j += 1;
                        }
                    }
                    if bits == 0 {
                        return Err(PatternError::EmptySet { text: owned() });
                    }
                    atoms.push(Atom::Set(bits));
                    i = close;
                }
                other => {
                    return Err(PatternError::NotAllowed {
                        c: other,
                        text: owned(),
                    });
                }
            }
            i += 1;
        }
        Ok(Pattern {
            text: text.to_string(),
            atoms,
            tail,
        })
    }

    /// Whether `s` matches the whole pattern.
    pub fn matches(&self, s: &str) -> bool {
        let mut chars = s.chars();
        for atom in &self.atoms {
            let Some(c) = chars.next() else { return false };
            let ok = match *atom {
                Atom::Lit(l) => c == l,
                Atom::Set(bits) => c.is_ascii_digit() && bits & (1 << (c as u32 - '0' as u32)) != 0,
            };
            if !ok {
                return false;
            }
        }
        let rest = chars.count();
        match self.tail {
            Tail::Exact => rest == 0,
            Tail::OneOrMore => rest > 0,
            Tail::ZeroOrMore => true,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Pattern::parse(p).unwrap().matches(s)
    }

    #[test]
    fn matching() {
        assert!(m("138XXXXXXXX", "13812345678"));
        assert!(!m("138XXXXXXXX", "1381234567"));
        assert!(!m("138XXXXXXXX", "138123456789"));
        assert!(m("010.", "0105551234"));
        assert!(!m("010.", "010"));
        assert!(m("010!", "010"));
        assert!(m("[1-3]N", "29"));
        assert!(!m("[1-3]N", "41"));
        assert!(!m("[1-3]N", "21"));
        assert!(m("[137]Z", "71"));
        assert!(m("*72", "*72"));
        assert!(!m("X", "*"));
        assert!(m("+86X.", "+8610"));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        for (p, want) in [
            ("", "empty"),
            ("12.3", "may only come last"),
            ("[12", "no closing"),
            ("[a]", "only digits"),
            ("[5-1]", "bad range"),
            ("12a", "`a` is not allowed"),
            ("[]", "empty `[]`"),
        ] {
            let e = Pattern::parse(p).unwrap_err().to_string();
            assert!(e.contains(want), "{p}: {e}");
        }
    }
}

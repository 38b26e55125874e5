//! SRTP (RFC 3711) with keys exchanged in SDP (SDES, RFC 4568), for the
//! suite every SIP phone and carrier that encrypts offers:
//! `AES_CM_128_HMAC_SHA1_80` (AES-128 in counter mode, 80-bit HMAC-SHA1
//! tag). Written here because no maintained pure-Rust crate does SDES
//! SRTP without pulling a WebRTC stack; the ciphers are RustCrypto's.
//!
//! A [`Context`] protects what the box sends with its own key, another
//! unprotects what the far end sends with the key from its SDP.

use std::fmt::Write as _;

use aes::Aes128;
use aes::cipher::{KeyIvInit, StreamCipher};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The suite's name in `a=crypto`.
pub const SUITE: &str = "AES_CM_128_HMAC_SHA1_80";
/// Bytes of the authentication tag appended to each packet.
const TAG: usize = 10;
/// Packets behind the newest one still accepted (replay window).
const WINDOW: u64 = 64;

type Ctr = ctr::Ctr128BE<Aes128>;

/// A master key and salt, as carried in `inline:`.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    key: [u8; 16],
    salt: [u8; 14],
}

impl std::fmt::Debug for MasterKey {
    // Keys stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A fresh random key (the kernel's generator).
    pub fn random() -> std::io::Result<MasterKey> {
        use std::io::Read;
        let mut b = [0u8; 30];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
        Ok(MasterKey::from_bytes(&b))
    }

    fn from_bytes(b: &[u8; 30]) -> MasterKey {
        let mut key = [0u8; 16];
        let mut salt = [0u8; 14];
        key.copy_from_slice(&b[..16]);
        salt.copy_from_slice(&b[16..]);
        MasterKey { key, salt }
    }

    /// The key of an `a=crypto` line's attribute value (`1
    /// AES_CM_128_HMAC_SHA1_80 inline:…[|lifetime][|mki:len]`), with its
    /// tag; `None` for another suite or a malformed key.
    pub fn from_crypto(value: &str) -> Option<(u32, MasterKey)> {
        let mut parts = value.split_whitespace();
        let tag = parts.next()?.parse().ok()?;
        if !parts.next()?.eq_ignore_ascii_case(SUITE) {
            return None;
        }
        let params = parts.next()?;
        let inline = params.strip_prefix("inline:")?;
        let b64 = inline.split('|').next()?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64))
            .ok()?;
        let b: [u8; 30] = raw.try_into().ok()?;
        Some((tag, MasterKey::from_bytes(&b)))
    }

    /// The `a=crypto` attribute value offering or answering this key.
    pub fn crypto_attr(&self, tag: u32) -> String {
        let mut b = [0u8; 30];
        b[..16].copy_from_slice(&self.key);
        b[16..].copy_from_slice(&self.salt);
        let mut s = String::new();
        let _ = write!(
            s,
            "{tag} {SUITE} inline:{}",
            base64::engine::general_purpose::STANDARD.encode(b)
        );
        s
    }
}

/// Why a packet was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtpError {
    /// Shorter than a header and a tag.
    Short,
    /// The tag does not match: forged, damaged, or another key.
    Auth,
    /// Seen before, or too old.
    Replay,
}

/// One direction's SRTP state (RFC 3711 §3.2).
pub struct Context {
    cipher_key: [u8; 16],
    salt: [u8; 14],
    auth: Hmac<Sha1>,
    /// Rollover counter: how often the sequence number wrapped.
    roc: u32,
    /// Highest sequence number seen (receiving) or sent.
    last_seq: Option<u16>,
    /// Which of the last [`WINDOW`] indices were received.
    seen: u64,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("roc", &self.roc)
            .finish_non_exhaustive()
    }
}

/// AES-CM keystream of `out.len()` bytes for `iv` under `key`.
fn keystream(key: &[u8; 16], iv: &[u8; 16], out: &mut [u8]) {
    out.fill(0);
    let mut c = Ctr::new(key.into(), iv.into());
    c.apply_keystream(out);
}

/// RFC 3711 §4.3.1 with a key derivation rate of 0: the session key for
/// `label` (0 cipher key, 1 auth key, 2 salt).
fn derive(master: &MasterKey, label: u8, out: &mut [u8]) {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(&master.salt);
    iv[7] ^= label;
    keystream(&master.key, &iv, out);
}

/// The RTP header's length (fixed part, CSRCs, extension), if whole.
fn header_len(pkt: &[u8]) -> Option<usize> {
    if pkt.len() < 12 {
        return None;
    }
    let mut n = 12 + 4 * usize::from(pkt[0] & 0x0f);
    if pkt[0] & 0x10 != 0 {
        let ext = pkt.get(n + 2..n + 4)?;
        n += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    (n <= pkt.len()).then_some(n)
}

impl Context {
    /// A context for packets under `master`.
    pub fn new(master: &MasterKey) -> Context {
        let mut cipher_key = [0u8; 16];
        let mut auth_key = [0u8; 20];
        let mut salt = [0u8; 14];
        derive(master, 0, &mut cipher_key);
        derive(master, 1, &mut auth_key);
        derive(master, 2, &mut salt);
        Context {
            cipher_key,
            salt,
            auth: <Hmac<Sha1> as Mac>::new_from_slice(&auth_key).expect("HMAC takes any key"),
            roc: 0,
            last_seq: None,
            seen: 0,
        }
    }

    fn crypt(&self, ssrc: u32, index: u64, payload: &mut [u8]) {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        for (i, b) in ssrc.to_be_bytes().iter().enumerate() {
            iv[4 + i] ^= b;
        }
        for (i, b) in index.to_be_bytes()[2..].iter().enumerate() {
            iv[8 + i] ^= b;
        }
        let mut c = Ctr::new((&self.cipher_key).into(), (&iv).into());
        c.apply_keystream(payload);
    }

    fn tag(&self, authed: &[u8], roc: u32) -> [u8; TAG] {
        let mut m = self.auth.clone();
        m.update(authed);
        m.update(&roc.to_be_bytes());
        let full = m.finalize().into_bytes();
        let mut t = [0u8; TAG];
        t.copy_from_slice(&full[..TAG]);
        t
    }

    /// Encrypts the RTP packet in `pkt` in place and appends its tag.
    pub fn protect(&mut self, pkt: &mut Vec<u8>) {
        let Some(h) = header_len(pkt) else { return };
        let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
        let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
        if let Some(last) = self.last_seq
            && seq < last
            && last - seq > 0x8000
        {
            self.roc = self.roc.wrapping_add(1);
        }
        self.last_seq = Some(seq);
        let index = (u64::from(self.roc) << 16) | u64::from(seq);
        self.crypt(ssrc, index, &mut pkt[h..]);
        let t = self.tag(pkt, self.roc);
        pkt.extend_from_slice(&t);
    }

    /// Checks and decrypts the SRTP packet in `pkt` in place; the RTP
    /// packet's length on success.
    pub fn unprotect(&mut self, pkt: &mut [u8]) -> Result<usize, SrtpError> {
        if pkt.len() < 12 + TAG {
            return Err(SrtpError::Short);
        }
        let body = pkt.len() - TAG;
        let h = header_len(&pkt[..body]).ok_or(SrtpError::Short)?;
        let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
        let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
        // RFC 3711 §3.3.1: the rollover counter this packet was sent with.
        let roc = match self.last_seq {
            None => self.roc,
            Some(s) if s < 0x8000 => {
                if seq > s && seq - s > 0x8000 {
                    self.roc.wrapping_sub(1)
                } else {
                    self.roc
                }
            }
            Some(s) => {
                if s - 0x8000 > seq {
                    self.roc.wrapping_add(1)
                } else {
                    self.roc
                }
            }
        };
        let index = (u64::from(roc) << 16) | u64::from(seq);
        let newest = self
            .last_seq
            .map(|s| (u64::from(self.roc) << 16) | u64::from(s));
        if let Some(n) = newest
            && index <= n
        {
            let behind = n - index;
            if behind >= WINDOW || self.seen & (1 << behind) != 0 {
                return Err(SrtpError::Replay);
            }
        }
        let want = self.tag(&pkt[..body], roc);
        // Compared in constant time: a forger learns nothing from timing.
        let diff = want
            .iter()
            .zip(&pkt[body..])
            .fold(0u8, |d, (a, b)| d | (a ^ b));
        if diff != 0 {
            return Err(SrtpError::Auth);
        }
        match newest {
            Some(n) if index <= n => self.seen |= 1 << (n - index),
            Some(n) => {
                let ahead = index - n;
                self.seen = if ahead >= WINDOW {
                    1
                } else {
                    (self.seen << ahead) | 1
                };
                self.roc = roc;
                self.last_seq = Some(seq);
            }
            None => {
                self.seen = 1;
                self.roc = roc;
                self.last_seq = Some(seq);
            }
        }
        self.crypt(ssrc, index, &mut pkt[h..body]);
        Ok(body)
    }
}

/// AES-128 of one block, for the known-answer test of the cipher itself.
#[cfg(test)]
fn aes_block(key: &[u8; 16], block: &[u8; 16]) -> [u8; 16] {
    use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
    let c = Aes128::new(key.into());
    let mut b = GenericArray::clone_from_slice(block);
    c.encrypt_block(&mut b);
    b.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn aes_and_the_counter_mode_keystream_match_rfc_3711_b2() {
        // FIPS-197's AES-128 example first.
        let k: [u8; 16] = hex("000102030405060708090a0b0c0d0e0f").try_into().unwrap();
        let p: [u8; 16] = hex("00112233445566778899aabbccddeeff").try_into().unwrap();
        assert_eq!(
            aes_block(&k, &p).to_vec(),
            hex("69c4e0d86a7b0430d8cdb78070b4c55a")
        );
        let key: [u8; 16] = hex("2B7E151628AED2A6ABF7158809CF4F3C").try_into().unwrap();
        let iv: [u8; 16] = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000").try_into().unwrap();
        let mut out = [0u8; 48];
        keystream(&key, &iv, &mut out);
        assert_eq!(
            out.to_vec(),
            hex(
                "E03EAD0935C95E80E166B16DD92B4EB4D23513162B02D0F72A43A2FE4A5F97AB41E95B3BB0A2E8DD477901E4FCA894C0"
            )
        );
    }

    #[test]
    fn session_keys_are_derived_as_in_rfc_3711_b3() {
        let master = MasterKey {
            key: hex("E1F97A0D3E018BE0D64FA32C06DE4139").try_into().unwrap(),
            salt: hex("0EC675AD498AFEEBB6960B3AABE6").try_into().unwrap(),
        };
        let mut k = [0u8; 16];
        derive(&master, 0, &mut k);
        assert_eq!(k.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut s = [0u8; 14];
        derive(&master, 2, &mut s);
        assert_eq!(s.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        let mut a = [0u8; 20];
        derive(&master, 1, &mut a);
        assert_eq!(a.to_vec(), hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"));
    }

    fn packet(seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 8];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn what_one_side_protects_the_other_unprotects_once_across_a_wrap() {
        let key = MasterKey::random().unwrap();
        let (mut tx, mut rx) = (Context::new(&key), Context::new(&key));
        for seq in (65530..=65535).chain(0..5) {
            let plain = packet(seq, &[seq as u8; 160]);
            let mut p = plain.clone();
            tx.protect(&mut p);
            assert_eq!(p.len(), plain.len() + TAG);
            assert_ne!(p[12..172], plain[12..], "payload encrypted");
            let mut again = p.clone();
            let n = rx.unprotect(&mut p).unwrap();
            assert_eq!(&p[..n], &plain[..], "seq {seq}");
            assert_eq!(rx.unprotect(&mut again), Err(SrtpError::Replay));
        }
        assert_eq!(rx.roc, 1, "the wrap was followed");
        // A flipped bit, another key, a runt: refused.
        let mut p = packet(5, &[1; 160]);
        tx.protect(&mut p);
        p[20] ^= 1;
        assert_eq!(rx.unprotect(&mut p), Err(SrtpError::Auth));
        let mut p = packet(6, &[1; 160]);
        Context::new(&MasterKey::random().unwrap()).protect(&mut p);
        assert_eq!(rx.unprotect(&mut p), Err(SrtpError::Auth));
        assert_eq!(rx.unprotect(&mut [0u8; 15]), Err(SrtpError::Short));
        // A packet seen before, even re-protected, is not taken again.
        let mut late = packet(3, &[3; 160]);
        let mut sender = Context::new(&key);
        sender.roc = 1;
        sender.protect(&mut late);
        assert!(
            rx.unprotect(&mut late.clone()).is_err(),
            "3 was seen already"
        );
    }

    #[test]
    fn crypto_attributes_round_trip_and_other_suites_are_not_taken() {
        let key = MasterKey::random().unwrap();
        let attr = key.crypto_attr(1);
        assert!(attr.starts_with("1 AES_CM_128_HMAC_SHA1_80 inline:"));
        assert_eq!(MasterKey::from_crypto(&attr), Some((1, key.clone())));
        let with_lifetime = format!("{}|2^31|1:1", key.crypto_attr(7));
        assert_eq!(MasterKey::from_crypto(&with_lifetime), Some((7, key)));
        assert_eq!(
            MasterKey::from_crypto("1 AES_CM_128_HMAC_SHA1_32 inline:AAAA"),
            None
        );
        assert_eq!(
            MasterKey::from_crypto("1 AES_CM_128_HMAC_SHA1_80 inline:short"),
            None
        );
    }
}

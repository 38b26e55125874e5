//! Secrets kept as argon2id hashes (voicemail PINs, web passwords) and
//! the randomness behind salts, one-time passwords and session tokens.

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};

/// Fills `buf` from the kernel's random source.
pub fn random(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// `n` random bytes as lowercase hex (tokens).
pub fn random_hex(n: usize) -> std::io::Result<String> {
    let mut b = vec![0u8; n];
    random(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A one-time password of `groups` groups of four
/// ([`callbox_contract::readable_password`]).
pub fn readable_password(groups: usize) -> std::io::Result<String> {
    let mut b = vec![0u8; groups * 4];
    random(&mut b)?;
    Ok(callbox_contract::readable_password(&b))
}

/// `secret` hashed with argon2id and a fresh random salt (PHC string).
/// Slow on purpose (tens of milliseconds): call it off the runtime.
pub fn hash(secret: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    random(&mut salt).map_err(|e| format!("no randomness for the salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `secret` is the one hashed in `hash`. Slow on purpose: call it
/// off the runtime.
pub fn matches(hash: &str, secret: &str) -> bool {
    argon2::PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(secret.as_bytes(), &h)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_passwords_read_well() {
        let h = hash("s3cret-pass").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(matches(&h, "s3cret-pass"));
        assert!(!matches(&h, "s3cret-pasS"));
        assert!(!matches("not a hash", "x"));
        let p = readable_password(3).unwrap();
        assert_eq!(p.len(), 14, "{p}");
        assert!(!p.contains(['0', 'o', '1', 'l', 'i']), "{p}");
        assert_ne!(p, readable_password(3).unwrap());
        assert_eq!(random_hex(16).unwrap().len(), 32);
    }
}

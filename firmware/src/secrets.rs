//! Secrets kept as argon2id hashes (voicemail PINs, console passwords) and
//! the randomness behind salts, one-time passwords and session tokens: the
//! web crate's, which headquarters' dashboard uses too.

pub use callbox_web::secret::{hash, matches, random, random_hex, readable_password};

//! The web plumbing the box's console (`callbox-firmware`'s `console`)
//! and headquarters' dashboard (`callbox-hq serve`) share, so both answer
//! a browser the same careful way:
//!
//! - [`secret`]: argon2id password hashes and the randomness behind
//!   salts, tokens and one-time passwords.
//! - [`tls`]: HTTPS listeners whose handshakes cannot hold up the others,
//!   and the plain-HTTP redirect.
//! - [`session`]: sessions in memory (idle and absolute limits), the
//!   failed-login limit per address, the session cookie and CSRF checks.
//! - [`http`]: JSON refusals, security headers on every answer, blocking
//!   work taken in turns.
//!
//! What users exist and what each role may do stays with each server.

pub mod http;
pub mod secret;
pub mod session;
pub mod tls;

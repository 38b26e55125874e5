//! `callboxd console info` and `callboxd console reset-admin`: what a
//! technician at the box needs to reach its web console.

use std::path::{Path, PathBuf};

use callbox_firmware::config::SiteConfig;
use callbox_firmware::console;

use crate::Failure;
use callbox_firmware::config::DEFAULT_DATA_DIR;

fn site(config: &Path, data: Option<PathBuf>) -> Result<(SiteConfig, PathBuf), Failure> {
    let site = SiteConfig::load(config).map_err(Failure::Config)?;
    let data = data
        .or_else(|| site.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    Ok((site, data))
}

/// Where the console listens and the fingerprint of its certificate (the
/// box's own is made now if the daemon has not made it yet).
pub fn info(config: &Path, data: Option<PathBuf>) -> Result<(), Failure> {
    let (site, data) = site(config, data)?;
    let Some(c) = &site.console else {
        println!(
            "the web console is off: {} has no [console]",
            config.display()
        );
        return Ok(());
    };
    let id = console::identity(c, &data).map_err(Failure::Other)?;
    let fp = callbox_firmware::certs::fingerprint(&id.cert_pem).unwrap_or_default();
    for a in &c.listen {
        println!("https://{a}/");
    }
    for a in &c.redirect {
        println!("http://{a}/ (redirects to HTTPS)");
    }
    match &c.cert {
        Some((cert, _)) => println!("certificate: {}", cert.display()),
        None => println!(
            "certificate: self-signed, {}",
            data.join(console::CERT_DIR)
                .join(format!("{}.crt", console::CERT_NAME))
                .display()
        ),
    }
    println!("SHA-256 fingerprint: {fp}");
    if data.join(console::OTP_FILE).exists() {
        println!("a one-time admin password is waiting to be used (log in as `admin`)");
    }
    Ok(())
}

/// A new one-time password for `admin`, printed once.
pub fn reset_admin(config: &Path, data: Option<PathBuf>) -> Result<(), Failure> {
    let (_, data) = site(config, data)?;
    let pw = console::reset_admin(&data).map_err(Failure::Other)?;
    println!("{pw}");
    eprintln!(
        "one-time password for `admin`: log in with it and choose your own; it is shown only now"
    );
    Ok(())
}

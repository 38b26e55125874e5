//! The fleet CA and box identities: key pairs and certificates made with
//! rcgen (ECDSA P-256), private keys written 0600.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// File names inside a CA directory.
pub const CA_CERT: &str = "ca.pem";
/// The CA's private key (0600).
pub const CA_KEY: &str = "ca.key";

/// Writes `bytes` to `path` with `mode`, creating or replacing it; the mode
/// is forced even if the file existed.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set mode of {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `ca init`: a new self-signed fleet CA in `dir`; never overwrites one.
pub fn ca_init(dir: &Path, name: &str, days: i64) -> Result<()> {
    let (cert, key) = (dir.join(CA_CERT), dir.join(CA_KEY));
    for p in [&cert, &key] {
        if p.exists() {
            bail!(
                "{} already exists: refusing to overwrite a fleet CA (every box it signed would be orphaned)",
                p.display()
            );
        }
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let kp = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(days);
    let c = p.self_signed(&kp)?;
    write_file(&key, kp.serialize_pem().as_bytes(), 0o600)?;
    write_file(&cert, c.pem().as_bytes(), 0o644)?;
    Ok(())
}

/// `ca init --existing`: adopts an existing CA certificate and key after
/// checking that they belong together and the certificate is a CA.
pub fn ca_adopt(dir: &Path, cert_path: &Path, key_path: &Path) -> Result<()> {
    let cert = fs::read_to_string(cert_path)
        .with_context(|| format!("cannot read CA certificate {}", cert_path.display()))?;
    let key = fs::read_to_string(key_path)
        .with_context(|| format!("cannot read CA key {}", key_path.display()))?;
    let kp = KeyPair::from_pem(&key)
        .with_context(|| format!("{}: not a PEM private key", key_path.display()))?;
    let der = crate::verify::pem_cert(cert.as_bytes())
        .with_context(|| format!("{}: not a PEM certificate", cert_path.display()))?;
    let (_, x) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| anyhow::anyhow!("{}: bad certificate: {e}", cert_path.display()))?;
    if !x.is_ca() {
        bail!("{}: not a CA certificate", cert_path.display());
    }
    if x.public_key().subject_public_key.data.as_ref() != kp.public_key_raw() {
        bail!(
            "{} and {} do not go together: the key is not the certificate's",
            cert_path.display(),
            key_path.display()
        );
    }
    for p in [dir.join(CA_CERT), dir.join(CA_KEY)] {
        if p.exists() {
            bail!(
                "{} already exists: refusing to overwrite a fleet CA",
                p.display()
            );
        }
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    write_file(&dir.join(CA_KEY), key.as_bytes(), 0o600)?;
    write_file(&dir.join(CA_CERT), cert.as_bytes(), 0o644)?;
    Ok(())
}

/// A box identity: PEM certificate and PKCS#8 PEM key.
#[derive(Debug)]
pub struct Identity {
    /// The CA certificate (PEM) that signed it.
    pub ca_pem: String,
    /// The box certificate (PEM).
    pub cert_pem: String,
    /// The box private key (PKCS#8 PEM).
    pub key_pem: String,
}

/// Issues a box certificate (CN = box, O = site, clientAuth) from the CA in
/// `ca_dir`.
pub fn issue(ca_dir: &Path, site: &str, box_id: &str, days: i64) -> Result<Identity> {
    let (cp, kp) = (ca_dir.join(CA_CERT), ca_dir.join(CA_KEY));
    let ca_pem = fs::read_to_string(&cp).with_context(|| {
        format!(
            "missing CA: cannot read {} (run `callbox-provision ca init --dir {}` first)",
            cp.display(),
            ca_dir.display()
        )
    })?;
    let ca_key = fs::read_to_string(&kp)
        .with_context(|| format!("missing CA key: cannot read {}", kp.display()))?;
    let ca_key = KeyPair::from_pem(&ca_key)
        .with_context(|| format!("{}: not a PEM private key", kp.display()))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)
        .with_context(|| format!("{}: not a usable CA certificate", cp.display()))?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, box_id);
    p.distinguished_name.push(DnType::OrganizationName, site);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(days);
    let cert = p.signed_by(&key, &issuer)?;
    Ok(Identity {
        ca_pem,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

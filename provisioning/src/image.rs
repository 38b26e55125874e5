//! Putting a bundle on the boot partition: `inject` edits an image file
//! offline (MBR partition table, FAT through the `fatfs` crate over a window
//! of the file — no root, no mount), `write` copies onto a mounted one.
//!
//! `inject` works on a copy beside the image and renames it over the
//! original only when everything is written, so an image is never left
//! half-written.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::bundle;

/// The bundle's folder on the boot partition.
pub const DIR: &str = "callbox";

/// One MBR partition entry.
#[derive(Debug, Clone, Copy)]
pub struct Partition {
    /// 1-based slot in the table.
    pub index: usize,
    /// Partition type byte.
    pub kind: u8,
    /// Byte offset in the image.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Reads the MBR partition table of `f`.
pub fn partitions(f: &mut File) -> Result<Vec<Partition>> {
    let mut mbr = [0u8; 512];
    f.seek(SeekFrom::Start(0))?;
    f.read_exact(&mut mbr)
        .context("too short for a disk image (no 512-byte MBR)")?;
    if mbr[510..512] != [0x55, 0xaa] {
        bail!("not a disk image: no MBR boot signature (0x55AA) in the first sector");
    }
    let mut v = Vec::new();
    for i in 0..4 {
        let e = &mbr[446 + 16 * i..446 + 16 * (i + 1)];
        let kind = e[4];
        let lba = u32::from_le_bytes([e[8], e[9], e[10], e[11]]) as u64;
        let n = u32::from_le_bytes([e[12], e[13], e[14], e[15]]) as u64;
        if kind == 0 || n == 0 {
            continue;
        }
        if kind == 0xee {
            bail!("GPT disk image: only MBR images (the Raspberry Pi layout) are supported");
        }
        v.push(Partition {
            index: i + 1,
            kind,
            start: lba * 512,
            len: n * 512,
        });
    }
    Ok(v)
}

/// The boot partition: the first FAT-typed one, else the first one.
pub fn boot_partition(f: &mut File) -> Result<Partition> {
    let parts = partitions(f)?;
    let Some(p) = parts
        .iter()
        .find(|p| matches!(p.kind, 0x01 | 0x04 | 0x06 | 0x0b | 0x0c | 0x0e))
        .or(parts.first())
    else {
        bail!("no FAT boot partition: the image's partition table is empty");
    };
    let size = f.metadata()?.len();
    if p.start + p.len > size {
        bail!(
            "partition {} (type 0x{:02x}) ends at byte {} but the image has only {} bytes: truncated image?",
            p.index,
            p.kind,
            p.start + p.len,
            size
        );
    }
    Ok(*p)
}

/// A bounded `Read + Write + Seek` window of a file: one partition.
#[derive(Debug)]
pub struct Window<F> {
    inner: F,
    start: u64,
    len: u64,
    pos: u64,
}

impl<F: Seek> Window<F> {
    /// The bytes `start..start + len` of `inner`.
    pub fn new(inner: F, start: u64, len: u64) -> Window<F> {
        Window {
            inner,
            start,
            len,
            pos: 0,
        }
    }

    fn room(&mut self, want: usize) -> io::Result<usize> {
        self.inner.seek(SeekFrom::Start(self.start + self.pos))?;
        Ok(want.min(self.len.saturating_sub(self.pos) as usize))
    }
}

impl<F: Read + Seek> Read for Window<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.room(buf.len())?;
        let n = self.inner.read(&mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<F: Write + Seek> Write for Window<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.room(buf.len())?;
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the end of the partition",
            ));
        }
        let n = self.inner.write(&buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<F: Seek> Seek for Window<F> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let p = match to {
            SeekFrom::Start(p) => p as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
            SeekFrom::End(d) => self.len as i128 + d as i128,
        };
        if p < 0 || p > self.len as i128 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek outside the partition",
            ));
        }
        self.pos = p as u64;
        Ok(self.pos)
    }
}

/// `inject`: the bundle into `/callbox/` of the image's FAT boot partition.
pub fn inject(image: &Path, bundle_dir: &Path) -> Result<()> {
    let files = bundle::read_files(bundle_dir)?;
    let meta = fs::metadata(image).with_context(|| format!("image {}", image.display()))?;
    if !meta.is_file() {
        bail!("image {}: not a file", image.display());
    }
    // Check before copying anything: a wrong file is refused at once.
    let part = {
        let mut f = File::open(image).with_context(|| format!("image {}", image.display()))?;
        let p = boot_partition(&mut f).with_context(|| format!("image {}", image.display()))?;
        fatfs::FileSystem::new(Window::new(&mut f, p.start, p.len), fatfs::FsOptions::new())
            .map_err(|e| {
                anyhow::anyhow!(
                    "image {}: no FAT boot partition (partition {}, type 0x{:02x}, is not FAT: {e})",
                    image.display(),
                    p.index,
                    p.kind
                )
            })?;
        p
    };
    let name = image.file_name().unwrap_or_default().to_string_lossy();
    let tmp = image.with_file_name(format!(".{name}.provision-{}", std::process::id()));
    let res = (|| -> Result<()> {
        fs::copy(image, &tmp)
            .with_context(|| format!("cannot copy the image to {}", tmp.display()))?;
        let mut f = OpenOptions::new().read(true).write(true).open(&tmp)?;
        {
            let fs_ = fatfs::FileSystem::new(
                Window::new(&mut f, part.start, part.len),
                fatfs::FsOptions::new(),
            )?;
            let root = fs_.root_dir();
            let dir = root.create_dir(DIR)?;
            for (n, bytes) in &files {
                let mut file = dir
                    .create_file(n)
                    .with_context(|| format!("cannot create /{DIR}/{n} in the image"))?;
                file.truncate()?;
                file.write_all(bytes).with_context(|| {
                    format!("cannot write /{DIR}/{n} in the image (partition full?)")
                })?;
                file.flush()?;
            }
            drop(dir);
            drop(root);
            fs_.unmount()?;
        }
        f.sync_all()?;
        fs::rename(&tmp, image).with_context(|| format!("cannot replace {}", image.display()))
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.with_context(|| format!("image {} left unchanged", image.display()))
}

/// `write`: the bundle into `<dir>/callbox/` on a mounted boot partition.
/// Returns warnings (a key whose mode the file system cannot keep).
pub fn write_dir(dir: &Path, bundle_dir: &Path) -> Result<Vec<String>> {
    let files = bundle::read_files(bundle_dir)?;
    if !dir.is_dir() {
        bail!(
            "{}: not a directory (the mounted boot partition)",
            dir.display()
        );
    }
    let out = dir.join(DIR);
    fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut warnings = Vec::new();
    for (n, bytes) in &files {
        let mode = bundle::mode_of(n);
        let tmp = out.join(format!("{n}.tmp"));
        let dst = out.join(n);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        if mode == 0o600 {
            use std::os::unix::fs::PermissionsExt;
            if fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).is_err() {
                warnings.push(format!(
                    "{}: the file system keeps no permissions; the box removes it after import",
                    dst.display()
                ));
            }
        }
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        fs::rename(&tmp, &dst).with_context(|| format!("cannot write {}", dst.display()))?;
    }
    Ok(warnings)
}

//! `label`: the sticker for the box — its id, its site, a QR code of
//! `callbox:<site>/<box>` and the web console's one-time admin password —
//! as SVG.

use std::fmt::Write as _;

use anyhow::Result;
use qrcode::{Color, EcLevel, QrCode};

/// What the QR code encodes for a box.
pub fn payload(site: &str, box_id: &str) -> String {
    format!("callbox:{site}/{box_id}")
}

/// The label as an SVG document; `password` is the console's one-time
/// admin password.
pub fn svg(site: &str, box_id: &str, password: Option<&str>) -> Result<String> {
    let data = payload(site, box_id);
    let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M)?;
    let w = code.width();
    let (quiet, px) = (4, 6);
    let side = (w + 2 * quiet) * px;
    let height = side + if password.is_some() { 84 } else { 60 };
    let mut s = String::new();
    writeln!(
        s,
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{side}" height="{height}" viewBox="0 0 {side} {height}">
<title>{}</title>
<rect width="{side}" height="{height}" fill="#fff"/>
<g id="qr" data-qr="{}" fill="#000">"##,
        esc(&data),
        esc(&data)
    )?;
    for (i, c) in code.to_colors().iter().enumerate() {
        if *c == Color::Dark {
            let (x, y) = ((i % w + quiet) * px, (i / w + quiet) * px);
            writeln!(s, r#"<rect x="{x}" y="{y}" width="{px}" height="{px}"/>"#)?;
        }
    }
    writeln!(
        s,
        r#"</g>
<text x="{}" y="{}" font-family="monospace" font-size="20" text-anchor="middle">{}</text>
<text x="{}" y="{}" font-family="monospace" font-size="14" text-anchor="middle">site {}</text>"#,
        side / 2,
        side + 18,
        esc(box_id),
        side / 2,
        side + 42,
        esc(site)
    )?;
    if let Some(p) = password {
        writeln!(
            s,
            r#"<text id="console-password" x="{}" y="{}" font-family="monospace" font-size="14" text-anchor="middle">console admin {}</text>"#,
            side / 2,
            side + 66,
            esc(p)
        )?;
    }
    writeln!(s, "</svg>")?;
    Ok(s)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

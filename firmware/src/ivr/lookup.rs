//! Lookup tables: product codes (anti-counterfeit), sales regions by
//! caller number prefix, order statuses, and contacts (callers' names for
//! agents' phones and call records).
//!
//! Headquarters owns these tables; until the fleet link syncs them they
//! are CSV files named in `[ivr.lookups]`. Each file starts with a header
//! line naming its columns; `#` starts a comment line. A bad line is a
//! config error with the CSV file's own line and column, and a table
//! either loads whole or the config is refused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use callbox_hal::diag::Diagnostic;
use serde::Deserialize;

/// `[ivr.lookups]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLookups {
    #[serde(default)]
    products: Option<PathBuf>,
    #[serde(default)]
    regions: Option<PathBuf>,
    #[serde(default)]
    orders: Option<PathBuf>,
    #[serde(default)]
    contacts: Option<PathBuf>,
}

/// A product code's registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// Sales region the product was shipped to.
    pub region: String,
    /// Product name, for headquarters' reports.
    pub name: String,
}

/// Loaded tables.
#[derive(Debug, Default)]
pub struct Lookups {
    products: Option<HashMap<String, Product>>,
    /// Caller number prefix → region, longest prefix first.
    regions: Vec<(String, String)>,
    orders: Option<HashMap<String, (usize, String)>>,
    /// Number → name.
    contacts: HashMap<String, String>,
    regions_without_products: bool,
}

fn diag(path: &Path, line: usize, col: usize, message: String) -> Diagnostic {
    Diagnostic {
        file: path.to_path_buf(),
        line,
        col,
        message,
    }
}

/// Rows of a CSV table with its expected header, with their line numbers.
fn read_table(
    path: &Path,
    header: &[&str],
    optional: usize,
    diags: &mut Vec<Diagnostic>,
) -> Vec<(usize, Vec<String>)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            diags.push(diag(path, 1, 1, format!("cannot read lookup table: {e}")));
            return Vec::new();
        }
    };
    let mut rows = Vec::new();
    let mut saw_header = false;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let fields: Vec<String> = l.split(',').map(|f| f.trim().to_string()).collect();
        if !saw_header {
            saw_header = true;
            let want: Vec<&str> = header.to_vec();
            let got: Vec<&str> = fields.iter().map(String::as_str).collect();
            let required = &want[..want.len() - optional];
            if got.len() < required.len() || got.len() > want.len() || got != want[..got.len()] {
                diags.push(diag(
                    path,
                    n,
                    1,
                    format!("the first line must be the header `{}`", want.join(",")),
                ));
                return Vec::new();
            }
            continue;
        }
        let max = header.len();
        let min = header.len() - optional;
        if fields.len() < min || fields.len() > max {
            diags.push(diag(
                path,
                n,
                1,
                format!(
                    "{} fields; this table has {}",
                    fields.len(),
                    header.join(",")
                ),
            ));
            continue;
        }
        if let Some(j) = fields[..min].iter().position(String::is_empty) {
            let col = line.split(',').take(j).map(|f| f.len() + 1).sum::<usize>() + 1;
            diags.push(diag(path, n, col, format!("`{}` is empty", header[j])));
            continue;
        }
        rows.push((n, fields));
    }
    if !saw_header {
        diags.push(diag(
            path,
            1,
            1,
            format!("empty table; expected the header `{}`", header.join(",")),
        ));
    }
    rows
}

fn keyable(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_digit())
}

impl Lookups {
    /// Loads the tables the config names; problems come back as
    /// diagnostics in the tables' own files.
    pub fn load(raw: &RawLookups, base: &Path) -> (Lookups, Vec<Diagnostic>) {
        let mut diags = Vec::new();
        let mut out = Lookups::default();
        if let Some(p) = &raw.products {
            let path = base.join(p);
            let mut map = HashMap::new();
            for (n, f) in read_table(&path, &["code", "region", "product"], 1, &mut diags) {
                if !keyable(&f[0]) {
                    diags.push(diag(
                        &path,
                        n,
                        1,
                        format!("code `{}` must be digits a caller can key", f[0]),
                    ));
                } else if map
                    .insert(
                        f[0].clone(),
                        Product {
                            region: f[1].clone(),
                            name: f.get(2).cloned().unwrap_or_default(),
                        },
                    )
                    .is_some()
                {
                    diags.push(diag(&path, n, 1, format!("code `{}` appears twice", f[0])));
                }
            }
            out.products = Some(map);
        }
        if let Some(p) = &raw.regions {
            let path = base.join(p);
            for (n, f) in read_table(&path, &["prefix", "region"], 0, &mut diags) {
                if !keyable(f[0].trim_start_matches('+')) {
                    diags.push(diag(
                        &path,
                        n,
                        1,
                        format!("prefix `{}` must be digits", f[0]),
                    ));
                } else if out.regions.iter().any(|(p, _)| *p == f[0]) {
                    diags.push(diag(
                        &path,
                        n,
                        1,
                        format!("prefix `{}` appears twice", f[0]),
                    ));
                } else {
                    out.regions.push((f[0].clone(), f[1].clone()));
                }
            }
            out.regions.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
            out.regions_without_products = raw.products.is_none();
        }
        if let Some(p) = &raw.orders {
            let path = base.join(p);
            let mut map = HashMap::new();
            for (n, f) in read_table(&path, &["order", "status"], 0, &mut diags) {
                if !keyable(&f[0]) {
                    diags.push(diag(
                        &path,
                        n,
                        1,
                        format!("order `{}` must be digits a caller can key", f[0]),
                    ));
                } else if map.insert(f[0].clone(), (n, f[1].clone())).is_some() {
                    diags.push(diag(&path, n, 1, format!("order `{}` appears twice", f[0])));
                }
            }
            out.orders = Some(map);
        }
        if let Some(p) = &raw.contacts {
            let path = base.join(p);
            for (n, f) in read_table(&path, &["number", "name"], 0, &mut diags) {
                if !keyable(f[0].strip_prefix('+').unwrap_or(&f[0])) {
                    diags.push(diag(
                        &path,
                        n,
                        1,
                        format!("number `{}` must be digits (a leading + allowed)", f[0]),
                    ));
                } else if out.contacts.insert(f[0].clone(), f[1].clone()).is_some() {
                    diags.push(diag(
                        &path,
                        n,
                        1,
                        format!("number `{}` appears twice", f[0]),
                    ));
                }
            }
        }
        diags.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
        (out, diags)
    }

    /// A problem with the combination of tables, if any.
    pub fn config_error(&self) -> Option<String> {
        self.regions_without_products
            .then(|| "`regions` is only used by product checks; add `products`".to_string())
    }

    /// Whether a products table is loaded.
    pub fn has_products(&self) -> bool {
        self.products.is_some()
    }

    /// Whether an orders table is loaded.
    pub fn has_orders(&self) -> bool {
        self.orders.is_some()
    }

    /// Every status in the orders table with its line, for the config check.
    pub fn order_statuses(&self) -> Vec<(usize, &str)> {
        let mut v: Vec<(usize, &str)> = self
            .orders
            .iter()
            .flat_map(|m| m.values().map(|(n, s)| (*n, s.as_str())))
            .collect();
        v.sort_unstable();
        v.dedup_by(|a, b| a.1 == b.1);
        v
    }

    /// A product code's registration.
    pub fn product(&self, code: &str) -> Option<&Product> {
        self.products.as_ref()?.get(code)
    }

    /// The sales region of a caller number (longest matching prefix).
    pub fn region_of(&self, number: Option<&str>) -> Option<&str> {
        let n = number?;
        self.regions
            .iter()
            .find(|(p, _)| n.starts_with(p.as_str()))
            .map(|(_, r)| r.as_str())
    }

    /// The contact's name for a calling number, as the contacts table has
    /// the number.
    pub fn contact(&self, number: Option<&str>) -> Option<&str> {
        self.contacts.get(number?).map(String::as_str)
    }

    /// An order's status.
    pub fn order(&self, number: &str) -> Option<&str> {
        self.orders.as_ref()?.get(number).map(|(_, s)| s.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_load_and_bad_lines_are_located() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("products.csv"),
            "# codes printed on the boxes\ncode,region,product\n1234567890,north,tea\n555,south\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("regions.csv"),
            "prefix,region\n010,north\n0755,south\n07,west\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("orders.csv"),
            "order,status\n1001,shipped\n1002,pending\n",
        )
        .unwrap();
        let raw: RawLookups = toml::from_str(
            "products = \"products.csv\"\nregions = \"regions.csv\"\norders = \"orders.csv\"",
        )
        .unwrap();
        let (l, diags) = Lookups::load(&raw, d.path());
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(l.product("1234567890").unwrap().region, "north");
        assert_eq!(l.product("555").unwrap().name, "");
        assert_eq!(l.region_of(Some("075512345678")), Some("south"));
        assert_eq!(l.region_of(Some("0791")), Some("west"));
        assert_eq!(l.region_of(Some("021")), None);
        assert_eq!(l.order("1002"), Some("pending"));

        std::fs::write(
            d.path().join("products.csv"),
            "code,region\n12a,north\n1,north\n1,south\n2,\n",
        )
        .unwrap();
        let raw: RawLookups = toml::from_str("products = \"products.csv\"").unwrap();
        let (_, diags) = Lookups::load(&raw, d.path());
        let got: Vec<String> = diags
            .iter()
            .map(|d| format!("{}:{}: {}", d.line, d.col, d.message))
            .collect();
        assert_eq!(
            got,
            [
                "2:1: code `12a` must be digits a caller can key",
                "4:1: code `1` appears twice",
                "5:3: `region` is empty"
            ]
        );
    }
}

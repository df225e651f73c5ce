//! Output for the daemon commands: `-o table` (aligned columns for people), `-o json` (pretty
//! JSON, one value) and `-o yaml`. Tables are plain text with two-space gutters; empty cells
//! print as `-` so columns stay machine-splittable. No state; writes only to the given string.

use std::fmt::Write as _;

use anyhow::Result;
use clap::ValueEnum;
use serde::Serialize;

/// `-o` for the daemon commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// A value as JSON or YAML (not for tables).
pub fn encode<T: Serialize + ?Sized>(format: Format, value: &T) -> Result<String> {
    Ok(match format {
        Format::Yaml => serde_yaml::to_string(value)?,
        Format::Json | Format::Table => {
            let mut s = serde_json::to_string_pretty(value)?;
            s.push('\n');
            s
        }
    })
}

/// Aligned columns under `headers`.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell(c).len());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, (c, w)) in cells.zip(&widths).enumerate() {
            if i + 1 == widths.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut out, &mut headers.iter().copied());
    for r in rows {
        line(&mut out, &mut r.iter().map(|c| cell(c)));
    }
    out
}

fn cell(c: &str) -> &str {
    if c.is_empty() { "-" } else { c }
}

/// `k=v,k2=v2`.
pub fn labels(l: &std::collections::BTreeMap<String, String>) -> String {
    l.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Items joined with `,`.
pub fn list<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_mark_empty_cells() {
        let t = table(
            &["NAME", "IPS", "LABELS"],
            &[
                vec!["a".into(), "10.0.0.2".into(), String::new()],
                vec!["longer-name".into(), "1".into(), "x=y".into()],
            ],
        );
        assert_eq!(
            t,
            "NAME         IPS       LABELS\na            10.0.0.2  -\nlonger-name  1         x=y\n"
        );
    }

    #[test]
    fn encodings() {
        let v = serde_json::json!({"a": [1, 2]});
        assert_eq!(encode(Format::Yaml, &v).unwrap(), "a:\n- 1\n- 2\n");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&encode(Format::Json, &v).unwrap()).unwrap(),
            v
        );
    }
}

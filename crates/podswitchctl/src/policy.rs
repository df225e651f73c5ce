//! `podswitchctl policy matrix|trace`: load Namespaces, Pods and NetworkPolicies from files and
//! directories (YAML or JSON, multi-document, `List`s), compile them with `podswitch-policy`, and
//! print verdicts. Errors name the file, the object and the field, and exit non-zero.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use podswitch_policy::{EndpointId, Object, PolicyEngine, Protocol, Snapshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable truth table: rows are sources, columns destinations; `.` allowed, `X` denied.
    Table,
    /// One JSON object per table: {"protocol":"TCP","port":80,"matrix":{"ns/pod":{"ns/pod":true}}}.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Reachability between every ordered pair of pods.
    Matrix {
        /// Files or directories (*.yaml, *.yml, *.json) holding Namespaces, Pods, NetworkPolicies.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// TCP, UDP or SCTP; defaults to TCP when --port is given.
        #[arg(long, value_parser = parse_protocol)]
        protocol: Option<Protocol>,
        /// Destination port; without it, one table per port/protocol found on the pods.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        port: Option<u16>,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Explain the verdict for one connection between two pods.
    Trace {
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Source pod, `namespace/name`.
        #[arg(long)]
        from: String,
        /// Destination pod, `namespace/name`.
        #[arg(long)]
        to: String,
        #[arg(long, value_parser = parse_protocol, default_value = "TCP")]
        protocol: Protocol,
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
    },
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    Protocol::parse(&s.to_ascii_uppercase())
        .ok_or_else(|| format!("unsupported protocol {s:?}: use TCP, UDP or SCTP"))
}

pub fn run(cmd: &PolicyCommand) -> Result<()> {
    match cmd {
        PolicyCommand::Matrix {
            files,
            protocol,
            port,
            output,
        } => {
            let (snap, pods) = load(files)?;
            let targets = targets(&snap, &pods, *protocol, *port)?;
            let mut out = std::io::stdout().lock();
            for (i, (proto, port)) in targets.iter().enumerate() {
                let text = match output {
                    Output::Json => matrix_json(&snap, &pods, *proto, *port) + "\n",
                    Output::Table => {
                        let sep = if i > 0 { "\n" } else { "" };
                        format!("{sep}{}", matrix_table(&snap, &pods, *proto, *port))
                    }
                };
                out.write_all(text.as_bytes())?;
            }
            Ok(())
        }
        PolicyCommand::Trace {
            files,
            from,
            to,
            protocol,
            port,
        } => {
            let (snap, pods) = load(files)?;
            let find = |name: &str| {
                pods.iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, id)| *id)
                    .with_context(|| format!("no pod {name:?} (write namespace/name)"))
            };
            let x = snap.explain_between(find(from)?, find(to)?, *protocol, *port);
            writeln!(std::io::stdout().lock(), "{x}")?;
            Ok(())
        }
    }
}

/// Pods as (`ns/name`, id), sorted by name.
type Pods = Vec<(String, EndpointId)>;

fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading directory {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.is_file()
                        && f.extension()
                            .and_then(|e| e.to_str())
                            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
                })
                .collect();
            entries.sort();
            out.extend(entries);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn load(paths: &[PathBuf]) -> Result<(std::sync::Arc<Snapshot>, Pods)> {
    let mut objects: Vec<Object> = Vec::new();
    for f in collect_files(paths)? {
        objects.extend(read(&f)?);
    }
    let mut engine = PolicyEngine::new();
    podswitch_policy::apply(&mut engine, &objects)?;
    let snap = engine.commit();
    let mut pods: Pods = snap
        .endpoint_ids()
        .filter_map(|id| {
            snap.endpoint_name(id)
                .map(|(ns, n)| (format!("{ns}/{n}"), id))
        })
        .collect();
    pods.sort();
    Ok((snap, pods))
}

fn read(path: &Path) -> Result<Vec<Object>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    podswitch_policy::parse_objects(&text).with_context(|| path.display().to_string())
}

/// The (protocol, port) tables to print.
fn targets(
    snap: &Snapshot,
    pods: &Pods,
    protocol: Option<Protocol>,
    port: Option<u16>,
) -> Result<Vec<(Protocol, u16)>> {
    if let Some(port) = port {
        return Ok(vec![(protocol.unwrap_or(Protocol::Tcp), port)]);
    }
    let found: BTreeSet<(Protocol, u16)> = pods
        .iter()
        .flat_map(|(_, id)| snap.endpoint_ports(*id))
        .filter(|(p, _)| protocol.is_none_or(|want| want == *p))
        .collect();
    if found.is_empty() {
        bail!("no container ports found on the pods; pass --port");
    }
    Ok(found.into_iter().collect())
}

fn matrix_json(snap: &Snapshot, pods: &Pods, protocol: Protocol, port: u16) -> String {
    let mut matrix = serde_json::Map::new();
    for (from, s) in pods {
        let mut row = serde_json::Map::new();
        for (to, d) in pods {
            let ok = snap.verdict_between(*s, *d, protocol, port).is_allowed();
            row.insert(to.clone(), serde_json::Value::Bool(ok));
        }
        matrix.insert(from.clone(), serde_json::Value::Object(row));
    }
    // Written by hand so the keys keep the documented order (serde_json's map sorts them).
    format!(
        "{{\"protocol\":\"{}\",\"port\":{port},\"matrix\":{}}}",
        protocol.as_str(),
        serde_json::Value::Object(matrix)
    )
}

fn matrix_table(snap: &Snapshot, pods: &Pods, protocol: Protocol, port: u16) -> String {
    let width = pods.iter().map(|(n, _)| n.len()).max().unwrap_or(0).max(4);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{protocol}/{port} (rows: from, columns: to; . allowed, X denied)"
    );
    let _ = write!(t, "{:width$}", "-");
    for (to, _) in pods {
        let _ = write!(t, " {to:>width$}");
    }
    t.push('\n');
    for (from, s) in pods {
        let _ = write!(t, "{from:width$}");
        for (_, d) in pods {
            let mark = if snap.verdict_between(*s, *d, protocol, port).is_allowed() {
                "."
            } else {
                "X"
            };
            let _ = write!(t, " {mark:>width$}");
        }
        t.push('\n');
    }
    t
}

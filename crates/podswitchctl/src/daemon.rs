//! The commands that talk to the daemon over its control socket: `apply`, `delete`, `get`,
//! `trace`, `stats`, `conntrack`, `flows`, `wait`, `health`. One blocking connection per
//! invocation (the control crate's [`Client`]); a server error is printed with its code, message
//! and field, and the process exits non-zero. Single-threaded.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use podswitch_control::Client;
use podswitch_control::proto::{Counters, Reply, Request, TraceReport};
use podswitch_control::server::DEFAULT_SOCKET;

use crate::apply;
use crate::output::{Format, encode, labels, list, table};

/// Options every daemon command takes.
#[derive(Debug, Args)]
pub struct Conn {
    /// The daemon's control socket [default: $PODSWITCH_SOCKET, else
    /// /run/podswitch/podswitch.sock].
    #[arg(long, global = true)]
    pub socket: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
}

/// Object kinds for `get` and `delete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    #[value(alias = "namespace", alias = "ns")]
    Namespaces,
    #[value(alias = "endpoint", alias = "ep")]
    Endpoints,
    #[value(
        alias = "policy",
        alias = "networkpolicy",
        alias = "networkpolicies",
        alias = "netpol"
    )]
    Policies,
    #[value(alias = "vtep")]
    Vteps,
    #[value(alias = "remote", alias = "remoteendpoint", alias = "remoteendpoints")]
    Remotes,
}

#[derive(Debug, Subcommand)]
pub enum ConntrackCommand {
    /// List connections (optionally of one address or zone).
    List {
        #[arg(long)]
        address: Option<IpAddr>,
        #[arg(long)]
        zone: Option<u16>,
        #[arg(long)]
        max: Option<usize>,
    },
    /// Remove connections (all, or of one address or zone).
    Flush {
        #[arg(long)]
        address: Option<IpAddr>,
        #[arg(long)]
        zone: Option<u16>,
    },
}

/// The daemon subcommands (flattened into the top-level CLI).
#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Create or update Namespaces, NetworkPolicies, Endpoints, RemoteEndpoints and Vteps from
    /// YAML/JSON files or directories.
    Apply {
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Then wait until every worker runs the resulting state.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete one object: `namespace NAME`, `endpoint|policy|remote NS/NAME`, `vtep ID`.
    Delete {
        #[arg(value_enum)]
        kind: Kind,
        name: String,
        /// Namespace, when NAME is not `NS/NAME`.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List namespaces, endpoints, policies, vteps or remotes.
    Get {
        #[arg(value_enum)]
        kind: Kind,
        /// Only this namespace (endpoints, policies, remotes).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Explain what the switch would do with a new connection.
    Trace {
        #[arg(long)]
        src: IpAddr,
        #[arg(long)]
        dst: IpAddr,
        /// TCP, UDP, SCTP or an IP protocol number.
        #[arg(long, default_value = "TCP")]
        protocol: String,
        #[arg(long, default_value_t = 0)]
        port: u16,
        #[command(flatten)]
        conn: Conn,
    },
    /// Datapath and control-plane counters.
    Stats {
        #[command(flatten)]
        conn: Conn,
    },
    /// Connection-tracking entries.
    Conntrack {
        #[command(subcommand)]
        command: ConntrackCommand,
        #[command(flatten)]
        conn: Conn,
    },
    /// Flow-cache entries of every worker.
    Flows {
        #[arg(long)]
        max: Option<usize>,
        /// Empty the flow caches instead of listing them.
        #[arg(long)]
        flush: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Wait until every worker runs GENERATION (or later).
    Wait {
        generation: u64,
        /// Seconds to wait.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        #[command(flatten)]
        conn: Conn,
    },
    /// The daemon's health summary.
    Health {
        #[command(flatten)]
        conn: Conn,
    },
}

impl Conn {
    fn socket(&self) -> PathBuf {
        self.socket.clone().unwrap_or_else(|| {
            std::env::var_os("PODSWITCH_SOCKET")
                .filter(|s| !s.is_empty())
                .map_or_else(|| PathBuf::from(DEFAULT_SOCKET), PathBuf::from)
        })
    }
}

fn connect(conn: &Conn, timeout: Duration) -> Result<Client> {
    let socket = conn.socket();
    let c = Client::connect(&socket)
        .with_context(|| format!("cannot connect to the daemon at {}", socket.display()))?;
    c.set_timeout(Some(timeout))?;
    Ok(c)
}

const TIMEOUT: Duration = Duration::from_secs(30);

fn call(client: &mut Client, req: Request) -> Result<Reply> {
    client.call(req).map_err(|e| anyhow!("{e}"))
}

/// `NS/NAME`, or NAME with `-n NS`.
fn split_name(name: &str, namespace: Option<&str>) -> Result<(String, String)> {
    match (name.split_once('/'), namespace) {
        (Some((ns, n)), None) => Ok((ns.to_owned(), n.to_owned())),
        (Some((ns, n)), Some(given)) if ns == given => Ok((ns.to_owned(), n.to_owned())),
        (Some(_), Some(given)) => bail!("{name:?} and -n {given:?} disagree"),
        (None, Some(ns)) => Ok((ns.to_owned(), name.to_owned())),
        (None, None) => bail!("{name:?}: give NAMESPACE/NAME or -n NAMESPACE"),
    }
}

/// Runs one daemon command; returns what to print.
pub fn run(cmd: DaemonCommand) -> Result<String> {
    match cmd {
        DaemonCommand::Apply { files, wait, conn } => {
            let objects = apply::load(&files)?;
            let mut client = connect(&conn, TIMEOUT)?;
            let mut done = Vec::new();
            let r = apply::apply(&mut client, &objects, &mut done);
            let mut out = String::new();
            if conn.output == Format::Table {
                for d in &done {
                    let _ = writeln!(out, "{} {}", d.object, d.action);
                }
            }
            if let Err(e) = r {
                // What was applied before the failure stays; say so, then fail.
                eprint!("{out}");
                return Err(e);
            }
            let last = done.iter().filter_map(|d| d.generation).max();
            if wait && let Some(g) = last {
                let realised = client
                    .wait(g, TIMEOUT)
                    .map_err(|e| anyhow!("waiting for generation {g}: {e}"))?;
                if conn.output == Format::Table {
                    let _ = writeln!(out, "realised generation {realised}");
                }
            }
            if conn.output == Format::Table {
                Ok(out)
            } else {
                encode(conn.output, &done)
            }
        }
        DaemonCommand::Delete {
            kind,
            name,
            namespace,
            conn,
        } => {
            let req = match kind {
                Kind::Namespaces => Request::NamespaceDelete { name: name.clone() },
                Kind::Vteps => Request::VtepDelete {
                    id: name
                        .parse()
                        .map_err(|_| anyhow!("{name:?}: a VTEP id is a number"))?,
                },
                Kind::Endpoints | Kind::Policies | Kind::Remotes => {
                    let (namespace, name) = split_name(&name, namespace.as_deref())?;
                    match kind {
                        Kind::Endpoints => Request::EndpointDelete { namespace, name },
                        Kind::Policies => Request::PolicyDelete { namespace, name },
                        _ => Request::RemoteDelete { namespace, name },
                    }
                }
            };
            let mut client = connect(&conn, TIMEOUT)?;
            let r = call(&mut client, req)?;
            let g = r.generation().unwrap_or_default();
            Ok(match conn.output {
                Format::Table => format!("deleted (generation {g})\n"),
                f => encode(f, &serde_json::json!({"deleted": name, "generation": g}))?,
            })
        }
        DaemonCommand::Get {
            kind,
            namespace,
            conn,
        } => {
            let mut client = connect(&conn, TIMEOUT)?;
            get(&mut client, kind, namespace.as_deref(), conn.output)
        }
        DaemonCommand::Trace {
            src,
            dst,
            protocol,
            port,
            conn,
        } => {
            let mut client = connect(&conn, TIMEOUT)?;
            let r = call(
                &mut client,
                Request::Trace {
                    src,
                    dst,
                    protocol,
                    port,
                },
            )?;
            let Reply::Trace(t) = r else {
                bail!("unexpected reply {r:?}")
            };
            match conn.output {
                Format::Table => Ok(trace_text(&t)),
                f => encode(f, &t),
            }
        }
        DaemonCommand::Stats { conn } => {
            let mut client = connect(&conn, TIMEOUT)?;
            let r = call(&mut client, Request::Counters)?;
            let Reply::Counters(c) = r else {
                bail!("unexpected reply {r:?}")
            };
            match conn.output {
                Format::Table => Ok(stats_text(&c)),
                f => encode(f, &c),
            }
        }
        DaemonCommand::Conntrack { command, conn } => {
            let mut client = connect(&conn, TIMEOUT)?;
            match command {
                ConntrackCommand::List { address, zone, max } => {
                    let r = call(&mut client, Request::ConntrackDump { address, zone, max })?;
                    let Reply::Conntrack { items } = r else {
                        bail!("unexpected reply {r:?}")
                    };
                    if conn.output != Format::Table {
                        return encode(conn.output, &items);
                    }
                    let rows: Vec<Vec<String>> = items
                        .iter()
                        .map(|c| {
                            vec![
                                c.zone.to_string(),
                                c.protocol.to_string(),
                                c.original.clone(),
                                c.reply.clone(),
                                c.state.clone(),
                                if c.assured {
                                    "assured".into()
                                } else {
                                    String::new()
                                },
                                c.expires.to_string(),
                                format!("{}/{}", c.packets[0], c.packets[1]),
                                format!("{}/{}", c.bytes[0], c.bytes[1]),
                            ]
                        })
                        .collect();
                    Ok(table(
                        &[
                            "ZONE", "PROTO", "ORIGINAL", "REPLY", "STATE", "FLAGS", "EXPIRES",
                            "PACKETS", "BYTES",
                        ],
                        &rows,
                    ))
                }
                ConntrackCommand::Flush { address, zone } => {
                    let r = call(&mut client, Request::ConntrackFlush { address, zone })?;
                    flushed(&r, conn.output)
                }
            }
        }
        DaemonCommand::Flows { max, flush, conn } => {
            let mut client = connect(&conn, TIMEOUT)?;
            if flush {
                let r = call(&mut client, Request::FlowFlush)?;
                return flushed(&r, conn.output);
            }
            let r = call(&mut client, Request::FlowDump { max })?;
            let Reply::Flows { items } = r else {
                bail!("unexpected reply {r:?}")
            };
            if conn.output != Format::Table {
                return encode(conn.output, &items);
            }
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|f| {
                    vec![
                        f.worker.to_string(),
                        f.key.clone(),
                        f.action.clone(),
                        f.generation.to_string(),
                    ]
                })
                .collect();
            Ok(table(&["WORKER", "KEY", "ACTION", "GENERATION"], &rows))
        }
        DaemonCommand::Wait {
            generation,
            timeout,
            conn,
        } => {
            let t = Duration::from_secs(timeout);
            let mut client = connect(&conn, t + Duration::from_secs(5))?;
            let realised = client.wait(generation, t).map_err(|e| anyhow!("{e}"))?;
            Ok(match conn.output {
                Format::Table => {
                    format!("generation {generation} realised (workers run {realised})\n")
                }
                f => encode(
                    f,
                    &serde_json::json!({"generation": generation, "realised": realised}),
                )?,
            })
        }
        DaemonCommand::Health { conn } => {
            let mut client = connect(&conn, TIMEOUT)?;
            let h = client.health().map_err(|e| anyhow!("{e}"))?;
            match conn.output {
                Format::Table => {
                    let mut s = String::new();
                    let _ = writeln!(
                        s,
                        "generation:  {} (realised {})",
                        h.generation, h.realised_generation
                    );
                    let _ = writeln!(s, "workers:     {}", h.workers);
                    let _ = writeln!(
                        s,
                        "objects:     {} namespaces, {} endpoints, {} remotes, {} policies, {} vteps",
                        h.namespaces, h.endpoints, h.remotes, h.policies, h.vteps
                    );
                    let _ = writeln!(s, "persistent:  {}", h.persistent);
                    if let Some(e) = &h.last_error {
                        let _ = writeln!(s, "last error:  {e}");
                    }
                    Ok(s)
                }
                f => encode(f, &h),
            }
        }
    }
}

fn flushed(r: &Reply, output: Format) -> Result<String> {
    let Reply::Flushed { count } = r else {
        bail!("unexpected reply {r:?}")
    };
    Ok(match output {
        Format::Table => format!("flushed {count}\n"),
        f => encode(f, &serde_json::json!({"flushed": count}))?,
    })
}

fn get(client: &mut Client, kind: Kind, namespace: Option<&str>, output: Format) -> Result<String> {
    let req = match kind {
        Kind::Namespaces => Request::NamespaceList,
        Kind::Endpoints => Request::EndpointList {
            namespace: namespace.map(str::to_owned),
        },
        Kind::Policies => Request::PolicyList {
            namespace: namespace.map(str::to_owned),
        },
        Kind::Vteps => Request::VtepList,
        Kind::Remotes => Request::RemoteList,
    };
    let r = call(client, req)?;
    match r {
        Reply::Namespaces { items } => {
            if output != Format::Table {
                return encode(output, &items);
            }
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|n| {
                    vec![
                        n.name.clone(),
                        n.subnet_v4.map(|s| s.to_string()).unwrap_or_default(),
                        n.subnet_v6.map(|s| s.to_string()).unwrap_or_default(),
                        list(&n.gateways),
                        n.endpoints.to_string(),
                        n.allocated.to_string(),
                        labels(&n.labels),
                    ]
                })
                .collect();
            Ok(table(
                &[
                    "NAME",
                    "SUBNET-V4",
                    "SUBNET-V6",
                    "GATEWAYS",
                    "ENDPOINTS",
                    "ALLOCATED",
                    "LABELS",
                ],
                &rows,
            ))
        }
        Reply::Endpoints { items } => {
            if output != Format::Table {
                return encode(output, &items);
            }
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|e| {
                    vec![
                        e.namespace.clone(),
                        e.name.clone(),
                        format!("{:?}", e.kind).to_lowercase(),
                        e.port.to_string(),
                        e.interface.clone(),
                        e.mac.to_string(),
                        list(&e.ips),
                        e.mtu.to_string(),
                        labels(&e.labels),
                    ]
                })
                .collect();
            Ok(table(
                &[
                    "NAMESPACE",
                    "NAME",
                    "KIND",
                    "PORT",
                    "INTERFACE",
                    "MAC",
                    "IPS",
                    "MTU",
                    "LABELS",
                ],
                &rows,
            ))
        }
        Reply::Policies { items } => {
            if output != Format::Table {
                return encode(output, &items);
            }
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|p| {
                    vec![
                        p.namespace.clone(),
                        p.name.clone(),
                        p.ingress.to_string(),
                        p.egress.to_string(),
                    ]
                })
                .collect();
            Ok(table(&["NAMESPACE", "NAME", "INGRESS", "EGRESS"], &rows))
        }
        Reply::Vteps { items } => {
            if output != Format::Table {
                return encode(output, &items);
            }
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|v| {
                    vec![
                        v.id.to_string(),
                        v.ip.to_string(),
                        v.vni.to_string(),
                        v.next_hop_mac.to_string(),
                        v.gbp.to_string(),
                    ]
                })
                .collect();
            Ok(table(&["ID", "IP", "VNI", "NEXT-HOP-MAC", "GBP"], &rows))
        }
        Reply::Remotes { items } => {
            let items: Vec<_> = items
                .into_iter()
                .filter(|r| namespace.is_none_or(|n| r.namespace == n))
                .collect();
            if output != Format::Table {
                return encode(output, &items);
            }
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|r| {
                    vec![
                        r.namespace.clone(),
                        r.name.clone(),
                        format!("{:?}", r.kind).to_lowercase(),
                        r.vtep.to_string(),
                        r.mac.to_string(),
                        list(&r.ips),
                        labels(&r.labels),
                    ]
                })
                .collect();
            Ok(table(
                &["NAMESPACE", "NAME", "KIND", "VTEP", "MAC", "IPS", "LABELS"],
                &rows,
            ))
        }
        r => Err(anyhow!("unexpected reply {r:?}")),
    }
}

fn trace_text(t: &TraceReport) -> String {
    let mut s = String::new();
    let name = |e: &Option<String>| e.clone().unwrap_or_else(|| "(unknown)".to_owned());
    let _ = writeln!(
        s,
        "{} -> {}: {} (generation {})",
        name(&t.src_endpoint),
        name(&t.dst_endpoint),
        if t.allowed { "ALLOWED" } else { "DENIED" },
        t.generation
    );
    let _ = writeln!(s, "egress:  {}", t.egress_decision);
    let _ = writeln!(s, "ingress: {}", t.ingress_decision);
    let _ = writeln!(s, "route:   {}", t.route);
    for p in &t.policies {
        let _ = writeln!(
            s,
            "  {} {}: selects={} isolates={}",
            p.policy, p.direction, p.selects, p.isolates
        );
        for r in &p.rules {
            let _ = writeln!(s, "    {r}");
        }
    }
    if !t.explanation.is_empty() {
        let _ = writeln!(s, "{}", t.explanation.trim_end());
    }
    s
}

fn stats_text(c: &Counters) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "generation {} (realised {}), dataplane {}",
        c.generation,
        c.realised_generation,
        if c.dataplane {
            "attached"
        } else {
            "not attached"
        }
    );
    let _ = writeln!(
        s,
        "flow cache: {} hits, {} misses",
        c.cache_hits, c.cache_misses
    );
    if let Some(ct) = &c.conntrack {
        let _ = writeln!(
            s,
            "conntrack: {}/{} entries, {} commits, {} evictions, {} expirations",
            ct.occupancy, ct.capacity, ct.commits, ct.evictions, ct.expirations
        );
    }
    let _ = writeln!(
        s,
        "control: {} requests, {} errors, {} connections open",
        c.server.requests, c.server.errors, c.server.connections_open
    );
    let h = &c.realisation;
    if h.samples > 0 {
        let _ = writeln!(
            s,
            "realisation: {} samples, mean {} us, max {} us",
            h.samples,
            h.sum_us / h.samples,
            h.max_us
        );
    }
    if !c.ports.is_empty() {
        s.push('\n');
        let rows: Vec<Vec<String>> = c
            .ports
            .iter()
            .map(|p| {
                vec![
                    p.port.to_string(),
                    p.endpoint.clone().unwrap_or_default(),
                    p.rx_packets.to_string(),
                    p.rx_bytes.to_string(),
                    p.tx_packets.to_string(),
                    p.tx_bytes.to_string(),
                    p.drops
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(","),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "PORT", "ENDPOINT", "RX-PKTS", "RX-BYTES", "TX-PKTS", "TX-BYTES", "DROPS",
            ],
            &rows,
        ));
    }
    for (title, items) in [
        ("ALLOWED BY RULE", &c.rules_allowed),
        ("DENIED BY POLICY", &c.policies_denied),
        ("GROUPS", &c.groups),
    ] {
        if items.is_empty() {
            continue;
        }
        s.push('\n');
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|t| {
                vec![
                    t.what.clone(),
                    t.packets.to_string(),
                    t.bytes.to_string(),
                    t.connections.to_string(),
                ]
            })
            .collect();
        s.push_str(&table(&[title, "PACKETS", "BYTES", "CONNECTIONS"], &rows));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split() {
        assert_eq!(
            split_name("web/a", None).unwrap(),
            ("web".into(), "a".into())
        );
        assert_eq!(
            split_name("a", Some("web")).unwrap(),
            ("web".into(), "a".into())
        );
        assert_eq!(
            split_name("web/a", Some("web")).unwrap(),
            ("web".into(), "a".into())
        );
        assert!(split_name("web/a", Some("db")).is_err());
        assert!(split_name("a", None).is_err());
    }
}

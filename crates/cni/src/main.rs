//! `podswitch-cni`: the podswitch CNI plugin (CNI spec 1.0.0, also answering 0.4.0 configs).
//!
//! A runtime runs it once per operation with `CNI_*` variables and the network configuration on
//! stdin ([`env`](mod@env), [`config`]). ADD creates the pod's veth pair, registers the endpoint with the
//! daemon over its control socket (which allocates the address from the namespace's subnet unless
//! an IPAM plugin is configured) and prints the result ([`result`]); DEL undoes it idempotently;
//! CHECK compares the live state with `prevResult` ([`plugin`], [`link`], [`ipam`]). Failures
//! print the CNI error object on stdout and exit 1 ([`error`]). Single-threaded except for the
//! short-lived thread that enters the container's network namespace.

mod config;
mod env;
mod error;
mod ipam;
mod link;
mod plugin;
mod result;

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use crate::config::NetConf;
use crate::env::{Command, Env};
use crate::error::{CniError, Code};

fn run(stdin: &[u8]) -> Result<Option<serde_json::Value>, CniError> {
    let env = Env::from_lookup(|k| std::env::var(k).ok())?;
    if env.command == Command::Version {
        return Ok(Some(result::version_json()));
    }
    let conf = NetConf::parse(stdin)?;
    match env.command {
        Command::Add => {
            let r = plugin::add(&env, &conf)?;
            serde_json::to_value(r).map(Some).map_err(|e| {
                CniError::new(Code::Io, "cannot encode the result").details(e.to_string())
            })
        }
        Command::Del => plugin::del(&env, &conf).map(|()| None),
        Command::Check => plugin::check(&env, &conf).map(|()| None),
        Command::Version => Ok(Some(result::version_json())),
    }
}

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let outcome = match read {
        Ok(_) => run(&stdin),
        Err(e) => Err(CniError::new(Code::Io, "cannot read stdin").details(e.to_string())),
    };
    let mut out = std::io::stdout().lock();
    match outcome {
        Ok(Some(v)) => {
            let _ = writeln!(out, "{v}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            // The error object carries the configuration's version when it has a usable one.
            let version = config::version_of(&stdin)
                .filter(|v| result::SUPPORTED_VERSIONS.contains(&v.as_str()))
                .unwrap_or_else(|| "1.0.0".to_owned());
            let _ = writeln!(out, "{}", e.to_json(&version));
            ExitCode::FAILURE
        }
    }
}

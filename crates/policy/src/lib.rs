//! Kubernetes NetworkPolicy (networking.k8s.io/v1) compiled to policy groups.
//!
//! Inputs are k8s-openapi objects ([`load`] reads YAML/JSON as kubectl does) validated into
//! [`PolicySpec`] / [`Endpoint`]; the single-writer [`PolicyEngine`] turns every distinct selector
//! into one group, tracks each endpoint's groups and selecting policies, and publishes immutable
//! [`Snapshot`]s (`Arc`, lock-free for readers) that answer [`Snapshot::verdict`] without
//! allocation in O(rules of the selecting policies), and explain it ([`Snapshot::explain`]).
//! State grows with endpoints + rules + groups, never with endpoint pairs ([`Stats`]).
//! Sans-IO and deterministic: no clocks, threads or sockets.

mod addr;
pub mod cidr;
pub mod engine;
pub mod error;
pub mod explain;
mod hot;
pub mod load;
pub mod selector;
pub mod spec;

pub use cidr::{Cidr, CidrTable, IpBlock};
pub use engine::{
    CompiledPolicy, Decision, Direction, EndpointId, GroupId, PolicyEngine, PolicyId, RuleRef,
    Snapshot, Stats, Verdict,
};
pub use error::{EngineError, Invalid, LoadError, PolicyError};
pub use explain::{Explanation, PolicyTrace, RuleTrace};
pub use load::{Applied, Object, apply, parse_objects};
pub use selector::{Labels, Selector};
pub use spec::{
    ContainerPort, Endpoint, EndpointKind, GroupKey, NAMESPACE_NAME_LABEL, PeerSpec, PolicySpec,
    PortSpec, Protocol, RuleSpec, namespace_from_k8s,
};

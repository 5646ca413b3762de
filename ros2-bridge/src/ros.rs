//! DDS/ROS 2 plumbing shared by the subcommands: the participant (domain, loopback-only
//! discovery), QoS profiles, topic and type names, and the dedicated ROS thread.
//!
//! `ros2-client` drives its own I/O and its futures are not tied to tokio's reactor, so every node
//! runs on its own OS thread with a current-thread runtime (only for timers); the rest of the
//! program talks to it through channels.

use std::net::{IpAddr, Ipv4Addr};

use ros2_client::{
    Context, MessageTypeName, Name, Node, NodeName, NodeOptions, QosProfile,
    qos::{Durability, History},
    ros2::QosPolicies,
};
use rustdds::DomainParticipantBuilder;

use crate::msg::RosType;

/// Errors setting up DDS entities.
#[derive(Debug, thiserror::Error)]
pub enum RosError {
    /// Participant, node, topic, reader or writer creation failed.
    #[error("cannot create {what}: {reason}")]
    Create {
        /// Which entity.
        what: &'static str,
        /// The middleware's message.
        reason: String,
    },
    /// A topic or node name is not a valid ROS name.
    #[error("invalid ROS name {0:?}")]
    Name(String),
    /// Publishing failed.
    #[error("publish on {topic} failed: {reason}")]
    Publish {
        /// Topic.
        topic: String,
        /// Reason.
        reason: String,
    },
}

impl RosError {
    /// Bounded label.
    pub fn kind(&self) -> &'static str {
        match self {
            RosError::Create { .. } => "create",
            RosError::Name(_) => "name",
            RosError::Publish { .. } => "publish",
        }
    }

    pub(crate) fn create(what: &'static str) -> impl FnOnce(String) -> RosError {
        move |reason| RosError::Create { what, reason }
    }
}

/// Where the node joins the ROS graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosOptions {
    /// DDS domain (`ROS_DOMAIN_ID`).
    pub domain_id: u16,
    /// Advertise and multicast only on 127.0.0.1 (`ROS_LOCALHOST_ONLY=1` or
    /// `ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`).
    pub localhost_only: bool,
}

impl RosOptions {
    /// From the standard ROS environment variables, with an explicit domain taking precedence.
    pub fn from_env(domain_id: Option<u16>) -> RosOptions {
        let env = |k: &str| std::env::var(k).unwrap_or_default();
        RosOptions {
            domain_id: domain_id
                .or_else(|| env("ROS_DOMAIN_ID").trim().parse().ok())
                .unwrap_or(0),
            localhost_only: env("ROS_LOCALHOST_ONLY") == "1"
                || env("ROS_AUTOMATIC_DISCOVERY_RANGE").eq_ignore_ascii_case("LOCALHOST"),
        }
    }
}

/// A ros2-client context on a participant built with these options.
pub fn context(opts: &RosOptions) -> Result<Context, RosError> {
    let mut builder = DomainParticipantBuilder::new(opts.domain_id).same_host_loopback(true);
    if opts.localhost_only {
        builder = builder.with_only_networks([IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    }
    let dp = builder
        .build()
        .map_err(|e| RosError::create("participant")(e.to_string()))?;
    Context::from_domain_participant(dp).map_err(|e| RosError::create("context")(e.to_string()))
}

/// A node without rosout (robots' logs go to the container log, not the graph).
pub fn node(ctx: &Context, name: &str) -> Result<Node, RosError> {
    let name = NodeName::new("/", name).map_err(|_| RosError::Name(name.into()))?;
    ctx.new_node(name, NodeOptions::new().enable_rosout(false))
        .map_err(|e| RosError::create("node")(format!("{e:?}")))
}

/// The ROS name of a topic (`/a/b`).
pub fn topic_name(topic: &str) -> Result<Name, RosError> {
    Name::parse(topic).map_err(|_| RosError::Name(topic.into()))
}

/// The message type name ros2-client needs for `T`.
pub fn type_name<T: RosType>() -> MessageTypeName {
    MessageTypeName::new(T::PACKAGE, T::NAME)
}

/// `SensorDataQoS`: best effort, keep last 5 (matches any publisher).
pub fn qos_sensor() -> QosProfile {
    QosProfile::subscription_default().history(History::KeepLast { depth: 5 })
}

/// Reliable, volatile, keep last `depth`.
pub fn qos_reliable(depth: usize) -> QosProfile {
    QosProfile::publisher_default()
        .durability(Durability::Volatile)
        .history(History::KeepLast { depth })
}

/// The stop lock: reliable, transient local, keep last 1.
pub fn qos_latched() -> QosProfile {
    qos_reliable(1).durability(Durability::TransientLocal)
}

/// [`qos_latched`] as plain DDS policies (the lock's writer is a plain rustdds writer so that
/// shutdown can wait for acknowledgments).
pub fn qos_latched_dds() -> QosPolicies {
    QosPolicies::from(&qos_latched())
}

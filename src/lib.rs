//! gocd-dind: GoCD elastic agents that each own a private Docker daemon.
pub mod pod;
pub mod protocol;
pub mod settings;
pub mod tls;

//! The two profiles an operator fills in GoCD's UI, parsed into typed settings.
//!
//! The property keys are fixed: operators' saved configuration depends on them. Parsing
//! is the validation: `parse` returns every problem at once as GoCD's `{key, message}`
//! list, so validate-* requests and create-agent agree on what a valid profile is.

mod cluster;
mod elastic;
mod quantity;

pub use cluster::{
    is_dns_subdomain, ClusterId, ClusterSettings, DindSecurity, DockerConnection, KubernetesConnection, RuntimeKind,
};
pub use elastic::{is_reserved_env, ElasticSettings, EnvVar};
pub use quantity::{Cpu, Memory};

use crate::protocol::{MetadataFlags, ProfileMetadata, Properties, ValidationError};

/// One profile key: what GoCD's metadata says about it, and what our docs say.
pub struct Field {
    pub key: &'static str,
    pub required: bool,
    pub secure: bool,
    pub label: &'static str,
    pub help: &'static str,
}

impl Field {
    pub fn metadata(&self) -> ProfileMetadata {
        ProfileMetadata { key: self.key, metadata: MetadataFlags { required: self.required, secure: self.secure } }
    }
}

/// Flags every key that is not one of `fields`, the way GoCD's own plugins do, so a typo
/// in a profile is caught instead of silently ignored.
fn unknown_keys(properties: &Properties, fields: &[Field], errors: &mut Vec<ValidationError>) {
    for key in properties.0.keys() {
        if !fields.iter().any(|f| f.key == key) {
            errors.push(ValidationError::new(key, "Is an unknown property"));
        }
    }
}

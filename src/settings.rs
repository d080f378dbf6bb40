//! The two profiles an operator fills in GoCD's UI, parsed into typed settings.
//!
//! The property keys are fixed: operators' saved configuration depends on them. Parsing
//! is the validation: `parse` returns every problem at once as GoCD's `{key, message}`
//! list, so validate-* requests and create-agent agree on what a valid profile is.

mod checks;
pub mod cluster;
pub mod elastic;
mod field;
mod image_ref;
mod pool;
mod quantity;

pub use checks::is_dns_subdomain;
pub use cluster::{ClusterId, ClusterSettings, DindSecurity, DockerConnection, KubernetesConnection, RuntimeKind};
pub use elastic::{is_reserved_env, ElasticSettings, EnvVar};
pub use field::{Choice, Field, Input};
pub use pool::PoolId;
pub use quantity::{Cpu, Memory};

use crate::protocol::{Properties, ValidationError};

/// Flags every key that is not one of `fields`, the way GoCD's own plugins do, so a typo
/// in a profile is caught instead of silently ignored.
fn unknown_keys(properties: &Properties, fields: &[Field], errors: &mut Vec<ValidationError>) {
    for key in properties.0.keys() {
        if !fields.iter().any(|f| f.key == key) {
            errors.push(ValidationError::new(key, "Is an unknown property"));
        }
    }
}

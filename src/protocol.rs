//! GoCD's elastic-agent extension v5 on the wire: request names and body types.
//!
//! Types are lenient where GoCD is (unknown fields are ignored, `environment` may be
//! absent, a property value may be `null`) and strict where a missing field would make us
//! act on the wrong job (`job_identifier.job_id`, `auto_register_key`).

mod messages;
mod request_name;

pub use messages::*;
pub use request_name::RequestName;

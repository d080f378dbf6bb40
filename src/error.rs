//! Errors that reach GoCD (through the shim) as an HTTP status and `{"message": ...}`.

use axum::http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body is not what GoCD sends for this request.
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed, but a profile value makes the request impossible.
    #[error("{0}")]
    Unprocessable(String),
    #[error("unknown request name '{0}': this plugin speaks elastic-agent extension v5")]
    UnknownRequest(String),
    #[error("missing or wrong bearer token: set the same token for the shim and the service (GOCD_DIND_TOKEN or GOCD_DIND_TOKEN_FILE)")]
    Unauthorized,
    #[error("request body over {limit} bytes")]
    TooLarge { limit: usize },
    /// Our fault: details go to the log, not to GoCD.
    #[error("internal error in gocd-dind; see the service log")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::UnknownRequest(_) => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Parses a request body, naming the field and what was expected but never echoing
    /// the value: bodies carry register keys and decrypted secure properties.
    pub fn parse_body<T: serde::de::DeserializeOwned>(request: &str, body: &[u8]) -> Result<T> {
        let deserializer = &mut serde_json::Deserializer::from_slice(body);
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let what = redact(&inner.to_string());
            let at = if path == "." { String::new() } else { format!(" at `{path}`") };
            Error::BadRequest(format!("{request}: invalid body{at}: {what}"))
        })
    }
}

/// serde's messages quote the offending value (`invalid type: string "…", expected …`);
/// keep only what was expected and where.
pub(crate) fn redact(message: &str) -> String {
    match message.split_once(", expected ") {
        Some((_, expected)) => format!("wrong type or value, expected {expected}"),
        None => message.to_owned(),
    }
}

//! Checks of single values, shared by both profiles. Each returns the message GoCD
//! shows under the field; a message quotes only the value of a non-secure key.

use std::collections::BTreeSet;

/// GoCD's agent bootstrapper only accepts an http(s) URL ending in `/go`; anything else
/// surfaces much later as an agent that never registers.
pub fn validate_server_url(url: &str) -> Result<(), String> {
    validate_http_url(url)?;
    if !url.trim_end_matches('/').ends_with("/go") {
        return Err(format!("'{url}' must end in /go, e.g. https://gocd.example.com/go"));
    }
    Ok(())
}

pub fn validate_http_url(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !rest.contains(char::is_whitespace) => Ok(()),
        _ => Err(format!("'{url}' is not an http:// or https:// URL")),
    }
}

/// A reference that would only fail at pull time, after a pod was made for it, is refused
/// here with what is wrong (the grammar is in `image_ref.rs`).
pub fn validate_image(image: &str) -> Result<(), String> {
    super::image_ref::check(image).map_err(|wrong| {
        format!("'{image}' is not an image reference like registry.example.com/team/image:tag: {wrong}")
    })
}

/// Comma- (or whitespace-) separated Secret names, each a Kubernetes object name. The
/// agent pods' own Secrets are refused: they hold a pod's TLS keys and register key.
pub fn parse_secret_names(text: &str) -> Result<BTreeSet<String>, String> {
    let names: BTreeSet<String> =
        text.split(|c: char| c == ',' || c.is_whitespace()).filter(|n| !n.is_empty()).map(str::to_owned).collect();
    let mut problems = Vec::new();
    for name in &names {
        if !is_dns_subdomain(name) {
            problems.push(format!("'{name}' is not a Secret name (lowercase letters, digits, '-', '.')"));
        } else if name.starts_with("gocd-dind-") && name.ends_with("-tls") {
            problems.push(format!("'{name}' is an agent pod's own Secret (its TLS keys and register key)"));
        }
    }
    if problems.is_empty() {
        Ok(names)
    } else {
        Err(problems.join("; "))
    }
}

/// A Kubernetes object name such as a Secret's: lowercase DNS labels joined by dots.
pub fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

pub fn validate_dns_label(name: &str) -> Result<(), String> {
    let ok = name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!("'{name}' is not a Kubernetes namespace name (lowercase letters, digits, '-', at most 63)"))
    }
}

/// Registry addresses, `host[:port]`, separated by commas or whitespace: what dockerd's
/// `--insecure-registry` takes (no scheme, nothing that could read as another flag).
pub fn parse_registries(text: &str) -> Result<Vec<String>, String> {
    let mut registries: Vec<String> = Vec::new();
    let mut problems = Vec::new();
    for entry in text.split(|c: char| c == ',' || c.is_whitespace()).filter(|e| !e.is_empty()) {
        let plain = entry.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
        let host = entry.trim_start_matches('[');
        if !plain || !host.starts_with(|c: char| c.is_ascii_alphanumeric() || c == ':') {
            problems
                .push(format!("'{entry}' is not a registry address like 10.0.0.5:5000 or registry.example.com:5000"));
        } else if !registries.iter().any(|r| r == entry) {
            registries.push(entry.to_owned());
        }
    }
    if problems.is_empty() {
        Ok(registries)
    } else {
        Err(problems.join("; "))
    }
}

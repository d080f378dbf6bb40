//! Image references as Docker and every registry read them: the grammar of
//! github.com/distribution/reference (`regexp.go`, `normalize.go`), checked part by part
//! so that a refusal says which part is wrong. A reference that passes here is one
//! `docker pull` and the kubelet accept; one that fails would only fail at pull time,
//! after a pod was made for it.
//!
//! ```text
//! reference   := name [ ":" tag ] [ "@" digest ]
//! name        := [ domain "/" ] path            (at most 255 characters)
//! domain      := host [ ":" port ]              (host: DNS name, IPv4, or [IPv6])
//! path        := component [ "/" component ]*
//! component   := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag         := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//! digest      := algorithm ":" [0-9a-fA-F]{32,}
//! algorithm   := [A-Za-z][A-Za-z0-9]* ( [-_+.] [A-Za-z][A-Za-z0-9]* )*
//! ```

use std::sync::LazyLock;

use regex::Regex;

/// The longest name (domain and path) the grammar allows.
const NAME_MAX: usize = 255;

fn anchored(pattern: &str) -> Regex {
    Regex::new(&format!("^(?:{pattern})$")).expect("a valid pattern")
}

static DOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    let label = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
    anchored(&format!(r"(?:{label}(?:\.{label})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"))
});
static PATH: LazyLock<Regex> = LazyLock::new(|| {
    let component = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
    anchored(&format!("{component}(?:/{component})*"))
});
static TAG: LazyLock<Regex> = LazyLock::new(|| anchored("[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"));
static DIGEST: LazyLock<Regex> =
    LazyLock::new(|| anchored("[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"));
static IMAGE_ID: LazyLock<Regex> = LazyLock::new(|| anchored("[a-f0-9]{64}"));

/// Whether `image` is an image reference; if not, what is wrong with it.
pub fn check(image: &str) -> Result<(), String> {
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        if digest.is_empty() {
            return Err("'@' must be followed by a digest, e.g. @sha256:<64 hex digits>".into());
        }
        if !DIGEST.is_match(digest) {
            return Err(format!(
                "'{digest}' is not a digest: an algorithm, ':' and at least 32 hex digits, e.g. sha256:<64 hex digits>"
            ));
        }
    }
    // A tag is what follows a ':' after the last '/' (before it, a ':' is a port).
    let name_end = rest.rfind('/').map_or(0, |slash| slash + 1);
    let (name, tag) = match rest[name_end..].rfind(':') {
        Some(colon) => (&rest[..name_end + colon], Some(&rest[name_end + colon + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        if !TAG.is_match(tag) {
            return Err(format!(
                "the tag '{tag}' must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
            ));
        }
    }
    check_name(name)?;
    if tag.is_none() && digest.is_none() && IMAGE_ID.is_match(name) {
        return Err("64 hex digits are an image ID, not a reference to pull".into());
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the repository name is missing".into());
    }
    if name.len() > NAME_MAX {
        return Err(format!("the repository name is longer than {NAME_MAX} characters"));
    }
    if name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        return Err("the repository name has an empty part (a leading, trailing or doubled '/')".into());
    }
    if PATH.is_match(name) {
        return Ok(());
    }
    // Else the first part may be a registry, as the grammar reads it: any host name, an
    // address, with a port or not.
    let Some((domain, path)) = name.split_once('/') else { return Err(path_problem(name)) };
    if DOMAIN.is_match(domain) && PATH.is_match(path) {
        return Ok(());
    }
    // Which part to blame: Docker takes the first part for a registry when it has a '.'
    // or ':' or is `localhost`; else it is the first part of the repository's path.
    let registry = domain.contains(['.', ':', '[']) || domain == "localhost";
    match (registry, DOMAIN.is_match(domain)) {
        (true, false) => Err(format!("'{domain}' is not a registry address like registry.example.com:5000")),
        (true, true) => Err(path_problem(path)),
        (false, _) => Err(path_problem(name)),
    }
}

fn path_problem(path: &str) -> String {
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        format!("the repository name '{path}' must be lowercase")
    } else {
        format!(
            "the repository name '{path}' must be lowercase letters and digits, separated by '.', '_', '__' or '-', with '/' between parts"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST_HEX: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references_docker_pulls_are_accepted() {
        let with_digest = format!("registry.example.com:5000/team/build@{DIGEST_HEX}");
        let tag_and_digest = format!("busybox:1.36@{DIGEST_HEX}");
        let accepted = [
            "busybox",
            "busybox:1.36",
            "docker:dind",
            "gocd/gocd-agent-wolfi:v25.4.0",
            "registry.example.com/team/image:tag",
            "localhost:5000/team/image",
            "localhost:5000",
            "127.0.0.1:5000/a/b:c",
            "[::1]:5000/image:v1",
            "Registry.Example.com/team/image",
            "a__b/c-d--e/f_g.h:TAG_1.x-y",
            with_digest.as_str(),
            tag_and_digest.as_str(),
        ];
        for image in accepted {
            assert_eq!(check(image), Ok(()), "{image}");
        }
    }

    #[test]
    fn a_refusal_says_what_is_wrong() {
        let long = format!("a/{}", "b".repeat(254));
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let refused = [
            ("Busybox", "the repository name 'Busybox' must be lowercase"),
            ("registry.example.com/Team/image", "the repository name 'Team/image' must be lowercase"),
            ("team/Image", "the repository name 'team/Image' must be lowercase"),
            ("team/image/", "an empty part (a leading, trailing or doubled '/')"),
            ("/image", "an empty part"),
            ("team//image", "an empty part"),
            ("busybox@", "'@' must be followed by a digest"),
            ("busybox@sha256:0123", "'sha256:0123' is not a digest"),
            ("busybox@0123456789abcdef0123456789abcdef", "is not a digest"),
            ("busybox:", "the tag '' must be 1 to 128"),
            ("busybox:-rc", "the tag '-rc' must be"),
            ("busybox:1.36:2", "must be lowercase letters and digits"),
            (":1.36", "the repository name is missing"),
            ("-busybox", "must be lowercase letters and digits"),
            ("team/-image", "must be lowercase letters and digits"),
            ("busy box", "must be lowercase letters and digits"),
            ("reg_istry.example.com:5000/image", "'reg_istry.example.com:5000' is not a registry address"),
            (long.as_str(), "longer than 255 characters"),
            (id, "an image ID"),
        ];
        for (image, wrong) in refused {
            let message = check(image).expect_err(image);
            assert!(message.contains(wrong), "{image}: {message}");
        }
        let tag = format!("busybox:{}", "t".repeat(129));
        assert!(check(&tag).is_err_and(|m| m.contains("1 to 128")));
    }
}

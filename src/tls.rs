//! Per-pod TLS material for the agent ↔ dockerd link.
//!
//! Every pod gets a fresh CA that signs one server and one client certificate; the CA
//! key is dropped before this function returns, so nothing can mint another certificate
//! that a pod's daemon would trust. ECDSA P-256 keeps minting in the milliseconds.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use time::{Duration, OffsetDateTime};

/// PEM files of one pod. The server pair goes only to dind, the client pair only to the
/// agent; both get the CA certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct PodTls {
    pub ca_cert: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

impl std::fmt::Debug for PodTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PodTls { keys redacted }")
    }
}

/// Longer than any job; the pod and its material are deleted when the job completes.
const VALIDITY: Duration = Duration::days(30);

pub fn mint(pod_name: &str) -> Result<PodTls, rcgen::Error> {
    let now = OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate()?;
    let mut ca_params = params(&format!("gocd-dind CA for {pod_name}"), now)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate()?;
    let mut server_params = params(&format!("dockerd {pod_name}"), now)?;
    server_params.subject_alt_names = vec![
        SanType::DnsName("localhost".try_into()?),
        SanType::IpAddress([127, 0, 0, 1].into()),
        SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()),
    ];
    // clientAuth too: dind's startup probe calls its own daemon with this pair, so the
    // client key never has to enter the dind container.
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let server_cert = server_params.signed_by(&server_key, &issuer)?;

    let client_key = KeyPair::generate()?;
    let mut client_params = params(&format!("agent {pod_name}"), now)?;
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    client_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let client_cert = client_params.signed_by(&client_key, &issuer)?;
    drop(issuer); // the CA key ends here

    Ok(PodTls {
        ca_cert: ca_cert.pem(),
        server_cert: server_cert.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: client_cert.pem(),
        client_key: client_key.serialize_pem(),
    })
}

fn params(common_name: &str, now: OffsetDateTime) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.not_before = now - Duration::hours(1);
    params.not_after = now + VALIDITY;
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pod_gets_its_own_material() {
        let a = mint("pod-a").unwrap();
        let b = mint("pod-b").unwrap();
        assert_ne!(a.ca_cert, b.ca_cert);
        assert_ne!(a.client_key, b.client_key);
        for pem in [&a.ca_cert, &a.server_cert, &a.client_cert] {
            assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        }
        assert!(a.server_key.contains("PRIVATE KEY"));
        assert!(!format!("{a:?}").contains("PRIVATE"));
    }
}

//! Links into GoCD's own pages, built the way GoCD builds its links from its site URL
//! (`ServerConfigService.siteUrlWithPath`): the secure site URL when set, else the site
//! URL; of it only scheme, host and port, followed by GoCD's context path `/go` and the
//! page's path. Without a site URL the links are root-relative: the pages are shown inside
//! GoCD, so `/go/...` reaches the same server.

use reqwest::Url;

use crate::pod::PLUGIN_ID;
use crate::processor::ServerInfo;
use crate::protocol::JobIdentifier;

/// GoCD's web application context path.
const CONTEXT: &str = "go";

pub struct Links {
    /// `scheme://host:port` of GoCD's (secure) site URL.
    base: Option<Url>,
}

impl Links {
    pub fn new(server: Option<&ServerInfo>) -> Self {
        let usable = |url: &Option<String>| {
            url.as_deref()
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .and_then(|u| Url::parse(u).ok())
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
        };
        let base = server.and_then(|s| usable(&s.secure_site_url).or_else(|| usable(&s.site_url)));
        Self { base }
    }

    /// GoCD's page of one job run: `/go/tab/build/detail/PIPELINE/COUNTER/STAGE/COUNTER/JOB`.
    pub fn job(&self, job: &JobIdentifier) -> String {
        let counter = job.pipeline_counter.to_string();
        self.page(
            &[
                "tab",
                "build",
                "detail",
                &job.pipeline_name,
                &counter,
                &job.stage_name,
                &job.stage_counter,
                &job.job_name,
            ],
            None,
        )
    }

    /// GoCD's agent status page for this plugin's agent of a job:
    /// `/go/admin/status_reports/gocd-dind/agent/AGENT?job_id=ID` (GoCD's
    /// `StatusReportsController`; `unassigned` when no agent is known).
    pub fn agent_status(&self, agent_id: Option<&str>, job_id: i64) -> String {
        let agent = agent_id.unwrap_or("unassigned");
        self.page(&["admin", "status_reports", PLUGIN_ID, "agent", agent], Some(("job_id", &job_id.to_string())))
    }

    fn page(&self, segments: &[&str], query: Option<(&str, &str)>) -> String {
        let mut url = self.base.clone().unwrap_or_else(|| Url::parse("http://gocd.invalid").expect("a valid URL"));
        url.set_query(None);
        url.set_fragment(None);
        url.path_segments_mut().expect("http URLs have paths").clear().push(CONTEXT).extend(segments);
        if let Some((key, value)) = query {
            url.query_pairs_mut().append_pair(key, value);
        }
        if self.base.is_some() {
            url.to_string()
        } else {
            format!("{}{}", url.path(), url.query().map(|q| format!("?{q}")).unwrap_or_default())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(site: Option<&str>, secure: Option<&str>) -> ServerInfo {
        ServerInfo { server_id: "s".into(), site_url: site.map(Into::into), secure_site_url: secure.map(Into::into) }
    }

    fn job() -> JobIdentifier {
        JobIdentifier {
            job_id: 42,
            pipeline_name: "build".into(),
            pipeline_counter: 7,
            stage_name: "test".into(),
            stage_counter: "2".into(),
            job_name: "unit".into(),
            ..JobIdentifier::default()
        }
    }

    #[test]
    fn links_follow_gocds_patterns_from_the_preferably_secure_site_url() {
        let links = Links::new(Some(&server(Some("http://gocd:8153/go"), Some("https://ci.example.com:8154/ignored"))));
        assert_eq!(links.job(&job()), "https://ci.example.com:8154/go/tab/build/detail/build/7/test/2/unit");
        assert_eq!(
            links.agent_status(Some("gocd-dind-abc"), 42),
            "https://ci.example.com:8154/go/admin/status_reports/gocd-dind/agent/gocd-dind-abc?job_id=42"
        );
        let plain = Links::new(Some(&server(Some("http://gocd:8153"), Some(""))));
        assert_eq!(
            plain.agent_status(None, 1),
            "http://gocd:8153/go/admin/status_reports/gocd-dind/agent/unassigned?job_id=1"
        );
    }

    #[test]
    fn without_a_site_url_links_are_root_relative_and_segments_are_encoded() {
        for links in [
            Links::new(None),
            Links::new(Some(&server(None, None))),
            Links::new(Some(&server(Some("javascript:alert(1)"), None))),
        ] {
            let mut hostile = job();
            hostile.pipeline_name = "a/b?<c>".into();
            assert_eq!(links.job(&hostile), "/go/tab/build/detail/a%2Fb%3F%3Cc%3E/7/test/2/unit");
            assert_eq!(links.agent_status(Some("x"), 3), "/go/admin/status_reports/gocd-dind/agent/x?job_id=3");
        }
    }
}

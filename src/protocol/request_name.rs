use std::fmt;
use std::str::FromStr;

/// Every request GoCD sends to an elastic-agent v5 plugin, plus the two generic
/// plugin-settings requests it sends to every plugin at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestName {
    GetIcon,
    GetCapabilities,
    GetElasticAgentProfileMetadata,
    GetElasticAgentProfileView,
    ValidateElasticAgentProfile,
    GetClusterProfileMetadata,
    GetClusterProfileView,
    ValidateClusterProfile,
    CreateAgent,
    ShouldAssignWork,
    ServerPing,
    JobCompletion,
    MigrateConfig,
    ClusterProfileChanged,
    AgentStatusReport,
    ClusterStatusReport,
    PluginStatusReport,
    PluginSettingsGetConfiguration,
    PluginSettingsGetView,
}

impl RequestName {
    pub const ALL: [RequestName; 19] = [
        Self::GetIcon,
        Self::GetCapabilities,
        Self::GetElasticAgentProfileMetadata,
        Self::GetElasticAgentProfileView,
        Self::ValidateElasticAgentProfile,
        Self::GetClusterProfileMetadata,
        Self::GetClusterProfileView,
        Self::ValidateClusterProfile,
        Self::CreateAgent,
        Self::ShouldAssignWork,
        Self::ServerPing,
        Self::JobCompletion,
        Self::MigrateConfig,
        Self::ClusterProfileChanged,
        Self::AgentStatusReport,
        Self::ClusterStatusReport,
        Self::PluginStatusReport,
        Self::PluginSettingsGetConfiguration,
        Self::PluginSettingsGetView,
    ];

    /// GoCD's full request name, e.g. `cd.go.elastic-agent.create-agent`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GetIcon => "cd.go.elastic-agent.get-icon",
            Self::GetCapabilities => "cd.go.elastic-agent.get-capabilities",
            Self::GetElasticAgentProfileMetadata => "cd.go.elastic-agent.get-elastic-agent-profile-metadata",
            Self::GetElasticAgentProfileView => "cd.go.elastic-agent.get-elastic-agent-profile-view",
            Self::ValidateElasticAgentProfile => "cd.go.elastic-agent.validate-elastic-agent-profile",
            Self::GetClusterProfileMetadata => "cd.go.elastic-agent.get-cluster-profile-metadata",
            Self::GetClusterProfileView => "cd.go.elastic-agent.get-cluster-profile-view",
            Self::ValidateClusterProfile => "cd.go.elastic-agent.validate-cluster-profile",
            Self::CreateAgent => "cd.go.elastic-agent.create-agent",
            Self::ShouldAssignWork => "cd.go.elastic-agent.should-assign-work",
            Self::ServerPing => "cd.go.elastic-agent.server-ping",
            Self::JobCompletion => "cd.go.elastic-agent.job-completion",
            Self::MigrateConfig => "cd.go.elastic-agent.migrate-config",
            Self::ClusterProfileChanged => "cd.go.elastic-agent.cluster-profile-changed",
            Self::AgentStatusReport => "cd.go.elastic-agent.agent-status-report",
            Self::ClusterStatusReport => "cd.go.elastic-agent.cluster-status-report",
            Self::PluginStatusReport => "cd.go.elastic-agent.plugin-status-report",
            Self::PluginSettingsGetConfiguration => "go.plugin-settings.get-configuration",
            Self::PluginSettingsGetView => "go.plugin-settings.get-view",
        }
    }
}

impl fmt::Display for RequestName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RequestName {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|name| name.as_str() == s).ok_or(())
    }
}

//! What the Kubernetes runtime needs the API server to allow: every rule of the Role in
//! deploy/kubernetes/base/role.yaml (which the end-to-end tests run under, so it is
//! exactly what the runtime does), one access review per verb and resource.

use k8s_openapi::api::authorization::v1::ResourceAttributes;
use k8s_openapi::api::rbac::v1::Role;

const ROLE_YAML: &str = include_str!("../../deploy/kubernetes/base/role.yaml");

/// One thing the runtime does, e.g. `create pods` or `get pods/log`.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    pub attributes: ResourceAttributes,
}

impl std::fmt::Display for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = &self.attributes;
        write!(f, "{} {}", a.verb.as_deref().unwrap_or_default(), a.resource.as_deref().unwrap_or_default())?;
        if let Some(sub) = &a.subresource {
            write!(f, "/{sub}")?;
        }
        if let Some(name) = &a.name {
            write!(f, " {name}")?;
        }
        Ok(())
    }
}

/// The Role's rules for the agents' `namespace`. The Role names its own namespace where a
/// rule is about the agents' namespace object; that becomes `namespace` here.
pub fn needs(namespace: &str) -> Vec<Need> {
    let role = role();
    let role_namespace = role.metadata.namespace.clone().unwrap_or_default();
    let mut needs = Vec::new();
    for rule in role.rules.unwrap_or_default() {
        let groups = rule.api_groups.unwrap_or_else(|| vec![String::new()]);
        let names: Vec<Option<String>> = match rule.resource_names {
            Some(names) if !names.is_empty() => {
                names.into_iter().map(|n| Some(if n == role_namespace { namespace.to_owned() } else { n })).collect()
            }
            _ => vec![None],
        };
        for group in &groups {
            for resource in rule.resources.iter().flatten() {
                let (resource, subresource) = match resource.split_once('/') {
                    Some((r, s)) => (r.to_owned(), Some(s.to_owned())),
                    None => (resource.clone(), None),
                };
                for verb in &rule.verbs {
                    for name in &names {
                        needs.push(Need {
                            attributes: ResourceAttributes {
                                namespace: Some(namespace.to_owned()),
                                group: Some(group.clone()),
                                resource: Some(resource.clone()),
                                subresource: subresource.clone(),
                                verb: Some(verb.clone()),
                                name: name.clone(),
                                ..ResourceAttributes::default()
                            },
                        });
                    }
                }
            }
        }
    }
    needs
}

fn role() -> Role {
    let documents: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(ROLE_YAML).expect("deploy/kubernetes/base/role.yaml is YAML (a test parses it)");
    let role = documents.into_iter().find(|d| d["kind"] == "Role").expect("role.yaml holds a Role");
    serde_json::from_value(role).expect("role.yaml's Role is a Role")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_of_the_role_is_a_need_in_the_profiles_namespace() {
        let needs: Vec<String> = needs("ci-agents").iter().map(ToString::to_string).collect();
        assert_eq!(
            needs,
            [
                "create pods",
                "get pods",
                "list pods",
                "watch pods",
                "delete pods",
                "patch pods",
                "create pods/exec",
                "get pods/exec",
                "get pods/log",
                "list events",
                "create secrets",
                "get secrets",
                "delete secrets",
                "get namespaces ci-agents",
            ]
        );
        assert!(super::needs("x").iter().all(|n| n.attributes.namespace.as_deref() == Some("x")));
    }
}

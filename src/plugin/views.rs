//! Profile forms for GoCD's UI: AngularJS 1.x fragments, generated from the same field
//! lists as the metadata, so there is exactly one input per key, bound with `ng-model`,
//! and server-side validation messages shown via `GOINPUTNAME[key].$error.server`.

use std::fmt::Write;

use html_escape::encode_double_quoted_attribute as attr;
use html_escape::encode_text as text;

use crate::settings::{ClusterSettings, ElasticSettings, Field};

const MULTILINE: &[&str] = &[
    "docker_ca_cert",
    "docker_client_cert",
    "docker_client_key",
    "kubernetes_cluster_ca_cert",
    "Environment",
    "PodSpecPatch",
];

fn choices(key: &str) -> Option<&'static [&'static str]> {
    match key {
        "runtime" => Some(&["docker", "kubernetes"]),
        "dind_security" => Some(&["privileged", "capabilities"]),
        _ => None,
    }
}

fn form(fields: &[Field]) -> String {
    let mut html = String::from("<div class=\"gocd-dind-profile\">\n");
    for field in fields {
        let key = attr(field.key);
        let input = if let Some(options) = choices(field.key) {
            let options = options.iter().fold(String::new(), |mut html, o| {
                let _ = write!(html, "<option value=\"{o}\">{o}</option>");
                html
            });
            format!(
                "<select ng-model=\"{key}\" name=\"{key}\"><option value=\"\">(default: {})</option>{options}</select>",
                options_default(field.key)
            )
        } else if MULTILINE.contains(&field.key) {
            format!("<textarea ng-model=\"{key}\" name=\"{key}\" rows=\"5\"></textarea>")
        } else if field.secure {
            format!("<input type=\"password\" ng-model=\"{key}\" name=\"{key}\"/>")
        } else {
            format!("<input type=\"text\" ng-model=\"{key}\" name=\"{key}\"/>")
        };
        let _ = write!(
            html,
            "  <div class=\"form_item_block\">\n    <label ng-class=\"{{'is-invalid-label': GOINPUTNAME[{key}].$error.server}}\">{label}{required}</label>\n    {input}\n    <span class=\"form_error form-error\" ng-class=\"{{'is-visible': GOINPUTNAME[{key}].$error.server}}\" ng-show=\"GOINPUTNAME[{key}].$error.server\">{{{{GOINPUTNAME[{key}].$error.server}}}}</span>\n    <span class=\"form_help\">{help}</span>\n  </div>\n",
            label = text(field.label),
            required = if field.required { "<span class=\"asterix\">*</span>" } else { "" },
            help = text(field.help),
        );
    }
    html.push_str("</div>\n");
    html
}

fn options_default(key: &str) -> &'static str {
    if key == "runtime" {
        "docker"
    } else {
        "privileged"
    }
}

pub fn cluster_profile() -> String {
    form(ClusterSettings::fields())
}

pub fn elastic_profile() -> String {
    form(ElasticSettings::fields())
}

pub fn plugin_settings() -> &'static str {
    "<div class=\"form_item_block\">gocd-dind has no plugin settings: configure it with cluster profiles and elastic agent profiles.</div>"
}

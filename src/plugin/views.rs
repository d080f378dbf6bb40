//! Profile forms for GoCD's UI: AngularJS 1.x fragments, generated from the same field
//! lists as the metadata, so there is exactly one input per key, bound with `ng-model`,
//! and server-side validation messages shown via `GOINPUTNAME[key].$error.server`.

use std::fmt::Write;

use html_escape::encode_double_quoted_attribute as attr;
use html_escape::encode_text as text;

use crate::settings::{ClusterSettings, ElasticSettings, Field, Input};

fn input(field: &Field) -> String {
    let key = attr(field.key);
    match field.input {
        Input::Choice { names } => {
            let options = names().into_iter().fold(String::new(), |mut html, name| {
                let _ = write!(html, "<option value=\"{name}\">{name}</option>", name = attr(name));
                html
            });
            let default = text(&field.default_value().unwrap_or_default()).into_owned();
            format!(
                "<select ng-model=\"{key}\" name=\"{key}\"><option value=\"\">(default: {default})</option>{options}</select>"
            )
        }
        _ if field.multiline() => format!("<textarea ng-model=\"{key}\" name=\"{key}\" rows=\"5\"></textarea>"),
        Input::Secret { .. } => format!("<input type=\"password\" ng-model=\"{key}\" name=\"{key}\"/>"),
        _ => format!("<input type=\"text\" ng-model=\"{key}\" name=\"{key}\"/>"),
    }
}

fn form(fields: &[Field]) -> String {
    let mut html = String::from("<div class=\"gocd-dind-profile\">\n");
    for field in fields {
        let key = attr(field.key);
        let _ = write!(
            html,
            "  <div class=\"form_item_block\">\n    <label ng-class=\"{{'is-invalid-label': GOINPUTNAME[{key}].$error.server}}\">{label}</label>\n    {input}\n    <span class=\"form_error form-error\" ng-class=\"{{'is-visible': GOINPUTNAME[{key}].$error.server}}\" ng-show=\"GOINPUTNAME[{key}].$error.server\">{{{{GOINPUTNAME[{key}].$error.server}}}}</span>\n    <span class=\"form_help\">{help}</span>\n  </div>\n",
            label = text(field.label),
            input = input(field),
            help = text(&field.help_text()),
        );
    }
    html.push_str("</div>\n");
    html
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

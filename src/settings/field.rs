//! One definition per profile key: its name, label, help, kind of input and default. The
//! parsers, GoCD's metadata, the profile forms (`plugin/views.rs`), the status reports
//! and the tables of docs/configuration.md (checked by a test) all read it from here.

use crate::protocol::{MetadataFlags, ProfileMetadata, Properties, ValidationError};

/// One profile key.
#[derive(Clone, Copy)]
pub struct Field {
    /// The property key GoCD stores; fixed, since operators' saved profiles use it.
    pub key: &'static str,
    pub label: &'static str,
    /// What the form says under the input; the default is added from `input`.
    pub help: &'static str,
    pub input: Input,
}

/// What the key holds, which decides the form's input and the default.
#[derive(Clone, Copy)]
pub enum Input {
    /// One line of text; `default` is what a blank value means, when that is a value.
    Line { default: Option<&'static str> },
    /// Several lines: PEM, `KEY=VALUE` lines, JSON.
    Lines,
    /// A secure value: GoCD stores it encrypted and masks it.
    Secret { lines: bool },
    /// One name of a set, the first being the default (see [`Choice`]).
    Choice { names: fn() -> Vec<&'static str> },
    /// A whole number from `min` to `max`.
    Number { default: usize, min: usize, max: usize },
}

impl Field {
    pub const fn line(key: &'static str, label: &'static str, help: &'static str) -> Self {
        Self { key, label, help, input: Input::Line { default: None } }
    }

    pub const fn lines(key: &'static str, label: &'static str, help: &'static str) -> Self {
        Self { key, label, help, input: Input::Lines }
    }

    pub fn secure(&self) -> bool {
        matches!(self.input, Input::Secret { .. })
    }

    /// Whether the form needs a text area.
    pub fn multiline(&self) -> bool {
        matches!(self.input, Input::Lines | Input::Secret { lines: true })
    }

    /// Every key is optional: each has a default or means "not used" when blank.
    pub fn metadata(&self) -> ProfileMetadata {
        ProfileMetadata { key: self.key, metadata: MetadataFlags { required: false, secure: self.secure() } }
    }

    /// What a blank value means, when that is a value an operator could type.
    pub fn default_value(&self) -> Option<String> {
        match self.input {
            Input::Line { default } => default.map(str::to_owned),
            Input::Choice { names } => names().first().map(|n| (*n).to_owned()),
            Input::Number { default, .. } => Some(default.to_string()),
            Input::Lines | Input::Secret { .. } => None,
        }
    }

    /// The help text with the default, as the form shows it.
    pub fn help_text(&self) -> String {
        match self.default_value() {
            Some(default) => format!("{} Default: {default}.", self.help),
            None => self.help.to_owned(),
        }
    }

    /// The value, when set (GoCD's blank and `null` both mean not set).
    pub fn get<'a>(&self, props: &'a Properties) -> Option<&'a str> {
        props.get(self.key)
    }

    /// The value when set and valid; `None` otherwise, with the problem in `errors`.
    pub fn parse<T>(
        &self,
        props: &Properties,
        parse: impl FnOnce(&str) -> Result<T, String>,
        errors: &mut Vec<ValidationError>,
    ) -> Option<T> {
        let text = self.get(props)?;
        parse(text).map_err(|message| errors.push(ValidationError::new(self.key, message))).ok()
    }

    /// A `Number` key: its value, or its default when blank or refused.
    pub fn number(&self, props: &Properties, errors: &mut Vec<ValidationError>) -> usize {
        let Input::Number { default, min, max } = self.input else {
            unreachable!("{} is not a number", self.key);
        };
        let in_range = |text: &str| match text.parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(format!("'{text}' must be a whole number from {min} to {max}")),
        };
        self.parse(props, in_range, errors).unwrap_or(default)
    }
}

/// A key whose value is one of a set of names.
pub trait Choice: Copy + Eq + 'static {
    /// Every value an operator may choose, the default first.
    const ALL: &'static [Self];
    /// What a value is, for refusals: "a runtime".
    const WHAT: &'static str;
    /// The profile key.
    const FIELD: Field;

    /// The name in profiles, forms and reports.
    fn name(self) -> &'static str;

    fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|c| c.name()).collect()
    }

    fn parse(text: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .copied()
            .find(|c| c.name() == text)
            .ok_or_else(|| format!("'{text}' is not {}: use {}", Self::WHAT, Self::names().join(" or ")))
    }

    /// The profile's value, or the default when blank or refused (then in `errors`).
    fn from_profile(props: &Properties, errors: &mut Vec<ValidationError>) -> Self {
        Self::FIELD.parse(props, Self::parse, errors).unwrap_or(Self::ALL[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{cluster, elastic, DindSecurity, RuntimeKind};

    #[test]
    fn a_choice_is_its_names_the_default_first() {
        assert_eq!(RuntimeKind::names(), ["docker", "kubernetes"], "the test-only memory runtime is never offered");
        assert_eq!(DindSecurity::FIELD.default_value().as_deref(), Some("privileged"));
        assert_eq!(DindSecurity::parse("capabilities"), Ok(DindSecurity::Capabilities));
        assert_eq!(RuntimeKind::parse("swarm").unwrap_err(), "'swarm' is not a runtime: use docker or kubernetes");
        assert_eq!(cluster::RUNTIME.help_text(), format!("{} Default: docker.", cluster::RUNTIME.help));
    }

    #[test]
    fn a_number_has_its_default_and_bounds() {
        let mut errors = Vec::new();
        let blank = Properties::default();
        assert_eq!(cluster::MAX_RUNNING_AGENTS.number(&blank, &mut errors), 50);
        let zero = Properties::from_pairs(&[("max_running_agents", "0")]);
        assert_eq!(cluster::MAX_RUNNING_AGENTS.number(&zero, &mut errors), 50);
        assert_eq!(errors[0].message, "'0' must be a whole number from 1 to 10000");
    }

    /// docs/configuration.md is written by hand: each key has its row, and a default
    /// there is the one the code applies.
    #[test]
    fn the_configuration_page_lists_every_key_with_its_default() {
        let docs = include_str!("../../docs/configuration.md");
        for field in cluster::FIELDS.iter().chain(elastic::FIELDS) {
            let row = docs
                .lines()
                .find(|line| line.starts_with(&format!("| `{}` ", field.key)))
                .unwrap_or_else(|| panic!("docs/configuration.md has no row for {}", field.key));
            let documented = row.split('|').nth(3).unwrap().trim();
            if let Some(default) = field.default_value() {
                assert_eq!(documented, format!("`{default}`"), "the documented default of {}", field.key);
            }
        }
    }
}

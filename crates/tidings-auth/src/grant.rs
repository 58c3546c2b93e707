//! `Grant`: what a credential may do, and `GrantTemplate`: a grant selector written in the
//! configuration with `{claim}` placeholders that each JWT fills from its own claims.
//!
//! Containment is judged on the selector syntax of `tidings_proto::Pattern`, byte for byte: a
//! requested pattern is allowed only when a granted one covers every topic it could match
//! (`Pattern::covers`), so a trailing `*` or a shorter prefix never reaches past a grant, and
//! a Unicode look-alike is simply another topic.
//!
//! A placeholder is filled only by a claim that is a string usable as one topic segment:
//! non-empty, at most `MAX_CLAIM_BYTES`, no control characters, no `/`, `*`, `{` or `}`, and
//! not `.` or `..`. So `users/{sub}/*` stays inside `users/<sub>/` whatever `sub` says. A token
//! without the claim simply does not get that grant; a token whose claim breaks the rule is
//! refused.

use std::fmt;

use serde_json::Value;
use tidings_proto::{Pattern, Selector, Topic};

/// Longest claim value that may fill a placeholder, in bytes.
pub const MAX_CLAIM_BYTES: usize = 256;

/// What a credential may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// A name for logs (never the secret).
    pub name: String,
    /// Topics it may publish to.
    pub publish: Vec<Pattern>,
    /// Topics it may subscribe to.
    pub subscribe: Vec<Pattern>,
    /// Whether it may use the administrative operations.
    pub admin: bool,
}

impl Grant {
    /// Everything: what an anonymous caller gets when no credentials are configured.
    pub fn everything(name: &str) -> Self {
        Grant {
            name: name.to_owned(),
            publish: vec![Pattern::All],
            subscribe: vec![Pattern::All],
            admin: true,
        }
    }

    /// Whether this grant may publish to `topic`.
    pub fn may_publish(&self, topic: &Topic) -> bool {
        self.publish.iter().any(|p| p.matches(topic))
    }

    /// `Ok` when every pattern of `selector` is covered by a subscribe grant; otherwise the
    /// first pattern that is not.
    pub fn check_subscribe<'a>(&self, selector: &'a Selector) -> Result<(), &'a Pattern> {
        match selector
            .patterns
            .iter()
            .find(|want| !self.subscribe.iter().any(|g| g.covers(want)))
        {
            Some(p) => Err(p),
            None => Ok(()),
        }
    }
}

/// A grant selector with `{claim}` placeholders, e.g. `users/{sub}/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantTemplate {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Claim(String),
}

/// Why a claim could not fill a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// The claim's name.
    pub claim: String,
    /// What is wrong with its value (never the value itself).
    pub reason: &'static str,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "claim `{}` cannot fill a grant template: {}",
            self.claim, self.reason
        )
    }
}

impl GrantTemplate {
    /// Parses a template: text with `{claim}` placeholders (a claim name is any non-empty text
    /// without braces). The result must be a valid selector once filled, and a placeholder
    /// may not be followed directly by the final `*` (`users/{sub}*` would also grant the
    /// subtree of every user whose id starts with this one's).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(Part::Text(rest.to_owned()));
                    rest = "";
                }
                Some(i) if rest.as_bytes()[i] == b'}' => {
                    return Err(format!("`{text}`: a `}}` without its `{{`"));
                }
                Some(i) => {
                    if i > 0 {
                        parts.push(Part::Text(rest[..i].to_owned()));
                    }
                    let after = &rest[i + 1..];
                    let end = after
                        .find(['{', '}'])
                        .filter(|&j| after.as_bytes()[j] == b'}')
                        .ok_or_else(|| format!("`{text}`: a `{{` without its `}}`"))?;
                    let name = &after[..end];
                    if name.is_empty() {
                        return Err(format!("`{text}`: an empty `{{}}` placeholder"));
                    }
                    parts.push(Part::Claim(name.to_owned()));
                    rest = &after[end + 1..];
                }
            }
        }
        if let [.., Part::Claim(name), Part::Text(last)] = parts.as_slice()
            && last == "*"
        {
            return Err(format!(
                "`{text}`: `{{{name}}}*` would also cover every longer value of `{name}`; \
                 end the template with `{{{name}}}/*`"
            ));
        }
        let template = GrantTemplate {
            text: text.to_owned(),
            parts,
        };
        let sample = Value::String("x".to_owned());
        template
            .render(|_| Some(&sample))
            .map_err(|e| format!("`{text}`: {e}"))?;
        Ok(template)
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The names of the claims it uses.
    pub fn claims(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Claim(name) => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    /// The selector for one token, with each placeholder filled from `claim`. `Ok(None)` when
    /// a claim it needs is absent (the token does not get this grant).
    pub fn render<'v>(
        &self,
        claim: impl Fn(&str) -> Option<&'v Value>,
    ) -> Result<Option<Pattern>, TemplateError> {
        let mut out = String::with_capacity(self.text.len());
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Claim(name) => {
                    let Some(value) = claim(name) else {
                        return Ok(None);
                    };
                    let fail = |reason| TemplateError {
                        claim: name.clone(),
                        reason,
                    };
                    let value = value.as_str().ok_or_else(|| fail("it is not a string"))?;
                    check_segment(value).map_err(fail)?;
                    out.push_str(value);
                }
            }
        }
        Pattern::parse(&out).map(Some).map_err(|_| TemplateError {
            claim: self.claims().next().unwrap_or_default().to_owned(),
            reason: "the filled template is not a valid selector",
        })
    }
}

/// The rule for a claim value that fills a placeholder: one topic segment that cannot add a
/// wildcard, a level, or a relative step.
fn check_segment(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("it is empty");
    }
    if value.len() > MAX_CLAIM_BYTES {
        return Err("it is longer than 256 bytes");
    }
    if value == "." || value == ".." {
        return Err("it is `.` or `..`");
    }
    if value.chars().any(char::is_control) {
        return Err("it contains a control character");
    }
    if value.contains(['/', '*', '{', '}']) {
        return Err("it contains `/`, `*`, `{` or `}`");
    }
    Ok(())
}

#[cfg(test)]
mod tests;

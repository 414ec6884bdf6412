//! Named phrase rules over the normalised text, and the evidence they leave.

use std::borrow::Cow;
use std::ops::Range;

use regex::{Regex, RegexSet};

use crate::text::{Normalized, slice_chars};

/// Why a signal was raised: the text span and the rule, phrase or lexicon entry behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// The signal this supports: `human_request`, `frustration`, `intent`, `entity`, ...
    pub signal: &'static str,
    /// The label within the signal (an intent or topic name, an entity type), if any.
    pub label: Option<&'static str>,
    /// Code-point span in the message, end-exclusive.
    pub span: Range<usize>,
    /// The text of the span.
    pub text: String,
    /// The rule id, phrase or lexicon entry that fired.
    pub rule: Cow<'static, str>,
    /// Index of the turn the span belongs to (0 for a single message).
    pub turn: usize,
}

/// A rule match on the normalised form.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub(crate) rule: &'static str,
    /// Position of the rule in its set.
    pub(crate) index: usize,
    /// Byte range in the normalised text.
    pub(crate) norm: Range<usize>,
}

/// A set of named regular expressions over normalised text, screened in one pass.
#[derive(Debug)]
pub(crate) struct RuleSet {
    set: RegexSet,
    rules: Vec<(&'static str, Regex)>,
}

impl RuleSet {
    /// Builds the set; the patterns are ours and tested, so a bad one is a programming error.
    pub(crate) fn new(rules: &[(&'static str, String)]) -> RuleSet {
        let rules: Vec<(&'static str, String)> = rules
            .iter()
            .map(|(id, p)| (*id, ascii_boundaries(p)))
            .collect();
        let set = regex::RegexSetBuilder::new(rules.iter().map(|(_, p)| p.as_str()))
            .dfa_size_limit(64 << 20)
            .size_limit(64 << 20)
            .build()
            .unwrap_or_else(|e| panic!("rule set does not compile: {e}"));
        let rules = rules
            .iter()
            .map(|(id, p)| {
                let re =
                    Regex::new(p).unwrap_or_else(|e| panic!("rule {id} does not compile: {e}"));
                (*id, re)
            })
            .collect();
        RuleSet { set, rules }
    }

    /// Every match of every rule, in rule order then text order.
    pub(crate) fn hits(&self, norm: &str) -> Vec<Hit> {
        let mut out = Vec::new();
        for i in self.set.matches(norm).iter() {
            let (id, re) = &self.rules[i];
            for m in re.find_iter(norm) {
                out.push(Hit {
                    rule: id,
                    index: i,
                    norm: m.range(),
                });
            }
        }
        out
    }
}

impl Hit {
    pub(crate) fn evidence(
        &self,
        n: &Normalized,
        text: &str,
        signal: &'static str,
        label: Option<&'static str>,
    ) -> Evidence {
        let span = n.orig_span(self.norm.clone());
        Evidence {
            signal,
            label,
            text: slice_chars(text, span.clone()).to_string(),
            span,
            rule: Cow::Borrowed(self.rule),
            turn: 0,
        }
    }
}

/// Makes `\b` an ASCII word boundary. The lazy DFA cannot evaluate Unicode word boundaries and
/// would fall back to a backtracking-free but slow NFA simulation; the rules are English, so an
/// ASCII boundary is what they mean.
pub(crate) fn ascii_boundaries(pattern: &str) -> String {
    pattern.replace(r"\b", r"(?-u:\b)")
}

/// Compiles one of our patterns (with ASCII word boundaries); a bad one is a programming error.
pub(crate) fn regex(pattern: &str) -> Regex {
    Regex::new(&ascii_boundaries(pattern))
        .unwrap_or_else(|e| panic!("pattern does not compile: {e}"))
}

/// Joins alternatives into a non-capturing group.
pub(crate) fn alt(items: &[&str]) -> String {
    format!("(?:{})", items.join("|"))
}

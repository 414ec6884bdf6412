//! Normalisation: the form every phrase rule reads.
//!
//! A message becomes a lower-cased sequence of tokens joined by single spaces: words (letters and
//! digits, with in-word apostrophes dropped so "don't" reads "dont"), and the punctuation marks
//! that carry meaning (`? ! . , ; :`) as tokens of their own. Misspellings of the few words the
//! rules depend on are corrected ("humna" reads "human"). Every token remembers its code-point
//! span in the original text, so a match on the normalised form maps back to evidence.

use std::ops::Range;

use crate::typo;

/// One token of the normalised form.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    /// Byte range in [`Normalized::norm`].
    pub(crate) norm: Range<usize>,
    /// Code-point range in the original text.
    pub(crate) orig: Range<usize>,
}

/// A message in normalised form with the way back to the original.
#[derive(Debug, Clone, Default)]
pub(crate) struct Normalized {
    /// Tokens joined by single spaces, lower case.
    pub(crate) norm: String,
    pub(crate) tokens: Vec<Token>,
    /// Its content words, sorted and deduplicated, made once when first asked for
    /// (`dialogue::similarity` compares every recent pair of turns on each new turn).
    pub(crate) content: std::sync::OnceLock<Vec<String>>,
}

/// Marks kept as tokens: they end clauses or make questions and exclamations.
fn is_kept_punct(c: char) -> bool {
    matches!(c, '?' | '!' | '.' | ',' | ';' | ':' | '？' | '！' | '。')
}

fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '’' | 'ʼ' | '`' | '´')
}

impl Normalized {
    pub(crate) fn new(text: &str) -> Normalized {
        let mut out = Normalized {
            norm: String::with_capacity(text.len() + 8),
            tokens: Vec::with_capacity(text.len() / 4 + 1),
            content: std::sync::OnceLock::new(),
        };
        let mut word = String::new();
        let mut word_start = 0usize;
        let mut prev: Option<char> = None;
        let mut total = 0usize;
        let mut chars = text.chars().enumerate().peekable();
        while let Some((ci, c)) = chars.next() {
            total = ci + 1;
            if c.is_alphanumeric() {
                if word.is_empty() {
                    word_start = ci;
                }
                for l in c.to_lowercase() {
                    word.push(l);
                }
            } else if is_apostrophe(c)
                && !word.is_empty()
                && prev.is_some_and(char::is_alphanumeric)
                && chars.peek().is_some_and(|(_, n)| n.is_alphabetic())
            {
                // In-word apostrophe: "don't" -> "dont".
            } else {
                if !word.is_empty() {
                    out.push_word(&word, word_start..ci);
                    word.clear();
                }
                if is_kept_punct(c) {
                    let p = match c {
                        '？' => '?',
                        '！' => '!',
                        '。' => '.',
                        other => other,
                    };
                    out.push_raw(p.encode_utf8(&mut [0; 4]), ci..ci + 1);
                }
            }
            prev = Some(c);
        }
        if !word.is_empty() {
            out.push_word(&word, word_start..total);
        }
        out
    }

    fn push_word(&mut self, word: &str, orig: Range<usize>) {
        let fixed = typo::correct(word).unwrap_or(word);
        self.push_raw(fixed, orig);
    }

    fn push_raw(&mut self, s: &str, orig: Range<usize>) {
        if !self.norm.is_empty() {
            self.norm.push(' ');
        }
        let start = self.norm.len();
        self.norm.push_str(s);
        self.tokens.push(Token {
            norm: start..self.norm.len(),
            orig,
        });
    }

    /// The original code-point span covered by a byte range of the normalised form.
    pub(crate) fn orig_span(&self, norm: Range<usize>) -> Range<usize> {
        let first = self.tokens.partition_point(|t| t.norm.end <= norm.start);
        let last = self.tokens.partition_point(|t| t.norm.start < norm.end);
        match (
            self.tokens.get(first),
            last.checked_sub(1).and_then(|l| self.tokens.get(l)),
        ) {
            (Some(a), Some(b)) if first < last => a.orig.start..b.orig.end,
            _ => 0..0,
        }
    }

    /// Index of the token that starts at or after a byte offset of the normalised form.
    pub(crate) fn token_at(&self, byte: usize) -> usize {
        self.tokens.partition_point(|t| t.norm.start < byte)
    }

    /// The text of token `i` in normalised form.
    pub(crate) fn tok(&self, i: usize) -> &str {
        self.tokens
            .get(i)
            .map_or("", |t| &self.norm[t.norm.clone()])
    }

    /// Number of word tokens (punctuation excluded).
    pub(crate) fn word_count(&self) -> usize {
        self.tokens
            .iter()
            .filter(|t| {
                self.norm[t.norm.clone()]
                    .chars()
                    .next()
                    .is_some_and(char::is_alphanumeric)
            })
            .count()
    }

    /// The words of the normalised form (punctuation excluded).
    pub(crate) fn words(&self) -> impl Iterator<Item = &str> {
        self.tokens
            .iter()
            .map(|t| &self.norm[t.norm.clone()])
            .filter(|w| w.chars().next().is_some_and(char::is_alphanumeric))
    }
}

/// The substring of `text` between two code-point offsets.
pub fn slice_chars(text: &str, span: Range<usize>) -> &str {
    let mut idx = text
        .char_indices()
        .map(|(b, _)| b)
        .chain(std::iter::once(text.len()));
    let start = idx.nth(span.start).unwrap_or(text.len());
    let len = span.end.saturating_sub(span.start);
    let end = if len == 0 {
        start
    } else {
        idx.nth(len - 1).unwrap_or(text.len())
    };
    &text[start..end.max(start)]
}

/// Converts byte offsets of `text` into code-point offsets, in one pass for sorted input.
pub(crate) struct CharIndex<'a> {
    text: &'a str,
}

impl<'a> CharIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        CharIndex { text }
    }

    pub(crate) fn char_of(&self, byte: usize) -> usize {
        let byte = byte.min(self.text.len());
        // ASCII fast path is implicit: counting chars of a short prefix is cheap.
        self.text[..floor_boundary(self.text, byte)].chars().count()
    }

    pub(crate) fn span(&self, bytes: Range<usize>) -> Range<usize> {
        let s = self.char_of(bytes.start);
        let e = s + self.text
            [floor_boundary(self.text, bytes.start)..floor_boundary(self.text, bytes.end)]
            .chars()
            .count();
        s..e
    }
}

pub(crate) fn floor_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contractions_typos_and_spans() {
        let n = Normalized::new("I don’t want a BOT, get me a humna!!");
        assert_eq!(n.norm, "i dont want a bot , get me a human ! !");
        let m = n.norm.find("human").unwrap();
        let span = n.orig_span(m..m + 5);
        assert_eq!(
            slice_chars("I don’t want a BOT, get me a humna!!", span),
            "humna"
        );
    }

    #[test]
    fn slice_chars_handles_multibyte() {
        assert_eq!(slice_chars("héllo wörld", 6..11), "wörld");
        assert_eq!(slice_chars("abc", 5..9), "");
    }
}

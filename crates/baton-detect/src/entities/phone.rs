//! Phone numbers in international (`+44 20 7946 0958`, `0044 ...`), E.164 (`+14155552671`) and
//! national formats (`(415) 555-2671`, `020 7946 0958`, `07700 900123`, `555-1234`), with an
//! optional extension. A run of digits and separators is a number when its shape says so: a
//! leading `+` or `00`, parentheses around an area code, or digit groups of phone-like size;
//! undivided digits count only with 10 to 15 of them or when the words before say "phone".
//! Dates, years, ranges, amounts and reference numbers are left alone.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

static CANDIDATE: LazyLock<Regex> = LazyLock::new(|| {
    crate::rules::regex(
        r"(?i)(?:\+|\b00|\()?\s?\d[\d\s().\-/\u{2010}-\u{2015}]{4,24}\d(?:\s?(?:x|ext\.?|extension|#)\s?\d{1,6})?\b",
    )
});

static VANITY: LazyLock<Regex> = LazyLock::new(|| {
    crate::rules::regex(
        r"\b(?:\+?1[\s.\-])?\(?8(?:00|33|44|55|66|77|88)\)?[\s.\-]?[A-Z0-9]{3}[\s.\-]?[A-Z0-9]{4,7}\b",
    )
});

const PHONE_WORDS: &[&str] = &[
    "phone",
    "call",
    "tel",
    "telephone",
    "mobile",
    "cell",
    "number",
    "text",
    "whatsapp",
    "sms",
    "reach me",
    "ring",
    "contact",
    "fax",
    "landline",
    "direct line",
    "on",
    "at",
];

const NOT_PHONE_WORDS: &[&str] = &[
    "order",
    "account",
    "invoice",
    "ticket",
    "reference",
    "ref",
    "tracking",
    "card",
    "id",
    "#",
    "case",
    "policy",
    "claim",
    "booking",
    "confirmation",
    "serial",
    "iban",
    "routing",
    "sort code",
    "zip",
    "postcode",
    "postal",
    "transaction",
    "member",
    "customer number",
    "acct",
    "no.",
];

pub(crate) fn find(text: &str) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    for m in CANDIDATE.find_iter(text) {
        let mut r = m.range();
        // Trim separators the pattern may have swallowed at the edges.
        while r.start < r.end && text[r.start..].starts_with([' ', '\t', '\n']) {
            r.start += 1;
        }
        if text[r.clone()].starts_with('(') && !text[r.clone()].contains(')') {
            r.start += 1;
        }
        if accept(text, r.clone()) {
            out.push(r);
        }
    }
    for m in VANITY.find_iter(text) {
        let s = m.as_str();
        if s.chars().any(|c| c.is_ascii_uppercase())
            && !out.iter().any(|o| o.start < m.end() && m.start() < o.end)
        {
            out.push(m.range());
        }
    }
    out.sort_by_key(|r| r.start);
    out
}

fn accept(text: &str, r: Range<usize>) -> bool {
    let s = &text[r.clone()];
    let (main, ext) = split_extension(s);
    let digits: String = main.chars().filter(char::is_ascii_digit).collect();
    let n = digits.len();
    let plus = main.starts_with('+');
    let intl = plus || main.starts_with("00");
    if !(7..=15).contains(&n) || (intl && n < 8) {
        return false;
    }
    // Shape: digit groups between single separators.
    let groups: Vec<&str> = main
        .split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .collect();
    let seps: Vec<char> = main
        .chars()
        .filter(|c| !c.is_ascii_digit() && *c != '+')
        .collect();
    let parens = main.contains('(') && main.contains(')');
    if main.matches('(').count() != main.matches(')').count() {
        return false;
    }
    if main.contains("  ") || seps.iter().filter(|c| **c == '/').count() > 1 {
        return false;
    }
    let before = context_before(text, r.start);
    let phone_word = STRONG_PHONE_WORDS.iter().any(|w| before.contains(w));
    if !phone_word && NOT_PHONE_WORDS.iter().any(|w| has_word(&before, w)) {
        return false;
    }
    // Amounts, versions and decimals.
    let prev = text[..r.start].chars().next_back();
    if prev.is_some_and(|c| "$€£¥₹.,:".contains(c) || c.is_alphanumeric()) {
        return false;
    }
    let next = text[r.end..].chars().next();
    if next.is_some_and(|c| c == '%' || c.is_alphanumeric()) && ext.is_none() {
        return false;
    }
    if looks_like_date_or_range(main, &groups) {
        return false;
    }
    if groups.len() == 1 {
        let phone_context = PHONE_WORDS.iter().any(|w| before.contains(w));
        return intl || n >= 10 || phone_context || whole_text(text, r.clone());
    }
    if !intl && !groups.iter().any(|g| g.len() >= 3) {
        // Pairs of digits are a phone number only in the French shape "01 23 45 67 89".
        return n == 10 && main.starts_with('0') && groups.len() == 5;
    }
    if groups.len() == 2 && !intl && !parens {
        // "555-1234" is a local number; "1200 5000" is two amounts.
        return seps.first().is_some_and(|c| *c == '-' || *c == '.')
            && groups[0].len() == 3
            && groups[1].len() == 4
            || n >= 9 && groups.iter().all(|g| g.len() >= 3);
    }
    true
}

const STRONG_PHONE_WORDS: &[&str] = &[
    "phone", "call", "tel", "mobile", "cell", "whatsapp", "sms", "text me", "fax", "ring",
];

fn has_word(hay: &str, w: &str) -> bool {
    hay.match_indices(w).any(|(i, _)| {
        let before = hay[..i].chars().next_back();
        let after = hay[i + w.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

fn whole_text(text: &str, r: Range<usize>) -> bool {
    text[..r.start].trim().is_empty() && text[r.end..].trim().is_empty()
}

fn split_extension(s: &str) -> (&str, Option<&str>) {
    let lower = s.to_ascii_lowercase();
    for key in ["extension", "ext.", "ext", "x", "#"] {
        if let Some(i) = lower.rfind(key)
            && i > 0
        {
            return (s[..i].trim_end(), Some(&s[i..]));
        }
    }
    (s, None)
}

fn looks_like_date_or_range(main: &str, groups: &[&str]) -> bool {
    let seps: String = main.chars().filter(|c| "/.-".contains(*c)).collect();
    if groups.len() == 3 && !main.starts_with('+') {
        let (a, b, c) = (groups[0].len(), groups[1].len(), groups[2].len());
        // 2024-03-05, 05/03/2024, 5.3.24
        if (a == 4 && b <= 2 && c <= 2)
            || (a <= 2 && b <= 2 && (c == 4 || c == 2)) && seps.len() == 2
        {
            return true;
        }
    }
    if groups.len() == 2
        && groups
            .iter()
            .all(|g| g.len() == 4 && (g.starts_with("19") || g.starts_with("20")))
    {
        return true;
    }
    false
}

fn context_before(text: &str, start: usize) -> String {
    let from = crate::text::floor_boundary(text, start.saturating_sub(24));
    text[from..start].to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::find;

    fn whole(s: &str) -> bool {
        find(s).as_slice() == std::slice::from_ref(&(0..s.len()))
    }

    #[test]
    fn formats() {
        for s in [
            "+14155552671",
            "+1 415 555 2671",
            "+44 20 7946 0958",
            "0044 20 7946 0958",
            "(415) 555-2671",
            "415-555-2671",
            "415.555.2671",
            "020 7946 0958",
            "07700 900123",
            "+49 (0)30 1234567",
            "+33 1 23 45 67 89",
            "4155552671",
            "415-555-2671 ext. 204",
            "1-800-FLOWERS",
            "+91 98765 43210",
            "01 23 45 67 89",
        ] {
            assert!(whole(s), "{s}");
        }
    }

    #[test]
    fn not_phones() {
        for s in [
            "2024-03-05",
            "05/03/2024",
            "between 1200 and 5000",
            "order 123456789",
            "$1,234,567",
            "3.14159",
            "2019-2020",
            "version 1.2.3.4",
        ] {
            assert!(find(s).is_empty(), "{s}: {:?}", find(s));
        }
    }
}

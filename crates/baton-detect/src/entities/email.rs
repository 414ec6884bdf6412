//! E-mail addresses: found around each `@` and kept only when valid.
//!
//! Syntax per RFC 5322 §3.4.1 (`addr-spec`: a dot-atom or a quoted string, `@`, a domain) with
//! the limits of RFC 5321 §4.5.3.1 (64 octets of local part, 255 of domain, 63 per label), host
//! names per RFC 1123 (letters, digits and inner hyphens; the top-level label not all digits),
//! address literals `[IPv4]` and `[IPv6:...]`, and UTF-8 letters per RFC 6531. Domains without a
//! dot ("user@localhost") are valid on a private network but are not what a visitor types as
//! their address, so they are not reported.

use std::ops::Range;

/// Characters of RFC 5322 `atext`, plus any non-ASCII letter (RFC 6531).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+/=?^_`{|}~-".contains(c)
        || (!c.is_ascii() && c.is_alphanumeric())
}

fn is_domain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '.' || (!c.is_ascii() && c.is_alphanumeric())
}

/// Byte ranges of valid addresses in `text`.
pub(crate) fn find(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(rel) = text[from..].find('@') {
        let at = from + rel;
        from = at + 1;
        if let Some(r) = candidate(text, at)
            && out.last().is_none_or(|l: &Range<usize>| l.end <= r.start)
        {
            from = from.max(r.end);
            out.push(r);
        }
    }
    out
}

fn candidate(text: &str, at: usize) -> Option<Range<usize>> {
    let local_start = local_start(text, at)?;
    let (domain_end, literal) = domain_end(text, at + 1)?;
    // Glued to another address or to characters an address cannot hold: not an address.
    let before = text[..local_start].chars().next_back();
    let after = text[domain_end..].chars().next();
    if before.is_some_and(|c| c == '@' || c == '.' || c == '\\' || c.is_alphanumeric())
        || after.is_some_and(|c| {
            c == '@' || c == '_' || c.is_alphanumeric() || c == '\\' || c == '"' || c == '['
        })
    {
        return None;
    }
    let local = &text[local_start..at];
    let domain = &text[at + 1..domain_end];
    (valid_local(local) && (literal || valid_domain(domain)) && domain_end - local_start <= 254)
        .then_some(local_start..domain_end)
}

/// Where the local part before `@` at `at` starts, if it is a dot-atom or a quoted string.
fn local_start(text: &str, at: usize) -> Option<usize> {
    let head = &text[..at];
    if head.ends_with('"') {
        // A quoted string: the nearest opening quote from which it parses up to `at`.
        let mut end = head.len() - 1;
        while let Some(q) = head[..end].rfind('"') {
            // The opening quote starts the address: nothing glued before it, not an escaped quote.
            let before = head[..q].chars().next_back();
            if parses_quoted(&head[q..])
                && before.is_none_or(|c| c.is_whitespace() || "<(,:;[".contains(c))
            {
                return Some(q);
            }
            end = q;
        }
        return None;
    }
    let start = head
        .char_indices()
        .rev()
        .take_while(|(_, c)| is_atext(*c) || *c == '.')
        .last()
        .map(|(i, _)| i)?;
    Some(start)
}

/// A whole quoted string (RFC 5322 §3.2.4): `"` qtext / quoted-pair / space ... `"`.
fn parses_quoted(s: &str) -> bool {
    let inner = match s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(i) => i,
        None => return false,
    };
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if chars.next().is_none() {
                    return false;
                }
            }
            '"' => return false,
            c if c == ' ' || c == '\t' || (c.is_ascii_graphic()) || !c.is_ascii() => {}
            _ => return false,
        }
    }
    true
}

/// End of the domain after `@`, and whether it is an address literal.
fn domain_end(text: &str, start: usize) -> Option<(usize, bool)> {
    let tail = &text[start..];
    if let Some(rest) = tail.strip_prefix('[') {
        let close = rest.find(']')?;
        let lit = &rest[..close];
        let ok = match lit.strip_prefix("IPv6:") {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => is_ipv4(lit),
        };
        return ok.then_some((start + close + 2, true));
    }
    let mut end = start
        + tail
            .char_indices()
            .take_while(|(_, c)| is_domain_char(*c))
            .last()
            .map_or(0, |(i, c)| i + c.len_utf8());
    // A sentence ends after the address: "write to me at a@b.com."
    while end > start && text[..end].ends_with(['.', '-']) {
        end -= 1;
    }
    (end > start).then_some((end, false))
}

fn is_ipv4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u16>().is_ok_and(|n| n <= 255)
        })
}

fn valid_local(local: &str) -> bool {
    if local.is_empty() || local.len() > 64 {
        return false;
    }
    if local.starts_with('"') {
        return parses_quoted(local);
    }
    !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| is_atext(c) || c == '.')
}

fn valid_domain(domain: &str) -> bool {
    if domain.len() > 253 || !domain.contains('.') {
        return false;
    }
    if is_ipv4(domain) {
        return true;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    if !labels.iter().all(label_ok) {
        return false;
    }
    let tld = labels[labels.len() - 1];
    tld.chars().count() >= 2 && (tld.chars().all(char::is_alphabetic) || tld.starts_with("xn--"))
}

#[cfg(test)]
mod tests {
    use super::find;

    fn whole(s: &str) -> bool {
        find(s).as_slice() == std::slice::from_ref(&(0..s.len()))
    }

    #[test]
    fn valid_addresses() {
        for s in [
            "simple@example.com",
            "very.common@example.com",
            "first.last+tag@sub.example.co.uk",
            "x@example.io",
            "name/surname@example.com",
            "user%relay@example.org",
            "user-@example.org",
            "\" \"@example.org",
            "\"john..doe\"@example.org",
            r#""very.(),:;<>[]\".VERY.\"very@\\ \"very\".unusual"@strange.example.com"#,
            "postmaster@[192.168.0.1]",
            "postmaster@[IPv6:2001:db8::1]",
            "jörg@bücher.de",
            "o'brien@example.ie",
            "a@123.123.123.123",
            "test@xn--80ak6aa92e.com",
        ] {
            assert!(whole(s), "{s} should be valid");
        }
    }

    #[test]
    fn invalid_addresses() {
        for s in [
            "plainaddress",
            "@example.com",
            "email.example.com",
            "a@b@c.com",
            ".lead@example.com",
            "trail.@example.com",
            "two..dots@example.com",
            "x@example",
            "x@-example.com",
            "x@example-.com",
            "x@example..com",
            "x@111.222.333.44444",
            "x@example.c",
            "under@score_domain.com",
            "1234567890123456789012345678901234567890123456789012345678901234+x@example.com",
            "x@[300.1.1.1]",
        ] {
            assert!(!whole(s), "{s} should be invalid");
        }
    }

    #[test]
    fn finds_in_running_text() {
        let t = "mail me at jo.doe@acme.com. or (sales@acme.io)";
        let found: Vec<&str> = find(t).into_iter().map(|r| &t[r]).collect();
        assert_eq!(found, ["jo.doe@acme.com", "sales@acme.io"]);
    }
}

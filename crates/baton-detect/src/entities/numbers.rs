//! Numbers written in digits ("50,000", "1.5", "50k") or words ("twenty five thousand").

/// Regex fragment: a number in digits, with thousands separators or decimals.
pub(crate) const NUM: &str = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)";

/// Regex fragment: one number word.
pub(crate) const NUMW: &str = r"(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand|million|billion|dozen)";

/// Regex fragment: a number in words ("two hundred and fifty", "twenty-five").
pub(crate) fn numw_seq() -> String {
    format!(r"(?:{NUMW}(?:(?:\s|-|\sand\s){NUMW})*)")
}

fn word_value(w: &str) -> Option<f64> {
    Some(match w {
        "zero" => 0.0,
        "a" | "an" | "one" => 1.0,
        "two" => 2.0,
        "three" => 3.0,
        "four" => 4.0,
        "five" => 5.0,
        "six" => 6.0,
        "seven" => 7.0,
        "eight" => 8.0,
        "nine" => 9.0,
        "ten" => 10.0,
        "eleven" => 11.0,
        "twelve" => 12.0,
        "thirteen" => 13.0,
        "fourteen" => 14.0,
        "fifteen" => 15.0,
        "sixteen" => 16.0,
        "seventeen" => 17.0,
        "eighteen" => 18.0,
        "nineteen" => 19.0,
        "twenty" => 20.0,
        "thirty" => 30.0,
        "forty" => 40.0,
        "fifty" => 50.0,
        "sixty" => 60.0,
        "seventy" => 70.0,
        "eighty" => 80.0,
        "ninety" => 90.0,
        "couple" => 2.0,
        "few" => 3.0,
        "several" => 4.0,
        "half" => 0.5,
        _ => return None,
    })
}

fn multiplier(w: &str) -> Option<f64> {
    Some(match w {
        "hundred" => 100.0,
        "thousand" | "k" | "grand" => 1_000.0,
        "million" | "m" | "mm" | "mil" | "mio" => 1_000_000.0,
        "billion" | "bn" | "b" => 1_000_000_000.0,
        _ => return None,
    })
}

/// The value of a number in digits or words, with an optional magnitude ("50k", "2.5 million").
pub fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim().to_lowercase();
    let s = s.trim_end_matches(['+', '.']);
    if s.is_empty() {
        return None;
    }
    // Digits with an optional magnitude suffix.
    let digits_end = s
        .char_indices()
        .take_while(|(_, c)| c.is_ascii_digit() || *c == ',' || *c == '.')
        .last()
        .map(|(i, c)| i + c.len_utf8());
    if let Some(end) = digits_end {
        let base: f64 = s[..end].replace(',', "").parse().ok()?;
        let rest = s[end..].trim().trim_start_matches('-');
        if rest.is_empty() {
            return Some(base);
        }
        let mut total = base;
        for w in rest.split_whitespace() {
            total *= multiplier(w)?;
        }
        return Some(total);
    }
    // Words: "two hundred and fifty thousand".
    let mut total = 0.0;
    let mut current = 0.0;
    let mut any = false;
    for w in s.split(|c: char| c.is_whitespace() || c == '-') {
        if w.is_empty() || w == "and" || w == "of" {
            continue;
        }
        if let Some(v) = word_value(w) {
            current += v;
            any = true;
        } else if w == "hundred" || w == "dozen" {
            current = current.max(1.0) * if w == "dozen" { 12.0 } else { 100.0 };
            any = true;
        } else if let Some(m) = multiplier(w) {
            total += current.max(1.0) * m;
            current = 0.0;
            any = true;
        } else {
            return None;
        }
    }
    any.then_some(total + current)
}

#[cfg(test)]
mod tests {
    use super::parse_number;

    #[test]
    fn values() {
        for (s, v) in [
            ("50,000", 50_000.0),
            ("50k", 50_000.0),
            ("2.5 million", 2_500_000.0),
            ("twenty five", 25.0),
            ("two hundred and fifty", 250.0),
            ("fifteen thousand", 15_000.0),
            ("a dozen", 12.0),
            ("1.5", 1.5),
        ] {
            assert_eq!(parse_number(s), Some(v), "{s}");
        }
        assert_eq!(parse_number("banana"), None);
        assert_eq!(parse_number(""), None);
    }
}

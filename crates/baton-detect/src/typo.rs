//! Spelling correction for the words the rules depend on.
//!
//! Visitors type fast: "humna", "represntative", "spek to", "agnet". A word of five letters or
//! more within one edit (insertion, deletion, substitution or adjacent swap) of a key word, and a
//! four-letter word that is a key word with two adjacent letters swapped, reads as that key word.
//! Real words that sit one edit from a key word ("managed", "agenda") are never corrected.

/// The words rules match on and that are worth correcting.
const KEY_WORDS: &[&str] = &[
    "account",
    "agent",
    "angry",
    "anyone",
    "assistance",
    "billing",
    "bills",
    "cancel",
    "cancellation",
    "charged",
    "complaint",
    "confused",
    "connect",
    "customer",
    "delivery",
    "frustrated",
    "help",
    "human",
    "invoice",
    "invoices",
    "manager",
    "operator",
    "password",
    "payment",
    "penalty",
    "person",
    "please",
    "pricing",
    "purchase",
    "receipt",
    "refund",
    "reimbursement",
    "representative",
    "ridiculous",
    "service",
    "somebody",
    "someone",
    "speak",
    "subscription",
    "supervisor",
    "support",
    "talk",
    "terrible",
    "transfer",
    "understand",
    "useless",
];

/// Real words one edit away from a key word; left as they are.
const PROTECTED: &[&str] = &[
    "charge",
    "change",
    "changes",
    "chart",
    "helpful",
    "transfers",
    "agents",
    "agenda",
    "humans",
    "humane",
    "humid",
    "managed",
    "manages",
    "managers",
    "persons",
    "personal",
    "persona",
    "prison",
    "poison",
    "season",
    "reason",
    "refunds",
    "refine",
    "service",
    "services",
    "served",
    "server",
    "serves",
    "speaks",
    "spent",
    "speck",
    "spear",
    "talks",
    "tall",
    "task",
    "take",
    "tale",
    "helm",
    "held",
    "hell",
    "helps",
    "hello",
    "accounts",
    "cancer",
    "candle",
    "charges",
    "charter",
    "changed",
    "charmed",
    "charted",
    "connects",
    "someone",
    "operators",
    "operate",
    "support",
    "supports",
    "invoices",
    "invoked",
    "please",
    "pleased",
    "pleases",
    "purchased",
    "purchases",
    "payments",
    "password",
    "passwords",
    "ranger",
    "danger",
    "hanger",
    "anyone",
    "angle",
    "anger",
    "angel",
    "ages",
    "alert",
    "agency",
    "urgent",
    "argent",
    "pricking",
    "prising",
    "talc",
    "halp",
    "peak",
    "seak",
    "someones",
    "customers",
    "cancels",
    "confuse",
    "confuses",
    "transfers",
    "terrible",
    "useful",
    "useless",
    "somebody",
    "billings",
    "refunded",
    "complaints",
    "understands",
    "frustrate",
];

/// The key word `word` is a misspelling of, if any.
pub(crate) fn correct(word: &str) -> Option<&'static str> {
    let len = word.len();
    if !(4..=16).contains(&len) || !word.is_ascii() || word.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    // Most words are far from every key word: rule them out by first letters and length
    // before any lookup.
    static NEAR: std::sync::LazyLock<[[bool; 18]; 26]> = std::sync::LazyLock::new(|| {
        let mut t = [[false; 18]; 26];
        for k in KEY_WORDS {
            let b = k.as_bytes();
            for first in [b[0], b[1]] {
                if first.is_ascii_lowercase() {
                    let row = &mut t[(first - b'a') as usize];
                    for cell in &mut row[b.len().saturating_sub(1)..=(b.len() + 1).min(17)] {
                        *cell = true;
                    }
                }
            }
        }
        t
    });
    let first = word.as_bytes()[0];
    if !first.is_ascii_lowercase() || !NEAR[(first - b'a') as usize][len] {
        return None;
    }
    static PROTECTED_SET: std::sync::LazyLock<std::collections::HashSet<&'static str>> =
        std::sync::LazyLock::new(|| PROTECTED.iter().copied().collect());
    if KEY_WORDS.binary_search(&word).is_ok() || PROTECTED_SET.contains(word) {
        return None;
    }
    KEY_WORDS.iter().copied().find(|key| {
        let kb = key.as_bytes();
        if kb.len().abs_diff(len) > 1 {
            return false;
        }
        // Most typos keep the first letter or swap the first two; requiring it keeps this cheap and safe.
        let wb = word.as_bytes();
        if kb[0] != first && !(kb[0] == wb[1] && kb[1] == wb[0]) {
            return false;
        }
        if len < 5 || kb.len() < 5 {
            is_adjacent_swap(word.as_bytes(), kb)
        } else {
            within_one_edit(word.as_bytes(), kb)
        }
    })
}

fn is_adjacent_swap(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diffs: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
    diffs.len() == 2
        && diffs[1] == diffs[0] + 1
        && a[diffs[0]] == b[diffs[1]]
        && a[diffs[1]] == b[diffs[0]]
}

/// Optimal-string-alignment distance of at most one, without building a matrix.
fn within_one_edit(a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (ra, rb) = (&a[prefix..], &b[prefix..]);
    match ra.len() as isize - rb.len() as isize {
        0 => {
            ra[1..] == rb[1..]
                || (ra.len() >= 2 && ra[0] == rb[1] && ra[1] == rb[0] && ra[2..] == rb[2..])
        }
        1 => ra[1..] == *rb,
        -1 => *ra == rb[1..],
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_words_are_sorted_for_binary_search() {
        assert!(KEY_WORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn corrects_common_typos_only() {
        for (typo, want) in [
            ("humna", Some("human")),
            ("hman", None),
            ("pseak", Some("speak")),
            ("gaent", Some("agent")),
            ("represntative", Some("representative")),
            ("agnet", Some("agent")),
            ("tlak", Some("talk")),
            ("speek", Some("speak")),
            ("managed", None),
            ("agenda", None),
            ("human", None),
            ("reason", None),
        ] {
            assert_eq!(correct(typo), want, "{typo}");
        }
    }
}

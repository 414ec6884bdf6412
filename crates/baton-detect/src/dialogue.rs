//! Signals over the turns: loops (the visitor repeats or rephrases, corrects the bot, or the bot
//! repeats itself or fails), bot fallbacks in a row, unanswered questions, sentiment trend.

use crate::rules::{RuleSet, alt};
use crate::text::Normalized;

pub(crate) fn correction_rules() -> RuleSet {
    let rules: Vec<(&'static str, String)> = vec![(
        "loop/correction",
        alt(&[
            r"\b(?:thats|that\sis|this\sis|it\s?s|its)\snot\s(?:what\si\s(?:asked|said|meant|mean|want|wanted|need|needed|typed|wrote)|my\squestion|the\sanswer|an\sanswer|right|correct|it|helpful|relevant)\b",
            r"\bnot\swhat\si\s(?:asked|said|meant|mean|want|wanted|need|needed|was\sasking)\b",
            r"\bi\s(?:already|just)\s(?:said|told\syou|gave\syou|answered|explained|mentioned|asked|did\sthat|tried\sthat|provided|sent|entered|typed)\b",
            r"\b(?:as|like)\si\s(?:said|told\syou|mentioned|explained|asked)\b",
            r"\bi\s(?:said|asked)\s(?:that\s)?[\w\s]{0,20}\bnot\b",
            r"^(?:no\s,?\s?)+(?:i\s)?(?:meant|mean|asked|said)\b",
            r"\bi\s(?:said|asked\sfor|specified|requested|told\syou)\b",
            r"^(?:hello|hi|hey|anyone|anybody)\s?(?:\?\s?)+$|\bare\s(?:you|u)\s(?:still\s)?there\b|\bhello\s?\?\s?\?",
            r"\byou\s(?:already|just)\s(?:asked|said\sthat|told\sme\sthat)\b",
            r"\b(?:you\s(?:are|re)n?t|youre\snot|you\sarent|you\sre\snot)\s(?:listening|reading|understanding)\b",
            r"\bi\srepeat\b",
            r"\b(?:read|answer)\smy\s(?:question|message)\b",
            r"\b(?:wrong|incorrect)\s(?:answer|again|info\w*)\b",
            r"\b(?:thats|that\sis|this\sis)\s(?:wrong|incorrect|irrelevant)\b",
            r"\bsame\s(?:answer|response|thing)\s(?:again|over)\b",
            r"\bagain\s?[?!]\s?[?!]",
            r"\byou\s(?:keep|kept)\s(?:saying|repeating|asking|giving|sending)\b",
            r"\bdid\syou\s(?:even\s)?(?:read|understand|hear)\b",
            r"\bstill\s(?:doesnt|does\snot|didnt|not)\s(?:answer|help|work)\b",
        ]),
    )];
    RuleSet::new(&rules)
}

pub(crate) fn fallback_rules() -> RuleSet {
    let rules: Vec<(&'static str, String)> = vec![(
        "bot_fallback/didnt_understand",
        alt(&[
            r"\b(?:sorry|apologi[sz]e)\b.*\b(?:didnt|did\snot|dont|do\snot|couldnt|could\snot|cant|cannot|can\snot|wasnt\sable\sto|am\sunable\sto|m\sunable\sto|m\snot\sable\sto)\s(?:quite\s)?(?:understand|get|catch|find|follow|help\swith|answer|recogni[sz]e|process)\b",
            r"\bi\s(?:didnt|did\snot|dont|do\snot|couldnt|could\snot|cant|cannot)\s(?:quite\s)?(?:understand|get\sthat|catch\sthat|follow|find\s(?:any|anything|an\sanswer|information|that))\b",
            r"\bnot\ssure\s(?:i\sunderstand|what\syou\smean|i\sfollow|how\sto\shelp|i\scan\shelp)\b",
            r"\b(?:could|can|would)\syou\s(?:please\s)?(?:rephrase|reword|say\sthat\sagain|try\sagain|try\sasking|be\smore\sspecific|ask\sthat\sdifferently|clarify)\b",
            r"\b(?:please\s)?(?:rephrase|try\sagain|try\sasking\sdifferently)\b",
            r"\bi\s(?:dont|do\snot)\shave\s(?:an\sanswer|information|info|that\sinformation|access|the\sanswer|any\sinformation)\b",
            r"\b(?:i\s?m|i\sam)\s(?:unable|not\sable)\sto\s(?:help|answer|assist|find|understand|do\sthat)\b",
            r"\bi\s(?:can|could)not\s(?:help|assist)\swith\sthat\b|\bi\scant\s(?:help|assist)\swith\sthat\b",
            r"\b(?:no\sresults?|nothing)\s(?:found|matched|matches)\b",
            r"\bsomething\swent\swrong\b|\ban\serror\soccurred\b",
            r"\bthat\s(?:is|s)\soutside\s(?:of\s)?(?:my|what\si)\b",
            r"\bi\s?m\sstill\slearning\b",
        ]),
    )];
    RuleSet::new(&rules)
}

/// Words too common to say two questions are the same.
const STOP: &[&str] = &[
    "a", "an", "the", "i", "me", "my", "you", "your", "to", "of", "and", "or", "is", "are", "it",
    "in", "on", "for", "do", "does", "can", "how", "what", "please", "pls", "this", "that", "with",
    "be", "was", "have", "has", "at", "we", "our", "so", "just", "im", "hi", "hello", "hey", "ok",
    "okay", "thanks", "want", "need", "would", "like", "could", "there", "if", "about", "get",
    "from",
];

/// The content words of a message, sorted and without repeats.
fn content_words(n: &Normalized) -> &[String] {
    n.content.get_or_init(|| {
        let mut v: Vec<String> = n
            .words()
            .filter(|w| !STOP.contains(w) && w.len() > 1)
            .map(str::to_string)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    })
}

/// Size of the intersection of two sorted, deduplicated lists.
fn common(a: &[String], b: &[String]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

/// How alike two messages are, by their content words (Jaccard), 0 when either is too short.
pub(crate) fn similarity(a: &Normalized, b: &Normalized) -> f64 {
    let (x, y) = (content_words(a), content_words(b));
    if x.len() < 2 || y.len() < 2 {
        return if !x.is_empty() && x == y && a.word_count() >= 3 {
            1.0
        } else {
            0.0
        };
    }
    let inter = common(x, y);
    let union = x.len() + y.len() - inter;
    inter as f64 / union as f64
}

pub(crate) fn is_question(n: &Normalized) -> bool {
    n.norm.contains('?')
        || matches!(
            n.tok(0),
            "how"
                | "what"
                | "why"
                | "when"
                | "where"
                | "which"
                | "who"
                | "can"
                | "could"
                | "do"
                | "does"
                | "is"
                | "are"
                | "will"
                | "would"
                | "should"
        )
}

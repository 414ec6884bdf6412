//! `human_request`: the visitor asks for a person.
//!
//! A request is a verb of contact ("talk to", "put me through to", "get me", "can somebody call
//! me") aimed at a person ("a human", "someone from sales", "your manager"), or a person named on
//! their own ("agent!!", "representative please"), or a refusal of the bot ("I don't want to talk
//! to a bot"). Three things cancel a match: a negation that governs it ("no need for a human"),
//! a question about who is answering ("am I talking to a real person?"), and a person used as a
//! modifier ("manager account", "agent portal").

use crate::rules::{Evidence, Hit, RuleSet, alt};
use crate::text::Normalized;

/// Articles and determiners before a person.
const DET: &str = r"(?:(?:a|an|the|some|any|your|ur|one|a real|a live|an actual|another|different|a different|other|ya|yo)\s)?";

/// Up to two qualifiers between the verb and the person ("talk to a real live person").
const FILL: &str = r"(?:(?:real|live|actual|human|proper|competent|fucking|freaking|damn|bloody|english|speaking|knowledgeable|qualified|senior|actual|single|physical|breathing|living|s)\s){0,2}";

fn person() -> String {
    alt(&[
        r"human(?:\sbeing)?s?",
        r"person",
        r"people",
        r"agents?",
        r"representatives?",
        r"reps?",
        r"operators?",
        r"(?:someone|somebody|anyone|anybody)\s(?:from|in|on|at)\s(?:sales|support|billing|accounts|claims|underwriting|fraud|customer\sservice|your\s\w+(?:\s(?:team|department))?|the\s\w+(?:\s(?:team|department))?)",
        r"someone",
        r"somebody",
        r"some\s(?:one|body)",
        r"anyone",
        r"anybody",
        r"employee",
        r"staff(?:\smember)?",
        r"team\smember",
        r"managers?",
        r"supervisors?",
        r"superiors?",
        r"advis[eo]rs?",
        r"consultants?",
        r"specialists?",
        r"salesperson",
        r"sales(?:\s(?:rep|reps|person|team|department|people|guy|representative|agent|executive|manager|dept))?",
        r"account\s(?:manager|executive|rep)",
        r"customer\s(?:service|support|care|success|services)(?:\s(?:rep|representative|agent|team|person|department|staff|people|line|desk|officer|advisor))?",
        r"support(?:\s(?:team|agent|staff|person|rep|desk|people))?",
        r"tech(?:nical)?\ssupport",
        r"help\s?desk",
        r"billing(?:\s(?:team|department|dept))?",
        r"live\s(?:agent|person|human|chat|support|rep|representative|operator|advisor)",
        r"real\s(?:person|human|people|agent|one|life\sperson|live\sperson)",
        r"actual\s(?:person|human|people|agent)",
        r"(?:member|one)\sof\s(?:your|the)\s(?:staff|team)",
        r"(?:your|the)\steam",
        r"human\s(?:agent|rep|representative|operator|support|assistance)",
        r"(?:boss|owner)",
    ])
}

/// A person clearly meant as a person: what a bare mention ("agent!") can be.
fn strong_person() -> String {
    alt(&[
        r"human(?:\sbeing)?s?",
        r"(?:a\s)?(?:real|live|actual)\s(?:person|human|agent|people)",
        r"agents?",
        r"(?:customer\s(?:service|support|care)\s)?(?:rep|representative|agent)s?",
        r"operator",
        r"person",
        r"supervisor",
        r"manager",
        r"live\schat",
        r"customer\s(?:service|support|care)",
        r"human\s(?:agent|rep|representative|operator|support|assistance)",
        r"someone\sreal",
    ])
}

fn machine() -> String {
    alt(&[
        r"bots?",
        r"chat\s?bots?",
        r"robots?",
        r"machines?",
        r"computers?",
        r"ai",
        r"automated(?:\s(?:system|assistant|service|response|responses|message|messages))?",
        r"virtual\sassistant",
        r"program",
        r"algorithm",
        r"auto\s?responders?",
    ])
}

pub(crate) fn rules() -> RuleSet {
    let p = person();
    let sp = strong_person();
    let m = machine();
    let rules: Vec<(&'static str, String)> = vec![
        (
            "human_request/talk_to_person",
            format!(
                r"\b(?:talk|speak|chat|converse|talking|speaking|chatting|communicate)\s(?:directly\s|right\snow\s|now\s)?(?:to|with)\s{DET}{FILL}{p}\b"
            ),
        ),
        (
            "human_request/connect_me_to_person",
            format!(
                r"\b(?:connect|transfer|put|forward|escalate|redirect|route|patch|pass)\s(?:me|us|my\s(?:call|chat|case|query|complaint)|this\s(?:chat|call|conversation|case|complaint)|the\s(?:chat|call))\s(?:through\s|over\s|back\s)?(?:to|with)\s{DET}{FILL}{p}\b|\b(?:connect|escalate|redirect|be\stransferred|get\stransferred|be\sput\sthrough|get\sput\sthrough|be\sconnected|get\sconnected|be\spassed)\s(?:to|with)\s{DET}{FILL}{p}\b"
            ),
        ),
        (
            "human_request/want_person",
            format!(
                r"\b(?:want|need|would\slike|wanna|prefer|request|requesting|demand|require|get\sme|give\sme|gimme|bring\sme|find\sme|get|(?:can|could|may)\s(?:i|we)\shave|id\slike|i\sd\slike)\s(?:to\s(?:talk|speak|chat)\s(?:to|with)\s)?{DET}{FILL}{sp}\b"
            ),
        ),
        (
            "human_request/contact_person",
            format!(
                r"\b(?:contact|contacting|reach|reaching|call|calling|ring|phone|email|message|get\sin\stouch\swith|getting\sin\stouch\swith|get\shold\sof|get\sahold\sof|get\sa\shold\sof|get\sthrough\sto|get\sconnected\sto|be\sconnected\sto|be\stransferred\sto|touch\sbase\swith)\s{DET}{FILL}{p}\b"
            ),
        ),
        (
            "human_request/person_call_me",
            format!(
                r"\b(?:you\sguys|{DET}{FILL}{p})\s(?:please\s)?(?:to\s)?(?:(?:call|phone|ring|contact|email|text|reach\sout\sto|get\sback\sto|get\sin\stouch\swith)\s(?:me|us)|give\s(?:me|us)\sa\s(?:call|ring|buzz|shout))\b"
            ),
        ),
        (
            "human_request/callback",
            r"\b(?:(?:request|want|need|like|get|schedule|book|arrange|have|give\sme)\s(?:a\s)?(?:call\s?back|phone\scall|call\sfrom\s(?:someone|a\sperson|a\shuman|an\sagent|sales|support))|call\sme\s(?:back|asap|please|now|today|tomorrow|at|on)|(?:please|pls|plz)\scall\sme)\b"
                .to_string(),
        ),
        (
            "human_request/bare_person",
            format!(
                r"^(?:(?:hi|hello|hey|ok|okay|um|uh|yes|no|just|please|pls|plz)\s(?:,\s)?)*(?:(?:i\s)?(?:want|need)\s)?{DET}{sp}(?:\s(?:please|pls|plz|now|asap|right\snow|already|thanks|thank\syou|urgently|immediately))*(?:\s[!?.,])*$"
            ),
        ),
        (
            "human_request/person_please",
            format!(r"\b{sp}\s(?:please|pls|plz|now|asap|right\snow|immediately)\b"),
        ),
        (
            "human_request/refuses_bot",
            format!(
                r"\b(?:dont|do\snot|not|never|no\slonger|don\st)\s(?:want|wanna|like|need)\s(?:to\s(?:talk|speak|chat|deal)\s(?:to|with)\s)?(?:a\s|an\s|the\s|this\s|your\s|some\s)?(?:stupid\s|dumb\s|fucking\s|useless\s|damn\s)?{m}\b"
            ),
        ),
        (
            "human_request/stop_bot",
            format!(
                r"\b(?:stop|quit|enough|done)\s(?:with\s)?(?:the\s|this\s|your\s)?(?:stupid\s|dumb\s|useless\s)?{m}\b|\b(?:not|no)\s(?:a\s|another\s)?{m}\s(?:please|pls|plz)\b|\bno\smore\s{m}\b"
            ),
        ),
        (
            "human_request/is_there_person",
r"\b(?:(?:is|are)\s(?:there|their)|(?:if|whether)\s(?:there|their)\s(?:is|are))\s(?:a|an|any|some)?\s?(?:real\s|actual\s|live\s)?(?:human|humans|person|people|agent|agents|representative|rep|someone|somebody|anyone|anybody|operator)\s(?:i\s|we\s)?(?:can|could|to|who|available|there|around|working|on|in|that|at|here|\?)".to_string(),
        ),
        (
            "human_request/help_from_person",
            format!(r"\b(?:help|assistance|support|advice)\sfrom\s{DET}{FILL}{p}\b"),
        ),
        (
            "human_request/transfer_to_agent",
            format!(r"\b(?:transfer|get|put)\s(?:me\s)?(?:through\s)?to\s{DET}{FILL}(?:agent|representative|rep|operator|human|live\sagent|live\sperson|real\sperson|customer\s(?:service|support|care)|manager|supervisor|advisor|adviser|sales)\b"),
        ),
        (
            "human_request/why_bot",
            format!(r"\bwhy\s(?:do|must|should|cant|can\st|am)\si\s(?:have\sto\s|being\s)?(?:talk|speak|chat|talking|speaking|chatting)\s(?:to|with)\s(?:a\s|this\s|the\s)?{m}\b"),
        ),
        (
            "human_request/call_me",
            r"^(?:please\s|pls\s|plz\s)?(?:just\s)?call\sme(?:\s(?:please|pls|plz|asap|now))?(?:\s[.!])*$".to_string(),
        ),
        (
            "human_request/escalate",
            r"\b(?:please|want\sto|need\sto|like\sto|can\syou|could\syou|i\swill|ill|i\sll|going\sto)\s(?:\w+\s)?escalate\b|\bescalate\s(?:this|it|my|me)\b".to_string(),
        ),
    ];
    RuleSet::new(&rules)
}

/// Words that, in the same clause just before a match, negate it.
const NEGATORS: &[&str] = &[
    "no", "not", "dont", "never", "without", "neednt", "doesnt", "didnt", "nor",
];

/// Tokens that end a clause when looking back for a negation.
const CLAUSE_BREAKS: &[&str] = &[
    ".", ",", ";", ":", "!", "?", "but", "and", "so", "just", "because",
];

/// Words after a person that make it a modifier, not a person: "agent portal".
const MODIFIED: &[&str] = &[
    "account",
    "accounts",
    "role",
    "roles",
    "permission",
    "permissions",
    "access",
    "login",
    "dashboard",
    "portal",
    "app",
    "license",
    "licenses",
    "seat",
    "seats",
    "view",
    "mode",
    "level",
    "settings",
    "profile",
    "code",
    "id",
    "number",
    "tool",
    "software",
    "commission",
    "fee",
    "fees",
    "resources",
    "readable",
    "rights",
    "error",
    "errors",
    "sample",
    "samples",
    "example",
    "plan",
    "feature",
    "features",
    "name",
    "license",
];

pub(crate) fn detect(rules: &RuleSet, n: &Normalized, text: &str) -> Vec<Evidence> {
    let mut out = Vec::new();
    for hit in rules.hits(&n.norm) {
        if !hit.rule.ends_with("refuses_bot") && !hit.rule.ends_with("stop_bot") && negated(n, &hit)
        {
            continue;
        }
        if asks_about_bot(n, &hit) || modifier(n, &hit) || in_address(n, &hit, text) {
            continue;
        }
        // "my manager now wants...", "the contact person please": a person already known.
        if hit.rule.ends_with("person_please") {
            let first = n.token_at(hit.norm.start);
            if first > 0
                && matches!(
                    n.tok(first - 1),
                    "my" | "our" | "his" | "her" | "their" | "contact" | "the"
                )
            {
                continue;
            }
        }
        out.push(hit.evidence(n, text, "human_request", None));
    }
    out
}

fn negated(n: &Normalized, hit: &Hit) -> bool {
    let first = n.token_at(hit.norm.start);
    let start = first.saturating_sub(5);
    let mut saw_why = false;
    for i in (start..first).rev() {
        let t = n.tok(i);
        if CLAUSE_BREAKS.contains(&t) {
            return false;
        }
        if t == "why" || t == "how" {
            saw_why = true;
        }
        if NEGATORS.contains(&t) {
            // "why don't you let me talk to a person" is a request, not a refusal.
            let why_before = (i.saturating_sub(2)..i).any(|j| matches!(n.tok(j), "why" | "how"));
            return !(saw_why || why_before);
        }
    }
    // "need no human", "want nobody": a negator inside the match itself.
    n.norm[hit.norm.clone()]
        .split(' ')
        .any(|w| matches!(w, "no" | "nobody" | "noone"))
}

fn asks_about_bot(n: &Normalized, hit: &Hit) -> bool {
    let first = n.token_at(hit.norm.start);
    let before: Vec<&str> = (first.saturating_sub(3)..first).map(|i| n.tok(i)).collect();
    let joined = before.join(" ");
    [
        "am i", "are you", "is this", "is it", "was i", "been", "im i", "are we", "if i m", "if im",
    ]
    .iter()
    .any(|q| joined.ends_with(q) || joined.contains(&format!("{q} ")))
        && !joined.contains("can")
}

/// "email support@acme.com": the person is the start of an address, not someone to talk to.
fn in_address(n: &Normalized, hit: &Hit, text: &str) -> bool {
    let end = n.orig_span(hit.norm.clone()).end;
    text.chars().nth(end).is_some_and(|c| c == '@' || c == '.')
        && text.chars().nth(end + 1).is_some_and(char::is_alphanumeric)
}

fn modifier(n: &Normalized, hit: &Hit) -> bool {
    let next = n.token_at(hit.norm.end);
    MODIFIED.contains(&n.tok(next))
}

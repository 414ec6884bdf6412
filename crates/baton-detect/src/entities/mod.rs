//! Entities with code-point spans: email, phone, money, date, time, duration, person, org, role,
//! location, number, company_size, url.
//!
//! Each extractor proposes candidates with a priority; overlaps are resolved by priority, then
//! by length, so "$50k" is money and not a number, and "200 employees" is a company size.

mod email;
mod numbers;
mod phone;

use std::borrow::Cow;
use std::ops::Range;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, MatchKind};
use regex::Regex;

pub use numbers::parse_number;
use numbers::{NUM, numw_seq};

use crate::rules::Evidence;
use crate::text::{CharIndex, slice_chars};

/// The entity types of SPEC §3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityType {
    Email,
    Phone,
    Money,
    Date,
    Time,
    Duration,
    Person,
    Org,
    Role,
    Location,
    Number,
    CompanySize,
    Url,
}

impl EntityType {
    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityType::Email => "email",
            EntityType::Phone => "phone",
            EntityType::Money => "money",
            EntityType::Date => "date",
            EntityType::Time => "time",
            EntityType::Duration => "duration",
            EntityType::Person => "person",
            EntityType::Org => "org",
            EntityType::Role => "role",
            EntityType::Location => "location",
            EntityType::Number => "number",
            EntityType::CompanySize => "company_size",
            EntityType::Url => "url",
        }
    }
}

/// One entity found in a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub kind: EntityType,
    /// Code-point span, end-exclusive.
    pub span: Range<usize>,
    /// The text of the span.
    pub value: String,
    /// The rule or gazetteer that found it.
    pub rule: &'static str,
}

impl Entity {
    pub(crate) fn evidence(&self) -> Evidence {
        Evidence {
            signal: "entity",
            label: Some(self.kind.as_str()),
            span: self.span.clone(),
            text: self.value.clone(),
            rule: Cow::Borrowed(self.rule),
            turn: 0,
        }
    }
}

/// A candidate before overlaps are resolved; byte ranges.
#[derive(Debug, Clone)]
struct Cand {
    kind: EntityType,
    bytes: Range<usize>,
    prio: u8,
    rule: &'static str,
}

const MONTH_FULL: &str =
    r"(?:january|february|march|april|june|july|august|september|october|november|december)";
const MONTH_ANY: &str = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?";
const HOURW: &str = r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)";
const MINW: &str = r"(?:(?:twenty|thirty|forty|fifty)(?:[\s-](?:one|two|three|four|five|six|seven|eight|nine))?|ten|eleven|twelve|thirteen|fourteen|sixteen|seventeen|eighteen|nineteen)";
const WEEKDAY: &str = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)";
const ORDW: &str = r"(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth|twentieth|twenty[\s-](?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth)|thirtieth|thirty[\s-]first)";
const TZ: &str = r"(?:utc|gmt|est|edt|cst|cdt|mst|mdt|pst|pdt|cet|cest|bst|ist|aest|jst)";
const TZ_WORDS: &[&str] = &[
    "utc", "gmt", "est", "edt", "cst", "cdt", "mst", "mdt", "pst", "pdt", "cet", "cest", "bst",
    "ist", "aest", "jst",
];
const UNITS: &str = r"(?:seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|weeks?|wks?|months?|years?|yrs?|quarters?|business\sdays?|working\sdays?|fortnights?|decades?)";
const CURRENCY_WORDS: &str = r"(?:dollars?|usd|euros?|eur|pounds?(?:\ssterling)?|gbp|bucks|quid|rupees?|inr|yen|jpy|francs?|chf|pesos?|cents?|dkk|sek|nok|cad|aud|sgd|nzd|zar|brl|mxn|yuan|cny|rmb|won|krona|kronor|krone)";
const CURRENCY_SYM: &str = r"(?:(?:us|ca|au|nz|hk|s|r|c|a)?\$|€|£|¥|₹|₩|₽|₺|₪|(?:usd|eur|gbp|cad|aud|jpy|inr|chf|cny|sek|nok|dkk|sgd|nzd|hkd|zar|brl|mxn)\s?)";
const MAGNITUDE: &str = r"(?:\s?(?:k|m|mm|bn|mil|million|thousand|billion|grand)\b)";

struct Patterns {
    list: Vec<(EntityType, u8, &'static str, Regex)>,
    /// All of `list` in one automaton: one pass says which patterns are worth running.
    screen: regex::RegexSet,
}

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| {
    let nw = numw_seq();
    let raw: Vec<(EntityType, u8, &'static str, String)> = vec![
        (EntityType::Url, 1, "url/scheme", r"(?i)\b(?:https?://|www\.)[^\s<>()\[\]{}]+".into()),
        (EntityType::Url, 1, "url/domain", r"(?i)\b(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:com|org|net|io|co|ai|app|dev|de|uk|fr|es|it|nl|eu|us|ca|au|in|jp|info|biz|me|tv|ly|gg|xyz|tech|cloud|store|shop|site|online|edu|gov|ch|se|no|dk|fi|pl|br|mx|cn|ie|be|at|nz|sg|hk|za)(?::\d{2,5})?(?:/[^\s<>()\[\]{}]*)?\b/?".into()),
        (EntityType::Money, 3, "money/symbol", format!(r"(?i){CURRENCY_SYM}\s?{NUM}{MAGNITUDE}?(?:\s?{CURRENCY_WORDS}\b)?")),
        (EntityType::Money, 3, "money/range", format!(r"(?i)\b{CURRENCY_SYM}?{NUM}{MAGNITUDE}?\s?(?:-|–|to|and)\s?{CURRENCY_SYM}?{NUM}{MAGNITUDE}?\s?{CURRENCY_WORDS}\b")),
        (EntityType::Money, 3, "money/words", format!(r"(?i)\b{NUM}{MAGNITUDE}?\s?{CURRENCY_WORDS}\b")),
        (EntityType::Money, 3, "money/spelled", format!(r"(?i)\b{nw}\s{CURRENCY_WORDS}\b")),
        (EntityType::Money, 3, "money/suffix_symbol", format!(r"\b{NUM}(?:[kKmM]\b|\s?(?:€|£))")),
        (EntityType::CompanySize, 4, "company_size/team_of", format!(r"(?i)\b(?:a\s)?(?:team|company|staff|workforce|org(?:anization|anisation)?|business|firm|startup|headcount|department)\sof\s(?:about\s|around\s|roughly\s|approximately\s|over\s|nearly\s|almost\s|~)?(?:{NUM}|{nw})(?:\s?(?:\+|plus|k))?(?:\s(?:people|employees|staff|persons|engineers|agents|reps|members|ftes?))?\b")),
        (EntityType::CompanySize, 4, "company_size/n_employees", format!(r"(?i)\b(?:{NUM}|{nw})(?:\s?(?:-|–|to)\s?(?:{NUM}|{nw}))?\s?(?:\+|plus|k)?\s?(?:full[\s-]time\s)?(?:employees|staff|staffers|people|persons|ftes?|workers|headcount|team\smembers|members\sof\sstaff|engineers|developers|support\sagents|sales\sreps|agents)\b")),
        (EntityType::CompanySize, 4, "company_size/n_person_company", format!(r"(?i)\b(?:{NUM}|{nw})[\s-](?:person|people|employee|man|strong|seat)\s(?:company|team|startup|business|firm|org|organization|organisation|shop|agency|operation)\b|\b(?:{NUM}|{nw})-(?:person|people|employee|strong)\b")),
        (EntityType::Date, 5, "date/iso", r"\b\d{4}-\d{1,2}-\d{1,2}\b".into()),
        (EntityType::Date, 5, "date/numeric", r"\b\d{1,2}[/.]\d{1,2}[/.](?:\d{4}|\d{2})\b".into()),
        (EntityType::Date, 5, "date/ordinal_month", format!(r"(?i)\b(?:the\s)?{ORDW}\s(?:of\s)?{MONTH_ANY}(?:,?\s\d{{4}})?\b")),
        (EntityType::Date, 5, "date/day_month", format!(r"(?i)\b(?:the\s)?\d{{1,2}}(?:st|nd|rd|th)?\s(?:of\s)?{MONTH_ANY}(?:,?\s\d{{4}})?\b")),
        (EntityType::Date, 5, "date/month_day", format!(r"(?i)\b{MONTH_ANY}\s(?:the\s)?(?:\d{{1,2}}(?:st|nd|rd|th)?\b|{ORDW}\b)(?:,?\s\d{{4}}\b)?")),
        (EntityType::Date, 5, "date/month", format!(r"(?i)\b(?:(?:the\s)?(?:end|beginning|start|middle)\sof\s|(?:early|mid|late)[\s-])?{MONTH_FULL}(?:\s\d{{4}})?\b")),
        (EntityType::Date, 5, "date/period_edge", r"(?i)\b(?:the\s)?(?:end|beginning|start|middle)\sof\s(?:the\s|this\s|next\s)?(?:year|quarter|month|week|fiscal\syear|fy|q[1-4])\b|\b(?:eoy|eoq|eom)\b".into()),
        (EntityType::Date, 5, "date/relative", format!(r"(?i)\b(?:next|this|last|coming|following|upcoming|the\snext|the\sfollowing|the\scoming)\s(?:week(?:end)?|month|year|quarter|fiscal\syear|fy|{WEEKDAY}|{MONTH_FULL}|spring|summer|fall|autumn|winter|semester)\b")),
        (EntityType::Date, 5, "date/deictic", r"(?i)\b(?:(?:the\s)?day\safter\stomorrow|(?:the\s)?day\sbefore\syesterday|today|tomorrow|yesterday|asap)\b".into()),
        (EntityType::Date, 5, "date/weekday", format!(r"(?i)\b{WEEKDAY}s?\b")),
        (EntityType::Date, 5, "date/quarter", r"(?i)\b(?:q[1-4]|h[12])(?:\s(?:of\s)?(?:fy\s?)?\d{4}|\s?fy\s?\d{2,4}|\s\d{2})?\b|\b(?:the\s)?(?:first|second|third|fourth|last|next|this)\squarter(?:\sof\s(?:\d{4}|next\syear|this\syear))?\b|\bfy\s?\d{2,4}\b".into()),
        (EntityType::Date, 5, "date/year", r"(?i)\b(?:in|by|since|until|before|after|of|during|for|early|late|mid)\s(?:19|20)\d{2}\b".into()),
        (EntityType::Date, 5, "date/ago", format!(r"(?i)\b(?:{NUM}|{nw}|a|an|a\sfew|a\scouple\sof)\s{UNITS}\s(?:ago|from\snow)\b")),
        (EntityType::Date, 5, "date/holiday", r"(?i)\b(?:christmas(?:\s(?:eve|day))?|new\syear'?s?(?:\s(?:eve|day))?|thanksgiving|easter|black\sfriday|cyber\smonday|labou?r\sday|memorial\sday|halloween|valentine'?s\sday|independence\sday)\b".into()),
        (EntityType::Time, 5, "time/ampm", format!(r"(?i)\b\d{{1,2}}(?::[0-5]\d)?\s?(?:a\.m\.|p\.m\.|am\b|pm\b)(?:\s?{TZ}\b)?")),
        (EntityType::Time, 5, "time/clock", format!(r"(?i)\b(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?(?:\s?{TZ}\b|\s?h\b)?")),
        (EntityType::Time, 5, "time/named", r"(?i)\b(?:noon|midnight|midday|tonight|this\s(?:morning|afternoon|evening)|tomorrow\s(?:morning|afternoon|evening|night)|in\sthe\s(?:morning|afternoon|evening)|(?:end|close)\sof\s(?:the\s)?(?:business\s)?day|eod|cob)\b".into()),
        (EntityType::Time, 5, "time/oclock", format!(r"(?i)\b(?:\d{{1,2}}|{nw})\so'?clock\b|\b(?:half|quarter)\s(?:past|to)\s(?:\d{{1,2}}|{nw})\b")),
        (EntityType::Time, 5, "time/spelled", format!(r"(?i)\b{HOURW}(?:\s(?:o\s|oh\s)?(?:fifteen|thirty|forty[\s-]five|{MINW}))?\s?(?:a\.m\.|p\.m\.|am\b|pm\b)|\b{HOURW}\s(?:in\sthe\s(?:morning|afternoon|evening)|at\snight|tonight)\b")),
        (EntityType::Time, 5, "time/at_hour", format!(r"(?i)\b(?:at|around|by|after|before|until|from)\s(?:1[0-2]|0?[1-9])(?:\s?{TZ})?\s?(?:$|[.,!?;]|\s(?:tomorrow|today|tonight|on|sharp|ish|my|your|works|is|if|and|or|please))")),
        (EntityType::Duration, 6, "duration/amount_unit", format!(r"(?i)\b(?:{NUM}|{nw}|a|an|a\sfew|a\scouple(?:\sof)?|few|several|couple\sof)(?:\s|-)(?:more\s)?{UNITS}\b|\bhalf\s(?:an?\s)?(?:hour|day|year)\b|\ban?\shour\sand\sa\shalf\b|\b{NUM}\s?(?:h|hrs|mins?|d|wks)\b")),
        (EntityType::Number, 9, "number/digits", format!(r"\b{NUM}(?:\s?%)?")),
        (EntityType::Number, 9, "number/words", format!(r"(?i)\b{nw}\b")),
    ];
    let screen = regex::RegexSetBuilder::new(
        raw.iter()
            .map(|(_, _, _, p)| crate::rules::ascii_boundaries(p)),
    )
    .dfa_size_limit(64 << 20)
    .size_limit(64 << 20)
    .build()
    .expect("entity screen");
    Patterns {
        screen,
        list: raw
            .into_iter()
            .map(|(k, p, id, s)| (k, p, id, crate::rules::regex(&s)))
            .collect(),
    }
});

/// A gazetteer entry's kind and whether it must be written with a capital.
#[derive(Debug, Clone, Copy)]
struct GazEntry {
    kind: EntityType,
    needs_capital: bool,
    /// Counts only after "I'm a", "as", "my", "our": a common word that is also a role.
    needs_self: bool,
}

struct Gazetteer {
    ac: AhoCorasick,
    entries: Vec<GazEntry>,
}

static GAZETTEER: LazyLock<Gazetteer> = LazyLock::new(|| {
    let mut patterns: Vec<String> = Vec::new();
    let mut entries = Vec::new();
    let files: [(EntityType, &str, bool); 4] = [
        (
            EntityType::Location,
            include_str!("../../data/locations.txt"),
            false,
        ),
        (
            EntityType::Role,
            include_str!("../../data/roles.txt"),
            false,
        ),
        (
            EntityType::Org,
            include_str!("../../data/companies.txt"),
            false,
        ),
        (
            EntityType::Person,
            include_str!("../../data/first_names.txt"),
            true,
        ),
    ];
    for (kind, data, all_capital) in files {
        for line in data.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (needs_capital, rest) = match line.strip_prefix('^') {
                Some(r) => (true, r),
                None => (all_capital, line),
            };
            let (needs_self, word) = match rest.strip_prefix('~') {
                Some(r) => (true, r),
                None => (false, rest),
            };
            let lower = word.to_ascii_lowercase();
            if patterns.contains(&lower) {
                continue;
            }
            patterns.push(lower);
            entries.push(GazEntry {
                kind,
                needs_capital,
                needs_self,
            });
        }
    }
    let ac = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .build(&patterns)
        .expect("gazetteer automaton");
    Gazetteer { ac, entries }
});

static PERSON_CONTEXT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?:(?i:my\sname\sis|my\sname's|name\sis|name:|this\sis|call\sme|ask\sfor|speak\s(?:to|with)|talk\s(?:to|with)|regards,?|thanks,|cheers,|best,|sincerely,|signed,?|cc|mr\.?|mrs\.?|ms\.?|miss|dr\.?|prof\.?|sir|madam|i\sam|i'm|i’m|im|hi|hello|hey|dear)\s+)((?:\p{Lu}(?:\p{Ll}|['’-]\p{L})+)(?:\s\p{Lu}(?:\p{Ll}|['’-]\p{L})+){0,2})",
    )
    .expect("person pattern")
});

static ORG_CONTEXT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?:(?i:work(?:s|ing)?\s(?:at|for)|employed\s(?:at|by)|i'm\swith|i\sam\swith|here\sat|from|at|join(?:ed|ing)?|represent(?:ing)?|on\sbehalf\sof|of|with|for)\s+)((?:\p{Lu}[\p{L}\d&'’.-]*)(?:\s(?:\p{Lu}[\p{L}\d&'’.-]*|&)){0,2})",
    )
    .expect("org pattern")
});

static ORG_SUFFIX: LazyLock<Regex> = LazyLock::new(|| {
    crate::rules::regex(
        r"\b\p{Lu}[\p{L}\d&'.-]*(?:\s(?:\p{Lu}[\p{L}\d&'.-]*|&|of|and)){0,3}\s(?:Inc|LLC|L\.L\.C\.|Ltd|Limited|GmbH|AG|SA|S\.A\.|SAS|BV|B\.V\.|NV|plc|PLC|Corp|Corporation|Co|Company|Group|Holdings|Technologies|Technology|Labs|Bank|Insurance|Airlines|Airways|Systems|Solutions|Software|Partners|Capital|Ventures|Media|Health|Healthcare|Pharma|Foods|Motors|Industries|Consulting|Analytics|Logistics|Networks|Studios|Enterprises|Associates|Agency|University|College|Hospital|Clinic|Foundation|Institute)\b\.?",
    )
});

static LOCATION_CONTEXT: LazyLock<Regex> = LazyLock::new(|| {
    crate::rules::regex(
        r"(?:(?i:based\sin|located\sin|live\sin|living\sin|offices?\sin|headquartered\sin|hq\sin|moving\sto|flying\sto|flight\sto|travel(?:l?ing)?\sto|weather\sin|near)\s+)((?:\p{Lu}[\p{Ll}'’-]+)(?:\s\p{Lu}[\p{Ll}'’-]+){0,2})",
    )
});

/// Capitalised words that are never a name, an organisation or a place on their own.
const NOT_NAMES: &[&str] = &[
    "I",
    "I'm",
    "Im",
    "The",
    "A",
    "An",
    "Hi",
    "Hello",
    "Hey",
    "Thanks",
    "Thank",
    "Please",
    "Yes",
    "No",
    "Ok",
    "Okay",
    "Sorry",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
    "Today",
    "Tomorrow",
    "We",
    "You",
    "They",
    "It",
    "This",
    "That",
    "My",
    "Our",
    "Your",
    "Can",
    "Could",
    "Would",
    "Will",
    "Do",
    "Does",
    "Is",
    "Are",
    "What",
    "When",
    "Where",
    "Why",
    "How",
    "Who",
    "Which",
    "Also",
    "Just",
    "So",
    "And",
    "But",
    "Or",
    "Not",
    "Looking",
    "Interested",
    "Trying",
    "Calling",
    "Writing",
    "Here",
    "There",
    "Sure",
    "Great",
    "Good",
    "Fine",
    "Happy",
    "Glad",
    "New",
    "Still",
    "Very",
    "Really",
    "Q1",
    "Q2",
    "Q3",
    "Q4",
    "Customer",
    "Support",
    "Sales",
    "Team",
    "Service",
    "Account",
    "Billing",
    "Please",
    "Asap",
    "ASAP",
    "EOD",
    "Order",
    "Refund",
    "Help",
    "Bot",
    "Human",
    "Agent",
    "Manager",
    "Dear",
    "Sir",
    "Madam",
    "Mr",
    "Mrs",
    "Ms",
    "Dr",
    "Best",
    "Regards",
    "Cheers",
    "Urgent",
    "Re",
    "Fwd",
    "Hopefully",
    "Already",
    "Currently",
    "Actually",
    "Unfortunately",
    "Hmm",
    "Ugh",
    "Wow",
    "Oh",
    "Lol",
    "Pricing",
];

/// Finds every entity in `text`.
pub(crate) fn extract(text: &str) -> Vec<Entity> {
    let mut cands: Vec<Cand> = Vec::new();
    for r in email::find(text) {
        cands.push(Cand {
            kind: EntityType::Email,
            bytes: r,
            prio: 0,
            rule: "email/rfc5322",
        });
    }
    for r in phone::find(text) {
        cands.push(Cand {
            kind: EntityType::Phone,
            bytes: r,
            prio: 2,
            rule: "phone/shape",
        });
    }
    for i in PATTERNS.screen.matches(text).iter() {
        let (kind, prio, id, re) = &PATTERNS.list[i];
        for m in re.find_iter(text) {
            let mut r = m.range();
            if *kind == EntityType::Url {
                r = trim_url(text, r);
                if text[..r.start].ends_with('@') || r.is_empty() {
                    continue;
                }
            }
            if *id == "date/year" {
                // Keep the year, not the preposition.
                r.start = r.end - 4;
            }
            if *id == "time/at_hour" {
                r = hour_only(text, r);
            }
            if *kind == EntityType::CompanySize && !company_context(text, r.clone(), id) {
                continue;
            }
            if *kind == EntityType::Duration && is_rate_period(text, r.clone()) {
                continue;
            }
            cands.push(Cand {
                kind: *kind,
                bytes: r,
                prio: *prio,
                rule: id,
            });
        }
    }
    gazetteer(text, &mut cands);
    context_names(text, &mut cands);
    resolve(text, cands)
}

/// "$40k a year", "20 euros per month": a rate's period, not a duration.
fn is_rate_period(text: &str, r: Range<usize>) -> bool {
    let s = text[r.clone()].to_ascii_lowercase();
    if !(s.starts_with("a ") || s.starts_with("an ")) {
        return false;
    }
    let before = text[..r.start].trim_end();
    before.ends_with(|c: char| c.is_ascii_digit() || "$€£¥₹kKmM".contains(c))
        || [
            "dollars", "euros", "pounds", "usd", "eur", "gbp", "bucks", "seat", "user", "license",
            "licence",
        ]
        .iter()
        .any(|w| before.to_ascii_lowercase().ends_with(w))
}

fn trim_url(text: &str, mut r: Range<usize>) -> Range<usize> {
    while r.end > r.start && text[..r.end].ends_with(['.', ',', ';', ':', '!', '?', '\'', '"', ')'])
    {
        r.end -= 1;
    }
    r
}

fn hour_only(text: &str, r: Range<usize>) -> Range<usize> {
    let s = &text[r.clone()];
    let first_digit = s.find(|c: char| c.is_ascii_digit()).unwrap_or(0);
    let last = s
        .rfind(|c: char| c.is_ascii_digit())
        .map_or(s.len(), |i| i + 1);
    let mut end = r.start + last;
    // Keep a time zone written after the hour.
    let tail = &text[end..r.end];
    let tz = tail.trim_start();
    let tz_len = tz.chars().take_while(|c| c.is_ascii_alphabetic()).count();
    if tz_len >= 3 && TZ_WORDS.contains(&tz[..tz_len].to_ascii_lowercase().as_str()) {
        end += tail.len() - tz.len() + tz_len;
    }
    r.start + first_digit..end
}

/// "12 people" is a company size only where the company is in view; otherwise a number.
fn company_context(text: &str, r: Range<usize>, id: &str) -> bool {
    let s = text[r.clone()].to_ascii_lowercase();
    if id != "company_size/n_employees"
        || !(s.ends_with("people")
            || s.ends_with("persons")
            || s.ends_with("agents")
            || s.ends_with("engineers")
            || s.ends_with("developers"))
    {
        return true;
    }
    let from = crate::text::floor_boundary(text, r.start.saturating_sub(40));
    let before = text[from..r.start].to_ascii_lowercase();
    [
        "we ", "we're", "we are", "company", "team", "employ", "staff", "org", "business",
        "startup", "firm", "about ", "around ", "over ", "have ",
    ]
    .iter()
    .any(|w| before.contains(w))
}

fn gazetteer(text: &str, cands: &mut Vec<Cand>) {
    let g = &*GAZETTEER;
    let lower = text.to_ascii_lowercase();
    for m in g.ac.find_iter(&lower) {
        let r = m.range();
        let before = text[..r.start].chars().next_back();
        let after = text[r.end..].chars().next();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '@' || c == '_')
            || after.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '@')
        {
            continue;
        }
        let e = g.entries[m.pattern().as_usize()];
        let surface = &text[r.clone()];
        let capital = surface.chars().next().is_some_and(char::is_uppercase);
        // A lower-case given name counts where only a person fits: "call john", "text maya".
        if e.needs_capital
            && !capital
            && !(e.kind == EntityType::Person && after_contact_verb(&lower[..r.start]))
        {
            continue;
        }
        if e.needs_self && !self_context(&lower[..r.start]) {
            continue;
        }
        // An all-lowercase short acronym ("la", "sf", "vp") is a word, not the acronym.
        if surface.len() <= 3
            && surface.chars().all(|c| c.is_ascii_lowercase())
            && word_is_acronym(surface)
        {
            continue;
        }
        let (prio, rule) = match e.kind {
            EntityType::Location => (7, "location/gazetteer"),
            EntityType::Role => (7, "role/gazetteer"),
            EntityType::Org => (7, "org/gazetteer"),
            _ => (8, "person/first_name"),
        };
        let mut r = r;
        if e.kind == EntityType::Person {
            // Extend a first name with a capitalised surname.
            r.end = extend_capitalised(text, r.end, 1);
        }
        cands.push(Cand {
            kind: e.kind,
            bytes: r,
            prio,
            rule,
        });
    }
}

fn after_contact_verb(before: &str) -> bool {
    let b = before.trim_end();
    [
        "call",
        "text",
        "email",
        "message",
        "remind",
        "tell",
        "ask",
        "invite",
        "meet",
        "meeting with",
        "phone",
        "ring",
        "dial",
        "contact",
        "with",
        "from",
        "to",
        "for",
    ]
    .iter()
    .any(|v| {
        b.ends_with(v)
            && b[..b.len() - v.len()]
                .chars()
                .next_back()
                .is_none_or(|c| !c.is_alphanumeric())
    })
}

fn word_is_acronym(w: &str) -> bool {
    matches!(
        w,
        "la" | "sf"
            | "vp"
            | "uk"
            | "us"
            | "usa"
            | "uae"
            | "cto"
            | "ceo"
            | "cfo"
            | "coo"
            | "cmo"
            | "cio"
            | "cro"
            | "cpo"
            | "cdo"
            | "cso"
            | "sdr"
            | "bdr"
            | "dpo"
            | "avp"
            | "svp"
            | "evp"
            | "nyc"
            | "hp"
            | "ing"
            | "amd"
            | "sap"
            | "ibm"
            | "aws"
    ) && w != "usa"
}

fn self_context(before: &str) -> bool {
    let b = before.trim_end();
    let tail: String = b
        .chars()
        .rev()
        .take(24)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    [
        "i'm a",
        "i'm an",
        "i'm the",
        "im a",
        "im an",
        "im the",
        "i am a",
        "i am an",
        "i am the",
        "i’m a",
        "i’m an",
        "i’m the",
        " as a",
        " as an",
        " as the",
        "as",
        "my",
        "our",
        "work as a",
        "job as a",
        "i'm",
        "i am",
        "im",
        "our head",
        "the",
        "a",
        "an",
        "your",
    ]
    .iter()
    .any(|p| tail.ends_with(p))
        && !tail.ends_with("to a")
        && !tail.ends_with("with a")
        && !tail.ends_with("to an")
}

fn extend_capitalised(text: &str, mut end: usize, words: usize) -> usize {
    for _ in 0..words {
        let rest = &text[end..];
        let Some(next) = rest.strip_prefix(' ') else {
            break;
        };
        let w_len = next
            .char_indices()
            .take_while(|(_, c)| c.is_alphabetic() || *c == '\'' || *c == '-')
            .last()
            .map_or(0, |(i, c)| i + c.len_utf8());
        let w = &next[..w_len];
        if w_len >= 2
            && w.chars().next().is_some_and(char::is_uppercase)
            && w.chars().skip(1).any(char::is_lowercase)
            && !NOT_NAMES.contains(&w)
        {
            end += 1 + w_len;
        } else {
            break;
        }
    }
    end
}

/// Whether a capital letter follows whitespace somewhere in `text`. The person, organisation and
/// place cue patterns below each need one (a cue, whitespace, then a capitalised word), and a
/// search for captures costs more than this scan; chat messages are often all lower case.
/// Text with any non-ASCII byte is always searched (Unicode spaces and capitals).
fn has_spaced_capital(text: &str) -> bool {
    !text.is_ascii()
        || text.as_bytes().windows(2).any(|w| {
            matches!(w[0], b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) && w[1].is_ascii_uppercase()
        })
}

fn context_names(text: &str, cands: &mut Vec<Cand>) {
    let cued = has_spaced_capital(text);
    if cued {
        person_names(text, cands);
    }
    for m in ORG_SUFFIX.find_iter(text) {
        if let Some(r) = clean_name(text, m.range()) {
            cands.push(Cand {
                kind: EntityType::Org,
                bytes: r,
                prio: 6,
                rule: "org/suffix",
            });
        }
    }
    if !cued {
        return;
    }
    for caps in ORG_CONTEXT.captures_iter(text) {
        let Some(name) = caps.get(1) else { continue };
        let Some(r) = clean_name(text, name.range()) else {
            continue;
        };
        // Places and people found by their own lists keep their type.
        cands.push(Cand {
            kind: EntityType::Org,
            bytes: r,
            prio: 8,
            rule: "org/context",
        });
    }
    for caps in LOCATION_CONTEXT.captures_iter(text) {
        let Some(name) = caps.get(1) else { continue };
        if let Some(r) = clean_name(text, name.range()) {
            cands.push(Cand {
                kind: EntityType::Location,
                bytes: r,
                prio: 6,
                rule: "location/context",
            });
        }
    }
}

/// Names after a cue: "my name is Ana", "regards, Tom Lee".
fn person_names(text: &str, cands: &mut Vec<Cand>) {
    for caps in PERSON_CONTEXT.captures_iter(text) {
        let (Some(whole), Some(name)) = (caps.get(0), caps.get(1)) else {
            continue;
        };
        let Some(r) = clean_name(text, name.range()) else {
            continue;
        };
        let cue = whole.as_str()[..name.start() - whole.start()]
            .trim()
            .to_lowercase();
        // "I'm Looking..." is not a name; after "I'm" only a known first name or a name that ends the clause.
        if matches!(
            cue.as_str(),
            "i am" | "i'm" | "i’m" | "im" | "hi" | "hello" | "hey" | "dear"
        ) {
            let known = cands
                .iter()
                .any(|c| c.kind == EntityType::Person && c.bytes.start == r.start);
            let ends = text[r.end..]
                .trim_start()
                .starts_with([',', '.', '!', '?', '-', '–'])
                || text[r.end..].trim().is_empty()
                || text[r.end..]
                    .trim_start()
                    .to_lowercase()
                    .starts_with("from ")
                || text[r.end..]
                    .trim_start()
                    .to_lowercase()
                    .starts_with("here");
            if !(known || ends) {
                continue;
            }
        }
        cands.push(Cand {
            kind: EntityType::Person,
            bytes: r,
            prio: 6,
            rule: "person/context",
        });
    }
}

/// Drops leading words that are never names and trailing punctuation; `None` if nothing is left.
fn clean_name(text: &str, mut r: Range<usize>) -> Option<Range<usize>> {
    loop {
        let s = &text[r.clone()];
        let first_len = s.find(' ').unwrap_or(s.len());
        if NOT_NAMES.contains(&s[..first_len].trim_end_matches(['.', '\'', '’'])) {
            if first_len == s.len() {
                return None;
            }
            r.start += first_len + 1;
            continue;
        }
        // Stop at the first word that is never part of a name.
        let mut offset = 0;
        for (i, w) in s.split(' ').enumerate() {
            if i > 0 && NOT_NAMES.contains(&w.trim_end_matches(['.', ','])) {
                r.end = r.start + offset - 1;
                break;
            }
            offset += w.len() + 1;
        }
        while r.end > r.start && text[..r.end].ends_with(['.', ',', '\'', '’', '-']) {
            r.end -= 1;
        }
        return (r.end > r.start && text[r.clone()].chars().count() >= 2).then_some(r);
    }
}

fn resolve(text: &str, mut cands: Vec<Cand>) -> Vec<Entity> {
    cands.sort_by(|a, b| {
        a.prio
            .cmp(&b.prio)
            .then((b.bytes.end - b.bytes.start).cmp(&(a.bytes.end - a.bytes.start)))
            .then(a.bytes.start.cmp(&b.bytes.start))
    });
    let mut taken: Vec<Cand> = Vec::new();
    for c in cands {
        if c.bytes.is_empty()
            || taken
                .iter()
                .any(|t| t.bytes.start < c.bytes.end && c.bytes.start < t.bytes.end)
        {
            continue;
        }
        taken.push(c);
    }
    taken.sort_by_key(|c| c.bytes.start);
    let ix = CharIndex::new(text);
    taken
        .into_iter()
        .map(|c| {
            let span = ix.span(c.bytes.clone());
            Entity {
                kind: c.kind,
                value: slice_chars(text, span.clone()).to_string(),
                span,
                rule: c.rule,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cue_patterns_match(text: &str) -> bool {
        PERSON_CONTEXT.is_match(text)
            || ORG_CONTEXT.is_match(text)
            || LOCATION_CONTEXT.is_match(text)
    }

    #[test]
    fn the_capital_screen_never_hides_a_cued_name() {
        let texts = [
            "my name is Ana",
            "regards,\tTom Lee",
            "I work at\nAcme",
            "based in\x0bLisbon",
            "thanks,\x0cMaria",
            "ask for\r\nDr Smith",
            "based in Zürich",
            "my name is\u{a0}Ana",
            "hi Ana",
        ];
        for t in texts {
            assert!(cue_patterns_match(t), "{t:?} should match a cue pattern");
            assert!(has_spaced_capital(t), "{t:?} was screened out");
        }
        for t in [
            "my name is ana",
            "ok thanks",
            "Hello there",
            "PRICING?",
            "i work at acme",
        ] {
            assert!(!cue_patterns_match(t) || has_spaced_capital(t), "{t:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn a_text_the_screen_skips_has_no_cued_name(
            words in proptest::collection::vec(
                "(my name is|I'm|from|at|with|based in|regards,|hi|[a-zA-Z]{1,8})",
                1..8,
            ),
            seps in proptest::collection::vec("[ \t\n\r\x0b\x0c,.]{1,2}", 8),
        ) {
            let mut text = String::new();
            for (w, s) in words.iter().zip(&seps) {
                text.push_str(w);
                text.push_str(s);
            }
            proptest::prop_assert!(!cue_patterns_match(&text) || has_spaced_capital(&text), "{:?}", text);
        }
    }

    fn found(text: &str) -> Vec<(&'static str, String)> {
        extract(text)
            .into_iter()
            .map(|e| (e.kind.as_str(), e.value))
            .collect()
    }

    #[test]
    fn gazetteer_files_are_well_formed() {
        for data in [
            include_str!("../../data/locations.txt"),
            include_str!("../../data/roles.txt"),
            include_str!("../../data/companies.txt"),
            include_str!("../../data/first_names.txt"),
        ] {
            for line in data.lines() {
                assert_eq!(line, line.trim(), "stray whitespace in {line:?}");
            }
        }
        assert!(!GAZETTEER.entries.is_empty());
    }

    #[test]
    fn mixed_message() {
        let got = found(
            "Hi, I'm Sarah Lee, CTO at Acme Corp in Berlin. We have 200 employees and a budget of $50k. Call +49 30 1234567 or mail sarah@acme.io by March 15.",
        );
        for want in [
            ("person", "Sarah Lee"),
            ("role", "CTO"),
            ("org", "Acme Corp"),
            ("location", "Berlin"),
            ("company_size", "200 employees"),
            ("money", "$50k"),
            ("phone", "+49 30 1234567"),
            ("email", "sarah@acme.io"),
            ("date", "March 15"),
        ] {
            assert!(
                got.contains(&(want.0, want.1.to_string())),
                "missing {want:?} in {got:?}"
            );
        }
    }
}

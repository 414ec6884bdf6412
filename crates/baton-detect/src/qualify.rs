//! Qualification facts: budget, timeline, authority and company size, derived from the
//! entities and phrases of a message. Time is a parameter: "next quarter" is counted from `today`.

use std::borrow::Cow;
use std::sync::LazyLock;

use jiff::ToSpan;
use jiff::civil::{Date, Weekday};
use regex::Regex;

use crate::entities::{Entity, EntityType, parse_number};
use crate::rules::{Evidence, RuleSet};
use crate::text::{Normalized, slice_chars};

/// A budget the visitor stated.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// The amount (the upper end of a range).
    pub amount: f64,
    /// The lower end when a range was given.
    pub min: Option<f64>,
    /// ISO 4217 code when the currency was stated or implied by a symbol.
    pub currency: Option<&'static str>,
    /// `month`, `year`, `week`, or `None` for a one-off amount.
    pub period: Option<&'static str>,
    pub evidence: Evidence,
}

/// When the visitor means to decide or start.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// Days from `today` to the date meant (0 for "ASAP" or "today").
    pub days: i64,
    pub date: Date,
    pub evidence: Evidence,
}

/// Whether the visitor can sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Authority {
    DecisionMaker,
    Influencer,
    #[default]
    Unknown,
}

impl Authority {
    pub fn as_str(self) -> &'static str {
        match self {
            Authority::DecisionMaker => "decision_maker",
            Authority::Influencer => "influencer",
            Authority::Unknown => "unknown",
        }
    }
}

/// Head count of the visitor's company.
#[derive(Debug, Clone, PartialEq)]
pub struct CompanySize {
    pub employees: u64,
    pub min: Option<u64>,
    pub evidence: Evidence,
}

/// All qualification facts of a message or conversation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Qualification {
    pub budget: Option<Budget>,
    pub timeline: Option<Timeline>,
    pub authority: Authority,
    pub authority_evidence: Option<Evidence>,
    pub company_size: Option<CompanySize>,
}

pub(crate) fn authority_rules() -> RuleSet {
    let top = r"(?:ceo|cto|cfo|coo|cmo|cio|ciso|cro|cpo|founder|co\sfounder|cofounder|owner|president|vp|vice\spresident|head\sof\s\w+|director|managing\sdirector|general\smanager|partner|chief\s\w+\sofficer|svp|evp|principal|decision\smaker|buyer|budget\sholder|budget\sowner|person\sin\scharge)";
    let boss = r"(?:boss|manager|team|ceo|cto|cfo|coo|director|vp|head\sof\s\w+|procurement|legal|finance|board|leadership|management|partners?|supervisor|it\sdepartment|it\steam|security\steam|owner|founder|superiors?|higher\sups?|exec(?:utive)?s?)";
    let rules: Vec<(&'static str, String)> = vec![
        ("authority/decision_maker/title", format!(r"\b(?:im|i\sam|as)\s(?:the\s|a\s|an\s|one\sof\sthe\s)?(?:\w+\s)?{top}\b|\b{top}\shere\b|\b(?:im|i\sam|this\sis|my\sname\sis|its)\s[a-z]+(?:\s[a-z]+)?\s,\s(?:the\s|a\s|an\s)?(?:\w+\s)?{top}\b")),
        ("authority/decision_maker/signs", r"\bi\s(?:sign\soff|sign\sthe|approve|make\sthe\s(?:final\s)?(?:call|decision)|decide|own\sthe\sbudget|hold\sthe\sbudget|control\sthe\sbudget|have\s(?:the\s)?(?:final\ssay|sign\s?off|budget\sauthority|authority|purchasing\sauthority)|can\ssign|will\sbe\ssigning|am\sthe\sdecision\smaker|m\sthe\sdecision\smaker|am\sthe\sone\swho\sdecides|make\sthe\spurchasing\sdecisions?)\b|\b(?:its|it\sis)\smy\s(?:call|decision|budget)\b|\bmy\sdecision\b|\bi\sm\sthe\sdecision\smaker\b|\bim\sthe\sdecision\smaker\b|\bi\s(?:run|own|founded|started)\s(?:the|this|our|my)\s(?:company|business|firm|agency|shop|startup)\b".into()),
        ("authority/influencer/needs_approval", format!(r"\b(?:need|needs|have|has|got|would\sneed|d\sneed|will\sneed|ll\sneed|must|should)\sto\s(?:run\s(?:it|this|that)\sby|check\swith|ask|talk\sto|get\s(?:approval|sign\s?off|buy\sin|the\sgo\sahead)\sfrom|convince|loop\sin|consult(?:\swith)?|present\s(?:it|this)\sto|get\s(?:it|this)\sapproved\sby|discuss\s(?:it|this|with))\s(?:with\s)?(?:my|our|the)\s{boss}\b")),
        ("authority/influencer/not_decider", format!(r"\b(?:not|isnt|am\snot|m\snot|im\snot)\s(?:the\s|a\s)?(?:decision\smaker|one\swho\sdecides|person\swho\sdecides|budget\sholder|final\ssay)\b|\b(?:my|our|the)\s{boss}\s(?:decides|will\sdecide|makes\sthe\s(?:final\s)?(?:decision|call)|will\smake\sthe\s(?:final\s)?(?:decision|call)|has\sthe\slast\sword|signs\soff|will\ssign\soff|needs\sto\ssign\soff|signs|approves|has\sthe\sfinal\ssay|has\sto\sapprove|needs\sto\sapprove|will\shave\sto\sapprove|holds\sthe\sbudget)\b|\b(?:im|i\sam)\s(?:just\s|only\s)?(?:researching|evaluating|gathering\sinfo\w*|doing\s(?:some\s)?research|looking\son\sbehalf|collecting\soptions|shortlisting)\b|\b(?:recommend|present)\s(?:it|this|options)\sto\s(?:my|our|the)\s{boss}\b|\bi\sreport\sto\b|\bneed\s(?:approval|sign\s?off|buy\sin)\b")),
    ];
    RuleSet::new(&rules)
}

static BUDGET_CONTEXT: LazyLock<Regex> = LazyLock::new(|| {
    crate::rules::regex(
        r"(?i)\b(?:budget|budgeted|spend|spending|afford|allocated|allocate|set\saside|pay|paying|invest|price\srange|up\sto|max(?:imum)?|no\smore\sthan|willing|looking\sat|range|cap|ceiling|limit)\b",
    )
});

static BARE_RANGE: LazyLock<Regex> = LazyLock::new(|| {
    crate::rules::regex(
        r"(?i)\bbetween\s(\d+(?:[.,]\d+)?)\s?(k|thousand|million|m)?\s(?:and|to|-)\s(\d+(?:[.,]\d+)?)\s?(k|thousand|million|m)?\b|\b(?:budget|spend)\s(?:is|of|around|about|roughly|approximately|~)?\s?(?:around\s|about\s|roughly\s)?(\d+(?:[.,]\d+)?)\s?(k|thousand|million|m)\b",
    )
});

static PERIOD: LazyLock<Regex> = LazyLock::new(|| {
    crate::rules::regex(
        r"(?i)^\s?(?:/|a|an|per|each|every)\s?(month|mo|year|yr|annum|week|quarter)\b|^\s?(monthly|annually|yearly|weekly|quarterly)\b",
    )
});

fn currency_of(s: &str) -> Option<&'static str> {
    let l = s.to_lowercase();
    let table: &[(&str, &str)] = &[
        ("ca$", "CAD"),
        ("c$", "CAD"),
        ("cad", "CAD"),
        ("au$", "AUD"),
        ("a$", "AUD"),
        ("aud", "AUD"),
        ("nz$", "NZD"),
        ("nzd", "NZD"),
        ("hk$", "HKD"),
        ("hkd", "HKD"),
        ("s$", "SGD"),
        ("sgd", "SGD"),
        ("r$", "BRL"),
        ("brl", "BRL"),
        ("us$", "USD"),
        ("usd", "USD"),
        ("dollar", "USD"),
        ("bucks", "USD"),
        ("$", "USD"),
        ("€", "EUR"),
        ("eur", "EUR"),
        ("£", "GBP"),
        ("gbp", "GBP"),
        ("pound", "GBP"),
        ("quid", "GBP"),
        ("¥", "JPY"),
        ("yen", "JPY"),
        ("jpy", "JPY"),
        ("₹", "INR"),
        ("rupee", "INR"),
        ("inr", "INR"),
        ("chf", "CHF"),
        ("franc", "CHF"),
        ("sek", "SEK"),
        ("nok", "NOK"),
        ("dkk", "DKK"),
        ("krona", "SEK"),
        ("krone", "NOK"),
        ("yuan", "CNY"),
        ("cny", "CNY"),
        ("rmb", "CNY"),
        ("₩", "KRW"),
        ("won", "KRW"),
        ("₽", "RUB"),
        ("₺", "TRY"),
        ("₪", "ILS"),
        ("zar", "ZAR"),
        ("mxn", "MXN"),
        ("peso", "MXN"),
    ];
    table.iter().find(|(k, _)| l.contains(k)).map(|(_, v)| *v)
}

/// The numeric amounts in a money span: one, or two for a range.
fn amounts(s: &str) -> Vec<f64> {
    static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
        crate::rules::regex(
            r"(?i)(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)\s?(k|mm|m|bn|mil|million|thousand|billion|grand)?\b",
        )
    });
    let caps: Vec<_> = NUMBER.captures_iter(s).collect();
    let last_mag = caps
        .last()
        .and_then(|c| c.get(2))
        .map(|m| m.as_str().to_string());
    caps.iter()
        .filter_map(|c| {
            let n = c.get(1)?.as_str();
            // "20 to 30 thousand": the magnitude of the last applies to the first.
            let mag = c
                .get(2)
                .map(|m| m.as_str().to_string())
                .or_else(|| last_mag.clone());
            parse_number(&format!("{n} {}", mag.unwrap_or_default()))
        })
        .collect()
}

pub(crate) fn budget(text: &str, entities: &[Entity]) -> Option<Budget> {
    let context = BUDGET_CONTEXT.is_match(text);
    let money: Vec<&Entity> = entities
        .iter()
        .filter(|e| e.kind == EntityType::Money)
        .collect();
    if let Some(e) = money.first().filter(|_| context || money.len() == 1) {
        let values = amounts(&e.value);
        let amount = values.iter().copied().fold(f64::NAN, f64::max);
        if amount.is_finite() {
            let byte_end = text
                .char_indices()
                .nth(e.span.end)
                .map_or(text.len(), |(b, _)| b);
            let period = period_after(&text[byte_end..]);
            return Some(Budget {
                amount,
                min: (values.len() > 1)
                    .then(|| values.iter().copied().fold(f64::INFINITY, f64::min)),
                currency: currency_of(&e.value),
                period,
                evidence: Evidence {
                    signal: "budget",
                    label: None,
                    span: e.span.clone(),
                    text: e.value.clone(),
                    rule: Cow::Borrowed(if context {
                        "budget/money_in_budget_context"
                    } else {
                        "budget/only_amount"
                    }),
                    turn: 0,
                },
            });
        }
    }
    if !context {
        return None;
    }
    let c = BARE_RANGE.captures(text)?;
    let m = c.get(0)?;
    let num = |i: usize, j: usize| -> Option<f64> {
        let n = c.get(i)?.as_str().replace(',', "");
        let mag = c.get(j).or_else(|| c.get(4)).map_or("", |m| m.as_str());
        parse_number(&format!("{n} {mag}"))
    };
    let (min, amount) = match (num(1, 2), num(3, 4), num(5, 6)) {
        (Some(a), Some(b), _) => (Some(a.min(b)), a.max(b)),
        (_, _, Some(x)) => (None, x),
        _ => return None,
    };
    let ci = crate::text::CharIndex::new(text);
    let span = ci.span(m.range());
    Some(Budget {
        amount,
        min,
        currency: None,
        period: period_after(&text[m.end()..]),
        evidence: Evidence {
            signal: "budget",
            label: None,
            text: slice_chars(text, span.clone()).to_string(),
            span,
            rule: Cow::Borrowed("budget/bare_amount"),
            turn: 0,
        },
    })
}

fn period_after(rest: &str) -> Option<&'static str> {
    let c = PERIOD.captures(rest)?;
    let w = c.get(1).or_else(|| c.get(2))?.as_str().to_lowercase();
    Some(match w.as_str() {
        "month" | "mo" | "monthly" => "month",
        "year" | "yr" | "annum" | "annually" | "yearly" => "year",
        "week" | "weekly" => "week",
        _ => "quarter",
    })
}

static TIMELINE_CONTEXT: LazyLock<Regex> = LazyLock::new(|| {
    crate::rules::regex(
        r"(?i)\b(?:by|before|until|within|in|next|this|decid\w*|decision|go\slive|launch\w*|start\w*|implement\w*|roll\s?out|deploy\w*|buy|purchas\w*|sign\w*|need|want|plan\w*|looking|timeline|timeframe|deadline|asap|due|kick\s?off|switch\w*|migrat\w*|onboard\w*|end\sof)\b",
    )
});

static ASAP: LazyLock<Regex> = LazyLock::new(|| {
    crate::rules::regex(
        r"(?i)\b(?:asap|as\ssoon\sas\spossible|immediately|right\saway|urgent(?:ly)?|right\snow|straight\saway)\b",
    )
});

pub(crate) fn timeline(text: &str, entities: &[Entity], today: Date) -> Option<Timeline> {
    let mk = |days: i64, date: Date, span: std::ops::Range<usize>, rule: &'static str| Timeline {
        days,
        date,
        evidence: Evidence {
            signal: "timeline",
            label: None,
            text: slice_chars(text, span.clone()).to_string(),
            span,
            rule: Cow::Borrowed(rule),
            turn: 0,
        },
    };
    if let Some(m) = ASAP.find(text) {
        let span = crate::text::CharIndex::new(text).span(m.range());
        return Some(mk(0, today, span, "timeline/asap"));
    }
    if !TIMELINE_CONTEXT.is_match(text) {
        return None;
    }
    for e in entities {
        let date = match e.kind {
            EntityType::Date => resolve_date(&e.value, text_before(text, e.span.start), today),
            EntityType::Duration if duration_as_deadline(text_before(text, e.span.start)) => {
                duration_days(&e.value)
                    .and_then(|d| jiff::Span::new().try_days(d).ok())
                    .and_then(|span| today.checked_add(span).ok())
            }
            _ => None,
        };
        if let Some(d) = date {
            let days = (d - today).get_days() as i64;
            let days = if d < today {
                -(today - d).get_days().abs() as i64
            } else {
                days
            };
            return Some(mk(days.max(0), d, e.span.clone(), "timeline/date"));
        }
    }
    None
}

fn text_before(text: &str, char_start: usize) -> String {
    let start = char_start.saturating_sub(20);
    text.chars()
        .skip(start)
        .take(char_start - start)
        .collect::<String>()
        .to_lowercase()
}

fn duration_as_deadline(before: String) -> bool {
    let b = before.trim_end();
    [
        "in",
        "within",
        "next",
        "in the next",
        "over the next",
        "in about",
        "in around",
        "in roughly",
    ]
    .iter()
    .any(|w| b.ends_with(w))
}

fn duration_days(s: &str) -> Option<i64> {
    let l = s.to_lowercase();
    let unit_days = [
        ("business day", 7.0 / 5.0),
        ("working day", 7.0 / 5.0),
        ("day", 1.0),
        ("fortnight", 14.0),
        ("week", 7.0),
        ("wk", 7.0),
        ("month", 30.0),
        ("quarter", 91.0),
        ("year", 365.0),
        ("yr", 365.0),
        ("decade", 3650.0),
        ("hour", 0.0),
        ("hr", 0.0),
        ("minute", 0.0),
        ("min", 0.0),
        ("second", 0.0),
    ];
    let (unit, per) = unit_days.iter().find(|(u, _)| l.contains(u))?;
    let qty_text = l.split(unit).next()?.trim().trim_end_matches('-');
    let qty = match qty_text {
        "a" | "an" | "" => 1.0,
        "a few" | "few" => 3.0,
        "a couple of" | "a couple" | "couple of" => 2.0,
        "several" => 4.0,
        "half a" | "half an" => 0.5,
        t => parse_number(t)?,
    };
    Some((qty * per).round() as i64)
}

fn month_number(s: &str) -> Option<i8> {
    let months = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let l = s.to_lowercase();
    months
        .iter()
        .position(|m| l.starts_with(m))
        .map(|i| i as i8 + 1)
}

fn last_day(year: i16, month: i8) -> Option<Date> {
    Date::new(year, month, 1).ok()?.last_of_month().into()
}

/// The date a date phrase means, seen from `today`; period phrases mean their end after "by",
/// "before", "end of", their start otherwise.
fn resolve_date(phrase: &str, before: String, today: Date) -> Option<Date> {
    let p = phrase.to_lowercase();
    // "by next quarter" means its start; "by end of March" its end.
    let end_of =
        p.contains("end of") || p.starts_with("late") || p.contains("eoy") || p.contains("eoq");
    let _ = before;
    let y = today.year();
    let quarter_start = |q: i8, year: i16| Date::new(year, (q - 1) * 3 + 1, 1).ok();
    let quarter_end = |q: i8, year: i16| last_day(year, q * 3);
    let cur_q = (today.month() - 1) / 3 + 1;
    let pick_quarter = |q: i8, year: i16| {
        if end_of {
            quarter_end(q, year)
        } else {
            quarter_start(q, year)
        }
    };

    if p.contains("asap") || p == "today" {
        return Some(today);
    }
    if p.contains("day after tomorrow") {
        return today.checked_add(2.days()).ok();
    }
    if p == "tomorrow" {
        return today.checked_add(1.days()).ok();
    }
    if p.contains("yesterday") || p.contains("ago") {
        return None;
    }
    if let Ok(d) = p.parse::<Date>() {
        return Some(d);
    }
    if p.contains("quarter") || p.starts_with('q') {
        let q = if p.contains("next") {
            cur_q % 4 + 1
        } else if let Some(d) = p.chars().nth(1).and_then(|c| c.to_digit(10)) {
            d as i8
        } else if p.contains("first") {
            1
        } else if p.contains("second") {
            2
        } else if p.contains("third") {
            3
        } else if p.contains("fourth") || p.contains("last") {
            4
        } else {
            cur_q
        };
        let mut year = p
            .split(|c: char| !c.is_ascii_digit())
            .find(|s| s.len() == 4)
            .and_then(|s| s.parse().ok())
            .unwrap_or(y);
        if p.contains("next") && q < cur_q
            || (!p.contains("next") && !p.contains("this") && q < cur_q && year == y)
        {
            year += 1;
        }
        if q == cur_q && year == y && !p.contains("next") {
            return quarter_end(q, year);
        }
        return pick_quarter(q, year);
    }
    if p.contains("week") {
        let to_sunday = 7 - today.weekday().to_monday_one_offset() as i64;
        return if p.contains("next") || p.contains("following") || p.contains("coming") {
            today
                .checked_add((to_sunday + if end_of { 7 } else { 1 }).days())
                .ok()
        } else {
            today.checked_add(to_sunday.days()).ok()
        };
    }
    if p.contains("month") {
        return if p.contains("next") || p.contains("following") || p.contains("coming") {
            let first_next = today.first_of_month().checked_add(1.month()).ok()?;
            if end_of {
                Some(first_next.last_of_month())
            } else {
                Some(first_next)
            }
        } else {
            Some(today.last_of_month())
        };
    }
    if p.contains("year") || p.contains("eoy") {
        return if p.contains("next") {
            if end_of {
                Date::new(y + 1, 12, 31).ok()
            } else {
                Date::new(y + 1, 1, 1).ok()
            }
        } else {
            Date::new(y, 12, 31).ok()
        };
    }
    if let Some(wd) = weekday(&p) {
        let mut d = today.checked_add(1.days()).ok()?;
        while d.weekday() != wd {
            d = d.checked_add(1.days()).ok()?;
        }
        if p.contains("next")
            && (d - today).get_days() < 7
            && today.weekday().to_monday_one_offset() < wd.to_monday_one_offset()
        {
            d = d.checked_add(7.days()).ok()?;
        }
        return Some(d);
    }
    // Month names, with or without a day and a year.
    let words: Vec<&str> = p
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let month = words
        .iter()
        .find_map(|w| (w.len() >= 3).then(|| month_number(w)).flatten())?;
    let day = words.iter().find_map(|w| {
        let digits: String = w.chars().take_while(char::is_ascii_digit).collect();
        (!digits.is_empty() && digits.len() <= 2)
            .then(|| digits.parse::<i8>().ok())
            .flatten()
    });
    let year = words
        .iter()
        .find_map(|w| (w.len() == 4).then(|| w.parse::<i16>().ok()).flatten());
    let build = |year: i16| -> Option<Date> {
        match day {
            Some(d) => Date::new(year, month, d).ok(),
            None if end_of => last_day(year, month),
            None => Date::new(year, month, 1).ok(),
        }
    };
    match year {
        Some(yr) => build(yr),
        None => {
            let this = build(y)?;
            if this < today && !(month == today.month() && day.is_none()) {
                build(y + 1)
            } else {
                Some(this.max(today))
            }
        }
    }
}

fn weekday(p: &str) -> Option<Weekday> {
    [
        ("monday", Weekday::Monday),
        ("tuesday", Weekday::Tuesday),
        ("wednesday", Weekday::Wednesday),
        ("thursday", Weekday::Thursday),
        ("friday", Weekday::Friday),
        ("saturday", Weekday::Saturday),
        ("sunday", Weekday::Sunday),
    ]
    .iter()
    .find(|(n, _)| p.contains(n))
    .map(|(_, w)| *w)
}

pub(crate) fn authority(
    rules: &RuleSet,
    n: &Normalized,
    text: &str,
) -> (Authority, Option<Evidence>) {
    let hits = rules.hits(&n.norm);
    // A stated need for approval outweighs a title: "I'm the director but my CFO signs".
    let pick = hits
        .iter()
        .find(|h| h.rule.contains("/influencer/"))
        .or_else(|| hits.first());
    match pick {
        Some(h) => {
            let a = if h.rule.contains("/decision_maker/") {
                Authority::DecisionMaker
            } else {
                Authority::Influencer
            };
            (a, Some(h.evidence(n, text, "authority", Some(a.as_str()))))
        }
        None => (Authority::Unknown, None),
    }
}

pub(crate) fn company_size(entities: &[Entity]) -> Option<CompanySize> {
    let e = entities
        .iter()
        .find(|e| e.kind == EntityType::CompanySize)?;
    static N: LazyLock<Regex> = LazyLock::new(|| {
        crate::rules::regex(
            r"(?i)\d[\d,]*(?:\.\d+)?\s?k?\b|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand)(?:[\s-](?:one|two|three|four|five|six|seven|eight|nine|hundred|thousand|and))*\b",
        )
    });
    let values: Vec<u64> = N
        .find_iter(&e.value)
        .filter_map(|m| parse_number(m.as_str()))
        .map(|v| v.round() as u64)
        .filter(|v| *v > 0)
        .collect();
    let employees = *values.iter().max()?;
    Some(CompanySize {
        employees,
        min: (values.len() > 1).then(|| *values.iter().min().unwrap_or(&employees)),
        evidence: e.evidence(),
    })
}

//! A visitor turn's signals in a compact binary form, stored with the turn so that reading a
//! conversation back (after it left the cache, after a restart, for `GET` of a conversation)
//! decodes each turn's signals instead of running the detectors on it again.
//!
//! Stored signals are only as good as the detectors that produced them. Every blob starts with
//! the format version and the [`SignalCodec`]'s fingerprint: the crate version, the policy's
//! `[detectors]` section and what the detectors say about a fixed set of probe messages. A
//! blob from another format, another build whose detectors answer differently, or another
//! `[detectors]` section does not decode ([`SignalCodec::decode`] answers `None`) and the
//! caller detects the turn again; so does a blob cut short or otherwise damaged.
//!
//! Names the detectors use (`&'static str`: intents, topics, rule ids, currencies) are
//! interned when read: a process keeps one copy of each, and at most [`MAX_NAMES`] of them
//! (the detectors use a few hundred), after which a blob with a new name does not decode.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::{OnceLock, RwLock};

use baton_detect::{
    Authority, Budget, CompanySize, ConversationSignals, Detector, Entity, EntityType, Evidence,
    Qualification, Signals, Timeline, slice_chars,
};

/// The layout below; a blob of another version does not decode.
const FORMAT: u8 = 1;

/// Names interned at most; a blob naming more does not decode.
pub const MAX_NAMES: usize = 4096;

/// Messages whose signals go into the fingerprint, so that a build whose detectors answer
/// differently does not trust what an earlier build stored. Together they reach every
/// detector: requests for a person, affect, intents and topics, entities, qualification.
const PROBES: &[&str] = &[
    "Can I talk to a real person please? This is the third time I ask and it's useless!!",
    "I'm the CTO of a 200-person company. Budget is $40k-$50k a year, we'd like to start next quarter.",
    "How much is the team plan? Can we book a demo on Friday at 3pm? Mail jo.lee@example.org or call +1 415 555 0134.",
    "I need to check with my boss first. We have a GDPR and SOC 2 question about data retention.",
    "I was charged twice for my invoice, please refund me. Is there an API for the webhook integration?",
    "No, that's not what I asked. I don't understand, what do you mean?",
    "ok thanks, see https://example.com/docs for the SSO setup in 2 weeks",
];

/// Encodes and decodes a turn's [`Signals`] for the detectors it was built for.
#[derive(Debug, Clone)]
pub struct SignalCodec {
    fingerprint: u64,
}

impl SignalCodec {
    /// The codec for `detector`, built from the policy's `[detectors]` section described by
    /// `config` (any text that changes when the section does).
    pub fn new(detector: &Detector, config: &str) -> SignalCodec {
        let mut h = Fnv::new();
        h.write(b"baton signals");
        h.write(&[FORMAT]);
        h.write(env!("CARGO_PKG_VERSION").as_bytes());
        h.write(config.as_bytes());
        let day = jiff::civil::date(2026, 1, 15);
        for probe in PROBES {
            let mut out = Vec::new();
            body(&mut out, &detector.message(probe, day), probe);
            h.write(&(out.len() as u64).to_le_bytes());
            h.write(&out);
        }
        SignalCodec {
            fingerprint: h.finish(),
        }
    }

    /// The signals of the message `text`, as [`Detector::message`] returned them, in bytes.
    pub fn encode(&self, s: &Signals, text: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.push(FORMAT);
        out.extend_from_slice(&self.fingerprint.to_le_bytes());
        body(&mut out, s, text);
        out
    }

    /// What [`SignalCodec::encode`] wrote for the message `text`, if it was written by this
    /// codec's detectors and is whole; `detector` normalises the text again (a reading is not
    /// stored).
    pub fn decode(&self, bytes: &[u8], text: &str, detector: &Detector) -> Option<Signals> {
        let mut r = Reader { bytes, at: 0 };
        if r.u8()? != FORMAT || r.u64()? != self.fingerprint {
            return None;
        }
        let (mut s, reading) = read_body(&mut r, text)?;
        if r.at != bytes.len() {
            return None;
        }
        if reading {
            s.reading = Some(detector.read(text));
        }
        Some(s)
    }
}

/// Bits of the first byte of the body.
const HUMAN_REQUEST: u8 = 1;
const FRUSTRATION: u8 = 2;
const CONFUSION: u8 = 4;
const LOOPING: u8 = 8;
/// The signals kept the message's reading (the whole message was read).
const READING: u8 = 16;

fn body(out: &mut Vec<u8>, s: &Signals, text: &str) {
    let bits = [
        (s.human_request, HUMAN_REQUEST),
        (s.frustration, FRUSTRATION),
        (s.confusion, CONFUSION),
        (s.looping, LOOPING),
        (s.reading.is_some(), READING),
    ];
    out.push(bits.iter().filter(|(on, _)| *on).map(|(_, b)| b).sum());
    f64_(out, s.sentiment);
    f64_(out, s.frustration_score);
    uint(out, s.intents.len() as u64);
    for i in &s.intents {
        name(out, i);
    }
    uint(out, s.topics.len() as u64);
    for t in &s.topics {
        name(out, t);
    }
    uint(out, s.entities.len() as u64);
    for e in &s.entities {
        out.push(entity_code(e.kind));
        span(out, &e.span);
        spanned(out, &e.value, text, &e.span);
        name(out, e.rule);
    }
    let q = &s.qualification;
    match &q.budget {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            f64_(out, b.amount);
            opt_f64(out, b.min);
            opt_name(out, b.currency);
            opt_name(out, b.period);
            evidence(out, &b.evidence, text);
        }
    }
    match &q.timeline {
        None => out.push(0),
        Some(t) => {
            out.push(1);
            int(out, t.days);
            int(out, i64::from(t.date.year()));
            out.push(t.date.month() as u8);
            out.push(t.date.day() as u8);
            evidence(out, &t.evidence, text);
        }
    }
    out.push(match q.authority {
        Authority::Unknown => 0,
        Authority::DecisionMaker => 1,
        Authority::Influencer => 2,
    });
    match &q.authority_evidence {
        None => out.push(0),
        Some(e) => {
            out.push(1);
            evidence(out, e, text);
        }
    }
    match &q.company_size {
        None => out.push(0),
        Some(c) => {
            out.push(1);
            uint(out, c.employees);
            match c.min {
                None => out.push(0),
                Some(m) => {
                    out.push(1);
                    uint(out, m);
                }
            }
            evidence(out, &c.evidence, text);
        }
    }
    let c = &s.conversation;
    for n in [
        c.user_turns,
        c.bot_fallbacks_in_row,
        c.bot_fallbacks,
        c.unanswered_questions,
        c.repeated_questions,
        c.corrections,
    ] {
        uint(out, n as u64);
    }
    f64_(out, c.sentiment_trend);
    uint(out, s.evidence.len() as u64);
    for e in &s.evidence {
        evidence(out, e, text);
    }
}

/// The signals (without their reading) and whether they had one.
fn read_body(r: &mut Reader<'_>, text: &str) -> Option<(Signals, bool)> {
    let flags = r.u8()?;
    if flags >= READING << 1 {
        return None;
    }
    let mut s = Signals {
        human_request: flags & HUMAN_REQUEST != 0,
        frustration: flags & FRUSTRATION != 0,
        confusion: flags & CONFUSION != 0,
        looping: flags & LOOPING != 0,
        sentiment: r.f64()?,
        frustration_score: r.f64()?,
        ..Signals::default()
    };
    let n = r.len()?;
    s.intents = (0..n).map(|_| r.name()).collect::<Option<_>>()?;
    let n = r.len()?;
    s.topics = (0..n).map(|_| r.name()).collect::<Option<_>>()?;
    let n = r.len()?;
    s.entities = (0..n)
        .map(|_| {
            let kind = entity_type(r.u8()?)?;
            let span = r.span()?;
            Some(Entity {
                kind,
                value: r.spanned(text, &span)?,
                span,
                rule: r.name()?,
            })
        })
        .collect::<Option<_>>()?;
    let mut q = Qualification::default();
    if r.flag()? {
        q.budget = Some(Budget {
            amount: r.f64()?,
            min: if r.flag()? { Some(r.f64()?) } else { None },
            currency: r.opt_name()?,
            period: r.opt_name()?,
            evidence: r.evidence(text)?,
        });
    }
    if r.flag()? {
        let days = r.int()?;
        let year = i16::try_from(r.int()?).ok()?;
        let (month, day) = (r.u8()? as i8, r.u8()? as i8);
        q.timeline = Some(Timeline {
            days,
            date: jiff::civil::Date::new(year, month, day).ok()?,
            evidence: r.evidence(text)?,
        });
    }
    q.authority = match r.u8()? {
        0 => Authority::Unknown,
        1 => Authority::DecisionMaker,
        2 => Authority::Influencer,
        _ => return None,
    };
    if r.flag()? {
        q.authority_evidence = Some(r.evidence(text)?);
    }
    if r.flag()? {
        q.company_size = Some(CompanySize {
            employees: r.uint()?,
            min: if r.flag()? { Some(r.uint()?) } else { None },
            evidence: r.evidence(text)?,
        });
    }
    s.qualification = q;
    let mut counts = [0usize; 6];
    for c in &mut counts {
        *c = usize::try_from(r.uint()?).ok()?;
    }
    s.conversation = ConversationSignals {
        user_turns: counts[0],
        bot_fallbacks_in_row: counts[1],
        bot_fallbacks: counts[2],
        unanswered_questions: counts[3],
        repeated_questions: counts[4],
        corrections: counts[5],
        sentiment_trend: r.f64()?,
    };
    let n = r.len()?;
    s.evidence = (0..n).map(|_| r.evidence(text)).collect::<Option<_>>()?;
    Some((s, flags & READING != 0))
}

const ENTITY_TYPES: [EntityType; 13] = [
    EntityType::Email,
    EntityType::Phone,
    EntityType::Money,
    EntityType::Date,
    EntityType::Time,
    EntityType::Duration,
    EntityType::Person,
    EntityType::Org,
    EntityType::Role,
    EntityType::Location,
    EntityType::Number,
    EntityType::CompanySize,
    EntityType::Url,
];

fn entity_code(t: EntityType) -> u8 {
    ENTITY_TYPES.iter().position(|k| *k == t).unwrap_or(0) as u8
}

fn entity_type(code: u8) -> Option<EntityType> {
    ENTITY_TYPES.get(usize::from(code)).copied()
}

fn evidence(out: &mut Vec<u8>, e: &Evidence, text: &str) {
    name(out, e.signal);
    opt_name(out, e.label);
    span(out, &e.span);
    spanned(out, &e.text, text, &e.span);
    name(out, &e.rule);
    uint(out, e.turn as u64);
}

fn span(out: &mut Vec<u8>, span: &Range<usize>) {
    uint(out, span.start as u64);
    uint(out, span.end.wrapping_sub(span.start) as u64);
}

/// A text that is usually the message's own span: then only a mark.
fn spanned(out: &mut Vec<u8>, s: &str, text: &str, span: &Range<usize>) {
    if span.start <= span.end && slice_chars(text, span.clone()) == s {
        out.push(0);
    } else {
        out.push(1);
        name(out, s);
    }
}

fn name(out: &mut Vec<u8>, s: &str) {
    uint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn opt_name(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            name(out, s);
        }
    }
}

fn f64_(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_bits().to_le_bytes());
}

fn opt_f64(out: &mut Vec<u8>, v: Option<f64>) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            f64_(out, v);
        }
    }
}

/// LEB128.
fn uint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Zig-zag, then LEB128.
fn int(out: &mut Vec<u8>, v: i64) {
    uint(out, ((v << 1) ^ (v >> 63)) as u64);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(s)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn flag(&mut self) -> Option<bool> {
        match self.u8()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn f64(&mut self) -> Option<f64> {
        Some(f64::from_bits(self.u64()?))
    }

    fn uint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f).checked_shl(shift)?;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn int(&mut self) -> Option<i64> {
        let u = self.uint()?;
        Some((u >> 1) as i64 ^ -((u & 1) as i64))
    }

    /// A count of items still to read: no more than bytes are left, so a damaged count
    /// cannot ask for a large allocation.
    fn len(&mut self) -> Option<usize> {
        let n = usize::try_from(self.uint()?).ok()?;
        (n <= self.bytes.len() - self.at).then_some(n)
    }

    fn str(&mut self) -> Option<&str> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).ok()
    }

    fn name(&mut self) -> Option<&'static str> {
        intern(self.str()?)
    }

    fn opt_name(&mut self) -> Option<Option<&'static str>> {
        if self.flag()? {
            Some(Some(self.name()?))
        } else {
            Some(None)
        }
    }

    fn span(&mut self) -> Option<Range<usize>> {
        let start = usize::try_from(self.uint()?).ok()?;
        let len = usize::try_from(self.uint()?).ok()?;
        Some(start..start.checked_add(len)?)
    }

    fn spanned(&mut self, text: &str, span: &Range<usize>) -> Option<String> {
        if self.flag()? {
            Some(self.str()?.to_string())
        } else {
            Some(slice_chars(text, span.clone()).to_string())
        }
    }

    fn evidence(&mut self, text: &str) -> Option<Evidence> {
        let signal = self.name()?;
        let label = self.opt_name()?;
        let span = self.span()?;
        Some(Evidence {
            signal,
            label,
            text: self.spanned(text, &span)?,
            span,
            rule: std::borrow::Cow::Borrowed(self.name()?),
            turn: usize::try_from(self.uint()?).ok()?,
        })
    }
}

/// The one copy of a name, kept for the life of the process.
fn intern(s: &str) -> Option<&'static str> {
    static NAMES: OnceLock<RwLock<HashSet<&'static str>>> = OnceLock::new();
    let names = NAMES.get_or_init(Default::default);
    if let Some(n) = names.read().ok()?.get(s) {
        return Some(n);
    }
    let mut names = names.write().ok()?;
    if let Some(n) = names.get(s) {
        return Some(n);
    }
    if names.len() >= MAX_NAMES {
        return None;
    }
    let n: &'static str = Box::leak(s.to_string().into_boxed_str());
    names.insert(n);
    Some(n)
}

/// FNV-1a, 64 bits: stable across builds and platforms, unlike the standard library's hasher.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

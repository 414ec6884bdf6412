//! `frustration`, `confusion` and `sentiment`.
//!
//! VADER's lexicon reads the words; on its own it misses most complaints, which are factual
//! ("still waiting for my refund"), polite ("third time I ask"), or sarcastic ("thanks for
//! nothing"), and it reads profanity used as an intensifier as nothing at all. So frustration is
//! a score: weighted complaint cues (phrases, profanity, shouting, repeated marks, angry emoji)
//! plus VADER's negativity beyond a floor. Each cue leaves evidence; the flag is raised when the
//! score reaches 1. Sentiment is VADER's compound pulled down by the same cues.

use std::borrow::Cow;

use vader_sentimental::SentimentIntensityAnalyzer;

use crate::rules::{Evidence, RuleSet, alt};
use crate::text::{CharIndex, Normalized, slice_chars};

/// Thresholds, with the defaults the policy's `[detectors]` section can override.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AffectThresholds {
    /// Cue score at which `frustration` is raised.
    pub frustration: f64,
    /// VADER compound below which the lexicon adds to the frustration score (2.5 per unit below
    /// the floor, so a compound of -0.75 or lower raises the flag on its own).
    pub vader_floor: f64,
}

impl Default for AffectThresholds {
    fn default() -> Self {
        AffectThresholds {
            frustration: 1.0,
            vader_floor: -0.35,
        }
    }
}

/// Weight of each frustration rule; a rule id ends with its weight class.
fn weight(rule: &str) -> f64 {
    match rule.rsplit('.').next() {
        Some("strong") => 1.0,
        Some("medium") => 0.6,
        Some("weak") => 0.3,
        _ => 0.5,
    }
}

pub(crate) fn frustration_rules() -> RuleSet {
    let long_units = r"(?:days?|weeks?|months?|ages|forever|years?)";
    let waited_units = r"(?:hours?|hrs?|days?|weeks?|months?|minutes?|mins|ages|forever|years?)";
    let bad = alt(&[
        "ridiculous",
        "unacceptable",
        "absurd",
        r"a\sjoke",
        "insane",
        "outrageous",
        "pathetic",
        "disgraceful",
        "shameful",
        "appalling",
        r"a\snightmare",
        r"a\sdisgrace",
        r"beyond\sa\sjoke",
        "terrible",
        "horrible",
        "awful",
        "useless",
        "pointless",
        "hopeless",
        "stupid",
        "garbage",
        "rubbish",
        "trash",
        "crap",
        r"a\sscam",
        "shocking",
        "dreadful",
        "atrocious",
        "abysmal",
        "unreal",
        "laughable",
        r"a\swaste\sof\stime",
        "broken",
        "unbelievable",
    ]);
    let rules: Vec<(&'static str, String)> = vec![
        ("frustration/profanity.strong", alt(&[
            r"\bf+u+c+k+\w*", r"\bfck\w*", r"\bfuk\w*", r"\bfk+ing", r"\bmotherf\w*", r"\bsh[i1]t+\w*",
            r"\bbullsh\w*", r"\bwtf\b", r"\bffs\b", r"\bstfu\b", r"\bgoddamn\w*", r"\bdamn\w*", r"\bdammit\b",
            r"\bpiss(?:ed|ing)?\b", r"\bass(?:hole|holes|hat)?\b", r"\bcrap(?:py)?\b", r"\bbloody\b",
            r"\bbastards?\b", r"\bbitch\w*", r"\bwankers?\b", r"\bscrew\syou\b", r"\bsucks?\b",
            r"\bsucked\b", r"\bthe\shell\b", r"\bf\s(?:ing|in)\b", r"\bfrigg?in\w*", r"\bfreaking\b",
            r"\bfreakin\b", r"\bdarn\b",
        ])),
        ("frustration/still_waiting.strong", r"\bstill\s(?:waiting|not|no|havent|hasnt|have\snot|has\snot|nothing|isnt|arent|wasnt|werent|wont|didnt|broken|dont|doesnt|cant|unresolved|charging|charged|down|missing|wrong|stuck|pending|no\sword|no\ssign|no\sresponse|no\sreply|no\sanswer)\b".into()),
        ("frustration/repeated_attempts.strong", alt(&[
            r"\bfor\sthe\s(?:second|third|fourth|fifth|sixth|nth|umpteenth|hundredth|millionth|\d+(?:st|nd|rd|th))\stime\b",
            r"\b(?:three|four|five|six|seven|several|multiple|many|countless|numerous|\d+)\stimes\s(?:already|now|today|this\sweek|this\smonth|and|but|with|without)\b",
            r"\b(?:called|emailed|contacted|asked|tried|written|wrote|messaged|rang|phoned|explained|chatted)\s(?:you\s|u\s|them\s)?(?:\w+\s)?(?:three|four|five|several|multiple|many|countless|numerous|\d+)\stimes\b",
            r"\bthe\s(?:second|third|fourth|fifth|\d+(?:st|nd|rd|th))\s(?:one\s|time\s|outage\s|delay\s)?(?:this\s(?:week|month|year)|today|in\sa\s(?:row|week|month))\b",
            r"\b(?:how\smany\stimes|every\ssingle\stime|(?:this|it)\s(?:keeps|kept)\shappening|yet\sagain|once\sagain|over\sand\sover)\b",
        ])),
        ("frustration/nobody_answers.strong", alt(&[
            r"\b(?:nobody|no\sone|noone|no\sbody)\s(?:has\s|have\s|is\s|ever\s|seems\sto\s|will\s|wants\sto\s|bothered\sto\s)?(?:answered|answers|answer|responded|responds|respond|replied|replies|reply|called|calls|helped|helps|help|cares|care|got\sback|gets\sback|get\sback|listens|listen|picks\sup|picked\sup|knows|seems)\b",
            r"\bno\s(?:response|reply|answer|one\sanswered|callback|call\sback|updates?|word|help)\s(?:yet|from|since|for|after|at\sall|whatsoever)\b",
            r"\b(?:havent|hasnt|never|didnt|did\snot|have\snot|has\snot)\s(?:\w+\s)?(?:heard\sback|heard\sanything|received\s(?:a|any)\s(?:response|reply|answer|call|update)|gotten\s(?:a|any)\s(?:response|reply|answer)|got\s(?:a|any)\s(?:response|reply|answer)|responded|replied|called\s(?:me\s)?back|gotten\sback|got\sback|bothered)\b",
            r"\b(?:ignored|ignoring|ignore)\s(?:me|my|us|our)\b",
            r"\b(?:hung\sup\son\sme|on\shold\sfor|left\son\shold|kept\sme\swaiting|kept\son\shold)\b",
        ])),
        ("frustration/cancelled_on_me.strong", alt(&[
            r"\b(?:you|u|they|you\sguys|just|has|have|had|who|then|and)\s(?:\w+\s)?(?:cancell?ed|closed|blocked|froze|frozen|suspended|terminated|deleted)\smy\b",
            r"^(?:cancell?ed|closed|blocked|suspended)\smy\b",
            r"\b(?:flight|order|booking|reservation|account|card|delivery|appointment)\s(?:was\s|got\s|has\sbeen\s|is\s)?(?:cancell?ed|delayed|lost|blocked|frozen|suspended)\s(?:again|without|for\sno|and\sno|with\sno|twice)\b",
        ])),
        ("frustration/not_received.medium", r"\b(?:never|still\shavent|havent|didnt|did\snot|have\snot|not\syet|hasnt|has\snot|never\sever)\s(?:\w+\s)?(?:received|arrived|got\s(?:my|the|a|any)|gotten|come|shown\sup|showed\sup|been\sdelivered|been\srefunded|been\sresolved|been\sfixed|been\scredited|been\sprocessed|turned\sup)\b".into()),
        ("frustration/overcharged.strong", r"\b(?:been|was|got|were|being|keep\sgetting|keeps)\s(?:charged|billed|debited)\s(?:twice|double|again|two\stimes|three\stimes|incorrectly|wrongly|without|for\ssomething|for\snothing|even\sthough|after)\b|\b(?:double|over|wrongly|incorrectly|twice)\s?(?:charged|billed)\b".into()),
        ("frustration/waste.strong", r"\bwast(?:e|ed|ing)\s(?:of\s)?(?:my\s|our\s|your\s)?(?:time|money|hours?|day|afternoon|morning)\b".into()),
        ("frustration/this_is_bad.strong", format!(r"\b(?:this|that|it|you|this\sservice|your\sservice|your\scompany|this\sbot|this\sapp|service|support|thats|its|this\sis|that\s?s|it\s?s|you\sre|youre|you\sare|u\sr|ur|so|how|what|absolutely|totally|completely|just|really|beyond|truly)\s(?:is\s|are\s|was\s|were\s|has\sbeen\s)?(?:so\s|absolutely\s|totally\s|completely\s|just\s|really\s|utterly\s|beyond\s|simply\s)?{bad}\b")),
        ("frustration/negative_word.medium", r"\b(?:useless|worthless|pointless|incompetent|unhelpful|clueless|hopeless|ridiculous|unacceptable|pathetic|outrageous|disgrace|disgraceful|disgusting|appalling|shambles|rubbish|garbage|nightmare|horrendous|infuriating|inexcusable|unprofessional|disrespectful|rude|unbelievable|liars?|lied|lying|misleading|scammers?|scammed|rip\s?off|ripped\soff|robbery|thieves|joke)\b".into()),
        ("frustration/not_helping.strong", alt(&[
            r"\b(?:you|this|that|it|bot|u|chatbot|your\sbot|the\sbot|this\sbot|this\schat)\s(?:are|is|r|re|s)?\s?(?:not|arent|isnt|nt|aren\st|isn\st)\s(?:\w+\s)?(?:helping|helpful|listening|working|understanding|getting\sit|answering|making\ssense)\b",
            r"\b(?:doesnt|didnt|does\snot|did\snot|dont|do\snot)\s(?:help|answer\smy|address\smy|solve|fix\sanything)\b",
            r"\bnot\s(?:very\s|at\sall\s|really\s|even\s|remotely\s)?(?:helpful|useful)\b",
            r"\b(?:no|zero|little)\shelp\b",
            r"\byou\s(?:are|re)\s(?:a\s)?(?:bot|robot|machine)\b.*\b(?:useless|stupid|dumb)\b",
            r"\b(?:stupid|dumb|useless|idiotic|worthless)\s(?:bot|robot|machine|chatbot|ai|computer|system|app|website|company|service)\b",
            r"\b(?:answer|read)\smy\s(?:question|message)\b",
            r"\bthats\snot\s(?:what\si\s(?:asked|said|meant|want|need)|helpful|an\sanswer|my\squestion|it)\b",
        ])),
        ("frustration/emotion.strong", alt(&[
            r"\bfrustrat\w*", r"\bannoy(?:ed|ing|ance)\b", r"\bangry\b", r"\banger\b", r"\bfurious\b", r"\bfuming\b",
            r"\blivid\b", r"\bupset\b", r"\bdisappoint\w*", r"\bmad\s(?:at|about|that)\b", r"\birritat\w*",
            r"\bexasperat\w*", r"\binfuriat\w*", r"\bfed\sup\b", r"\bsick\sof\b", r"\btired\sof\b",
            r"\bhad\senough\b", r"\benough\sis\senough\b", r"\bwits\send\b", r"\blos(?:ing|t)\s(?:my\s)?patience\b",
            r"\b(?:cant|cannot|can\snot)\sbelieve\b", r"\bare\syou\s(?:serious|kidding|joking)\b", r"\bkidding\sme\b",
            r"\boutraged\b", r"\bdisgusted\b", r"\bhorrified\b", r"\bappalled\b", r"\bstressed\b", r"\bnot\shappy\b",
            r"\bunhappy\b", r"\bdissatisfied\b", r"\bsick\sand\stired\b", r"\bhate\s(?:this|you|it|that|your|how|when|the)\b",
            r"\bthe\sworst\b", r"\bseriously\s[?!]",
        ])),
        ("frustration/bad_service.strong", r"\b(?:worst|terrible|horrible|awful|appalling|disgusting|abysmal|lousy|poor|bad|shocking|dreadful|atrocious|pathetic|crappy|shitty|horrendous|rude|unhelpful)\s(?:customer\s)?(?:service|experience|company|support|bank|app|airline|product|communication|website|system|management|staff|agent|response|airline|treatment|quality)\b".into()),
        ("frustration/complaint.strong", r"\b(?:lodge|file|make|raise|submit|register|log|report|escalate|filing|making|lodging)\s(?:a\s|my\s|an\s|an\sofficial\s|a\sformal\s|another\s)?(?:complaint|grievance|claim\sagainst)\b|\bcomplain(?:t|ts|ing|ed)?\b|\bclaim\sagainst\b".into()),
        ("frustration/exasperated_question.medium", r"\bhow\slong\s(?:do|does|will|am|must|should|is|are)\s(?:i|we|it|this)\s(?:have\sto\s|going\sto\s|gonna\s)?(?:wait|be\son\shold|take)\b|\bwhy\s(?:is\sit\sso\shard|cant\syou|can\st\syou|wont\syou|does\sit\salways|do\si\shave\sto|is\sthis\sso|is\snobody|is\sno\sone|hasnt|havent|isnt|doesnt|didnt|did\syou|do\syou\skeep|are\syou\sso|would\syou|on\searth|the\shell|is\sit\staking|has\sit\staken|am\si\sstill|do\syou\salways|does\sthis\skeep)\b".into()),
        ("frustration/refused.medium", r"\b(?:refuse|refused|refusing|refuses|denied|rejected)\s(?:to\s|me|my|our|us)\b".into()),
        ("frustration/churn_threat.strong", alt(&[
            r"\b(?:switch|switching|move|moving|going|go|taking\smy\sbusiness|take\smy\sbusiness)\s(?:over\s)?(?:to\s)?(?:a\s)?(?:competitor|another\s(?:bank|provider|company|carrier|airline|service|insurer))\b",
            r"\bnever\s(?:again|using\syou|use\syou|fly\swith|flying\swith|buy\sfrom|buying\sfrom|shop|recommend|ordering)\b",
            r"\b(?:take|taking)\smy\sbusiness\selsewhere\b",
            r"\b(?:leave|leaving|write|writing|post|posting)\s(?:a\s)?(?:bad|negative|1\sstar|one\sstar|terrible)\sreview\b",
            r"\breport(?:ing)?\syou\sto\b", r"\b(?:last|final)\stime\si\s(?:use|fly|buy|order|shop)\b",
        ])),
        ("frustration/sarcasm.medium", alt(&[
            r"\b(?:thanks|thank\syou)\sfor\snothing\b",
            r"\b(?:oh\s)?(?:great|wonderful|perfect|fantastic|brilliant|awesome|lovely|nice|cool)\s(?:,\s)?(?:just\s(?:great|what)|another\s(?:delay|hour|day|error)|now\si|so\snow|again)\b",
            r"\byeah\sright\b", r"\bgee\sthanks\b", r"\bthanks\sa\slot\s(?:for|[.!])",
            r"\blove\s(?:waiting|being\son\shold|being\signored|how\syou|it\swhen\syou|that\syou|paying)\b",
            r"\bwhat\sa\s(?:joke|surprise|great\sservice|shock)\b", r"\bso\shelpful\s(?:not|as\salways)\b",
            r"\bas\susual\b", r"\bclassic\s\w+\s[.!]",
        ])),
        ("frustration/waiting.medium", format!(r"\b(?:waiting|waited|been\son\shold|on\shold|in\sthe\squeue|stuck|wait)\s(?:for\s)?(?:over\s|more\sthan\s|almost\s|nearly\s|the\spast\s|the\slast\s)?(?:an?\s|\d+\s|two\s|three\s|four\s|five\s|six\s|several\s|many\s|few\s|couple\s(?:of\s)?)?{waited_units}\b|\b(?:taking|takes|took|taken)\s(?:forever|ages|so\slong|too\slong|way\stoo\slong)\b")),
        ("frustration/waiting_long.strong", format!(r"\b(?:waiting|waited|been\son\shold|on\shold|in\sthe\squeue|stuck|wait)\s(?:for\s)?(?:over\s|more\sthan\s|almost\s|nearly\s|the\spast\s|the\slast\s)?(?:an?\s|\d+\s|two\s|three\s|four\s|five\s|six\s|several\s|many\s|few\s|couple\s(?:of\s)?)?{long_units}\b")),
        ("frustration/outage_since.strong", r"\b(?:down|out|not\sworking|broken|offline|dead|outages?)\s(?:since|for\s(?:\d+|two|three|several|hours|days|a\sweek)|all\s(?:day|week|weekend|morning|night)|again)\b".into()),
        ("frustration/outage.medium", r"\bno\s(?:internet|service|signal|wifi|wi\sfi|power|connection|hot\swater|heating|tv|cable|phone\sservice)\b".into()),
        ("frustration/call_out.medium", r"\b(?:fix\s(?:your|this|the|it|ur)|get\s(?:it|your\sact)\stogether|do\sbetter|step\sup\syour|sort\s(?:it|this|yourselves)\sout|epic\sfail|fail(?:ed|s)?\sagain|#fail|smh|ugh+|not\simpressed|no\sexcuse|shame\son\syou|how\sis\sthis\sacceptable|how\sdifficult\scan\sit\sbe|is\sit\stoo\smuch\sto\sask|you\shad\sone\sjob|never\sreceived|no\sone\sseems|doesnt\seven|didnt\seven|cant\seven)\b".into()),
        ("frustration/no_updates.strong", r"\bno\s(?:response|reply|answer|updates?|communication|info|information|explanation|apology|compensation|help|call\sback|callback|word)\s?(?:[.!?,]|$)".into()),
        ("frustration/stalled.medium", r"\b(?:hasnt|havent|has\snot|not|didnt)\s(?:been\s)?(?:changed|moved|updated|arrived|shipped|processed|resolved|fixed)\s(?:in|for|after)\s(?:\d+|two|three|four|five|several|a\sfew|over\sa|a)\s?(?:days?|weeks?|months?|hours?)\b".into()),
        ("frustration/where_is_it.weak", r"\bwhere\s(?:is|s|the\shell\sis)\smy\s(?:package|parcel|order|refund|money|delivery|card|stuff|item)\s?\?\s\?".into()),
        ("frustration/bad_again.strong", r"\b(?:delayed|cancell?ed|broken|down|late|lost|charged|declined|failed|crashed|wrong|missing|locked|blocked|overcharged|stuck)\s(?:yet\s)?again\b|\b(?:for\sno\s(?:reason|apparent\sreason)|without\s(?:any\s)?(?:warning|notice|explanation|reason|my\spermission|my\sconsent|asking))\b".into()),
        ("frustration/service_down.strong", r"\b(?:your|the)\s(?:website|site|app|system|server|servers|service|internet|wifi|network|portal|online\sbanking|checkout)\s(?:is|s|was|keeps|went|has\sbeen)\s(?:going\s)?(?:down|broken|not\sworking|crashing|offline|useless|a\smess)\b".into()),
        ("frustration/why_is_it.medium", r"\bwhy\s(?:is|was|are|were|does|did|do|has|have)\s(?:my|our|the|this|your)\s(?:\w+\s){1,2}?(?:delayed|cancell?ed|late|down|broken|not|still|so|always|never|taking|charged|declined|blocked|frozen|closed|gone|wrong)\b".into()),
        ("frustration/broken.weak", r"\b(?:keeps\scrashing|crash(?:ing|ed|es)|doesnt\swork|dont\swork|not\sworking|stopped\sworking|wont\swork|wont\sload|down\sagain|keeps\sfailing|keeps\sfreezing|error\sagain|glitch\w*|bug(?:gy|s)?)\b".into()),
        ("frustration/lost_item.medium", r"\b(?:lost|missing|damaged|broken|wrong|stolen)\s(?:my\s|our\s|the\s)?(?:bag|bags|baggage|luggage|package|parcel|order|item|items|suitcase|delivery)\b|\b(?:bag|bags|baggage|luggage|package|parcel|order|suitcase)\s(?:is\s|was\s|got\s|has\sbeen\s)?(?:lost|missing|damaged|stolen)\b".into()),
        ("frustration/delay.medium", r"\b(?:delayed|delays?|late\sagain|(?:\d+|two|three|four|five|several)\s(?:hours?|hrs)\slate|missed\s(?:my\s)?(?:connection|flight|meeting)|overbooked|stranded|stuck\sat)\b".into()),
        ("frustration/money_back.medium", r"\b(?:want|need|demand|give\sme)\s(?:my|our)\smoney\sback\b|\bdemand\s(?:a|my)\srefund\b".into()),
    ];
    RuleSet::new(&rules)
}

pub(crate) fn confusion_rules() -> RuleSet {
    let rules: Vec<(&'static str, String)> = vec![
        ("confusion/dont_understand", r"\b(?:dont|do\snot|didnt|did\snot|cant|cannot|can\snot|couldnt|still\sdont|really\sdont|dont\sreally|not\ssure\si|doesnt)\s(?:\w+\s)?(?:understand|get\sit|get\sthis|get\sthat|follow|comprehend|get\swhat|see\swhat\syou\smean|know\swhat\syou\smean|know\swhat\sthat\smeans|know\swhat\sthis\smeans|know\swhat\sto\sdo|know\swhere\sto\sstart|know\swhat\sis\sgoing\son|know\swhats\sgoing\son|know\swhat\shappened)\b".into()),
        ("confusion/what_do_you_mean", r"\bwhat\s(?:do|did)\syou\smean\b|\bwhat\sdoes\s(?:that|this|it)\s(?:even\s)?mean\b|\bwhat\sis\s(?:that|this)\ssupposed\sto\smean\b|\bwhat\sdoes\sthat\shave\sto\sdo\swith\b|\b(?:which|what)\sdo\syou\smean\b|\bwdym\b|\bmeaning\s\?".into()),
        ("confusion/bare_what", r"^(?:huh|eh|what|sorry|pardon|come\sagain|excuse\sme|hmm+|umm+|wait\swhat|i\sm\slost|im\slost)\s?(?:[?!]\s?)*$|^(?:\?\s?)+$|\bhuh\b\s?\?".into()),
        ("confusion/confused", r"\bconfus(?:ed|ing|ion)\b|\bperplex\w*|\bpuzzl(?:ed|ing)\b|\bbaffl(?:ed|ing)\b|\bbewilder\w*|\bmakes?\sno\ssense\b|\bmake\sno\ssense\b|\b(?:doesnt|does\snot|dont|didnt|did\snot|do\snot)\s(?:\w+\s)?make\s(?:any\s)?sense\b|\bnot\s(?:making|make)\s(?:any\s)?sense\b|\bunclear\b|\bambiguous\b|\bover\smy\shead\b|\bnot\sfollowing\b|\byou\s(?:lost|confused)\sme\b|\bim\s(?:so\s|totally\s|completely\s|a\sbit\s|a\slittle\s|kinda\s|kind\sof\s|really\s)?lost\b".into()),
        ("confusion/please_clarify", r"\b(?:can|could|would)\syou\s(?:please\s)?(?:explain|clarify)\s(?:that|this|what\syou|it\sagain|again|more\sclearly|better|in\ssimpler)\b|\b(?:please\s)?(?:rephrase|clarify|elaborate)\s?(?:that|this|please|\?|$)|\b(?:say|repeat)\sthat\sagain\b|\bin\splain\senglish\b|\bin\ssimple\sterms\b|\bexplain\slike\b".into()),
        ("confusion/what_now", r"\b(?:what|how)\sam\si\ssupposed\sto\b|\bwhat\s(?:do|should)\si\sdo\snow\b|\bwhat\snow\s\?|\bi\s(?:thought|assumed)\s(?:it|this|that|you|the\s\w+)\s(?:was|were|would|is|included|came|had|said)\b|\b(?:doesnt|does\snot|dont|do\snot)\s(?:add\sup|match)\b|\bcontradict\w*|\bi\sdont\s(?:see|get)\s(?:how|why|where|what)\b|\bwhat\sdoes\s(?:\w+\s){1,3}mean\b|\bwhat\sis\smeant\sby\b".into()),
        ("confusion/not_sure_what", r"\bnot\ssure\s(?:what\syou\smean|i\sunderstand|what\sthat\smeans|what\sthis\smeans|what\sto\sdo|what\sis\sgoing\son|whats\sgoing\son|what\shappened|i\sfollow|how\sthis\sworks)\b|\bno\sidea\s(?:what|how|why)\b|\b(?:idk|dunno)\b|\bwhich\s(?:one|option)\s(?:should|do)\si\s(?:choose|pick|select)\b".into()),
    ];
    RuleSet::new(&rules)
}

/// Profanity intensifying praise.
static PRAISE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    crate::rules::regex(
        r"\b(?:fucking|fuckin|damn|bloody|freaking|frigging|friggin|hella)\s(?:love|loved|loving|great|awesome|amazing|brilliant|good|best|excellent|fantastic|perfect|beautiful|cool|incredible|happy|finally|delicious|nice|legend)\b|\b(?:love|loved)\s(?:this|it|you)\s(?:so\s)?(?:fucking|damn)\s(?:much)\b",
    )
});

/// Thanks and praise words that make profanity an intensifier.
static THANKS: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    crate::rules::regex(
        r"\b(?:thanks|thank\syou|thx|ty|great|awesome|amazing|love|quick|fast|perfect|brilliant|excellent|nice|cool|yes|finally|legend|beautiful)\b",
    )
});

/// Reassurance VADER misreads as negative.
static REASSURANCE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    crate::rules::regex(
        r"\b(?:no\s(?:problem|problems|prob|probs|worries|worry|rush|stress|issues?|complaints?|hurry)|not\sa\s(?:problem|big\sdeal|worry)|all\sgood|never\smind|nevermind|thats\sfine|its\sfine|that\s?s\sok(?:ay)?|not\sbad)\b",
    )
});

/// Words that negate a cue right after them, within its clause.
fn negated_cue(n: &Normalized, norm_start: usize) -> bool {
    let first = n.token_at(norm_start);
    for i in (first.saturating_sub(3)..first).rev() {
        match n.tok(i) {
            "." | "," | ";" | ":" | "!" | "?" | "but" => return false,
            "not" | "no" | "never" | "dont" | "isnt" | "wasnt" | "arent" | "without"
            | "nothing" => return true,
            _ => {}
        }
    }
    false
}

/// Short all-caps words that are names, not shouting.
const ACRONYMS: &[&str] = &[
    "CEO", "CTO", "CFO", "COO", "CMO", "CIO", "CISO", "API", "USA", "SSO", "GDPR", "HIPAA", "SAML",
    "CRM", "ASAP", "FAQ", "PDF", "URL", "USD", "EUR", "GBP", "SMS", "SLA", "ETA", "VAT", "IBAN",
    "ATM", "PIN", "OTP", "SOC", "ISO", "PCI", "AWS", "GCP", "SAAS", "HTML", "JSON", "HTTP",
    "HTTPS", "LLC", "INC", "LTD", "EMEA", "APAC", "LATAM", "NYC", "UK", "EU", "US", "AI", "IT",
    "HR", "VP", "ROI", "KYC", "AML", "CCPA", "SDK", "MFA", "UTC", "EST", "PST", "CET", "GMT",
    "BST", "PDT",
];

/// Cues in the raw text that the normalised form loses: shouting, repeated marks, angry emoji.
fn surface_cues(text: &str, out: &mut Vec<(Evidence, f64)>) {
    let ix = CharIndex::new(text);
    let mut words = 0usize;
    let mut shouted: Vec<std::ops::Range<usize>> = Vec::new();
    let mut start: Option<usize> = None;
    let bytes_end = text.len();
    for (b, c) in text.char_indices().chain(std::iter::once((bytes_end, ' '))) {
        if c.is_alphabetic() {
            start.get_or_insert(b);
        } else if let Some(s) = start.take() {
            let w = &text[s..b];
            words += 1;
            if w.chars().count() >= 3
                && w.chars().all(|c| c.is_uppercase())
                && !ACRONYMS.contains(&w)
            {
                shouted.push(s..b);
            }
        }
    }
    if shouted.len() >= 2 && shouted.len() * 3 >= words
        || (!shouted.is_empty() && words == 1 && text.trim().ends_with('!'))
    {
        let span = ix.span(shouted[0].start..shouted[shouted.len() - 1].end);
        out.push((
            surface_evidence(text, span, "frustration/shouting.medium"),
            0.6,
        ));
    }
    if let Some(b) = find_repeated_marks(text) {
        let span = ix.span(b.clone());
        let heavy = b.len() >= 3;
        out.push((
            surface_evidence(
                text,
                span,
                if heavy {
                    "frustration/repeated_marks.medium"
                } else {
                    "frustration/repeated_marks.weak"
                },
            ),
            if heavy { 0.45 } else { 0.3 },
        ));
    }
    for face in [":(", ":-(", ":'(", ">:(", ":[", ":-/", "-_-", "ಠ_ಠ"] {
        if let Some(b) = text.find(face) {
            let span = ix.span(b..b + face.len());
            out.push((
                surface_evidence(text, span, "frustration/sad_emoticon.medium"),
                0.6,
            ));
            break;
        }
    }
    for (b, c) in text.char_indices() {
        if matches!(
            c,
            '😡' | '🤬'
                | '😠'
                | '😤'
                | '👎'
                | '🙄'
                | '😒'
                | '🤦'
                | '💩'
                | '😖'
                | '😫'
                | '😩'
                | '🖕'
        ) {
            let span = ix.span(b..b + c.len_utf8());
            out.push((
                surface_evidence(text, span, "frustration/angry_emoji.medium"),
                0.6,
            ));
            break;
        }
    }
}

fn find_repeated_marks(text: &str) -> Option<std::ops::Range<usize>> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if matches!(bytes[i], b'!' | b'?') {
            let s = i;
            while i < bytes.len() && matches!(bytes[i], b'!' | b'?' | b'1') {
                i += 1;
            }
            let run = &bytes[s..i];
            if run.len() >= 2 {
                return Some(s..i);
            }
        } else {
            i += 1;
        }
    }
    None
}

fn surface_evidence(text: &str, span: std::ops::Range<usize>, rule: &'static str) -> Evidence {
    Evidence {
        signal: "frustration",
        label: None,
        text: slice_chars(text, span.clone()).to_string(),
        span,
        rule: Cow::Borrowed(rule),
        turn: 0,
    }
}

/// What the affect detectors found in one message.
#[derive(Debug, Clone, Default)]
pub(crate) struct Affect {
    pub(crate) frustration_score: f64,
    pub(crate) frustration: bool,
    pub(crate) confusion: bool,
    pub(crate) sentiment: f64,
    pub(crate) evidence: Vec<Evidence>,
}

pub(crate) struct AffectDetector {
    frustration: RuleSet,
    confusion: RuleSet,
    vader: SentimentIntensityAnalyzer<'static>,
}

impl std::fmt::Debug for AffectDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AffectDetector").finish_non_exhaustive()
    }
}

/// VADER reads at most this much of a message; sentiment of a huge paste is its opening.
const VADER_MAX_BYTES: usize = 4096;

impl AffectDetector {
    pub(crate) fn new() -> Self {
        AffectDetector {
            frustration: frustration_rules(),
            confusion: confusion_rules(),
            vader: SentimentIntensityAnalyzer::new(),
        }
    }

    pub(crate) fn detect(&self, n: &Normalized, text: &str, th: &AffectThresholds) -> Affect {
        let mut cues: Vec<(Evidence, f64)> = Vec::new();
        let mut seen_rules: Vec<&str> = Vec::new();
        for hit in self.frustration.hits(&n.norm) {
            // "I'm not complaining", "not upset": a negated cue is no cue.
            if !hit.rule.starts_with("frustration/profanity") && negated_cue(n, hit.norm.start) {
                continue;
            }
            let w = weight(hit.rule);
            // A rule counts once however often it matches.
            let w = if seen_rules.contains(&hit.rule) {
                0.0
            } else {
                w
            };
            seen_rules.push(hit.rule);
            cues.push((hit.evidence(n, text, "frustration", None), w));
        }
        surface_cues(text, &mut cues);

        let clipped = &text[..crate::text::floor_boundary(text, VADER_MAX_BYTES)];
        let vader = self.vader.polarity_scores(clipped).compound;
        let mut score: f64 = cues.iter().map(|(_, w)| w).sum();
        // Profanity as an intensifier of praise ("fucking love it", "damn, that was quick,
        // thanks!") is not a complaint.
        let only_profanity = !cues.is_empty()
            && cues
                .iter()
                .all(|(e, _)| e.rule.starts_with("frustration/profanity"));
        if only_profanity && (PRAISE.is_match(&n.norm) || (vader > 0.0 && THANKS.is_match(&n.norm)))
        {
            score *= 0.4;
        }
        // "No problem", "no worries": VADER reads the negation as negative; it is reassurance.
        let reassured = REASSURANCE.is_match(&n.norm);
        let vader = if reassured {
            vader.max(0.0) + 0.3
        } else {
            vader
        };
        let lexicon = if vader < th.vader_floor {
            (th.vader_floor - vader) * 2.5
        } else {
            0.0
        };
        score += lexicon;
        let frustration = score >= th.frustration;

        let mut evidence: Vec<Evidence> = Vec::new();
        if frustration {
            evidence.extend(cues.iter().map(|(e, _)| e.clone()));
            if lexicon > 0.0 {
                evidence.extend(self.lexicon_evidence(n, text));
            }
        }
        let confusion_hits = self.confusion.hits(&n.norm);
        let confusion = !confusion_hits.is_empty();
        evidence.extend(
            confusion_hits
                .iter()
                .map(|h| h.evidence(n, text, "confusion", None)),
        );

        let cue_sum: f64 = cues.iter().map(|(_, w)| w).sum::<f64>().min(3.0);
        let sentiment =
            (0.6 * vader - 0.5 * cue_sum - if confusion { 0.1 } else { 0.0 }).clamp(-1.0, 1.0);
        Affect {
            frustration_score: score,
            frustration,
            confusion,
            sentiment,
            evidence,
        }
    }

    /// The words VADER scores negative, as evidence for a lexicon-driven flag.
    fn lexicon_evidence(&self, n: &Normalized, text: &str) -> Vec<Evidence> {
        let mut out = Vec::new();
        for t in n.tokens.iter().take(512) {
            let w = &n.norm[t.norm.clone()];
            if w.len() < 3 {
                continue;
            }
            let c = self.vader.polarity_scores(w).compound;
            if c <= -0.25 {
                out.push(Evidence {
                    signal: "frustration",
                    label: None,
                    text: slice_chars(text, t.orig.clone()).to_string(),
                    span: t.orig.clone(),
                    rule: Cow::Owned(format!("lexicon/vader:{w}({c:.2})")),
                    turn: 0,
                });
            }
        }
        out
    }
}

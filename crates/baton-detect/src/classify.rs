//! `intents` (sales) and `topics` (sensitive subjects) by phrase rules.
//!
//! A rule id is `intent/<name>/<rule>` or `topic/<name>/<rule>`; the name is the label. Rules
//! are written to be specific: a record of the scorer has one gold label, and every extra label
//! is a false positive, so a broad word ("account", "order", "fee") never decides on its own.

use crate::rules::{Evidence, Hit, RuleSet, alt};
use crate::text::Normalized;

/// Intent names, as SPEC §3 spells them.
pub const INTENTS: &[&str] = &[
    "pricing",
    "demo_request",
    "purchase_intent",
    "contact_sales",
    "competitor_comparison",
    "product_question",
    "implementation_timeline",
];

/// Topic names, as SPEC §3 spells them.
pub const TOPICS: &[&str] = &[
    "billing",
    "refund",
    "account_security",
    "legal",
    "compliance",
];

/// Products people compare us with or move from; a mention next to a comparison word counts.
pub(crate) const COMPETITORS: &[&str] = &[
    "zendesk",
    "intercom",
    "drift",
    "hubspot",
    "salesforce",
    "freshdesk",
    "freshworks",
    "freshchat",
    "chatwoot",
    "liveperson",
    "qualified",
    "twilio",
    "genesys",
    "five9",
    "kustomer",
    "gorgias",
    "help scout",
    "helpscout",
    "front",
    "tidio",
    "crisp",
    "olark",
    "livechat",
    "servicenow",
    "zoho",
    "pipedrive",
    "chili piper",
    "calendly",
    "ada",
    "forethought",
    "rocket chat",
    "rocketchat",
    "talkdesk",
    "nice",
    "avaya",
    "dialpad",
    "aircall",
    "gong",
    "outreach",
    "marketo",
    "pardot",
    "monday",
    "asana",
    "jira",
    "slack",
    "teams",
    "microsoft",
    "google",
    "amazon",
    "oracle",
    "sap",
    "shopify",
    "stripe",
    "paypal",
    "square",
    "mailchimp",
    "klaviyo",
    "segment",
    "mixpanel",
    "amplitude",
    "atlassian",
    "notion",
    "airtable",
    "clickup",
    "workday",
    "netsuite",
    "quickbooks",
    "xero",
    "adp",
    "gusto",
    "rippling",
    "okta",
    "auth0",
    "datadog",
    "splunk",
    "new relic",
];

/// Things a product question can be about.
const PRODUCT_THINGS: &str = r"(?:api|apis|integrations?|plugins?|sdks?|sso|saml|single\ssign\son|webhooks?|mobile\sapp|app|ios|android|feature|features|option|options|dashboard|reporting|reports|analytics|export|import|crm|salesforce|hubspot|slack|teams|zapier|custom\sfields|automation|workflows?|templates?|multi\slanguage|languages?|spanish|french|german|on\sprem(?:ise|ises)?|self\shosted|cloud\sversion|free\s(?:tier|plan|version)|sandbox|uptime|sla|encryption|audit\slogs?|roles|permissions|user\sroles|routing|chatbot|live\schat|ticketing|knowledge\sbase|help\scenter|email\sintegration|phone\ssupport|whatsapp|sms|voice|ai|offline\smode|dark\smode|bulk|csv|excel|limit|limits|storage|seats|users|capacity|scalability|version|support\sfor)";

pub(crate) fn rules() -> RuleSet {
    let comp = alt(COMPETITORS);
    let rules: Vec<(&'static str, String)> = vec![
        // ---- intents
        ("intent/pricing/price_word", r"\b(?:pricing|price|prices|priced|price\slist|price\spoint|quote|quotes|quotation|estimate\sfor|cost\sestimate|rate\scard)\b".into()),
        ("intent/pricing/how_much", r"\bhow\smuch\s(?:does|do|is|are|would|will|for|to|it|would\sit|should|per|a|an|the|your|this|that|money|extra)\b|\bwhat\s(?:does|do|would|will)\s(?:it|this|that|the\s\w+|your\s\w+|a\s\w+)\scost\b|\bwhat\s(?:are|is)\s(?:the|your)\s(?:costs?|rates?|fees|plans|tiers|prices?)\b|\bcost\s(?:per|for|of)\s(?:a|an|the|each|one|\d+|user|seat|month|year|license|licence)\b".into()),
        ("intent/pricing/plan_terms", r"\b(?:per\s(?:seat|user|agent|license|licence|month|year|annum|head)|\d+\s(?:seats|licenses|licences)|(?:annual|monthly|yearly)\s(?:plan|billing|pricing|subscription|price)|(?:enterprise|business|pro|premium|starter|team|growth|basic)\s(?:pricing|license\scost|licence\scost)|volume\sdiscount|discounts?\sfor|nonprofit\sdiscount|(?:is\sthere|do\syou\shave|any)\s(?:a\s)?(?:discount|free\s(?:plan|tier|version))|cheaper\splan|affordable|is\s(?:it|this|there\sa)\sfree\b|fit\s(?:in|within)\s(?:our|my)\sbudget|within\s(?:our|my)\sbudget|(?:our|my)\sbudget\sis)\b".into()),
        ("intent/demo_request/demo", r"\b(?:demo|demos|demonstration|product\stour|walk\s?through|walk\s(?:me|us)\sthrough|see\s(?:it|the\sproduct|the\splatform|the\stool|how\sit\sworks)\sin\saction|show\s(?:me|us)\s(?:how\sit\sworks|the\sproduct|the\splatform|around|what\sit\scan\sdo)|(?:free\s)?trial|proof\sof\sconcept|poc|pilot\s(?:program|project|phase)|test\sdrive|sandbox\saccount|see\sa\slive|live\sdemo)\b".into()),
        ("intent/purchase_intent/buy", r"\b(?:buy|buying|purchase|purchasing|place\s(?:an\s|a\s|my\s)?order|make\s(?:an\s|a\s)?(?:order|purchase)|order\s(?:a|an|some|the|\d+|one|two|three|more)\s\w+|sign\s(?:up|on)\s(?:for\s)?(?:the|a|an|your)?\s?(?:plan|pro|premium|enterprise|business|paid|annual|subscription|license|licence|contract|deal)|subscribe\sto\s(?:the|a|an|your)\s(?:plan|pro|premium|enterprise|business|paid|service)|upgrade\s(?:to|my|our)\s(?:the\s)?(?:plan|pro|premium|enterprise|business|paid|higher|annual)|(?:ready|want|wanna|looking|planning|going|like|would\slike|decided)\sto\s(?:buy|sign\s(?:up|on|the\s(?:\w+\s)?(?:contract|agreement|order\sform|deal|paperwork|quote))|purchase|move\sforward|go\sahead|proceed|commit|get\sstarted\swith\s(?:the|a|your)\s(?:plan|pro|premium|enterprise|business|paid)|place\san\sorder)|add\s(?:\d+\s|more\s|another\s|extra\s|additional\s|a\sfew\s){0,2}(?:seats|licenses|licences|users)|checkout|check\sout\s(?:now|page)|add\sto\s(?:cart|basket)|send\s(?:me|us|over)\s(?:the\s|a\s)?(?:contract|order\sform|invoice\sto\ssign|agreement|msa|purchase\sorder)|(?:issue|raise)\sa\spurchase\sorder|(?:we|i)\s(?:ll|will)\stake\sit|lets\sdo\sit|where\sdo\si\ssign|how\sdo\s(?:i|we)\s(?:pay\sfor|sign\sup\sfor)\s(?:the|a)\s(?:plan|pro|premium|enterprise|business|paid|license|licence|subscription))\b".into()),
        ("intent/contact_sales/sales", r"\b(?:talk|speak|chat|connect|contact|reach|get\sin\stouch|meet|call|email|hear\sfrom|put\s(?:me|us)\sin\stouch)\s(?:with\s|to\s)?(?:\w+\s){0,3}?(?:sales|salesperson|sales\s(?:team|rep|person|department|representative|manager|executive|guy)|account\s(?:executive|manager)|someone\s(?:in|from|on)\s(?:sales|your\ssales\steam))\b|\bsales\s(?:team|rep|contact|department|email|number|inquiry|enquiry|question)\b|\b(?:have|can|could|would)\s(?:sales|a\ssales\srep|someone\sfrom\ssales|your\ssales\steam|an\saccount\sexecutive)\s(?:please\s)?(?:call|contact|email|reach\sout)\b|\b(?:book|schedule|set\sup|arrange|have)\s(?:a|an)\s(?:call|meeting|chat|intro\scall|discovery\scall|consultation)\s(?:with|to\sdiscuss|about)\b|\b(?:someone|somebody|anyone)\s(?:from|in|on)\s(?:your\s|the\s)?sales\b|\benterprise\s(?:deal|agreement|contract|inquiry|enquiry|quote|pricing)\b|\bcustom\s(?:quote|pricing|deal|contract|plan)\b".into()),
        ("intent/competitor_comparison/compare", r"\b(?:compare|compares|comparison|compared\s(?:to|with)|versus|vs|better\sthan|cheaper\sthan|different\sfrom|difference\sbetween|differ\sfrom|how\s(?:do|does)\s(?:you|it|your\s\w+)\s(?:compare|stack\sup|differ)|alternative\sto|alternatives\sto|switch(?:ing)?\s(?:over\s)?from|migrat(?:e|ing|ion)\sfrom|(?:moving|move|coming)\s(?:over\s)?from|replace\s(?:our|my)\s(?:current|existing)|(?:what|why)\s(?:makes\syou|should\s(?:we|i)\schoose\syou)|why\s(?:you|your\s\w+)\sover|advantages?\sover|edge\sover)\b".into()),
        ("intent/competitor_comparison/competitor_context", format!(r"\b(?:we|i)\s(?:currently\s|already\s)?(?:use|are\susing|have\sbeen\susing|pay\sfor|are\son|run\son)\s{comp}\b|\b{comp}\s(?:does|has|offers|charges|gives|is\scheaper|is\sbetter|supports)\b|\b(?:like|than|unlike|over|vs|versus|from)\s{comp}\b|\b(?:evaluating|considering|looking\sat|comparing|trialing|trialling|testing|shortlisted|shortlisting)\s(?:\w+\s){{0,3}}?{comp}\b")),
        ("intent/product_question/does_it", format!(r"\b(?:do|does|can|will|would|could|is|are)\s(?:you|it|your\s(?:product|platform|tool|software|app|service|api|solution|system|bot)|the\s(?:product|platform|tool|app|software|system|api|bot)|baton|this|u)\s(?:also\s|natively\s|currently\s)?(?:support|integrate|work\swith|handle|allow|connect|sync|come\swith|export|import|scale|run\son|plug\sinto|(?:offer|have|provide|include)\s(?:a\s|an\s|any\s)?(?:[a-z]+\s)?{PRODUCT_THINGS}|be\s(?:integrated|customi[sz]ed|self\shosted|deployed)|capable)\b")),
        ("intent/product_question/is_there", format!(r"\b(?:is\sthere|are\sthere)\s(?:a|an|any)?\s?{PRODUCT_THINGS}\b|\bintegrat(?:e|es|ion|ions)\s(?:with|into)\b|\bwhat\s(?:features|integrations|languages|platforms|channels|crms|apis|capabilities)\b|\bhow\sdoes\s(?:it|your\s(?:product|platform|tool|software|app|bot|system)|the\s(?:product|platform|tool|routing|integration|api))\swork\b|\b(?:can|could)\s(?:i|we)\s(?:use\s(?:it|your\s\w+|the\s\w+)\s(?:with|for|to)|integrate|connect\s(?:it|our)|customi[sz]e|self\shost|white\slabel)\b|\bsupport\sfor\s(?:sso|saml|api|webhooks|multiple|\w+\sintegration)\b|\b(?:need|needs|require|requires|must\shave|looking\sfor)\s(?:\w+\s)?(?:sso|saml|single\ssign\son|api\saccess|an\sapi|webhooks|audit\slogs|role\sbased\saccess|a\s\w+\sintegration|an\sintegration)\b|\bis\sit\spossible\sto\s(?:integrate|connect|customi[sz]e|use\s(?:it|your|the)|export|import|add\s(?:custom|more|multiple)|set\sup|configure|embed|sync|automate|route|white\slabel|self\shost|host)\b|\bwhat\s(?:languages|integrations|channels|platforms|crms|apps|tools|features)\sdo\syou\s(?:support|offer|integrate\swith|have)\b")),
        ("intent/implementation_timeline/how_long", r"\b(?:how\slong|how\squickly|how\sfast|how\ssoon|timeline|timeframe|time\sframe|time\sto\svalue|lead\stime|when\scan\s(?:we|i))\s(?:\w+\s){0,5}?(?:implement\w*|onboard\w*|set\s?up|setting\sup|deploy\w*|roll\s?out|rolling\sout|go\slive|going\slive|integrat\w*|migrat\w*|launch\w*|up\sand\srunning|live|get\sstarted|install\w*|configur\w*|ramp\sup)\b|\b(?:implement\w*|onboarding|set\s?up|deployment|roll\s?out|go\slive|migration|integration)\s(?:\w+\s){0,3}?(?:take|takes|timeline|timeframe|time\sframe|period|process|schedule|plan)\b|\b(?:implement\w*|onboard\w*|set\s?up|deploy\w*|roll\s?out|go\slive|migrat\w*|integrat\w*)\b.{0,60}\bhow\s(?:long|quickly|soon|many\s(?:days|weeks|months))\b".into()),
        ("intent/implementation_timeline/deadline", r"\b(?:need|needs|want|wants|plan|planning|hoping|looking|aim|aiming|have|has|goal\sis)\sto\s(?:go\slive|launch|roll\s(?:it\s)?out|deploy|be\slive|be\sup\sand\srunning|have\s(?:it|this|something)\s(?:running|live|in\splace|deployed|set\sup)|implement|migrate|switch|onboard|start)\s(?:\w+\s){0,3}?(?:by|before|in|within|next|this|end\sof|asap|q[1-4]|early|mid|late)\b|\b(?:go\slive|launch|rollout|roll\sout|implementation|deployment|migration|onboarding|cutover)\s(?:date|deadline|target|is\s(?:planned|scheduled|set))\b".into()),
        // ---- topics
        ("topic/billing/bill", r"\b(?:bill|bills|billing|billed|invoice|invoices|invoiced|invoicing|receipt|receipts|statement|statements|overcharge\w*|double\scharge\w*|charged|charges|charging|surcharge|direct\sdebit|autopay|auto\s?renew\w*|renewal\scharge|payment|payments|pay\s(?:my|the|our|this|that|a|an|off)\s(?:bill|invoice|balance|fee|premium|subscription|charge|card|statement)|paid\s(?:twice|already|in\sfull|the\sbill|my\sbill|the\sinvoice)|unpaid|(?:problem|problems|issue|issues|error|errors|trouble|difficulty|difficulties|unable|cant|cannot|couldnt|trying|tried|attempt\w*|fail\w*)\s(?:\w+\s){0,4}?(?:pay|paying|payment)|overdue|late\sfee|balance\sdue|outstanding\sbalance|card\s(?:was\s|got\s|is\s)?declined|declined|chargeback|billing\saddress|payment\smethod|credit\scard|debit\scard|installment|instalment|(?:cancellation|termination|early\stermination|late|annual|monthly|overdraft|service|admin|setup|hidden|extra)\s(?:fee|fees|penalty|penalties|charge)|penalt(?:y|ies)\sfor\scancel\w*|cancel\w*\s(?:fee|fees|penalty|penalties|charge)|(?:a|the|this|that|an\sextra|extra|additional|hidden|transfer|atm|withdrawal|foreign|exchange|card|transaction|top\sup|topping\sup|overdraft|maintenance|account|monthly|annual|unexpected|weird|strange)\sfees?|(?:my|the|insurance|monthly|annual|renewal)\spremiums?|premium\s(?:went\sup|increase\w*|payment))\b".into()),
        ("topic/refund/refund", r"\b(?:refund|refunds|refunded|refunding|refundable|non\srefundable|reimburse\w*|money\sback|charge\s?back|return\s(?:my|the|our)\smoney|get\s(?:my|our|the)\smoney|compensat\w*|reversal|reverse\s(?:the|a|this)\s(?:charge|payment|transaction)|credit\s(?:back|note)|give\sme\s(?:back|a\scredit)|(?:full|partial)\srefund|dispute\s(?:a|the|this|that)\s(?:charge|transaction|payment))\b".into()),
        ("topic/account_security/security", r"\b(?:password|passwords|passcode|passphrase|pin\s(?:code|number)|(?:reset|change|forgot|forgotten|recover|lost)\s(?:my\s)?(?:pin|password|passcode|credentials)|locked\sout|lock\s(?:my\s)?account|account\s(?:is\s|was\s|got\s|has\sbeen\s)?(?:locked|hacked|compromised|blocked|frozen|suspended|breached|taken\sover)|hack|hacked|hacker|hackers|hacking|compromised|unauthori[sz]ed|fraud|fraudulent|fraudster|scam|scammer|phishing|phish|spoof\w*|identity\stheft|stolen\s(?:card|identity|credentials|phone|account)|(?:card|phone|identity|wallet)\s(?:was\s|got\s|has\sbeen\s)?stolen|two\sfactor|2fa|mfa|multi\sfactor|otp|one\stime\s(?:password|code|passcode)|verification\scode|security\s(?:code|question|questions|breach|issue|alert|concern|incident|settings)|suspicious\s(?:activity|login|transaction|email|charge|text|call)|(?:cant|cannot|can\snot|unable\sto|couldnt)\s(?:log\s?in|sign\s?in|access\smy\saccount)|someone\s(?:else\s)?(?:accessed|used|logged\sinto|logged\sin|got\sinto|is\susing|has\saccess)|data\sbreach|breach|wasnt\sme|didnt\smake\s(?:this|that|these)|(?:dont|do\snot|didnt)\srecogni[sz]e|(?:lost|misplaced)\s(?:my\s)?(?:card|debit\scard|credit\scard|phone|wallet)|(?:freeze|block|lock|cancel)\s(?:my\s)?(?:card|account)|(?:card|pin)\s(?:is\s|was\s|got\s|has\sbeen\s)?(?:blocked|locked|compromised|cloned|skimmed)|compromised\scard|(?:my|the|your|a|new|card)\spin\b|is\s(?:this|that)\s(?:really\s)?(?:you|legit|genuine|a\sscam)|legit(?:imate)?\s(?:email|text|call|message))\b".into()),
        ("topic/legal/legal", r"\b(?:lawyer|lawyers|attorney|attorneys|solicitor|legal|lawsuit|law\ssuit|sue|suing|sued|court|courts|litigation|litigate|subpoena|summons|terms\sof\s(?:service|use|sale)|terms\sand\sconditions|t\s?&\s?cs?|tos|contract\s(?:terms|dispute|breach|clause|review|redlines?)|breach\sof\scontract|liabilit(?:y|ies)|liable|indemnif\w*|small\sclaims|cease\sand\sdesist|legal\saction|consumer\s(?:protection|rights)|ombudsman|trading\sstandards|ftc|cfpb|regulator|arbitration|dispute\sresolution|copyright|trademark|infringe\w*|defamation|msa|master\sservices\sagreement|nda|non\sdisclosure|warrant(?:y|ies)\sclaim|legally|law\s(?:firm|enforcement)|power\sof\sattorney|probate|executor|bankruptcy|garnish\w*|lien|debt\scollect\w*|collections?\sagency|police\sreport)\b".into()),
        ("topic/compliance/compliance", r"\b(?:gdpr|ccpa|cpra|hipaa|soc\s?2|soc\sii|soc\s?1|iso\s?27001|iso\s?27018|iso\s?9001|pci(?:\sdss)?|fedramp|fisma|ferpa|glba|sox|dora|nis2|data\s(?:protection|privacy|residency|retention|processing\sagreement|sovereignty|localization|localisation|subject\s(?:access\s)?request)|dpa|dsar|privacy\s(?:policy|law|laws|regulation|regulations|shield|impact)|personal\s(?:data|information)|delete\s(?:all\s)?(?:my|our)\s(?:personal\s)?(?:data|information)|right\sto\s(?:be\sforgotten|erasure|access)|compliance|compliant|comply|audit|audits|auditor|kyc|know\syour\scustomer|aml|anti\smoney\slaundering|encryption\sat\srest|sub\s?processors?|baa|business\sassociate\sagreement|penetration\stest\w*|pen\stest\w*|security\squestionnaire|vendor\s(?:assessment|security\sreview)|regulatory|regulations?|certif(?:ied|ication|ications)\s(?:for|in|like)|eu\sdata|data\scenters?\sin|fatca|crs\sform|w\s?8\s?ben|w\s?9|tax\sresidency|source\sof\s(?:funds|wealth)|sanctions?\sscreening|accessibility\scompliance|wcag|ada\scompliance)\b".into()),
    ];
    RuleSet::new(&rules)
}

/// Labels found, with their evidence.
#[derive(Debug, Default, Clone)]
pub(crate) struct Classes {
    pub(crate) intents: Vec<&'static str>,
    pub(crate) topics: Vec<&'static str>,
    pub(crate) evidence: Vec<Evidence>,
}

fn label_of(rule: &'static str) -> (&'static str, &'static str) {
    let mut parts = rule.splitn(3, '/');
    let kind = parts.next().unwrap_or("");
    let label = parts.next().unwrap_or("");
    (kind, label)
}

/// After a purchase, "purchase" and "order" are the object of a service request, not an intent.
static POST_PURCHASE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    crate::rules::regex(
        r"\b(?:cancel\w*|change|changing|modify\w*|amend\w*|edit\w*|return\w*|track\w*|status|exchang\w*|refund\w*|where\sis|wheres|arriv\w*|deliver\w*|ship\w*|bought|purchased|ordered|received|receipt|invoice|my\s(?:purchase|order)s?)\b",
    )
});

/// A trial the visitor already has is not a request for one.
static OWNED_TRIAL: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    crate::rules::regex(
        r"\b(?:my|our|the)\s(?:free\s)?trial\s(?:ended|expired|expires|is\sover|ran\sout|ends|period)\b|\b(?:cancel\w*|end|extend\w*)\s(?:my|our|the)\s(?:free\s)?trial\b",
    )
});

/// Billing words that only count when nothing more specific is said.
const WEAK_BILLING: &[&str] = &[
    "payment",
    "payments",
    "charged",
    "charges",
    "charging",
    "declined",
    "credit card",
    "debit card",
];

pub(crate) fn detect(rules: &RuleSet, n: &Normalized, text: &str) -> Classes {
    let hits: Vec<Hit> = rules.hits(&n.norm);
    let mut out = Classes::default();
    let has = |label: &str| hits.iter().any(|h| label_of(h.rule).1 == label);
    let refund = has("refund");
    let security = has("account_security");
    let purchase = has("purchase_intent") && !POST_PURCHASE.is_match(&n.norm);
    for h in &hits {
        let (kind, label) = label_of(h.rule);
        if label == "purchase_intent" && !purchase {
            continue;
        }
        if label == "demo_request"
            && n.norm[h.norm.clone()].ends_with("trial")
            && OWNED_TRIAL.is_match(&n.norm)
        {
            continue;
        }
        let matched = &n.norm[h.norm.clone()];
        if label == "billing" && WEAK_BILLING.contains(&matched) && (refund || security || purchase)
        {
            continue;
        }
        let list = if kind == "intent" {
            &mut out.intents
        } else {
            &mut out.topics
        };
        let label: &'static str = if kind == "intent" {
            INTENTS
                .iter()
                .copied()
                .find(|l| *l == label)
                .unwrap_or("product_question")
        } else {
            TOPICS
                .iter()
                .copied()
                .find(|l| *l == label)
                .unwrap_or("billing")
        };
        if !list.contains(&label) {
            list.push(label);
        }
        out.evidence.push(h.evidence(
            n,
            text,
            if kind == "intent" { "intent" } else { "topic" },
            Some(label),
        ));
    }
    out
}

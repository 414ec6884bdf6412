CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    contact TEXT NOT NULL DEFAULT '{}',
    account TEXT NOT NULL DEFAULT '{}',
    page TEXT,
    turn_count INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE turns (
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    seq INTEGER NOT NULL,
    role TEXT NOT NULL,
    text TEXT NOT NULL,
    at TEXT NOT NULL,
    signals TEXT,
    PRIMARY KEY (conversation_id, seq)
);

CREATE TABLE decisions (
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    seq INTEGER NOT NULL,
    action TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    trigger_id TEXT,
    reason TEXT,
    policy_hash TEXT NOT NULL,
    trace TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);

CREATE TABLE handoffs (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    seq INTEGER NOT NULL,
    trigger_id TEXT,
    reason TEXT,
    priority INTEGER,
    state TEXT NOT NULL,
    brief TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX handoffs_by_time ON handoffs (created_at);

CREATE TABLE idempotency (
    conversation_id TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (conversation_id, key)
);

CREATE TABLE policies (
    hash TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE api_keys (
    key_hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at TEXT NOT NULL
);

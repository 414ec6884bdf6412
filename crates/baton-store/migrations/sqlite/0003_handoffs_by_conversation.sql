-- Loading a conversation reads its handoffs: without this every turn scanned them all.
CREATE INDEX handoffs_by_conversation ON handoffs (conversation_id, seq);

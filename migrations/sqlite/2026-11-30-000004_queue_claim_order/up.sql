-- The queue's order among a channel's waiting items, as the claim and the positions read it
-- (priority highest first, then arrival): the head is one index lookup instead of a sort of
-- every waiting item. Expressions spelled exactly as the queries spell them.
CREATE INDEX queue_claim_order ON queue (
    json_extract(meta, '$.channel'), COALESCE(json_extract(meta, '$.priority'), 0) DESC, enqueued_at, id
) WHERE status = 'queued';

DROP INDEX queue_claim_order;

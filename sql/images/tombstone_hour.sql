-- Retention: every registry row of one expired hour becomes a tombstone (id, status 'purged',
-- purged_at); the trigger of 0060 clears the rest. (The hour's personal fields are dropped with its
-- registry_details partition, in the same transaction: retention.tombstone_hour.)
UPDATE images.registry_status
SET status = 'purged', purged_at = %(purged_at)s
WHERE status <> 'purged'
  AND (hour_key = %(hour_key)s
       OR (hour_key IS NULL AND received_at >= %(hour_start)s AND received_at < %(hour_end)s))

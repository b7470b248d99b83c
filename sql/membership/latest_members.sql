-- DuckDB: one row per membership_id from the successful files ($files). When an id appears in
-- several batches, the lexicographically last batch (then its last row) wins, so the result is the
-- same however often and in whatever order the batches ran.
SELECT
    membership_id,
    first_name,
    last_name,
    email,
    CAST(strptime(date_of_birth, '%Y%m%d') AS DATE) AS date_of_birth,
    mobile_no,
    above_18,
    batch AS source_batch
FROM read_parquet($files, union_by_name = true)
WHERE is_successful
QUALIFY row_number() OVER (PARTITION BY membership_id ORDER BY batch DESC, row_number DESC) = 1

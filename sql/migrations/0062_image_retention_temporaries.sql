-- Retention also removes the temporary files of writes killed before they finished (zones.py,
-- `sweep_temporaries`), and says how many per run.
ALTER TABLE images.retention_runs ADD COLUMN temporary_files_removed integer NOT NULL DEFAULT 0;

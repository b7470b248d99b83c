"""Images out after 7 days: the purge, S3 lifecycle rules and the compliance check."""

"""Images: upload API and Kafka ingestion into one landing zone, processing, 7-day retention, BI."""

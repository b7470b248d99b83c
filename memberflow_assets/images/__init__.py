"""Images: upload API and Kafka ingestion into one landing zone, processing, 7-day retention, BI."""

GROUP = "images"  # one asset group for ingestion, processing and retention

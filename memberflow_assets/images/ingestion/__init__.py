"""Images in: the upload API and the Kafka topic, landed into the landing zone and the registry."""

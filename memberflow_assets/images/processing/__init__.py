"""Images processed by the hour: thumbnails, metadata, the BI views."""

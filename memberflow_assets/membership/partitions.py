import dagster as dg

# One partition per landed applications file; the key is `layout.batch_key(file name)`.
application_files = dg.DynamicPartitionsDefinition(name="application_files")

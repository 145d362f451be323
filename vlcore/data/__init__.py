"""Data model shared by every stage: the raw Parquet schema, cleaning and sharding."""

"""vlcore."""

"""Deployment sizes (``sizes``) and deployment bundles for running elsewhere (``export``)."""

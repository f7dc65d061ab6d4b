"""Thin FastAPI layer: authenticate, validate, start workflows or send Updates, read the read model."""

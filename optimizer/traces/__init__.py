"""Inputs: request traces in the formats found in the wild, loaded into one request table."""

"""Reporting: side-by-side comparisons of policies and HTML reports."""

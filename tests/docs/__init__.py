"""Tests of README.md and the docs/ site."""

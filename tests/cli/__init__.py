"""Tests of the command line (tcc.cli) as a whole: how every command ends."""

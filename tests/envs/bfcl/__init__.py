"""Tests of the BFCL env."""

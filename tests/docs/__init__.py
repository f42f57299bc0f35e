"""Tests that keep docs/ honest: runnable examples, complete reference, fresh figures."""

"""Transformers, Derived: the one implementation of everything the chapters build."""

"""Tests of the method registry and of a method plugged in from outside the package."""

"""Helpers shared by tests (networks, database calls, a real stack, ports); fixtures stay in conftest.py files."""

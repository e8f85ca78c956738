"""The diagnosis: findings, recommendations and a verdict from the plain numbers the engine measured.

It imports neither torch nor the engine (tests/test_architecture.py holds it to that): its one input is a
NetworkFacts.
"""

"""The service level objectives, declared in slos.yaml; generate.py writes their rules."""

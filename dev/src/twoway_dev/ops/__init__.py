"""Operator tooling: inputs of the Helm chart generated from the contract, dead-letter tools."""

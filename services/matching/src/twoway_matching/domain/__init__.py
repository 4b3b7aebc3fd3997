"""The matching domain: participants, eligibility, scores and the optimal round; no I/O."""

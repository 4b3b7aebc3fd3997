"""The scheduling domain: pure slot finding and series planning, no I/O."""

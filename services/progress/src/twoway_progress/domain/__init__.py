"""Progress's pure rules: health, fit check, inactivity timers, completion, credits, xAPI."""

"""The notifications domain: message identities, who gets what and when, calendars; no I/O."""

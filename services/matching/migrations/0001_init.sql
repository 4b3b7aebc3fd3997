-- The matching service's own tables come with its features; this marks the schema as migrated.
COMMENT ON SCHEMA matching IS 'Twoway matching service';

-- The scheduling service's own tables come with its features; this marks the schema as migrated.
COMMENT ON SCHEMA scheduling IS 'Twoway scheduling service';

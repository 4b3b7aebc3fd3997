-- The notifications service's own tables come with its features; this marks the schema as migrated.
COMMENT ON SCHEMA notifications IS 'Twoway notifications service';

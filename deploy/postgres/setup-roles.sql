-- Twoway: the operator's database set-up, as plain SQL for psql.
--
-- The same set-up as `twoway-db-setup` (twoway_shared.platform.roles): creates the database
-- if missing and, for each service, a login role that owns the service's schema and holds no
-- other privilege. Safe to run again. Run it as a superuser (or a role with CREATEDB and
-- CREATEROLE), connected to any database other than the one being set up:
--
--   psql "postgresql://postgres@db-host:5432/postgres" \
--        -v database=twoway -v role_prefix=twoway_ -v password="$TWOWAY_DB_PASSWORD" \
--        -f deploy/postgres/setup-roles.sql
--
-- Variables (all optional):
--   database     the database to set up                       default twoway
--   role_prefix  roles are <role_prefix>matching, ...          default twoway_
--   password     the roles' password; without it no password is set (then use another
--                authentication method in pg_hba.conf, e.g. cert or peer)

\set ON_ERROR_STOP on
\set QUIET on
SET client_min_messages = warning;

\if :{?database}
\else
  \set database twoway
\endif
\if :{?role_prefix}
\else
  \set role_prefix twoway_
\endif

-- DDL cannot take parameters, so names must be plain identifiers; longer than 63 characters
-- PostgreSQL would silently truncate them and the services' URLs would not match.
SELECT :'database' ~ '^[a-z_][a-z0-9_]*$' AND length(:'database') <= 63
   AND :'role_prefix' ~ '^[a-z_][a-z0-9_]*$' AND length(:'role_prefix') <= 63 - 13
   AS twoway_names_ok \gset
\if :twoway_names_ok
\else
  DO $$ BEGIN RAISE EXCEPTION 'setup-roles.sql: database and role_prefix must be lower-case letters, digits and _, not starting with a digit, at most 63 characters with the service name'; END $$;
\endif

SELECT :'role_prefix' || 'matching' AS matching_role,
       :'role_prefix' || 'scheduling' AS scheduling_role,
       :'role_prefix' || 'notifications' AS notifications_role,
       :'role_prefix' || 'progress' AS progress_role,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS twoway_superuser \gset

-- 1. The database, closed to everyone but the roles granted CONNECT below.
SELECT format('CREATE DATABASE %I', :'database')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'database') \gexec
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;

-- 2. One login role per service; an existing one is brought back to least privilege.
SELECT format('CREATE ROLE %I LOGIN', role)
  FROM unnest(ARRAY[:'matching_role', :'scheduling_role', :'notifications_role', :'progress_role']) AS role
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = role) \gexec
\if :twoway_superuser
SELECT format('ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS',
              role)
  FROM unnest(ARRAY[:'matching_role', :'scheduling_role', :'notifications_role', :'progress_role']) AS role \gexec
\else
-- Only a superuser may touch REPLICATION and BYPASSRLS; a non-superuser admin (managed
-- services) must also be a member of a role to hand it a schema.
SELECT format('ALTER ROLE %I LOGIN NOCREATEDB NOCREATEROLE', role)
  FROM unnest(ARRAY[:'matching_role', :'scheduling_role', :'notifications_role', :'progress_role']) AS role \gexec
SELECT format('GRANT %I TO CURRENT_USER', role)
  FROM unnest(ARRAY[:'matching_role', :'scheduling_role', :'notifications_role', :'progress_role']) AS role \gexec
\endif

\if :{?password}
\if :twoway_superuser
-- Keeps the clear-text password out of the server's statement log.
SET log_statement = 'none';
\endif
SELECT format('ALTER ROLE %I PASSWORD %L', role, :'password')
  FROM unnest(ARRAY[:'matching_role', :'scheduling_role', :'notifications_role', :'progress_role']) AS role \gexec
\if :twoway_superuser
RESET log_statement;
\endif
\endif

GRANT CONNECT ON DATABASE :"database"
   TO :"matching_role", :"scheduling_role", :"notifications_role", :"progress_role";

-- 3. Inside the database: one schema per service, owned by its role.
\connect :"database"

-- PostgreSQL 15+ does this already; older servers and old databases do not.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

SELECT format(
         CASE WHEN EXISTS (SELECT FROM pg_namespace WHERE nspname = schema)
              THEN 'ALTER SCHEMA %1$I OWNER TO %2$I'
              ELSE 'CREATE SCHEMA %1$I AUTHORIZATION %2$I' END,
         schema, role)
  FROM (VALUES ('matching', :'matching_role'),
               ('scheduling', :'scheduling_role'),
               ('notifications', :'notifications_role'),
               ('progress', :'progress_role')) AS wanted (schema, role) \gexec

-- Unqualified names then mean the service's own schema.
SELECT format('ALTER ROLE %I IN DATABASE %I SET search_path = %I',
              role, current_database(), schema)
  FROM (VALUES ('matching', :'matching_role'),
               ('scheduling', :'scheduling_role'),
               ('notifications', :'notifications_role'),
               ('progress', :'progress_role')) AS wanted (schema, role) \gexec

\echo 'Twoway database' :'database' 'is set up for roles' :'matching_role' :'scheduling_role' :'notifications_role' :'progress_role'

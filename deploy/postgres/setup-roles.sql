-- Twoway: the operator's database set-up, as plain SQL for psql.
--
-- The same set-up as `twoway-db-setup` (twoway_shared.platform.roles): creates the database
-- if missing and, for each service, a schema with two login roles:
--   <role_prefix><service>_owner  owns the schema; `twoway-<service> migrate` runs as it
--   <role_prefix><service>        the runtime role of `run`: reads and writes rows only
-- Safe to run again. Run it as a superuser (or a role with CREATEDB and CREATEROLE),
-- connected to any database other than the one being set up:
--
--   psql "postgresql://postgres@db-host:5432/postgres" \
--        -v database=twoway -v role_prefix=twoway_ -f deploy/postgres/setup-roles.sql
--
-- Variables (both optional):
--   database     the database to set up                       default twoway
--   role_prefix  roles are <role_prefix>matching, ...          default twoway_
-- Passwords are not set here (psql would send them in clear text): give each role its own
-- with psql's `\password twoway_matching` (it sends a SCRAM verifier), or use
-- `twoway-db-setup --generate-passwords`, or another authentication method (cert).

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
   AND :'role_prefix' ~ '^[a-z_][a-z0-9_]*$' AND length(:'role_prefix') <= 63 - 19
   AS twoway_names_ok \gset
\if :twoway_names_ok
\else
  DO $$ BEGIN RAISE EXCEPTION 'setup-roles.sql: database and role_prefix must be lower-case letters, digits and _, not starting with a digit, at most 63 characters with the service name'; END $$;
\endif

SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS twoway_superuser \gset

-- The services as a VALUES list: (schema, its owner role, its runtime role).
SELECT string_agg(format('(%L, %L, %L)', service, :'role_prefix' || service || '_owner',
                         :'role_prefix' || service), ', ') AS twoway_rows
  FROM unnest(ARRAY['matching', 'scheduling', 'notifications', 'progress']) AS service \gset
\set twoway_services '(VALUES ' :twoway_rows ') AS s (service, owner, runtime)'
\set twoway_roles :twoway_services ', LATERAL (VALUES (owner), (runtime)) AS r (role)'

-- 1. The database, closed to everyone but the roles granted CONNECT below.
SELECT format('CREATE DATABASE %I', :'database')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'database') \gexec
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;

-- 2. Two login roles per service; an existing one is brought back to least privilege.
SELECT format('CREATE ROLE %I LOGIN', role) FROM :twoway_roles
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = role) \gexec
\if :twoway_superuser
SELECT format('ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS',
              role) FROM :twoway_roles \gexec
\else
-- Only a superuser may touch REPLICATION and BYPASSRLS; a non-superuser admin (managed
-- services) must also be a member of a role to hand it a schema.
SELECT format('ALTER ROLE %I LOGIN NOCREATEDB NOCREATEROLE', role) FROM :twoway_roles \gexec
SELECT format('GRANT %I TO CURRENT_USER', role) FROM :twoway_roles \gexec
\endif
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', :'database', role) FROM :twoway_roles \gexec

-- 3. Inside the database: one schema per service, owned by its owner role.
\connect :"database"

-- PostgreSQL 15+ does this already; older servers and old databases do not.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

SELECT format(
         CASE WHEN EXISTS (SELECT FROM pg_namespace WHERE nspname = service)
              THEN 'ALTER SCHEMA %1$I OWNER TO %2$I'
              ELSE 'CREATE SCHEMA %1$I AUTHORIZATION %2$I' END,
         service, owner)
  FROM :twoway_services \gexec

-- Before owner roles existed the runtime role owned the tables: hand them over.
SELECT format('REASSIGN OWNED BY %I TO %I', runtime, owner) FROM :twoway_services \gexec

-- The runtime role: rows of its own schema's tables, and its sequences; nothing more.
SELECT format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', service) FROM :twoway_services \gexec
SELECT format('GRANT USAGE ON SCHEMA %I TO %I', service, runtime) FROM :twoway_services \gexec
SELECT format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO %I',
              service, runtime) FROM :twoway_services \gexec
SELECT format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO %I', service, runtime)
  FROM :twoway_services \gexec
-- Tables and sequences later migrations create get the same grants.
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I '
              'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I', owner, service, runtime)
  FROM :twoway_services \gexec
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I '
              'GRANT USAGE, SELECT ON SEQUENCES TO %I', owner, service, runtime)
  FROM :twoway_services \gexec

-- Unqualified names then mean the service's own schema.
SELECT format('ALTER ROLE %I IN DATABASE %I SET search_path = %I', role, current_database(),
              service)
  FROM :twoway_roles \gexec

\echo 'Twoway database' :'database' 'is set up with role prefix' :'role_prefix'

-- The only role the MCP server connects as: it can read the chosen schema and nothing else.
-- Apply as a superuser in the target database; set the password separately (never in this file).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mcp_reader') THEN
        CREATE ROLE mcp_reader LOGIN;
    END IF;
END
$$;

-- No superuser, role creation, replication, RLS bypass or inherited group privileges
-- (so no pg_read_server_files / pg_execute_server_program / pg_write_server_files).
ALTER ROLE mcp_reader NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 32;
ALTER ROLE mcp_reader SET default_transaction_read_only = on;
ALTER ROLE mcp_reader SET statement_timeout = '10s';
ALTER ROLE mcp_reader SET idle_in_transaction_session_timeout = '30s';

-- Nobody gets to create objects or temp tables by default.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
DO $$ BEGIN EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database()); END $$;

GRANT USAGE ON SCHEMA public TO mcp_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO mcp_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO mcp_reader;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM mcp_reader;

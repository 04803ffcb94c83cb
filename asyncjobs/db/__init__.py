"""PostgreSQL: connections, the pool, the SQL, the schema and its migrations, the embedded
server."""

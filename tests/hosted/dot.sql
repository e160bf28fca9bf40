-- a script written for the sqlite3 shell: its output dot-commands, and .bail off over an error
.headers on
.mode csv
CREATE TABLE t(a, b, c);
INSERT INTO t VALUES (1, 'x,y', NULL), (2, 'say "hi"', 3.5), (3, 'two
lines', 'z');
SELECT * FROM t ORDER BY a;
.print "-- tabs, no headers" after
.mode tabs
.headers off
/* a comment */
.nullvalue NULL
SELECT a, c FROM t;
.mode list
.separator ::
SELECT a, b FROM t WHERE a < 3;
.bail off
SELECT * FROM missing_table;
.echo off
.changes off
SELECT count(*) FROM t;
.quit
SELECT 'not reached';

#!/bin/bash
# sqlite3.sh - the sqlite3 shell builds a database of ~50k rows with a
# recursive CTE, indexes it and runs aggregate and join queries, with and
# without libtallymalloc.so; the printed results must match.

[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$(dirname "$0")/common.sh"

need sqlite3 sqlite3

cat >"$tmp/work.sql" <<'SQL'
.bail on
.headers off
.mode list
PRAGMA journal_mode = WAL;
PRAGMA cache_size = -4000;

CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
                        region TEXT NOT NULL, since INTEGER NOT NULL);
CREATE TABLE products (id INTEGER PRIMARY KEY, title TEXT NOT NULL,
                       price_cents INTEGER NOT NULL, category TEXT NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL,
                     product_id INTEGER NOT NULL, qty INTEGER NOT NULL,
                     note TEXT);

BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
INSERT INTO customers
SELECT i, 'customer-' || printf('%05d', i),
       CASE i % 5 WHEN 0 THEN 'north' WHEN 1 THEN 'south' WHEN 2 THEN 'east'
                  WHEN 3 THEN 'west' ELSE 'center' END,
       2000 + (i * 7) % 24
FROM n;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
INSERT INTO products
SELECT i, 'product ' || hex(i * 2654435761 % 4294967296),
       100 + (i * 7919) % 99900,
       'cat-' || (i % 13)
FROM n;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000)
INSERT INTO orders
SELECT i, 1 + (i * 48271) % 2000, 1 + (i * 16807) % 500, 1 + i % 9,
       CASE WHEN i % 10 = 0 THEN NULL
            ELSE substr('lorem ipsum dolor sit amet consectetur adipiscing elit',
                        1 + i % 20, 5 + i % 30) END
FROM n;
COMMIT;

CREATE INDEX orders_customer ON orders(customer_id);
CREATE INDEX orders_product ON orders(product_id, qty);
CREATE INDEX customers_region ON customers(region, since);
ANALYZE;

SELECT 'counts', (SELECT count(*) FROM customers), (SELECT count(*) FROM products),
       (SELECT count(*) FROM orders);

SELECT 'revenue_by_region', c.region, count(*), sum(o.qty * p.price_cents)
FROM orders o JOIN customers c ON c.id = o.customer_id
              JOIN products p ON p.id = o.product_id
GROUP BY c.region ORDER BY c.region;

SELECT 'top_customers', c.name, sum(o.qty * p.price_cents) AS spent
FROM orders o JOIN customers c ON c.id = o.customer_id
              JOIN products p ON p.id = o.product_id
GROUP BY c.id ORDER BY spent DESC, c.id LIMIT 5;

SELECT 'categories', p.category, count(DISTINCT o.customer_id), avg(o.qty)
FROM orders o JOIN products p ON p.id = o.product_id
GROUP BY p.category ORDER BY p.category;

SELECT 'notes', count(note), count(DISTINCT note), max(length(note)),
       group_concat(DISTINCT substr(note, 1, 3))
FROM (SELECT note FROM orders ORDER BY note);

SELECT 'window', customer_id, running FROM (
    SELECT customer_id, id,
           sum(qty) OVER (PARTITION BY customer_id ORDER BY id) AS running
    FROM orders WHERE customer_id <= 3)
ORDER BY customer_id, running DESC LIMIT 6;

-- Churn: update, delete and vacuum so pages are freed and rebuilt.
UPDATE orders SET note = upper(note) || '!' WHERE id % 7 = 0;
DELETE FROM orders WHERE qty = 5;
SELECT 'after_delete', count(*), sum(qty), count(*) FILTER (WHERE note LIKE '%!')
FROM orders;
VACUUM;
PRAGMA integrity_check;
SELECT 'hash', sum(length(name) * id) % 1000003 FROM customers;
SQL

run_plain sqlite3 -batch "$tmp/plain.db" ".read $tmp/work.sql"
run_tally sqlite3 -batch "$tmp/tally.db" ".read $tmp/work.sql"
check_status plain 0
check_same
small_served
finish

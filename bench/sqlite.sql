-- bench/sqlite.sql: an in-memory table of 200,000 rows, an index, and queries over it (bench/prof.sh).
create table t(a integer primary key, b text, c real);
with recursive n(i) as (select 1 union all select i+1 from n where i < 200000) insert into t select i, printf('row-%d-%s', i, hex(randomblob(8))), i*1.5 from n;
create index tb on t(b);
select count(*), sum(length(b)) from t where b like 'row-1%';
select b, count(*) from t group by substr(b, 1, 6) order by 2 desc limit 3;

#!/bin/bash
# git.sh - git builds the same repository twice, once plainly and once with
# libtallymalloc.so preloaded into the driver script and every git process
# it starts: a few hundred files in several commits, a branch and a merge,
# then log --stat, diff, blame, grep, gc, repack, fsck and archive.  With
# fixed names, e-mails and dates both runs must print the same hashes.

[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$(dirname "$0")/common.sh"

need git git
need md5sum coreutils

# The driver: run as `bash git_work.sh DIR`; prints only things that do not
# depend on DIR.
cat >"$tmp/git_work.sh" <<'DRIVER'
set -eu
set -o pipefail
mkdir -p "$1/repo"
cd "$1/repo"

tick=1600000000
commit() {
    tick=$((tick + 3600))
    GIT_AUTHOR_DATE="@$tick +0000" GIT_COMMITTER_DATE="@$tick +0200" \
        git commit -q "$@"
}

# write_file PATH SEED LINES: deterministic text content.
write_file() {
    local path=$1 seed=$2 lines=$3 i
    mkdir -p "$(dirname "$path")"
    {
        echo "/* $path, version $seed */"
        for ((i = 1; i <= lines; i++)); do
            echo "int value_${i}_of_$((seed % 97)) = $(((seed * 7919 + i * 104729) % 1000003));"
        done
    } >"$path"
}

git init -q -b main .
git config core.pager cat
git config gc.auto 0
git config pack.threads 1
git config core.autocrlf false
git config commit.gpgsign false

# 1: 240 files in six directories.
for d in core net util docs tests tools; do
    for ((n = 0; n < 40; n++)); do
        write_file "$d/file$n.c" $((n * 13 + ${#d})) $((5 + n % 30))
    done
done
git add -A
commit -m "initial import"

# 2: modify a third, add 60 more.
for d in core net util; do
    for ((n = 0; n < 40; n += 3)); do
        write_file "$d/file$n.c" $((n * 17 + 1000)) $((8 + n % 25))
    done
done
for ((n = 0; n < 60; n++)); do
    write_file "extra/part$((n / 10))/x$n.h" $((n + 5000)) $((3 + n % 11))
done
git add -A
commit -m "rework core, net, util; add extra headers"

# 3: renames and deletions.
for ((n = 0; n < 40; n += 4)); do
    git mv "tools/file$n.c" "tools/renamed$n.c"
done
git rm -q docs/file1*.c
commit -m "rename tools, drop some docs"

# 4: a branch with two commits, merged back without fast-forward.
git checkout -q -b feature
for ((n = 0; n < 30; n++)); do
    write_file "feature/f$n.c" $((n + 9000)) $((10 + n))
done
git add -A
commit -m "feature: first part"
for ((n = 0; n < 30; n += 2)); do
    write_file "feature/f$n.c" $((n + 9100)) $((12 + n))
done
commit -a -m "feature: second part"
git checkout -q main
for ((n = 1; n < 40; n += 5)); do
    write_file "tests/file$n.c" $((n + 7000)) 20
done
commit -a -m "tests: refresh"
tick=$((tick + 3600))
GIT_AUTHOR_DATE="@$tick +0000" GIT_COMMITTER_DATE="@$tick +0000" \
    git merge -q --no-ff --no-edit -m "merge feature" feature

# 5: one more change on top.
for ((n = 2; n < 40; n += 7)); do
    write_file "util/file$n.c" $((n + 8000)) 15
done
commit -a -m "util: final touches"

echo "== rev-parse"
git rev-parse HEAD HEAD^{tree} HEAD~2 feature
echo "== log --stat"
git log --stat --format=fuller
echo "== log --graph"
git log --graph --oneline --all
echo "== diff HEAD~2"
git diff --stat HEAD~2
git diff HEAD~2 | md5sum
git diff -M --summary HEAD~4 HEAD
echo "== blame"
git blame -s util/file2.c | sed -n 1,5p
echo "== grep"
git grep -c 'value_3_of' HEAD -- core | sed -n 1,10p
echo "== ls-tree"
git ls-tree -r HEAD | wc -l
git ls-tree -r HEAD | md5sum
echo "== gc"
git gc -q --prune=now
git count-objects -v | grep -v -e '^size' -e '^prune'
git fsck --full --strict --no-progress
git verify-pack -s .git/objects/pack/*.idx | md5sum
echo "== repack"
git repack -q -a -d -f --window=20
git fsck --full --no-progress
git rev-list --objects --all | wc -l
echo "== archive"
git archive --format=tar HEAD | md5sum
echo "== done"
DRIVER

git_env=(env -u GIT_DIR -u GIT_WORK_TREE -u GIT_INDEX_FILE -u GIT_OBJECT_DIRECTORY
         HOME="$tmp/home" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
         GIT_AUTHOR_NAME="Tally Tester" GIT_AUTHOR_EMAIL=tester@example.invalid
         GIT_COMMITTER_NAME="Tally Committer" GIT_COMMITTER_EMAIL=committer@example.invalid
         LC_ALL=C TZ=UTC GIT_PAGER=cat PAGER=cat GIT_TERMINAL_PROMPT=0)
mkdir -p "$tmp/home"
cd "$tmp" || hard_error "cannot cd to $tmp"
run_plain "${git_env[@]}" bash "$tmp/git_work.sh" "$tmp/plain"
run_tally "${git_env[@]}" bash "$tmp/git_work.sh" "$tmp/tally"
check_status plain 0
check_same
small_served
finish

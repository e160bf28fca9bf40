#!/bin/bash
# git.sh — git on this repository ($2, the source directory) on glibc and on the drop-in: log with
# --stat and with patches, rev-list, fsck, grep, blame, cat-file of every object in the history, and a clone
# (index-pack, upload-pack as a child process) checked with fsck. Each command's output must be equal.
# The history is pinned to the commit HEAD names when the test starts, so that a commit made meanwhile
# changes nothing; for `rev-list --all`, which cannot be pinned, a pair is run again when the refs
# moved between its two runs. Nothing is written to the repository.
. "$(dirname "$0")/common.sh" "$@"
GIT=/usr/bin/git
need $GIT
REPO=${2:-}
[ -n "$REPO" ] || fail "usage: $0 LIBRARY SOURCE-DIR"
# No configuration of the user's or the system's, no pager, no optional locks (no index refresh).
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null HOME=$WORK GIT_PAGER=cat PAGER=cat GIT_OPTIONAL_LOCKS=0
export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0='*'
$GIT -C "$REPO" rev-parse --git-dir >/dev/null || fail "$REPO is not a git repository"
HEAD=$($GIT -C "$REPO" rev-parse --verify HEAD) || fail "no HEAD in $REPO"
ROOT=$($GIT -C "$REPO" rev-list --max-parents=0 "$HEAD" | tail -n 1)
G=("$GIT" -C "$REPO")
cd "$WORK" || fail "cd $WORK"

compare git_log_stat "${G[@]}" log --stat -n 50 "$HEAD"
compare git_log_patch "${G[@]}" log -p -M --format=fuller "$HEAD"
compare git_log_numstat "${G[@]}" log --numstat --format='%H %an %s' "$HEAD"
compare git_diff_root "${G[@]}" diff --stat=200 -M "$ROOT" "$HEAD"
compare git_rev_list "${G[@]}" rev-list --count --objects "$HEAD"
for attempt in 1 2 3 4; do
    [ "$attempt" != 4 ] || fail "git rev-list --all --count: the refs kept moving"
    before=$("${G[@]}" for-each-ref)
    if (compare git_rev_list_all "${G[@]}" rev-list --all --count); then break; fi
    [ "$before" != "$("${G[@]}" for-each-ref)" ] || fail "git rev-list --all --count"
    echo "the refs moved during git_rev_list_all: again"
done
compare git_fsck "${G[@]}" fsck --no-progress --no-dangling --full
compare git_grep "${G[@]}" grep -n hm_heap_alloc "$HEAD"
compare git_grep_regex "${G[@]}" grep -c -E '(malloc|free)\(' "$HEAD" -- '*.c' '*.h'
BLAME=src/preload/malloc.c   # the drop-in's own history; README.md if it moved
"${G[@]}" cat-file -e "$HEAD:$BLAME" 2>/dev/null || BLAME=README.md
compare git_blame "${G[@]}" blame -w -M "$HEAD" -- "$BLAME"
# every object of the pinned history, read in full (loose objects others add meanwhile are not in it)
# shellcheck disable=SC2016 # the inner shell expands $1 and $2
compare git_cat_file PATH=/usr/bin:/bin sh -c \
    'git -C "$1" rev-list --objects "$2" | cut -d" " -f1 | git -C "$1" cat-file --batch | cksum' sh "$REPO" "$HEAD"
# A clone made by each run (its own directory), then checked: pack transfer, index-pack, checkout.
cat >"$WORK/clone.sh" <<'SH'
#!/bin/sh
set -e
dir=$1/clone.$$
rm -rf "$dir"
git clone -q --no-local --no-checkout "$2" "$dir"
git -C "$dir" fsck --no-progress --no-dangling --full
git -C "$dir" rev-list --count --objects "$3"
git -C "$dir" -c advice.detachedHead=false checkout -q "$3"
git -C "$dir" ls-files -s | git hash-object --stdin
rm -rf "$dir"
SH
chmod +x "$WORK/clone.sh"
compare git_clone PATH=/usr/bin:/bin "$WORK/clone.sh" "$WORK" "$REPO" "$HEAD"

#!/usr/bin/env bash
# A small working tree for the device tool (the lent GPU machine).
#
# The device tool sends the session's checkout (tracked files and untracked, not ignored ones) and the carried
# paths, 64 MiB in all. This repository's tracked files alone are about 63 MB (the committed training states,
# the shipped model and detector, benchmark images), so a training pack (.gpu/, ~60 MB) does not fit beside
# them. `enter` switches the checkout to a temporary branch that holds only the code and the few small files a
# GPU job reads; `leave` goes back to the branch you were on, every file as it was.
#
#   bash scripts/device_tree.sh enter [PATH...]   # needs a clean tree (commit first); PATH: more tracked files
#                                                 # to keep (e.g. training/rt64w_vl/state.safetensors)
#   ... the device tool's run, carry [".gpu"] (scripts/gpu_refit_sweep.sh) ...
#   bash scripts/device_tree.sh leave
#   bash scripts/device_tree.sh size              # what would travel now: tracked + untracked + .gpu, in MB
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
MODE=${1:-}
BR=device-tree
LIMIT=$((64 * 1024 * 1024))
# dropped: large binaries and documents no GPU job reads
DROP='^(facecycle/assets/|realtime/detectors/assets/|training/|benchmarks/|docs/)'
# kept from the dropped folders: what the refit reads (train_default.sh refit: FT's head, the critic's path,
# the clip labels)
KEEP=(training/rt64w_vl/head.safetensors training/critic/critic.safetensors training/video_labels.csv)

travelling_bytes() {
    local t
    t=$( { git ls-files -z; git ls-files -z -o --exclude-standard; } | xargs -0 -r du -cb 2>/dev/null | awk '/\ttotal$/ {s += $1} END {print s + 0}')
    if [[ -d .gpu ]]; then t=$((t + $(du -sb .gpu | cut -f1))); fi
    echo "$t"
}

case $MODE in
enter)
    shift
    if [[ -n $(git status --porcelain) ]]; then
        echo "device_tree.sh: the working tree has changes: commit them first (leave restores the last commit)" >&2
        exit 2
    fi
    cur=$(git symbolic-ref --short -q HEAD) || { echo "device_tree.sh: HEAD is detached; check out a branch" >&2; exit 2; }
    if [[ $cur == "$BR" ]]; then echo "device_tree.sh: already on $BR ('leave' first)" >&2; exit 2; fi
    if git show-ref -q --verify "refs/heads/$BR"; then
        echo "device_tree.sh: a branch $BR is left from an earlier enter; delete it (git branch -D $BR)" >&2; exit 2
    fi
    for p in "$@"; do
        git ls-files --error-unmatch -- "$p" > /dev/null 2>&1 || { echo "device_tree.sh: $p is not tracked" >&2; exit 2; }
    done
    mkdir -p .gpu
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    echo "$cur" > .gpu/return-branch
    list=$(mktemp)
    { git ls-files | grep -vE "$DROP" || true; printf '%s\n' "${KEEP[@]}" "$@"; } | sort -u > "$list"
    git checkout -q --orphan "$BR"
    git rm -rq --cached .
    tr '\n' '\0' < "$list" | xargs -0 git add -f --
    rm -f "$list"
    git -c user.name=device-tree -c user.email=device-tree@localhost commit -qm \
        "temporary: the device tool's small tree (scripts/device_tree.sh; not for merging)"
    git clean -fdq  # the files of $cur that this branch does not hold (all committed there)
    echo "on $BR; travels $(( $(travelling_bytes) / 1000000 )) MB of at most $((LIMIT / 1000000)) MB; 'leave' returns to $cur"
    ;;
leave)
    [[ $(git symbolic-ref --short -q HEAD) == "$BR" ]] || { echo "device_tree.sh: not on $BR" >&2; exit 2; }
    ret=$(cat .gpu/return-branch 2>/dev/null) || { echo "device_tree.sh: .gpu/return-branch is missing" >&2; exit 2; }
    git checkout -qf "$ret"
    git branch -qD "$BR"
    rm -f .gpu/return-branch
    echo "back on $ret"
    ;;
size)
    b=$(travelling_bytes)
    echo "$((b / 1000000)) MB would travel (limit $((LIMIT / 1000000)) MB)"
    [[ $b -le $LIMIT ]]
    ;;
*)
    echo "usage: bash scripts/device_tree.sh enter [PATH...] | leave | size" >&2
    exit 2
    ;;
esac
